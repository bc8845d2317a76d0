"""Scaled dot-product attention, PyTorch's F.scaled_dot_product_attention as a layer of three inputs; its core
(``attend`` and ``attend_backward``, over the last two axes) is MultiheadAttention's too, run on each head."""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

from .. import init as _init
from .._user import flag, is_real
from ..backend import fast_path, isdtype, namespace, same_device, untracked
from .base import Layer, described
from .dropout import dropout_forward
from .softmax import softmax, softmax_backward
from .uses import called

_INPUTS = "query, key, value, attn_mask, is_causal"


class ScaledDotProductAttention(Layer):
    """PyTorch's ``F.scaled_dot_product_attention`` (d2l's ``DotProductAttention``) as a layer without parameters:
    softmax(q k^T * scale + mask) v, ``scale = 1 / sqrt(E)`` unless given.

    forward(query (..., L, E), key (..., S, E), value (..., S, Ev), attn_mask=None, is_causal=False) -> (..., L, Ev),
    the leading (batch, head) axes the same for the three. backward(dy (..., L, Ev)) -> (dquery, dkey, dvalue).
    ``enable_gqa=True`` (F's argument, here the layer's, as ``dropout_p`` and ``scale``): grouped-query attention,
    query (..., Hq, L, E), key (..., Hkv, S, E), value (..., Hkv, S, Ev), Hq a multiple of Hkv; each run of Hq / Hkv
    query heads attends to one key/value head (F's ``repeat_interleave`` along the head axis), dkey and dvalue
    summed over the run.

    ``attn_mask`` as F.scaled_dot_product_attention's, broadcastable to the scores (..., L, S): boolean with **True:
    attended** (the opposite of nn.MultiheadAttention's masks) or float, added to the scores. ``is_causal=True``
    attends key j <= query i; with an ``attn_mask`` too it is refused, as PyTorch asserts. d2l's ``valid_lens`` is
    the mask its ``masked_softmax`` builds: ``attn_mask = xp.arange(S) < valid_lens[:, None, None]`` for (N,) lengths,
    ``xp.arange(S) < valid_lens[..., None]`` for (N, L). A query whose every key is masked gets NaN (PyTorch's
    answer; d2l's -1e6 gives it the mean of the values). ``dropout`` drops weights in training from the layer's
    seeded generator (``xn.init.seed``), as MultiheadAttention's. ``attention_weights`` (..., L, S) keeps the last
    forward's weights before dropout for plotting, as d2l's. Caches q * scale, k, v (repeated to Hq heads), the weights
    and the dropped ones.
    """

    def __init__(self, dropout: float = 0.0, scale: float | None = None, enable_gqa: bool = False):
        super().__init__()
        if isinstance(dropout, bool) or not is_real(dropout) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be a float in [0, 1), got {dropout!r}")
        if scale is not None and (isinstance(scale, bool) or not is_real(scale)):
            raise TypeError(f"{self.name}: scale must be a float or None (1 / sqrt(E)), got {scale!r}")
        self.dropout, self.scale = float(dropout), None if scale is None else float(scale)
        self.enable_gqa = flag(enable_gqa, self.name, "enable_gqa")
        self.rng = _init.make_rng(None)
        self.attention_weights = None
        self._cache, self._causal = None, None  # _causal: (the key of a query, its causal mask)

    def __call__(self, query: Any, key: Any, value: Any, attn_mask: Any = None,  # type: ignore[override]
                 is_causal: bool = False, train: bool | None = None, **functional: Any) -> Any:
        """``forward`` in the layer's mode, recorded as a use (:mod:`xpnet.layers.uses`). F's
        ``dropout_p``, ``scale`` and ``enable_gqa`` given here are refused, naming the constructor's argument."""
        if functional:
            raise TypeError(_layer_arguments(self.name, functional))
        return self.forward(query, key, value, attn_mask, is_causal, train=called(self, train, _INPUTS))

    def forward(self, query: Any, key: Any, value: Any, attn_mask: Any = None,  # type: ignore[override]
                is_causal: bool = False, train: bool = True) -> Any:
        query, key, value = untracked(query), untracked(key), untracked(value)
        train = self._check_train(train, _INPUTS)
        is_causal = flag(is_causal, self.name, "is_causal")
        xp, group = self._check_inputs(query, key, value)
        mask = self._mask(xp, query, key, attn_mask, is_causal)
        scale = 1.0 / math.sqrt(query.shape[-1]) if self.scale is None else self.scale
        key, value = _repeat_heads(xp, key, group), _repeat_heads(xp, value, group)
        y, saved = attend(query, key, value, mask, scale, self.dropout if train else 0.0, self.rng, self)
        self.attention_weights, self._cache = saved.weights, (saved, group)
        return y

    def backward(self, dy: Any) -> tuple[Any, Any, Any]:  # type: ignore[override]
        dy = untracked(dy)
        saved, group = self._need(self._cache)
        self._check_grad(dy, (*saved.q.shape[:-1], saved.v.shape[-1]))
        dq, dk, dv = attend_backward(dy, saved)
        return dq, _sum_heads(namespace(dk), dk, group), _sum_heads(namespace(dv), dv, group)

    def _check_inputs(self, query: Any, key: Any, value: Any) -> tuple[Any, int]:
        """The namespace, and how many query heads share a key/value head (1 without enable_gqa)."""
        xp = self._check_float(query)
        for x in (key, value):
            self._check_float(x)
            if not same_device(x, query) or x.dtype != query.dtype:
                raise ValueError(f"{self.name}: query, key and value must share namespace, device and dtype, got "
                                 f"{described(query)}, {described(key)} and {described(value)}")
        q, k, v = (tuple(x.shape) for x in (query, key, value))
        if len(k) >= 2 and k[-2] == 0:
            no_keys(self.name, "key", k)
        if self.enable_gqa:
            if not (3 <= len(q) == len(k) == len(v) and q[:-3] == k[:-3] == v[:-3] and k[-3] == v[-3]
                    and q[-1] == k[-1] and k[-2] == v[-2]):
                raise ValueError(f"{self.name}: with enable_gqa=True, expected query (..., Hq, L, E), key (..., Hkv, "
                                 f"S, E) and value (..., Hkv, S, Ev) with the same leading axes, got {q}, {k} and {v}")
            if q[-3] % k[-3]:
                raise ValueError(f"{self.name}: with enable_gqa=True, the query's heads Hq must be a multiple of the "
                                 f"key's and value's Hkv, got Hq={q[-3]} and Hkv={k[-3]}")
            return xp, q[-3] // k[-3]
        if not (2 <= len(q) == len(k) == len(v) and q[:-2] == k[:-2] == v[:-2] and q[-1] == k[-1]
                and k[-2] == v[-2]):
            fewer = 3 <= len(q) == len(k) and q[:-3] == k[:-3] and k[-3] < q[-3]
            raise ValueError(f"{self.name}: expected query (..., L, E), key (..., S, E) and value (..., S, Ev) with "
                             f"the same leading axes, got {q}, {k} and {v}" + (
                                 "; for key and value of fewer heads than the query (grouped-query attention), "
                                 "ScaledDotProductAttention(enable_gqa=True)" if fewer else ""))
        return xp, 1

    def _mask(self, xp: Any, query: Any, key: Any, attn_mask: Any, is_causal: bool) -> Any:
        """The additive mask, broadcastable to the scores (..., L, S), or None."""
        scores = (*query.shape[:-1], key.shape[-2])
        if is_causal:
            if attn_mask is not None:
                raise ValueError(f"{self.name}: is_causal=True with an attn_mask (PyTorch refuses both); pass one: "
                                 "the causal rows combined into attn_mask, or is_causal=True alone")
            return causal_kept(self, xp, query, *scores[-2:])
        if attn_mask is None:
            return None
        mask_array(attn_mask, query, "attn_mask", self.name)
        m = tuple(attn_mask.shape)
        if len(m) > len(scores) or any(a not in (1, b) for a, b in zip(m[::-1], scores[::-1])):
            raise ValueError(f"{self.name}: attn_mask must broadcast to the scores {scores} (..., L, S), got {m}")
        return additive(xp, attn_mask, query, "attn_mask", self.name, true_attends=True)


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
        dropped, drop = fast_path("dropout_forward", xp, dropout_forward)(a, dropout, 1.0 / (1.0 - dropout), rng,
                                                                           owner)
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


def _repeat_heads(xp: Any, x: Any, group: int) -> Any:
    """x (..., H, S, E) with each head repeated ``group`` times in a row: (..., H * group, S, E), F's
    ``repeat_interleave(group, -3)``."""
    if group == 1:
        return x
    *lead, h, s, e = x.shape
    run = xp.broadcast_to(xp.expand_dims(x, axis=-3), (*lead, h, group, s, e))
    return xp.reshape(run, (*lead, h * group, s, e))


def _sum_heads(xp: Any, dx: Any, group: int) -> Any:
    """The gradient of :func:`_repeat_heads`: dx (..., H * group, S, E) summed over each run, (..., H, S, E)."""
    if group == 1:
        return dx
    *lead, hg, s, e = dx.shape
    return xp.sum(xp.reshape(dx, (*lead, hg // group, group, s, e)), axis=-3)


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


def causal_kept(layer: Any, xp: Any, query: Any, L: int, S: int) -> Any:
    """The causal mask (L, S) as added to the scores, in the query's dtype (-inf where key j > query i), made
    once per (L, S, array type, dtype, device) and kept on ``layer``: five launches a forward on CuPy the first
    time only, and a CUDA-graph capture finds it made in its warm-up steps."""
    key = (L, S, type(query), str(query.dtype), str(query.device))
    if layer._causal is None or layer._causal[0] != key:
        layer._causal = (key, additive(xp, causal(xp, query, L, S), query, "is_causal", layer.name))
    return layer._causal[1]


def no_keys(who: str, name: str, shape: tuple[int, ...]) -> None:
    """Raise for attention over no keys (S = 0): the softmax's maximum over none fails inside the array library."""
    raise ValueError(f"{who}: {name} {shape} holds no positions (S = 0) to attend to; xpnet's attention needs "
                     "S >= 1 (PyTorch's gives zeros)")


def mask_array(m: Any, query: Any, name: str, who: str) -> None:
    """Raise unless the mask ``m`` is an array in the query's namespace and device."""
    if not hasattr(m, "dtype") or not same_device(m, query):
        raise TypeError(f"{who}: {name} must be an array in the query's namespace and device "
                        f"({described(query).split(' ', 1)[1]}), got {described(m)}")


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


def _layer_arguments(name: str, given: dict[str, Any]) -> str:
    """What to write for keywords of F.scaled_dot_product_attention given to the call instead of the layer."""
    own = {"dropout_p": "dropout", "scale": "scale", "enable_gqa": "enable_gqa"}
    known = [k for k in given if k in own]
    if not known:
        return f"{name}() got an unexpected keyword argument {next(iter(given))!r}"
    args = ", ".join(f"{own[k]}={given[k]!r}" for k in known)
    return (f"{name}: {', '.join(known)} is the layer's, not the call's (F.scaled_dot_product_attention takes "
            f"it per call): build it with {name}({args}), then call layer(query, key, value, attn_mask, is_causal)")
