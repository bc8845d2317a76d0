"""Elementwise activations: ReLU, Sigmoid, Tanh and PyTorch's LeakyReLU, ELU, SELU, CELU, GELU, SiLU, Softplus and
Identity, with its arguments, defaults and meanings (the piecewise-linear ones are in ``hard_activations``, Mish,
Softsign and LogSigmoid in ``smooth_activations``). Shapes are kept: x: (N, ...) -> y: (N, ...).

PyTorch's ``inplace=`` (ReLU, LeakyReLU, ELU, SELU, CELU, SiLU, the hard ones, Mish; Dropout's too) is
taken at its default, False; ``inplace=True`` is refused, saying so (``layers.base.INPLACE``): xpnet never
writes into a layer's input (backward needs it, and the caller may too), and a flag accepted and then ignored
would leave code that relies on PyTorch's aliasing silently wrong.
"""

from __future__ import annotations

import math
from typing import Any

from .._user import is_real
from ..backend import fast_path, namespace, untracked
from ._erf import erf
from .base import INPLACE, Layer, pytorch_defaults_only
from .cached_output import cached_output


class ReLU(Layer):
    """y = max(x, 0). Caches the mask x > 0; backward is dy * mask and never writes into ``dy``.

    An inf in ``dy`` where x <= 0 gives NaN there (inf * 0), where PyTorch gives 0; a non-finite
    gradient already means a lost step, which ``xn.train``'s guard reports with the layer.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        pytorch_defaults_only(self.name, {"inplace": INPLACE}, {"inplace": inplace})
        self._mask = None

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        y, self._mask = fast_path("relu_forward", xp, relu_forward)(x)
        return y

    def pieces(self) -> Any:
        return self._mask

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        mask = self._mask
        if mask is None:
            self._need(mask)  # raises, saying backward came before forward
        xp = self._check_grad(dy, mask.shape)
        return fast_path("relu_backward", xp, relu_backward)(dy, mask)

    def planned_calls(self) -> tuple[Any, Any, None] | None:
        """As ``Linear.planned_calls``: (forward, backward, None), the same kernels and mask, found once."""
        if self._mask is None:
            return None
        xp, own = namespace(self._mask), self.__dict__
        run_forward, run_backward = fast_path("relu_forward", xp, relu_forward), fast_path("relu_backward", xp,
                                                                                            relu_backward)

        def forward(x: Any) -> Any:
            y, own["_mask"] = run_forward(x)
            return y

        return forward, lambda dy: run_backward(dy, own["_mask"]), None


def relu_forward(x: Any) -> tuple[Any, Any]:
    """y = max(x, 0) and the mask x > 0, portable. maximum and a multiply by the mask, not xp.where:
    NumPy's where is ~8x slower on the random sign patterns of conv activations (mispredictions)."""
    xp = namespace(x)
    return xp.maximum(x, 0.0), x > 0


def relu_backward(dy: Any, mask: Any) -> Any:
    """dx = dy * mask, portable."""
    xp = namespace(dy)
    return dy * xp.astype(mask, dy.dtype)


class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)), computed without overflow for large |x|. Caches y."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        self._y = sigmoid(x)
        return cached_output(self._y, train)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        y = self._need(self._y)
        self._check_grad(dy, y.shape)
        return dy * y * (1.0 - y)


class Tanh(Layer):
    """y = tanh(x). Caches y."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._y = xp.tanh(x)
        return cached_output(self._y, train)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        y = self._need(self._y)
        self._check_grad(dy, y.shape)
        return dy * (1.0 - y * y)


def number(layer: Layer, arg: str, value: Any, nonzero: bool = False) -> float:
    """``value`` as a finite float, else a ValueError naming the layer and the argument."""
    if not is_real(value) or not math.isfinite(value) or (nonzero and value == 0):
        what = "a finite number other than 0" if nonzero else "a finite number"
        raise ValueError(f"{layer.name}: {arg} must be {what}, got {value!r}")
    return float(value)


def sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x)) without overflow: exp of -|x| only (the two branches are the same function)."""
    xp = namespace(x)
    e = xp.exp(-xp.abs(x))
    inv = 1.0 / (1.0 + e)
    return xp.where(x >= 0, inv, e * inv)


class LeakyReLU(Layer):
    """PyTorch's nn.LeakyReLU: y = x where x > 0, else negative_slope * x. Caches the mask x > 0; backward is
    dy where x > 0, else negative_slope * dy (the slope at x = 0, as PyTorch's), never writing into ``dy``."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = number(self, "negative_slope", negative_slope)
        pytorch_defaults_only(self.name, {"inplace": INPLACE}, {"inplace": inplace})
        self._mask = None

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._mask = x > 0
        # min(x, 0): a slope above 1 must not overflow where x is the output (the largest floats).
        return xp.where(self._mask, x, xp.minimum(x, 0.0) * self.negative_slope)

    def pieces(self) -> Any:
        return self._mask

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        mask = self._need(self._mask)
        xp = self._check_grad(dy, mask.shape)
        return xp.where(mask, dy, dy * self.negative_slope)


class Elementwise(Layer):
    """An activation of no parameters whose backward needs its input: caches x; a subclass gives
    ``_y(xp, x)`` and ``_dx(xp, x, dy)`` (never writing into ``dy``), and takes PyTorch's ``inplace`` at False."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        pytorch_defaults_only(self.name, {"inplace": INPLACE}, {"inplace": inplace})
        self._x = None

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._x = x
        return self._y(xp, x)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        x = self._need(self._x)
        xp = self._check_grad(dy, x.shape)
        return self._dx(xp, x, dy)

    def _y(self, xp: Any, x: Any) -> Any:
        raise NotImplementedError

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        raise NotImplementedError


class _ExponentialLinear(Elementwise):
    """PyTorch's elu with its three coefficients: y = scale * x where x > 0, else scale * alpha *
    expm1(input_scale * x) (exact near 0); dx = scale * dy where x > 0, else scale * alpha * input_scale *
    exp(input_scale * x) * dy (at x = 0 too, as PyTorch's). exp only ever sees min(x, 0), clipped: no overflow."""

    alpha, scale, input_scale = 1.0, 1.0, 1.0

    def _exponent(self, xp: Any, x: Any) -> Any:
        """input_scale * min(x, 0), x clipped first where exp is 0 anyway (exp(-800) is, in float64 too): CELU's
        1 / alpha above 1 must not overflow the product for the largest floats."""
        return xp.maximum(xp.minimum(x, 0.0), -800.0 / abs(self.input_scale)) * self.input_scale

    def _y(self, xp: Any, x: Any) -> Any:
        negative = (self.scale * self.alpha) * xp.expm1(self._exponent(xp, x))
        return xp.where(x > 0, x * self.scale if self.scale != 1.0 else x, negative)

    def pieces(self) -> Any:
        return None if self._x is None else self._x > 0

    def _dx(self, xp: Any, x: Any, dy: Any) -> Any:
        slope = (self.scale * self.alpha * self.input_scale) * xp.exp(self._exponent(xp, x))
        return xp.where(x > 0, dy * self.scale if self.scale != 1.0 else dy, dy * slope)


class ELU(_ExponentialLinear):
    """PyTorch's nn.ELU: y = x where x > 0, else alpha * (exp(x) - 1). Caches x; see ``_ExponentialLinear``."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.alpha = number(self, "alpha", alpha)

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class SELU(_ExponentialLinear):
    """PyTorch's nn.SELU: ELU with PyTorch's alpha = 1.6732632423543772 scaled by 1.0507009873554805.
    Caches x; see ``_ExponentialLinear``."""

    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


class CELU(_ExponentialLinear):
    """PyTorch's nn.CELU: y = x where x > 0, else alpha * (exp(x / alpha) - 1); dx = dy * exp(x / alpha)
    there. alpha may be negative, not 0. Caches x; see ``_ExponentialLinear``."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.alpha = number(self, "alpha", alpha, nonzero=True)
        self.input_scale = 1.0 / self.alpha

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


_SQRT_HALF = math.sqrt(0.5)
_PDF_SCALE = 1.0 / math.sqrt(2.0 * math.pi)  # the normal density at 0
_TANH_SCALE = math.sqrt(2.0 / math.pi)
_TANH_CUBIC = 0.044715
# Beyond |x| = 10 the tanh form's inner value exceeds 43 and tanh is +-1 exactly in float32 and float64, as is the
# normal density 0 beyond |x| = 40: x is clipped there before x**2 and x**3, which would overflow for large |x|.
_TANH_CLIP = 10.0
_PDF_CLIP = 40.0


class GELU(Layer):
    """PyTorch's nn.GELU: y = x * Phi(x), Phi the standard normal CDF, 0.5 * (1 + erf(x / sqrt(2))); with
    ``approximate='tanh'``, Phi(x) ~ 0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))).

    erf is the library's where xpnet has it (SciPy's for NumPy where SciPy imports, PyTorch's, CUDA's, JAX's),
    else portable code in standard operations (``xpnet.layers._erf``), all within a few ulps of each other.
    Caches x and Phi(x) ('none') or the tanh ('tanh'); backward is dy * (Phi(x) + x * pdf(x)) (PyTorch's
    formula for each form), never writing into ``dy``. Where PyTorch's tanh-form gradient is NaN for
    |x| > 1.3e154 (x**2 overflows float64), this one gives its limit, dy or 0.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if not isinstance(approximate, str) or approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh' (PyTorch's), got {approximate!r}")
        self.approximate = approximate
        self._x = None
        self._phi = None

    def config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._x = x
        if self.approximate == "tanh":
            c = xp.minimum(xp.maximum(x, -_TANH_CLIP), _TANH_CLIP)
            self._phi = xp.tanh(_TANH_SCALE * (c + _TANH_CUBIC * (c * c * c)))
            return 0.5 * x * (1.0 + self._phi)
        self._phi = 0.5 * (1.0 + erf(x * _SQRT_HALF))
        return x * self._phi

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        x = self._need(self._x)
        xp = self._check_grad(dy, x.shape)
        if self.approximate == "tanh":
            t = self._phi
            c = xp.minimum(xp.maximum(x, -_TANH_CLIP), _TANH_CLIP)
            slope = 0.5 * c * (1.0 - t * t) * _TANH_SCALE * (1.0 + 3.0 * _TANH_CUBIC * (c * c))
            return dy * (0.5 * (1.0 + t) + slope)
        c = xp.minimum(xp.maximum(x, -_PDF_CLIP), _PDF_CLIP)
        return dy * (self._phi + c * (_PDF_SCALE * xp.exp(-0.5 * (c * c))))


class SiLU(Layer):
    """PyTorch's nn.SiLU (swish): y = x * sigmoid(x), the sigmoid without overflow for large |x|. Caches x and
    sigmoid(x); backward is dy * s * (1 + x * (1 - s)), never writing into ``dy``."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        pytorch_defaults_only(self.name, {"inplace": INPLACE}, {"inplace": inplace})
        self._x = None
        self._s = None

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        self._x, self._s = x, sigmoid(x)
        return x * self._s

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        x = self._need(self._x)
        self._check_grad(dy, x.shape)
        s = self._s
        return dy * (s * (1.0 + x * (1.0 - s)))


class Softplus(Layer):
    """PyTorch's nn.Softplus: y = log(1 + exp(beta * x)) / beta, and y = x where beta * x > threshold (PyTorch's
    switch to the line, at the same place: beta * x equal to the threshold is still the curve).

    Computed as (max(z, 0) + log1p(exp(-|z|))) / beta, z = beta * x, which never overflows (PyTorch's
    log1p(exp(z)) gives inf for z > 709 when the threshold is that high) and agrees with PyTorch's to rounding
    elsewhere. Caches x; backward is dy * sigmoid(beta * x) on the curve and dy on the line, never writing into
    ``dy``. beta may be negative, as in PyTorch; not 0.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = number(self, "beta", beta, nonzero=True)
        self.threshold = number(self, "threshold", threshold)
        self._x = None

    def config(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}

    def _z(self, x: Any) -> Any:
        """beta * x; where that would overflow, x is clipped first (the line is taken there anyway)."""
        xp = namespace(x)
        if abs(self.beta) > 1.0:
            bound = xp.finfo(x.dtype).max / abs(self.beta)
            x = xp.minimum(xp.maximum(x, -bound), bound)
        return x * self.beta

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._x = x
        z = self._z(x)
        curve = (xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))) / self.beta
        return xp.where(z > self.threshold, x, curve)

    def pieces(self) -> Any:
        return None if self._x is None else self._z(self._x) > self.threshold

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        x = self._need(self._x)
        xp = self._check_grad(dy, x.shape)
        z = self._z(x)
        return xp.where(z > self.threshold, dy, dy * sigmoid(z))


class Identity(Layer):
    """PyTorch's nn.Identity: y = x, dx = dy (the arrays themselves, not copies). Like PyTorch's, it takes any
    arguments and ignores them (``norm = LayerNorm if norm else Identity; norm(dim)`` works); it saves none.
    Caches the input's shape, to check dy's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._shape = None

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        self._check_float(x)
        self._shape = tuple(x.shape)
        return x

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        self._check_grad(dy, self._need(self._shape))
        return dy
