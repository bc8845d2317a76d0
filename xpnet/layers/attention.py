"""Attention: dot-product attention of decoder states over encoder states (the book's TimeAttention)."""

from __future__ import annotations

from typing import Any

from ..backend import same_device, untracked
from .base import Layer
from .softmax import softmax, softmax_backward


class Attention(Layer):
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
    """

    def __init__(self) -> None:
        super().__init__()
        self.attention_weights = None
        self._cache = None

    def __call__(self, hs_enc: Any, hs_dec: Any, train: bool | None = None) -> Any:  # type: ignore[override]
        return self.forward(hs_enc, hs_dec, train=self.training if train is None else train)

    def forward(self, hs_enc: Any, hs_dec: Any, train: bool = True) -> Any:  # type: ignore[override]
        hs_enc, hs_dec = untracked(hs_enc), untracked(hs_dec)
        self._check_train(train, "hs_enc, hs_dec", "xpnet's Attention has no mask (PyTorch's attn_mask or "
                          "key_padding_mask): every encoder step is attended, as the book's TimeAttention; "
                          "xn.layers.MultiheadAttention takes them")
        xp = self._check_float(hs_enc)
        self._check_float(hs_dec)
        if not same_device(hs_enc, hs_dec) or hs_enc.dtype != hs_dec.dtype:
            raise ValueError("Attention: hs_enc and hs_dec must share namespace, device and dtype, got "
                             f"{hs_enc.dtype} and {hs_dec.dtype} arrays of {type(hs_enc).__name__} and "
                             f"{type(hs_dec).__name__}")
        if hs_enc.ndim != 3 or hs_dec.ndim != 3 or hs_enc.shape[0] != hs_dec.shape[0] \
                or hs_enc.shape[2] != hs_dec.shape[2]:
            raise ValueError(f"Attention: expected hs_enc (N, T_enc, H) and hs_dec (N, T_dec, H), got "
                             f"{tuple(hs_enc.shape)} and {tuple(hs_dec.shape)}")
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
