"""Array-API namespaces: which one an array belongs to, its dtypes, and how its arrays are updated.

Updating an array (a parameter, an optimizer slot, a window of a gradient) follows one rule,
:func:`update_rule`: where the library's arrays are mutable the update writes in place, where they are
immutable but offer JAX's ``x.at[i].set(v)`` it makes a new array, and in both cases the result is
stored back where the old array was kept (``params[k] = p``). A namespace that allows neither is
refused with :class:`XpnetBackendError` before anything runs on it. PyTorch runs with autograd off
(:func:`no_autograd`): xpnet writes its own backward passes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import array_api_compat
import array_api_compat.numpy as _np_xp

from .libraries import library

__all__ = ["XpnetBackendError", "compat", "namespace", "isdtype", "index_dtype", "update_rule", "set_at", "add_at",
           "sign", "untracked", "no_autograd"]


class XpnetBackendError(TypeError):
    """xpnet cannot compute correctly on this array namespace (its arrays can be updated neither in
    place nor through ``.at``), so it refuses to run rather than train silently wrong."""


def compat(xp: Any) -> Any:
    """The array-API namespace for a module: NumPy, CuPy and PyTorch get array-api-compat's wrapper
    (``jax.numpy`` is itself an array-API namespace)."""
    name = getattr(xp, "__name__", "")
    if name == "numpy":
        return _np_xp
    if name == "cupy":
        import array_api_compat.cupy as cxp  # noqa: PLC0415 - only with cupy present
        return cxp
    if name == "torch":
        import array_api_compat.torch as txp  # noqa: PLC0415 - only with torch present
        return txp
    return xp


_NS_CACHE: dict[type, Any] = {}


def namespace(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays`` (cached per array type: cheap in a hot loop).

    Raises TypeError naming both namespaces when arrays from two libraries are mixed.
    """
    xp = None
    for a in arrays:
        t = type(a)
        if a is None or t in (int, float, bool, complex):
            continue
        ns = _NS_CACHE.get(t)
        if ns is None:
            ns = array_api_compat.array_namespace(a)
            _NS_CACHE[t] = ns
        if xp is None:
            xp = ns
        elif ns is not xp:
            raise TypeError(f"arrays from two namespaces cannot be mixed: {xp.__name__} and {ns.__name__}")
    if xp is None:
        raise TypeError("namespace: expected at least one array")
    return xp


_DTYPE_KINDS: dict[tuple[int, str], bool] = {}
_DTYPES_SEEN: list[Any] = []  # keeps the memoised dtype objects alive, so their ids stay theirs


_INDEX_DTYPES: dict[int, tuple[Any, Any]] = {}  # id(namespace) -> (namespace, its index dtype)


def index_dtype(xp: Any, device: Any = None) -> Any:
    """The namespace's default index dtype, for labels, ids and counts: int64, or int32 on JAX without
    x64 (which would truncate int64 to it with a warning on every conversion). Looked up once per
    namespace, except JAX's, whose answer changes with ``jax_enable_x64``."""
    known = _INDEX_DTYPES.get(id(xp))
    if known is not None and known[0] is xp:
        return known[1]
    index = xp.__array_namespace_info__().default_dtypes(device=device)["indexing"]
    if not array_api_compat.is_jax_namespace(xp):
        _INDEX_DTYPES[id(xp)] = (xp, index)
    return index


def isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, memoised by the dtype object's identity (dtypes of two libraries
    must not be compared): layers and losses check every input, and NumPy's isdtype costs ~3 us."""
    key = (id(dtype), kind)
    hit = _DTYPE_KINDS.get(key)
    if hit is None:
        hit = bool(xp.isdtype(dtype, kind))
        if len(_DTYPES_SEEN) < 256:  # byte-swapped NumPy dtypes are new objects: do not grow forever
            _DTYPES_SEEN.append(dtype)
            _DTYPE_KINDS[key] = hit
    return hit


_RULES: dict[int, tuple[Any, str]] = {}  # id(namespace) -> (namespace, rule): namespaces need not hash


def update_rule(xp: Any) -> str:
    """How arrays of namespace ``xp`` are updated: ``"in place"`` (NumPy, CuPy, PyTorch,
    array-api-strict) or ``"at"`` (immutable arrays with JAX's ``x.at[i].set(v)``).

    Found once per namespace by trying both on a small array. Either way an update is written as
    ``p -= u`` (in place, or a new array bound to ``p``) or ``p = set_at(p, i, v)``, and the result
    is stored back where ``p`` was kept. A namespace with neither raises :class:`XpnetBackendError`.
    """
    known = _RULES.get(id(xp))
    if known is None or known[0] is not xp:
        known = _RULES[id(xp)] = (xp, _probe_update_rule(xp))
    return known[1]


def _probe_update_rule(xp: Any) -> str:
    name = getattr(xp, "__name__", type(xp).__name__)
    try:
        probe = xp.zeros((3,), dtype=xp.float32)
        alias = probe
        alias += 1.0
    except Exception as exc:
        raise XpnetBackendError(
            f"xpnet cannot run on {name}: its arrays refuse `p += u` ({type(exc).__name__}: {exc}), so "
            "optimizer steps could not update the parameters") from None
    try:
        if alias is probe:
            probe[0:1] = xp.zeros((1,), dtype=xp.float32)
            if bool(xp.all(probe == xp.asarray([0.0, 1.0, 1.0], dtype=xp.float32))):
                return "in place"
        elif bool(xp.all(alias == 1.0)) and hasattr(alias, "at"):
            if bool(xp.all(alias.at[0:1].set(0.0) == xp.asarray([0.0, 1.0, 1.0], dtype=xp.float32))):
                return "at"
        why = "gave wrong values"
    except Exception as exc:
        why = f"raised {type(exc).__name__}: {exc}"
    raise XpnetBackendError(
        f"xpnet cannot run on {name}: its arrays can be updated neither in place (`p[i] = v`) nor through "
        f"JAX-style `p.at[i].set(v)` (trying it {why}); optimizer steps and gradients would be silently lost")


def set_at(a: Any, index: Any, value: Any) -> Any:
    """``a[index] = value``: in place where ``a`` is mutable (returns ``a``), else a new array
    (``a.at[index].set(value)``). Always use the result: ``a = set_at(a, i, v)``."""
    if update_rule(namespace(a)) == "in place":
        a[index] = value
        return a
    return a.at[index].set(value)


def add_at(a: Any, index: Any, value: Any) -> Any:
    """``a[index] += value``, under the same rule as :func:`set_at`. Always use the result. On NumPy and CuPy with
    a basic index (ints, slices) the sum goes into the view ``a[index]``: ``a[index] += value`` then copies that
    view back onto itself, a second kernel on CuPy (a col2im of a 3x3 kernel ran 18 launches, now 9)."""
    if update_rule(namespace(a)) == "in place":
        if (array_api_compat.is_cupy_array(a) or array_api_compat.is_numpy_array(a)) and all(
                k is None or k is Ellipsis or type(k) in (int, slice) for k in
                (index if isinstance(index, tuple) else (index,))):
            view = a[index]
            view += value
        else:
            a[index] += value
        return a
    return a.at[index].add(value)


def sign(x: Any) -> Any:
    """sign(x) (NaN where x is NaN) by comparisons and selections only. array-api-compat's ``sign`` on CuPy, whose
    own gives 0 for NaN, puts the NaNs back through a boolean mask, whose count CuPy reads back to the host: a wait
    for the GPU at each call, and refused inside a CUDA-graph capture."""
    xp = namespace(x)
    return xp.where(x > 0, 1.0, xp.where(x < 0, -1.0, x))


_TRACKS: dict[type, bool] = {}  # array type -> whether its arrays can require grad (torch.Tensor)


def untracked(a: Any) -> Any:
    """``a`` without autograd tracking: a PyTorch tensor that requires grad is detached (xpnet computes
    its own gradients); anything else is returned as it is. Every layer's forward and backward and every
    loss pass their inputs through it, so it costs one dict lookup off PyTorch."""
    t = type(a)
    tracks = _TRACKS.get(t)
    if tracks is None:
        tracks = _TRACKS[t] = array_api_compat.is_torch_array(a)
    return a.detach() if tracks and a.requires_grad else a


def no_autograd(xp: Any) -> Any:
    """A context in which PyTorch records no autograd graph (``torch.no_grad()``; xpnet writes its own
    backward passes); a no-op elsewhere. Not ``inference_mode``: its tensors refuse later in-place updates."""
    if array_api_compat.is_torch_namespace(xp):
        return library("torch")[0].no_grad()
    return contextlib.nullcontext()
