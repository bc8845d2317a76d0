"""Attention: dot-product attention of decoder states over encoder states (the book's TimeAttention)."""

from __future__ import annotations

from typing import Any

from ..backend import untracked
from .scaled_dot_product import no_keys
from .softmax import softmax, softmax_backward
from .two_inputs import _TwoInputs


class Attention(_TwoInputs):
    """For each decoder step, a softmax over the encoder steps of ``hs_enc . h`` weighs the encoder
    states into a context vector (no parameters).

    forward(hs_enc: (N, T_enc, H), hs_dec: (N, T_dec, H)) -> context: (N, T_dec, H)
    backward(dcontext: (N, T_dec, H)) -> (dhs_enc: (N, T_enc, H), dhs_dec: (N, T_dec, H))

    ``attention_weights`` (N, T_dec, T_enc) keeps the last forward's weights for plotting (the book
    keeps a list of T_dec arrays of (N, T_enc): ``attention_weights[:, t]`` is its ``[t]``). All
    decoder steps are computed at once as batched products; the book's loop over them gives the same
    values. Caches both inputs and the weights.

    There is no mask: every encoder step is attended (a padding mask passed third, PyTorch's habit, is
    refused: the third argument is ``train``; :class:`MultiheadAttention` takes PyTorch's masks).
    One object per use: called as ``att(hs_enc, hs_dec)`` twice in one training forward of a model it is
    refused (the first use's backward would get the second's cache), as every layer.
    """

    _inputs = ("hs_enc", "hs_dec")
    _third = ("xpnet's Attention has no mask (PyTorch's attn_mask or key_padding_mask): every encoder step is "
              "attended, as the book's TimeAttention; xn.layers.MultiheadAttention takes them")

    def __init__(self) -> None:
        super().__init__()
        self.attention_weights = None
        self._cache = None

    def forward(self, hs_enc: Any, hs_dec: Any, train: bool = True) -> Any:  # type: ignore[override]
        hs_enc, hs_dec = untracked(hs_enc), untracked(hs_dec)
        self._check_pair_train(train)
        xp = self._check_pair(hs_enc, hs_dec)
        if hs_enc.ndim != 3 or hs_dec.ndim != 3 or hs_enc.shape[0] != hs_dec.shape[0] \
                or hs_enc.shape[2] != hs_dec.shape[2]:
            raise ValueError(f"Attention: expected hs_enc (N, T_enc, H) and hs_dec (N, T_dec, H), got "
                             f"{tuple(hs_enc.shape)} and {tuple(hs_dec.shape)}")
        if hs_enc.shape[1] == 0:
            no_keys(self.name, "hs_enc", tuple(hs_enc.shape))
        scores = hs_dec @ xp.permute_dims(hs_enc, (0, 2, 1))
        a = softmax(scores, -1)
        self.attention_weights = a
        self._cache = (hs_enc, hs_dec, a)
        return a @ hs_enc

    def backward(self, dout: Any) -> tuple[Any, Any]:  # type: ignore[override]
        dout = untracked(dout)
        hs_enc, hs_dec, a = self._need(self._cache)
        xp = self._check_float(dout)
        if tuple(dout.shape) != tuple(hs_dec.shape):
            raise ValueError(f"Attention: expected dout of shape {tuple(hs_dec.shape)}, got {tuple(dout.shape)}")
        da = dout @ xp.permute_dims(hs_enc, (0, 2, 1))
        ds = softmax_backward(a, da, -1)
        dhs_enc = xp.permute_dims(a, (0, 2, 1)) @ dout + xp.permute_dims(ds, (0, 2, 1)) @ hs_dec
        return dhs_enc, ds @ hs_enc
