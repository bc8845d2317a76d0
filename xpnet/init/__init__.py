"""Weight initialisers, drawn on the host from a seeded generator.

Weights are drawn with ``numpy.random.Generator`` on the host and moved to the device afterwards,
so one seed gives bit-identical initial weights on every backend and device. PyTorch's ``torch.nn.init``
(``kaiming_normal_(m.weight)``...), filling a layer's array in place, is in ``pytorch`` and exported here.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
from typing import Any, Iterator

import numpy as np

from .._user import did_you_mean, is_int, not_here
from .._user import seed as _seed_arg
from ..backend import float_dtype_name

__all__ = ["seed", "manual_seed", "generator", "skip_init", "make_rng", "weights", "uniform", "zeros", "ones",
           "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]

_generator = np.random.default_rng(0)
# Inside skip_init(): numbers the generators made there. A context variable, so that skip_init in one
# thread (xn.load) leaves layers built in another thread at the same time with real weights.
_skipping: contextvars.ContextVar[Iterator[int] | None] = contextvars.ContextVar("xpnet_skip_init", default=None)


def seed(s: int) -> None:
    """Reseed the generator that layers draw their initial weights from (``s``: an int >= 0)."""
    global _generator
    _generator = np.random.default_rng(_seed_arg(s, "xn.init.seed", "s"))


def manual_seed(s: int) -> None:
    """PyTorch's name for :func:`seed`: the weights, and the Dropout generators, of layers built after it.
    (``xn.train`` draws its shuffles from its own ``seed=`` argument.)"""
    seed(s)


def generator() -> np.random.Generator:
    """The global host generator (``xn.init.seed`` resets it)."""
    return _generator


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Build layers without drawing their weights, for weights that come from a file next.

    Inside, ``weights``/``zeros``/``ones`` give read-only placeholders of the right shape and dtype
    that take no memory (``numpy.broadcast_to`` of one value), and ``make_rng(None)`` seeds each new
    generator from its position (``(0, k)`` for the k-th) instead of drawing from the global one:
    the global generator is left untouched. Every placeholder must be replaced before use. It holds
    in the current thread (and context) only: a layer built in another thread meanwhile gets real weights.
    """
    token = _skipping.set(itertools.count())
    try:
        yield
    finally:
        _skipping.reset(token)


def make_rng(seed: int | None = None) -> np.random.Generator:
    """A new host generator: from ``seed``, else drawn from the global one (so ``xn.init.seed`` fixes it)."""
    seed = _seed_arg(seed, "seed", optional=True)
    skipping = _skipping.get()
    if seed is None and skipping is not None:
        return np.random.default_rng((0, next(skipping)))
    return np.random.default_rng(seed if seed is not None else int(_generator.integers(2**63)))


def _placeholder(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.broadcast_to(np.zeros((), dtype=_float_dtype(dtype)), tuple(shape))


def _float_dtype(dtype: Any, who: str = "layer") -> np.dtype:
    """``dtype`` checked to be a real floating type xpnet trains in (float16, float32, float64), in any spelling
    that ``model.to`` takes (:func:`xpnet.backend.float_dtype_name`): weights of another kind cannot be trained."""
    return np.dtype(float_dtype_name(dtype, who))


def dtype_name(dtype: Any, who: str) -> str:
    """Layer ``who``'s ``dtype`` argument (``"float32"``, ``np.float64``...) checked and named: ``"float32"``."""
    return _float_dtype(dtype, who).name


# The initialisers' names weights() takes, as the error lists them, and other libraries' names of the same draws,
# for the error's suggestion (Keras's he_normal, PyTorch's kaiming_normal_).
NAMES = ("he", "relu", "xavier", "glorot", "sigmoid", "normal")
_ALIASES = {"he_normal": "he", "kaiming": "he", "kaiming_normal": "he", "kaiming_normal_": "he", "msra": "he",
            "glorot_normal": "xavier", "xavier_normal": "xavier", "xavier_normal_": "xavier", "lecun_normal": "sigmoid",
            **{name: name for name in NAMES}}


def bad_init(init: Any, who: str, also: tuple[str, ...] = ()) -> ValueError:
    """The error for layer ``who``'s ``init`` that is no initialiser: what it takes (``also``: the layer's own
    names, "pytorch") and, for a misspelt name, the closest."""
    names = (*also, *NAMES)
    known = {**_ALIASES, **{name: name for name in also}}
    return ValueError(f"{_prefix(who)}init must be one of {', '.join(map(repr, names))}, a standard deviation (a "
                      f"number > 0) or a callable f(shape, rng), got {init!r}{did_you_mean(init, known, known)}")


def _prefix(who: str) -> str:
    """``"Linear: "`` for a message of layer ``who``; nothing where no layer was named."""
    return f"{who}: " if who else ""


def _std(init: Any, fan_in: int, fan_out: int, who: str, also: tuple[str, ...]) -> float:
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        if not (0 < init < math.inf):
            raise ValueError(f"{_prefix(who)}init as a standard deviation must be a finite number > 0, got {init}")
        return float(init)
    if init in ("he", "relu"):
        return math.sqrt(2.0 / fan_in)
    if init in ("xavier", "glorot"):
        return math.sqrt(2.0 / (fan_in + fan_out))
    if init == "sigmoid":
        return math.sqrt(1.0 / fan_in)
    if init == "normal":
        return 0.01
    raise bad_init(init, who, also)


def weights(shape: tuple[int, ...], fan_in: int, fan_out: int, init: Any = "he", dtype: str = "float32",
            rng: np.random.Generator | None = None, *, who: str = "", also: tuple[str, ...] = ()) -> np.ndarray:
    """A host array of ``shape`` drawn from N(0, std**2) with std chosen by ``init``.

    ``init``: ``"he"`` or the book's ``"relu"`` (sqrt(2/fan_in)), ``"xavier"``/``"glorot"``
    (sqrt(2/(fan_in+fan_out)), Glorot's and PyTorch's), ``"sigmoid"`` (sqrt(1/fan_in): what the book
    calls Xavier, ``weight_init_std="sigmoid"`` or ``"xavier"`` there), ``"normal"`` (0.01, the
    book's default ``weight_init_std``), a float std, or a callable ``f(shape, rng) -> array``. Any other
    ``init`` is refused in the name of ``who`` (the layer), listing these and ``also`` (the layer's own names).
    """
    if _skipping.get() is not None:
        return _placeholder(shape, dtype)
    dtype = _float_dtype(dtype)
    rng = _generator if rng is None else rng
    if callable(init):
        w = np.asarray(init(shape, rng))
        want = (int(shape),) if is_int(shape) else tuple(shape)  # uniform(3, 0.1), as zeros(3)
        if w.shape != want:
            raise ValueError(f"{_prefix(who)}init, the callable, returned shape {w.shape}, expected {want}")
        return w.astype(dtype, copy=False)
    # Scaled in place: a second float64 array of the weights' size (800 MB for VGG16's first classifier layer) cost
    # more than the draw. The same numbers, drawn in float64 as the book's np.random.randn(...) * std.
    w = rng.standard_normal(shape)
    w *= _std(init, fan_in, fan_out, who, also)
    return w.astype(dtype, copy=False)


def uniform(shape: tuple[int, ...], bound: float | None = None, dtype: str = "float32") -> np.ndarray:
    """A host array of ``shape`` drawn from U(-bound, bound) by the seeded generator (PyTorch's initialisers
    that draw uniformly: Linear's and the convolutions' kaiming_uniform_(a=sqrt(5)), xavier_uniform_), as
    :func:`weights` draws. ``bound`` is needed; its default only lets a call without it say so."""
    _refuse_an_array(shape, "uniform", "uniform_(w, a, b)")
    if bound is None:
        raise TypeError(f"xn.init.uniform(shape, bound) draws from U(-bound, bound): give the bound, "
                        f"xn.init.uniform({shape!r}, 0.1); PyTorch's uniform_(w) with its default U(0, 1) "
                        f"is xn.init.uniform_(w), filling w in place")
    return weights(shape, 0, 0, init=lambda s, rng: rng.uniform(-bound, bound, s), dtype=dtype)


def zeros(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """A host array of zeros (biases), moved to the device with the layer."""
    _refuse_an_array(shape, "zeros", "zeros_(w)")
    return _placeholder(shape, dtype) if _skipping.get() is not None else np.zeros(shape, dtype=_float_dtype(dtype))


def ones(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """A host array of ones (scales)."""
    _refuse_an_array(shape, "ones", "ones_(w)")
    return _placeholder(shape, dtype) if _skipping.get() is not None else np.ones(shape, dtype=_float_dtype(dtype))


def _refuse_an_array(shape: Any, name: str, in_place: str) -> None:
    """Refuse an array (or tensor) given as ``shape`` to ``uniform``, ``zeros`` or ``ones``: PyTorch's older
    ``nn.init.uniform(w, a, b)`` fills ``w``, where these draw a new array; the error says which fills. A NumPy
    integer (``t.max() + 1``) is a size, as ``np.zeros`` takes it."""
    if hasattr(shape, "shape") and hasattr(shape, "dtype") and not is_int(shape):
        raise TypeError(f"xn.init.{name}(shape, ...) makes a new host array of that shape (a layer's own weights), "
                        f"got an array of shape {tuple(shape.shape)}: to fill it in place, as "
                        f"torch.nn.init.{name}_ does, write xn.init.{in_place}")


# torch.nn.init's older names, without the trailing underscore (deprecated there since PyTorch 0.4, still in
# old code: nn.init.xavier_uniform(m.weight)), and its private fan helper that users copy from Linear.
_PYTORCH_NAMES = {name: f"torch.nn.init's {name} is the deprecated name of {name}_, which xpnet has: "
                        f"xn.init.{name}_(m.weight, ...) fills the array in place"
                  for name in ("normal", "constant", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                               "kaiming_normal", "orthogonal", "eye", "dirac")}
_PYTORCH_NAMES.update(
    sparse="xpnet has no sparse_ initialiser: fill the array yourself (xn.init.zeros_(w), then set entries)",
    sparse_="xpnet has no sparse_ initialiser: fill the array yourself (xn.init.zeros_(w), then set entries)",
    _calculate_fan_in_and_fan_out="PyTorch's private helper; of m.weight, in PyTorch's layout (out, in, *kernel) on "
                                  "xpnet's layers too, fan_in is w.shape[1] * prod(w.shape[2:]) and fan_out "
                                  "w.shape[0] * prod(w.shape[2:]); xn.init.kaiming_uniform_(m.weight, "
                                  "a=math.sqrt(5)) reads them as PyTorch's")


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)


# PyTorch's torch.nn.init, filling arrays in place; imported last: it reads this module's generator().
from .pytorch import (calculate_gain, constant_, dirac_, eye_, kaiming_normal_, kaiming_std,
                      kaiming_uniform_, normal_, ones_, orthogonal_, trunc_normal_, uniform_, xavier_normal_,
                      xavier_std, xavier_uniform_, zeros_)
