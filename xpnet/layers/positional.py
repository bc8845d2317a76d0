"""The Transformer's sinusoidal positional encoding, which d2l and pytorch/examples write by hand."""

from __future__ import annotations

import math
from typing import Any

from .._user import flag, is_real
from ..backend import untracked
from .attention_layout import check_layouts
from .base import positive_int
from .container import Container
from .dropout import Dropout

__all__ = ["PositionalEncoding"]


class PositionalEncoding(Container):
    """y = dropout(x + P), P[t, 2i] = sin(t / 10000^(2i / d_model)), P[t, 2i + 1] = cos(the same angle): the
    table of d2l's ``PositionalEncoding(num_hiddens, dropout, max_len=1000)`` and of pytorch/examples'
    word_language_model ``PositionalEncoding(d_model, dropout=0.1, max_len=5000)``, whose arguments these are.

    x: (N, T, d_model) -> y: the same shape. **Batch first by default**, as d2l's and as xpnet's Transformer
    layers (``batch_first=True``); pytorch/examples' model is time first, (T, N, d_model): pass
    ``batch_first=False`` for that; in a model whose Transformer layers are all in the other layout it is refused
    (:mod:`.attention_layout`: the table would go along the batch). T may be at most ``max_len`` (both references
    fail past it, so it is refused). An odd ``d_model`` is refused when the layer is made: both references fail
    on it too (their cos columns are one fewer than the angles), so there is no table of theirs to match.
    No parameters. The table of the first T positions is computed on the host in float64 (Python's math, d2l's
    formula), made into x's dtype on x's device once per (T, array type, dtype, device) and kept, so that a
    CUDA-graph capture finds it made in the warm-up steps. The dropout is the child ``dropout``, an
    ``xn.layers.Dropout(dropout)`` seeded from ``xn.init``'s generator, as the Transformer layers' are.
    backward(dy) -> dx = dropout's backward of dy (P is a constant). Caches what its Dropout caches.
    """

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000, *, batch_first: bool = True):
        super().__init__()
        self.d_model = positive_int(self, "d_model", d_model)
        if self.d_model % 2:
            raise ValueError(f"{self.name}: d_model must be even (a sin and a cos column per frequency), got "
                             f"{d_model}; d2l's and pytorch/examples' tables fail on an odd one too: use "
                             f"d_model={self.d_model + 1} or {self.d_model - 1}")
        if isinstance(dropout, bool) or not is_real(dropout) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be a float in [0, 1) (the probability), got {dropout!r}")
        self.max_len = positive_int(self, "max_len", max_len)
        self.batch_first = flag(batch_first, self.name, "batch_first")
        self.dropout = Dropout(float(dropout))
        self._table: tuple[Any, Any] | None = None  # (the key of an input, its table)

    def config(self) -> dict[str, Any]:
        return {"d_model": self.d_model, "dropout": self.dropout.p, "max_len": self.max_len,
                "batch_first": self.batch_first}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        train = self._check_train(train)
        self._check_float(x)
        check_layouts(self)
        layout = "(N, T, d_model)" if self.batch_first else "(T, N, d_model) (batch_first=False)"
        if x.ndim != 3 or x.shape[2] != self.d_model:
            raise ValueError(f"{self.name}: expected x of shape {layout} with d_model = {self.d_model}, got "
                             f"{tuple(x.shape)}")
        steps = x.shape[1] if self.batch_first else x.shape[0]
        if steps > self.max_len:
            raise ValueError(f"{self.name}: x {layout} has T = {steps} positions, more than max_len = "
                             f"{self.max_len}; build the layer with max_len={steps} or more")
        return self.dropout.forward(x + self._table_for(x, steps), train=train)

    def backward(self, dy: Any) -> Any:
        return self.dropout.backward(untracked(dy))

    def _table_for(self, x: Any, steps: int) -> Any:
        """P of ``steps`` positions in x's dtype on x's device, shaped to broadcast over the batch axis."""
        key = (steps, self.batch_first, type(x), str(x.dtype), str(x.device))
        if self._table is not None and self._table[0] == key:
            return self._table[1]
        scales = [10000.0 ** (i / self.d_model) for i in range(0, self.d_model, 2)]
        rows = [[f(t / s) for s in scales for f in (math.sin, math.cos)] for t in range(steps)]
        shape = (1, steps, self.d_model) if self.batch_first else (steps, 1, self.d_model)
        xp = self._check_float(x)
        table = xp.reshape(xp.asarray(rows, dtype=x.dtype, device=x.device), shape)
        self._table = (key, table)
        return table
