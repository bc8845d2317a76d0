"""Fast paths: per-library implementations of an operation, beside the portable code they stand for.

How a fast path is found:

1. A layer asks ``fast_path(op, xp, portable)`` and calls what it gets: the fast implementation of
   ``op`` for ``xp``'s library where one is registered and switched on, else ``portable``.
2. The families of fast paths are named in one table, :data:`FAMILIES`: for each array library, the
   modules of this package that hold fast paths, in order of preference, and the operations each
   provides. A family's module is imported and its ``register(add)`` called the first time one of
   its operations is asked for on its library's arrays, so CuPy, PyTorch, JAX and Numba are imported
   only when their arrays arrive (SciPy, for NumPy's erf, when GELU first asks). A family whose
   third-party library is absent is skipped quietly; one whose import fails warns once, and its
   operations run as portable code.
3. A fast path may accept only some inputs (the Numba kernels: float32/float64 C-contiguous arrays);
   the others go to the next family's implementation of the op, and to the portable function last.
4. Every fast path is tested equal to the portable path. ``set_fast_paths(False)`` (or
   ``XPNET_DISABLE_FAST_PATHS=1``) switches all of them off; ``set_numba(False)`` (or
   ``XPNET_DISABLE_NUMBA=1``) the Numba family alone, ``set_mkl(False)`` (``XPNET_DISABLE_MKL=1``) MKL's.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from typing import Any, Callable

import array_api_compat

from .._user import flag, warn

__all__ = ["FAMILIES", "register_fast_path", "fast_path", "writes_out", "into", "set_numba", "set_mkl",
           "set_fast_paths", "fast_paths_enabled"]

# The layers' own kernels: Numba's for NumPy arrays, CuPy's for CuPy arrays.
_LAYER_OPS = ("batchnorm_forward", "batchnorm_backward", "relu_forward", "relu_backward", "maxpool2d_forward",
              "maxpool2d_backward")

# The optimizers' fused updates, on NumPy (Numba) and CuPy alike.
_UPDATE_OPS = ("sgd_update", "sgd_momentum_update", "momentum_update", "adam_update", "adamw_update", "rms_update")

# The recurrent layers' weights, made ready once for the products of every time step.
_STEP_OPS = ("step_weights", "step_weights_transposed")

# library -> ((family module, third-party package it needs or None, operations it provides), ...), preferred
# first: an input one family does not accept goes to the next.
FAMILIES: dict[str, tuple[tuple[str, str | None, tuple[str, ...]], ...]] = {
    "numpy": (("fast_numba", "numba", (*_LAYER_OPS, *_UPDATE_OPS, "sgd_updates", "sgd_momentum_updates",
                                       "embedding_backward", "layernorm_forward", "layernorm_backward", "softmax",
                                       "softmax_backward", "softmax_cross_entropy", "conv_flat_dy", "conv_shifted_sums",
                                       "resize_taps")),
              ("fast_mkl", "mkl", (*_STEP_OPS, "matmul")),
              ("fast_numpy", None, ("im2col", "column_sums", "embedding_backward", "cross_entropy_labels",
                                    "cross_entropy_labels_backward", "step_weights_transposed", "lstm_step",
                                    "lstm_step_backward", "take_rows")),
              ("fast_scipy", "scipy", ("erf",))),
    "cupy": (("fast_cupy", "cupy", ("im2col", *_UPDATE_OPS, "channel_dot", "softmax_cross_entropy", "batchnorm_running",
                                    "batchnorm_forward_running", "dropout_forward", "rnn_step", "rnn_step_backward",
                                    "lstm_step", "lstm_step_backward", "gru_step", "gru_step_backward", "erf",
                                    "clip_norm_factor", "clamp", "rnn_relu_step", "rnn_relu_step_backward", "softmax",
                                    "softmax_backward", "epoch_sums", "embedding_backward", "layernorm_forward",
                                    "layernorm_backward", "scaled", "adam_updates", "sgd_updates",
                                    "sgd_momentum_updates", "sgd_multi_tensor", "lerp_all", "copies",
                                    "conv_shifted_sums", "conv_flat_dy", "col2im", "gru_book_step",
                                    "gru_book_step_backward", "shift_flip", "all_finite", "global_avg_pool_backward",
                                    *_LAYER_OPS)),
             ("fast_cupy_capture", "cupy", ("matmul", "heads_matmul"))),
    "torch": (("fast_torch", "torch", ("im2col", "col2im", "embedding_backward", "erf")),),
    "jax": (("fast_jax", "jax", ("erf", "im2col", "col2im", "conv_flat_dy", "conv_shifted_sums", "maxpool2d_forward",
                                  "maxpool2d_backward", "avgpool2d_sums", "avgpool2d_backward")),),
}

# (op, library) -> [(family, fn, accepts)] in the order registered (used in FAMILIES order, see _resolve).
_FAST_PATHS: dict[tuple[str, str], list[tuple[str, Callable[..., Any], Callable[..., bool] | None]]] = {}
_loaded: dict[str, bool] = {}  # family -> whether it registered (False: absent or failed to import)
# The families a user can switch off alone: family -> (the environment variable that does it from the start,
# the function that does it at run time).
_FAMILY_SWITCHES = {"fast_numba": ("XPNET_DISABLE_NUMBA", "set_numba"),
                    "fast_mkl": ("XPNET_DISABLE_MKL", "set_mkl")}


def _on(env: str) -> bool:
    """Whether the environment variable ``env`` (``XPNET_DISABLE_...``) leaves its fast paths on: unset, empty, 0,
    false, no or off; 1, true, yes or on switch them off. Another value raises a ValueError naming it (``=0`` read
    as set, and so as off, would have meant the opposite of what it says)."""
    value = os.environ.get(env, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return True
    if value in ("1", "true", "yes", "on"):
        return False
    raise ValueError(f"{env}={os.environ[env]!r} in the environment: expected 1 (switch these fast paths off) or 0 "
                     "(leave them on)")


_switches = {"all": _on("XPNET_DISABLE_FAST_PATHS"),
             **{family: _on(env) for family, (env, _) in _FAMILY_SWITCHES.items()}}
_resolved: dict[tuple[str, str], Any] = {}  # (op, library) -> [(fn, accepts), ...] switched on; cleared by the switches
_guards: dict[tuple[str, str], tuple[Callable[..., Any], Callable[..., Any]]] = {}
# What fast_path answered, by (op, namespace, portable): asked a dozen times a training step, so one lookup.
_answers: dict[tuple[str, Any, Any], Any] = {}
_ANSWERS_KEPT = 4096  # a caller passing a new portable function at each call would grow it: cleared past this


def forget_resolved() -> None:
    """Drop what the lookups kept (after a registration, a switch, or a test's change to ``_FAST_PATHS``)."""
    _resolved.clear()
    _guards.clear()
    _answers.clear()


def _library(xp: Any) -> str | None:
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    return None


def register_fast_path(op: str, library: str, *, accepts: Callable[..., bool] | None = None,
                       family: str = "user") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` as a fast implementation of ``op`` for arrays of ``library``
    (``"numpy"``, ``"cupy"``, ``"torch"`` or ``"jax"``); ``accepts(*args)`` says which inputs it takes (the others
    go to the portable function). It must be tested equal to the portable path."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _FAST_PATHS.setdefault((op, library), []).append((family, fn, accepts))
        forget_resolved()
        return fn

    return decorate


def _installed(needs: str) -> bool:
    """A module of that name, or a distribution (``mkl`` installs libraries, no module)."""
    if importlib.util.find_spec(needs) is not None:
        return True
    try:
        importlib.metadata.distribution(needs)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _load_family(library: str, family: str, needs: str | None, ops: tuple[str, ...]) -> None:
    _loaded[family] = False
    if needs is not None and not _installed(needs):
        return
    try:
        module = importlib.import_module(f"{__package__}.{family}")
        module.register(lambda op, fn, accepts=None: register_fast_path(op, library, accepts=accepts,
                                                                         family=family)(fn))
    except Exception as exc:  # noqa: BLE001 - a broken optional library means: run without it
        for op in ops:
            _FAST_PATHS[(op, library)] = [e for e in _FAST_PATHS.get((op, library), []) if e[0] != family]
        hint = f" Set {_FAMILY_SWITCHES[family][0]}=1 to silence this." if family in _FAMILY_SWITCHES else ""
        warn(f"{needs or family} is installed but failed to import ({type(exc).__name__}: {exc}); "
             f"{', '.join(ops)} run as portable code (slower).{hint}")
        return
    registered = {op for (op, lib), entries in _FAST_PATHS.items() if lib == library
                  for e in entries if e[0] == family}
    if registered != set(ops):
        raise RuntimeError(f"xpnet.backend.{family} registered {sorted(registered)}, but FAMILIES lists "
                           f"{sorted(ops)} for it")
    _loaded[family] = True


def _resolve(op: str, library: str) -> list[tuple[Callable[..., Any], Any]]:
    for family, needs, ops in FAMILIES.get(library, ()):
        if op in ops and family not in _loaded and _switches.get(family, True):  # a family switched off stays unloaded
            _load_family(library, family, needs, ops)
    order = [family for family, _, _ in FAMILIES.get(library, ())]
    found = []
    # FAMILIES' order, whatever order they loaded in; a user's own registrations (not in it) first.
    entries = sorted(_FAST_PATHS.get((op, library), ()), key=lambda e: order.index(e[0]) if e[0] in order else -1)
    for family, fn, accepts in entries:
        if _switches.get(family, True):
            found.append((fn, accepts))
            if accepts is None:  # takes every input: the ones after it never run
                break
    return found


def fast_path(op: str, xp: Any, portable: Callable[..., Any] | None = None) -> Callable[..., Any] | None:
    """What runs ``op`` for namespace ``xp``: its fast implementation where one is registered and on,
    else ``portable`` (None when not given). Fast paths that accept only some inputs are returned
    guarded: an input goes to the first that accepts it, else to ``portable`` (without ``portable``:
    the first fast path is returned as it is). The answer is kept until :func:`forget_resolved`."""
    key = (op, xp, portable)
    answer = _answers.get(key, _answers)
    if answer is _answers:
        if len(_answers) >= _ANSWERS_KEPT:
            _answers.clear()
        answer = _answers[key] = _fast_path(op, xp, portable)
    return answer


def _fast_path(op: str, xp: Any, portable: Callable[..., Any] | None) -> Callable[..., Any] | None:
    if not _switches["all"]:
        return portable
    library = _library(xp)
    if library is None:
        return portable
    key = (op, library)
    if key not in _resolved:
        _resolved[key] = _resolve(op, library)
    found = _resolved[key]
    if not found:
        return portable
    fn, accepts = found[0]
    if accepts is None or portable is None:
        return fn
    guard = _guards.get(key)
    if guard is None or guard[0] is not portable:
        if len(found) == 1:
            def guarded(*args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs) if accepts(*args) else portable(*args, **kwargs)
        else:
            def guarded(*args: Any, **kwargs: Any) -> Any:
                for each, takes in found:
                    if takes is None or takes(*args):
                        return each(*args, **kwargs)
                return portable(*args, **kwargs)

        guarded.__name__ = guarded.__qualname__ = fn.__name__
        guard = _guards[key] = (portable, guarded)
    return guard[1]


def writes_out(xp: Any) -> bool:
    """Whether ``xp``'s elementwise functions can write into ``out=`` (NumPy's and CuPy's ufuncs do;
    the array API has no ``out=``). False while the fast paths are off, so tests compare both ways."""
    return _switches["all"] and (array_api_compat.is_numpy_namespace(xp) or array_api_compat.is_cupy_namespace(xp))


def into(out: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` written into ``out``, or a new array when ``out`` is None (a namespace without
    ``out=``, see :func:`writes_out`). Always use the result: ``w = into(w, xp.sqrt, v)``."""
    return fn(*args) if out is None else fn(*args, out=out)


def _switch(name: str, enabled: bool) -> bool:
    who = _FAMILY_SWITCHES[name][1] if name in _FAMILY_SWITCHES else "set_fast_paths"
    previous, _switches[name] = _switches[name], flag(enabled, who, "enabled")
    forget_resolved()
    return previous


def set_numba(enabled: bool) -> bool:
    """Turn the Numba kernels for NumPy arrays on or off (``XPNET_DISABLE_NUMBA=1``: off from the
    start), leaving the other fast paths as they are; returns the previous setting. They exist only
    where Numba is installed (``pip install 'xpnet[numba]'``)."""
    return _switch("fast_numba", enabled)


def set_mkl(enabled: bool) -> bool:
    """Turn MKL's products on NumPy arrays (the recurrent layers' packed step products and the layers'
    largest products, :mod:`xpnet.backend.fast_mkl`) on or off (``XPNET_DISABLE_MKL=1``: off from the
    start), leaving the other fast paths as they are; returns the previous setting. They exist only where
    MKL is installed (``pip install 'xpnet[mkl]'``)."""
    return _switch("fast_mkl", enabled)


def fast_paths_enabled() -> bool:
    """Whether the fast paths are on (see :func:`set_fast_paths`)."""
    return _switches["all"]


def set_fast_paths(enabled: bool) -> bool:
    """Turn the fast paths on or off (tests compare both); returns the previous setting."""
    return _switch("all", enabled)
