"""``LanguageModel``: stacked LSTMs over word (or character) ids, the book's ``Rnnlm`` and
``BetterRnnlm``, and sampling text from it.

ids (N, T) -> Embedding -> [Dropout] -> (LSTM -> [Dropout]) x num_layers -> Linear (or TiedLinear,
weight tying) -> scores (N, T, vocab_size). The LSTMs are stateful: trained over a
``xn.datasets.TokenStream`` by ``xn.train`` (truncated backpropagation through time), each batch
continues the state of the one before; ``reset_state()`` starts from zeros.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._user import is_int, is_real
from ..backend import index_dtype, no_autograd, to_device, to_numpy
from ..layers import LSTM, Dropout, Embedding, Linear, TiedLinear
from ..layers.container import STATE_HINT, mode
from .chain import StopsWhereNothingTrains, backward_chain
from .model import Model

__all__ = ["LanguageModel"]


class LanguageModel(StopsWhereNothingTrains, Model):
    """An LSTM language model: Embedding, ``num_layers`` stateful LSTMs, a Linear to the vocabulary's scores.

    ``LanguageModel(vocab_size, wordvec_size, hidden_size, num_layers=1, dropout=0.0, tie_weights=False)``:
    forward(ids (N, T), train=True) -> scores (N, T, vocab_size); backward(dscores) returns None (ids
    have no gradient). ``layers`` holds the layers in order (``"layers.0.W"`` is the embedding).
    ``dropout`` > 0 puts a Dropout (inverted, as the book's TimeDropout) after the embedding and after
    each LSTM, ``num_layers + 1`` in all (PyTorch's ``nn.LSTM(num_layers=2, dropout=p)`` has one, between
    its layers: this is that LSTM with ``nn.Dropout(p)`` before and after it); ``tie_weights=True`` makes
    the output layer a :class:`~xpnet.layers.TiedLinear` of the embedding (needs ``wordvec_size ==
    hidden_size``). Weights start as the book's.
    """

    def __init__(self, vocab_size: int, wordvec_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, tie_weights: bool = False, dtype: str = "float32"):
        super().__init__()
        if not is_int(num_layers) or num_layers < 1:
            raise ValueError(f"LanguageModel: num_layers must be an int >= 1, got {num_layers!r}")
        if tie_weights and wordvec_size != hidden_size:
            raise ValueError(f"LanguageModel: tie_weights needs wordvec_size == hidden_size, got {wordvec_size} and "
                             f"{hidden_size}")
        embed = Embedding(vocab_size, wordvec_size, dtype=dtype)
        layers: list[Any] = [embed]
        for i in range(num_layers):
            layers += [Dropout(dropout)] if dropout else []
            layers.append(LSTM(wordvec_size if i == 0 else hidden_size, hidden_size, stateful=True, dtype=dtype))
        layers += [Dropout(dropout)] if dropout else []
        layers.append(TiedLinear(embed) if tie_weights else Linear(hidden_size, vocab_size, init="sigmoid",
                                                                   dtype=dtype))
        self.layers = layers

    @property
    def lstms(self) -> list[LSTM]:
        return [layer for layer in self.layers if isinstance(layer, LSTM)]

    def reset_state(self) -> None:
        """The next forward starts every LSTM from zeros (the book's ``model.reset_state()``)."""
        for lstm in self.lstms:
            lstm.reset_state()

    def forward(self, ids: Any, train: bool = True) -> Any:
        train = self._check_train(train, "ids", hint=STATE_HINT)
        for layer in self.layers:
            ids = layer.forward(ids, train=train)
        return ids

    def backward(self, dscore: Any, input_grad: bool = True) -> None:
        """dscore (N, T, vocab_size) -> None (ids have no gradient); ``input_grad=False`` (``backward_params``)
        stops at the earliest layer that trains (``backward_chain``): a frozen embedding and LSTM are skipped."""
        backward_chain(self.layers, dscore, input_grad)

    def generate(self, start_ids: Any, length: int, temperature: float = 1.0, seed: int | None = None,
                 skip_ids: Any = ()) -> Any:
        """Sample ``length`` ids after the prompt ``start_ids`` (an int, a list of ids, or (N, T0) ids for
        N samples at once): each next id is drawn from softmax(scores / temperature), ``temperature=0``
        takes the most likely (greedy). Returns ids (N, length) on the model's device.

        The state is reset before the prompt and after sampling. Ids in ``skip_ids`` (e.g. ``<unk>``;
        each in [0, vocab_size), at least one id left) are never drawn (the book's ``RnnlmGen`` skips them
        by drawing again). ``temperature``: a finite number >= 0. Random numbers come from
        ``numpy.random.default_rng(seed)`` on the host: the same seed gives the same text on every device.
        """
        if not is_int(length) or length < 1:
            raise ValueError(f"{self.name}.generate: length must be an int >= 1, got {length!r}")
        if not is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"{self.name}.generate: temperature must be a finite number >= 0 (0: greedy), got "
                             f"{temperature!r}")
        dev, vocab = self.device, self.layers[0].num_embeddings
        xp = dev.xp
        prompt = to_numpy(start_ids) if hasattr(start_ids, "shape") else np.asarray(start_ids)
        prompt = prompt.reshape(1, -1) if prompt.ndim < 2 else prompt
        if prompt.ndim != 2 or prompt.shape[1] < 1 or prompt.dtype.kind not in "iu":
            raise ValueError(f"{self.name}.generate: start_ids must be an int, a list of ids or (N, T) ids, got "
                             f"{start_ids!r}")
        banned = np.zeros(vocab, dtype=bool)
        banned[self._skipped(skip_ids, vocab)] = True
        if banned.all():
            raise ValueError(f"{self.name}.generate: skip_ids must leave at least one of the {vocab} ids to draw, "
                             f"got all of them")
        rng = np.random.default_rng(seed)
        # drawn in float32 at least: float16's cumulative sum stops growing long before 10,000 ids, and a
        # draw below 2**-25 would round to 0
        half = getattr(xp, "float16", None)  # not every namespace has it (array-api-strict)
        dtype = xp.float32 if half is not None and self.dtype == half else self.dtype
        penalty = to_device(np.where(banned, -np.inf, 0.0), dev, dtype=dtype)
        index = index_dtype(xp, dev.native)
        ids = xp.astype(to_device(prompt, dev), index)
        # the numbers of every step drawn and uploaded at once (the same ones, in the same order): an
        # upload per step from pageable host memory may wait for the GPU's queued work
        draws = None
        if temperature != 0:
            draws = rng.random((length, prompt.shape[0], 1))
            # in (0, 1]: a draw of 0 would pick the first id, skipped or not (see the sampling below)
            draws[draws == 0.0] = 1.0
            draws = to_device(draws, dev, dtype=dtype)
        out = []
        from .ids import ids_checked_once  # noqa: PLC0415 - it imports this module

        self.reset_state()
        try:
            # the prompt checked once; the ids fed back are drawn from the vocabulary's scores
            with dev.activate(), mode(self, False), no_autograd(xp), ids_checked_once(self, [(ids,)]):
                for step in range(length):
                    score = xp.astype(self.forward(ids, train=False)[:, -1, :], dtype, copy=False) + penalty
                    if temperature == 0:
                        ids = xp.argmax(score, axis=1)
                    else:
                        # the maximum subtracted before dividing: a tiny temperature gives -inf, not inf - inf
                        e = xp.exp((score - xp.max(score, axis=1, keepdims=True)) / temperature)
                        cdf = xp.cumulative_sum(e, axis=1)
                        # the draw scaled by the sum's own end (not compared with 1, which a float32 sum over
                        # 10,000 ids misses by ~1e-6): the count of ids below a draw in (0, end] names an id
                        # whose cdf rose past it, never one of zero probability, and no id gets the rounding
                        ids = xp.sum(xp.astype(cdf < draws[step, ...] * cdf[:, -1:], index), axis=1)
                    ids = xp.astype(ids, index)[:, None]
                    out.append(ids)
        finally:
            self.reset_state()
        return xp.concat(out, axis=1)

    def _skipped(self, skip_ids: Any, vocab: int) -> np.ndarray:
        """``skip_ids`` (an id or a list of ids, on any device) as host int64 ids, each in [0, vocab)."""
        skip = np.asarray(to_numpy(skip_ids) if hasattr(skip_ids, "shape") else skip_ids).reshape(-1)
        if skip.size == 0:
            return skip.astype(np.int64)
        if skip.dtype.kind not in "iu" or skip.min() < 0 or skip.max() >= vocab:
            raise ValueError(f"{self.name}.generate: skip_ids must be ids in [0, {vocab}), got {skip_ids!r}")
        return skip.astype(np.int64)
