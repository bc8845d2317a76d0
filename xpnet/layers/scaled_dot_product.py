"""Scaled dot-product attention, PyTorch's F.scaled_dot_product_attention as a layer of three inputs; its core
(``attend`` and ``attend_backward``, over the last two axes) is MultiheadAttention's too, run on each head."""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

from ..backend import fast_path, isdtype, namespace, same_device
from .dropout import dropout_forward
from .softmax import softmax, softmax_backward


class Attended(NamedTuple):
    """What :func:`attend` keeps for :func:`attend_backward`."""

    q: Any  # the queries times scale
    k: Any
    v: Any
    weights: Any  # softmax of the scores
    dropped: Any  # the weights after dropout (the weights themselves without)
    drop: Any  # dropout's scale per weight, or None
    scale: float


def attend(q: Any, k: Any, v: Any, mask: Any, scale: float, dropout: float, rng: Any,
           owner: Any) -> tuple[Any, Attended]:
    """softmax(q k^T * scale + mask) @ v over the last two axes: q (..., L, E), k (..., S, E), v (..., S, Ev) ->
    (..., L, Ev). ``mask`` is additive, broadcastable to the scores (..., L, S), or None; the weights are dropped
    with probability ``dropout`` (0.0: none) from ``rng``, as Dropout's. Returns the output and what
    :func:`attend_backward` needs."""
    xp = namespace(q)
    qs = q * scale
    scores = _heads(xp, qs, _t(xp, k))
    if mask is not None:
        scores = scores + mask
    a = softmax(scores, -1)
    dropped, drop = a, None
    if dropout > 0.0:
        dropped, drop = dropout_forward(a, dropout, 1.0 / (1.0 - dropout), rng, owner)
    return _heads(xp, dropped, v), Attended(qs, k, v, a, dropped, drop, scale)


def attend_backward(do: Any, saved: Attended) -> tuple[Any, Any, Any]:
    """(dq, dk, dv) from the output's gradient ``do`` (..., L, Ev); the softmax's through softmax_backward."""
    xp = namespace(do)
    dv = _heads(xp, _t(xp, saved.dropped), do)
    da = _heads(xp, do, _t(xp, saved.v))
    if saved.drop is not None:
        da = da * saved.drop
    ds = softmax_backward(saved.weights, da, -1)
    return _heads(xp, ds, saved.k) * saved.scale, _heads(xp, _t(xp, ds), saved.q), dv


def _t(xp: Any, x: Any) -> Any:
    """x with its last two axes swapped."""
    n = x.ndim
    return xp.permute_dims(x, (*range(n - 2), n - 1, n - 2))


def _heads(xp: Any, a: Any, b: Any) -> Any:
    """a (..., m, k) @ b (..., k, n), a product per sample and head, through the "heads_matmul" fast path (on
    CuPy inside a captured CUDA graph: xpnet's kernel over the N * H stack of MultiheadAttention's 4-d arrays)."""
    return fast_path("heads_matmul", xp, operator.matmul)(a, b)


def causal(xp: Any, query: Any, L: int, S: int) -> Any:
    """The boolean (L, S) mask of the keys j > query i (True: not attended)."""
    positions = xp.arange(S, device=query.device)
    return positions[None, :] > xp.arange(L, device=query.device)[:, None]


def mask_array(m: Any, query: Any, name: str, who: str) -> None:
    """Raise unless the mask ``m`` is an array in the query's namespace and device."""
    if not hasattr(m, "dtype") or not same_device(m, query):
        raise TypeError(f"{who}: {name} must be an array in the query's namespace and device, got "
                        f"{type(m).__name__}")


def additive(xp: Any, m: Any, query: Any, name: str, who: str, true_attends: bool = False) -> Any:
    """The mask ``m`` as added to the scores in the query's dtype: a boolean one as -inf where it masks (where
    False with ``true_attends``, F.scaled_dot_product_attention's rule; where True, nn.MultiheadAttention's), a
    float one as it is."""
    if m.dtype == xp.bool:
        zero = xp.zeros((), dtype=query.dtype, device=query.device)
        return xp.where(m, zero, -math.inf) if true_attends else xp.where(m, -math.inf, zero)
    if isdtype(xp, m.dtype, "real floating"):
        return xp.astype(m, query.dtype)
    rule = "True: attended" if true_attends else "True: not attended"
    raise TypeError(f"{who}: {name} must be boolean ({rule}) or float (added), got {m.dtype}")
