"""PyTorch's ``torch.nn.init``: the same names, arguments and formulas, filling a layer's array in place.

Fans come from the shape passed, read in PyTorch's layout (``weight`` (out, in, *kernel)): fan_in =
shape[1] * prod(kernel), fan_out = shape[0] * prod(kernel). Pass ``m.weight`` (PyTorch's layout; Linear's is
the view ``W.T``), never ``m.params["W"]`` of a Linear: xpnet's (in, out) would swap the two fans.

Numbers are drawn on the host by ``generator`` (a ``numpy.random.Generator``; by default xpnet's seeded one,
``xn.manual_seed``), in float64, then cast and copied into the array on its device: one seed gives the same
weights on NumPy, CuPy, PyTorch and array-api-strict. The values follow PyTorch's distributions, not its
random stream. JAX arrays cannot be written in place: initialise before ``model.to(device)``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .._user import is_int, is_real, warn
from ..backend import copy_into, isdtype, namespace, update_rule

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
           "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "sigmoid")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """PyTorch's recommended gain: 1 (linear, convolutions, sigmoid), 5/3 (tanh), sqrt(2) (relu),
    sqrt(2 / (1 + slope**2)) (leaky_relu, ``param`` the slope, 0.01 by default), 3/4 (selu)."""
    if nonlinearity in _LINEAR:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if not is_real(slope):
            raise ValueError(f"xn.init.calculate_gain: param (leaky_relu's negative slope) must be a number, "
                             f"got {param!r}")
        return math.sqrt(2.0 / (1 + float(slope) ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"xn.init.calculate_gain: unsupported nonlinearity {nonlinearity!r}; one of "
                     f"{', '.join(_LINEAR)}, tanh, relu, leaky_relu, selu")


def _fans(shape: tuple[int, ...], who: str) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape`` in PyTorch's layout (out, in, *kernel)."""
    if len(shape) < 2:
        raise ValueError(f"{who}: fans need an array of 2 or more dimensions (a weight (out, in, ...)), got shape "
                         f"{shape}")
    kernel = math.prod(shape[2:])
    return shape[1] * kernel, shape[0] * kernel


def kaiming_std(shape: tuple[int, ...], a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                who: str = "xn.init.kaiming_normal_") -> float:
    """kaiming_normal_'s standard deviation, gain / sqrt(fan), for a weight of ``shape`` (PyTorch's layout);
    kaiming_uniform_'s bound is sqrt(3) times it."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{who}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(shape, who)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def xavier_std(shape: tuple[int, ...], gain: float = 1.0, who: str = "xn.init.xavier_normal_") -> float:
    """xavier_normal_'s standard deviation, gain * sqrt(2 / (fan_in + fan_out)); xavier_uniform_'s bound is
    sqrt(3) times it."""
    fan_in, fan_out = _fans(shape, who)
    return _number(gain, who, "gain") * math.sqrt(2.0 / (fan_in + fan_out))


def _number(value: Any, who: str, arg: str) -> float:
    if not is_real(value) or not math.isfinite(value):
        raise TypeError(f"{who}: {arg} must be a finite number, got {value!r}")
    return float(value)


def _not_an_array(tensor: Any) -> str:
    """What was given in place of an array, and where the likely mistake is."""
    if tensor is None:
        return "None (a layer built without a bias has m.bias None: test `if m.bias is not None`)"
    if hasattr(tensor, "params"):
        return f"a {type(tensor).__name__} (pass its m.weight or m.bias)"
    if isinstance(tensor, memoryview):  # PyTorch's m.weight.data ported as it is
        return "a memoryview (NumPy's .data, the array's raw memory: pass m.weight itself, without .data)"
    return f"a {type(tensor).__name__}"


def _target(tensor: Any, who: str) -> Any:
    """``tensor`` once checked to be a floating array that can be written in place (TypeError otherwise)."""
    if not (hasattr(tensor, "shape") and hasattr(tensor, "dtype")) or isinstance(tensor, np.generic):
        raise TypeError(f"{who}: tensor must be an array such as a layer's m.weight, got {_not_an_array(tensor)}")
    xp = namespace(tensor)
    if not isdtype(xp, tensor.dtype, "real floating"):
        raise TypeError(f"{who}: tensor must be a floating-point array, got dtype {tensor.dtype}")
    if update_rule(xp) != "in place":
        raise TypeError(f"{who}: arrays of {getattr(xp, '__name__', 'this library')} cannot be written in place; "
                        "initialise the model before model.to(device) (layers are built as NumPy arrays), or "
                        "model.to('cpu'), initialise, and move it back")
    return tensor


def _shape(tensor: Any, who: str) -> tuple[int, ...]:
    return tuple(int(d) for d in _target(tensor, who).shape)


def _fill(who: str, tensor: Any, draw: Callable[[tuple[int, ...]], np.ndarray]) -> Any:
    """``tensor`` filled in place with ``draw(shape)`` (a host array), and returned; left as it is while layers
    are built for weights that a file gives next (``xn.load``'s ``skip_init``: read-only placeholders)."""
    from . import _skipping  # noqa: PLC0415 - the package imports this module

    if _skipping.get() is not None:
        return tensor
    return copy_into(tensor, np.asarray(draw(_shape(tensor, who)), dtype=np.float64))


def _rng(generator: Any, who: str) -> np.random.Generator:
    if generator is None:
        from . import generator as seeded  # noqa: PLC0415 - the package imports this module

        return seeded()
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"{who}: generator must be a numpy.random.Generator (np.random.default_rng(seed)) or None "
                        f"for xpnet's seeded one (xn.manual_seed), got {type(generator).__name__}")
    return generator


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Any:
    """Fill ``tensor`` from U(a, b); returns it."""
    who = "xn.init.uniform_"
    lo, hi, rng = _number(a, who, "a"), _number(b, who, "b"), _rng(generator, who)
    if lo > hi:
        raise ValueError(f"{who}: a must be <= b, got a={a!r}, b={b!r}")
    return _fill(who, tensor, lambda shape: rng.uniform(lo, hi, shape))


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Any:
    """Fill ``tensor`` from N(mean, std**2); returns it."""
    who = "xn.init.normal_"
    mu, sigma, rng = _number(mean, who, "mean"), _number(std, who, "std"), _rng(generator, who)
    if sigma < 0:
        raise ValueError(f"{who}: std must be >= 0, got {std!r}")
    return _fill(who, tensor, lambda shape: rng.normal(mu, sigma, shape))


def trunc_normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: Any = None) -> Any:
    """Fill ``tensor`` from N(mean, std**2) truncated to [a, b] (values outside redrawn); returns it. As
    PyTorch's: normal draws rejected outside [a, b] where those keep more than 30%, else uniform draws on
    [a, b] accepted with the normal's density."""
    who = "xn.init.trunc_normal_"
    mu, sigma, lo, hi = (_number(v, who, k) for k, v in (("mean", mean), ("std", std), ("a", a), ("b", b)))
    rng = _rng(generator, who)
    if not (sigma > 0 and lo < hi):
        raise ValueError(f"{who}: needs std > 0 and a < b, got std={std!r}, a={a!r}, b={b!r}")
    if mu < lo - 2 * sigma or mu > hi + 2 * sigma:
        warn("xn.init.trunc_normal_: mean is more than 2 std from [a, b]; the distribution may be incorrect")
    kept = (math.erf((hi - mu) / (sigma * math.sqrt(2.0))) - math.erf((lo - mu) / (sigma * math.sqrt(2.0)))) / 2
    by_normal = kept > 0.3
    peak = -0.5 * ((max(lo, min(mu, hi)) - mu) / sigma) ** 2

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty(math.prod(shape))
        todo = np.arange(out.size)
        while todo.size:
            if by_normal:
                x = rng.normal(mu, sigma, todo.size)
                ok = (x >= lo) & (x <= hi)
            else:
                x = rng.uniform(lo, hi, todo.size)
                ok = np.log(rng.uniform(size=todo.size)) <= -0.5 * ((x - mu) / sigma) ** 2 - peak
            out[todo[ok]] = x[ok]
            todo = todo[~ok]
        return out.reshape(shape)

    return _fill(who, tensor, draw)


def constant_(tensor: Any, val: float) -> Any:
    """Fill ``tensor`` with ``val``; returns it."""
    value = _number(val, "xn.init.constant_", "val")
    return _fill("xn.init.constant_", tensor, lambda shape: np.full(shape, value))


def ones_(tensor: Any) -> Any:
    """Fill ``tensor`` with ones; returns it."""
    return _fill("xn.init.ones_", tensor, np.ones)


def zeros_(tensor: Any) -> Any:
    """Fill ``tensor`` with zeros; returns it."""
    return _fill("xn.init.zeros_", tensor, np.zeros)


def eye_(tensor: Any) -> Any:
    """Fill the 2-D ``tensor`` (rows, cols) with the identity (ones on the main diagonal); returns it."""
    return _fill("xn.init.eye_", tensor, lambda shape: np.eye(*_dims(shape, (2,), "xn.init.eye_")))


def dirac_(tensor: Any, groups: int = 1) -> Any:
    """Fill a convolution's weight (out, in, *kernel) (3 to 5 dimensions) with the Dirac delta: in each of
    ``groups`` blocks of out // groups output channels, channel d passes input channel d through the kernel's
    centre; returns it."""
    who = "xn.init.dirac_"

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        _dims(shape, (3, 4, 5), who)
        if not is_int(groups) or groups < 1 or shape[0] % groups:
            raise ValueError(f"{who}: groups must be an int >= 1 dividing dim 0 ({shape[0]}), got {groups!r}")
        out, per = np.zeros(shape), shape[0] // groups
        centre = tuple(s // 2 for s in shape[2:])
        for g in range(groups):
            for d in range(min(per, shape[1])):
                out[(g * per + d, d) + centre] = 1.0
        return out

    return _fill(who, tensor, draw)


def _dims(shape: tuple[int, ...], allowed: tuple[int, ...], who: str) -> tuple[int, ...]:
    if len(shape) not in allowed:
        raise ValueError(f"{who}: expected an array of {' or '.join(map(str, allowed))} dimensions, got shape {shape}")
    return shape


def xavier_uniform_(tensor: Any, gain: float = 1.0, generator: Any = None) -> Any:
    """Fill ``tensor`` (PyTorch's layout) from U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)); returns it."""
    who = "xn.init.xavier_uniform_"
    bound, rng = math.sqrt(3.0) * xavier_std(_shape(tensor, who), gain, who), _rng(generator, who)
    return _fill(who, tensor, lambda shape: rng.uniform(-bound, bound, shape))


def xavier_normal_(tensor: Any, gain: float = 1.0, generator: Any = None) -> Any:
    """Fill ``tensor`` (PyTorch's layout) from N(0, std**2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    who = "xn.init.xavier_normal_"
    std, rng = xavier_std(_shape(tensor, who), gain, who), _rng(generator, who)
    return _fill(who, tensor, lambda shape: rng.normal(0.0, std, shape))


def kaiming_uniform_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: Any = None) -> Any:
    """Fill ``tensor`` (PyTorch's layout) from U(-bound, bound), bound = sqrt(3) * gain / sqrt(fan), gain =
    ``calculate_gain(nonlinearity, a)``, fan = fan_in or fan_out (``mode``); returns it."""
    return _kaiming("xn.init.kaiming_uniform_", tensor, a, mode, nonlinearity, generator, uniform=True)


def kaiming_normal_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: Any = None) -> Any:
    """Fill ``tensor`` (PyTorch's layout) from N(0, std**2), std = gain / sqrt(fan) (``kaiming_std``);
    returns it. ``mode="fan_out"`` keeps the gradients' variance in backward (ResNet's convolutions)."""
    return _kaiming("xn.init.kaiming_normal_", tensor, a, mode, nonlinearity, generator, uniform=False)


def _kaiming(who: str, tensor: Any, a: float, mode: str, nonlinearity: str, generator: Any, uniform: bool) -> Any:
    shape = _shape(tensor, who)
    if 0 in shape:
        warn(f"{who}: initializing zero-element tensors is a no-op")
        return tensor
    std = kaiming_std(shape, a, mode, nonlinearity, who)
    rng = _rng(generator, who)
    bound = math.sqrt(3.0) * std
    return _fill(who, tensor, lambda s: rng.uniform(-bound, bound, s) if uniform else rng.normal(0.0, std, s))


def orthogonal_(tensor: Any, gain: float = 1, generator: Any = None) -> Any:
    """Fill ``tensor`` (2 or more dimensions, the trailing ones flattened: (rows, cols)) with a (semi-)orthogonal
    matrix times ``gain``: Q of the QR of a normal draw, signs fixed by R's diagonal, as PyTorch's; returns it."""
    who = "xn.init.orthogonal_"
    scale, rng = _number(gain, who, "gain"), _rng(generator, who)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        if len(shape) < 2:
            raise ValueError(f"{who}: expected an array of 2 or more dimensions, got shape {shape}")
        if 0 in shape:
            return np.zeros(shape)
        flat = rng.standard_normal((shape[0], math.prod(shape[1:])))
        wide = flat.shape[0] < flat.shape[1]
        q, r = np.linalg.qr(flat.T if wide else flat)
        q = q * np.sign(np.diag(r))
        return scale * (q.T if wide else q).reshape(shape)

    return _fill(who, tensor, draw)

