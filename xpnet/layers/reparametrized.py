"""PyTorch's ``spectral_norm`` and ``weight_norm``: a layer whose weight is computed, at each forward, from
parameters the wrapper holds (SNGAN/BigGAN discriminators, weight-normalised WaveNets)."""

from __future__ import annotations

import numbers
import operator
from typing import Any

from .. import init as _init
from ..backend import device_of, dtype_name, namespace, to_device, untracked
from .base import Layer, positive_int
from .conv import Conv2d
from .conv1d import Conv1d, ConvTranspose1d
from .conv_transpose import ConvTranspose2d
from .grads import Grads
from .linear import Linear

_WRAPS = (Linear, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d)


class _Reparametrized(Layer):
    """The wrapped layer is held, not a child: the wrapper's params replace its W (and hold its b), under its
    place in the model, as PyTorch's parametrized module keeps them under its own name. Each forward hands the
    layer its weight (and b) and runs it; each backward maps the layer's W gradient back to the wrapper's params.
    ``dim`` is PyTorch's, an axis of PyTorch's layout of the weight (Linear's (out, in), the transpose of W)."""

    def __init__(self, layer: Any):
        super().__init__()
        if not isinstance(layer, _WRAPS):
            raise TypeError(f"{self.name}: expected the layer whose weight it normalises, an xn.layers Linear, "
                            f"Conv1d, Conv2d, ConvTranspose1d or ConvTranspose2d, got {type(layer).__name__}")
        self.layer = layer
        self._transposed = isinstance(layer, Linear)  # W (in, out) is PyTorch's weight (out, in) transposed
        self._weight: Any = None  # the layer's W as the last forward computed it

    def _dim(self, dim: Any, default: int, arg: str = "dim") -> int:
        """PyTorch's ``dim`` of the weight checked, as a non-negative axis of PyTorch's layout."""
        ndim = self.layer.params["W"].ndim
        if dim is None:
            return default
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not -ndim <= dim < ndim:
            raise ValueError(f"{self.name}: {arg} must be an int in [{-ndim}, {ndim - 1}] (an axis of the "
                             f"{ndim}-d weight in PyTorch's layout) or None, got {dim!r}")
        return operator.index(dim) % ndim

    def _axis(self, dim: int) -> int:
        """The axis of W that is ``dim`` of PyTorch's layout."""
        return self.layer.params["W"].ndim - 1 - dim if self._transposed else dim

    def _hand_bias(self) -> None:
        if "b" in self.layer.params:
            self.params["b"] = self.layer.params["b"]

    def forward(self, x: Any, train: bool = True) -> Any:
        train = self._check_train(train)
        x = untracked(x)
        xp = self._check_float(x)
        self._check_like_params(x)
        layer = self.layer
        layer._frozen = self._frozen
        layer.params["W"] = self._weight = self._compute_weight(xp, train)
        if "b" in self.params:
            layer.params["b"] = self.params["b"]
        return layer.forward(x, train)

    def backward(self, dy: Any) -> Any:
        self._hand_weight()
        dx = self.layer.backward(dy)
        self._take_grads()
        return dx

    def backward_params(self, dy: Any) -> None:
        self._hand_weight()
        self.layer.backward_params(dy)
        self._take_grads()

    def _hand_weight(self) -> None:
        """The layer's W as this forward computed it: the layer's backward reads it, and a later forward of this
        layer in the same model's forward (a second use, :mod:`xpnet.layers.uses`) put its own there."""
        if self._weight is not None:
            self.layer.params["W"] = self._weight

    def _take_grads(self) -> None:
        if self._frozen:
            return
        grads = dict(self.layer.grads)  # a plain dict: an internal read notes none (Grads.reads, zero_grad)
        self.grads = Grads(self.params, type(self), self._weight_grads(namespace(grads["W"]), grads["W"]))
        if "b" in self.params:
            self.grads["b"] = grads["b"]


class SpectralNorm(_Reparametrized):
    """PyTorch's ``torch.nn.utils.parametrizations.spectral_norm(layer)``: the layer runs with W / sigma, sigma
    its largest singular value estimated by power iteration.

    x, y: the wrapped layer's (Linear, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d). The weight as a matrix
    M: PyTorch's weight with axis ``dim`` moved first, flattened to (weight.shape[dim], -1); ``dim=None`` is 0, or
    1 for a ConvTranspose (PyTorch's). params: W_orig (the layer's W, its layout), b (the layer's, if any).
    buffers: u (M's rows), v (M's columns), drawn normal from xpnet's seeded generator (not torch's), normalised,
    then 15 power iterations, as PyTorch. A training forward runs ``n_power_iterations`` of u = M v / |M v|,
    v = M^T u / |M^T u| (norms at least ``eps``) and keeps them; an evaluation forward leaves u and v as they are.
    sigma = u . (M v); the gradient flows through sigma with u, v held constant (PyTorch's no_grad).
    Caches W_orig, sigma, u and v, and what the layer caches. PyTorch's state dict names (the new API's
    ``parametrizations.weight.original``, ``parametrizations.weight.0._u``, ``._v``; the older
    ``torch.nn.utils.spectral_norm``'s ``weight_orig``, ``weight_u``, ``weight_v`` load too, but its power
    iteration updates v first, then u: evaluation agrees; in training slightly other u, v until they converge) are in
    ``xn.load_torch_state_dict``. PyTorch's function returns the module itself; this wraps it.
    """

    def __init__(self, layer: Any, n_power_iterations: int = 1, eps: float = 1e-12, dim: int | None = None):
        super().__init__(layer)
        self.n_power_iterations = positive_int(self, "n_power_iterations", n_power_iterations)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
            raise ValueError(f"{self.name}: eps must be a number >= 0, got {eps!r}")
        self.eps = float(eps)
        self.dim = self._dim(dim, 1 if isinstance(layer, (ConvTranspose1d, ConvTranspose2d)) else 0)
        W = layer.params["W"]
        self.params["W_orig"] = W
        self._hand_bias()
        xp = namespace(W)
        M = self._matrix(xp, W)
        for key, n in zip(("u", "v"), M.shape):
            drawn = _init.weights((n,), 0, 0, init=lambda shape, rng: rng.standard_normal(shape), dtype=dtype_name(W))
            self.buffers[key] = self._normalized(xp, to_device(drawn, device_of(W)))
        self._power_iterations(xp, M, 15)
        self._cache = None

    def config(self) -> dict[str, Any]:
        return {"layer": self.layer, "n_power_iterations": self.n_power_iterations, "eps": self.eps, "dim": self.dim}

    def _order(self, ndim: int) -> tuple[int, ...]:
        """W's axes with the one that is ``dim`` first: the rows of the matrix M."""
        axis = self._axis(self.dim)
        return (axis, *(a for a in range(ndim) if a != axis))

    def _matrix(self, xp: Any, W: Any) -> Any:
        order = self._order(W.ndim)
        return xp.reshape(xp.permute_dims(W, order), (W.shape[order[0]], -1))

    def _normalized(self, xp: Any, a: Any) -> Any:
        # maximum, not xp.clip: array-api-compat's clip on CuPy copies eps from the host and assigns through a
        # boolean mask, whose count CuPy reads back: each training forward waited for the GPU four times
        return a / xp.maximum(xp.sqrt(xp.sum(a * a)), self.eps)

    def _power_iterations(self, xp: Any, M: Any, n: int) -> None:
        u, v = self.buffers["u"], self.buffers["v"]
        for _ in range(n):
            u = self._normalized(xp, M @ v)
            v = self._normalized(xp, M.T @ u)
        self.buffers["u"], self.buffers["v"] = u, v

    def _compute_weight(self, xp: Any, train: bool) -> Any:
        W = self.params["W_orig"]
        M = self._matrix(xp, W)
        if train:
            self._power_iterations(xp, M, self.n_power_iterations)
        u, v = self.buffers["u"], self.buffers["v"]
        sigma = xp.sum(u * (M @ v))
        self._cache = (W, sigma, u, v)
        return W / sigma

    def _weight_grads(self, xp: Any, dW: Any) -> dict[str, Any]:
        """d(W / sigma) with sigma = u . (M v): dW / sigma - sum(dW * W) / sigma^2 * (u v^T as W)."""
        W, sigma, u, v = self._need(self._cache)
        order = self._order(W.ndim)
        outer = xp.reshape(u[:, None] * v[None, :], tuple(W.shape[a] for a in order))
        back = tuple(order.index(a) for a in range(W.ndim))
        return {"W_orig": dW / sigma - (xp.sum(dW * W) / (sigma * sigma)) * xp.permute_dims(outer, back)}


class WeightNorm(_Reparametrized):
    """PyTorch's ``torch.nn.utils.parametrizations.weight_norm(layer, dim=0)``: the layer runs with
    w = g * v / |v|, the norm over every axis of the weight but ``dim`` (PyTorch's layout: 0 is the output
    channels; ``dim=None``, and -1 as PyTorch reads it, one norm over the whole weight).

    x, y: the wrapped layer's (Linear, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d). params: g (the
    weight's shape with 1 on every axis but dim, in W's layout: Linear's (1, out_features), PyTorch's (out, 1)
    transposed; () for the whole weight), v (the layer's W), b (the layer's, if any); g starts as |W| and v as W,
    so the layer computes what it did. Caches g, v and |v|, and what the layer caches. PyTorch's state dict names
    (``parametrizations.weight.original0`` for g, ``original1`` for v; the older ``weight_g``, ``weight_v`` load
    too) are in ``xn.load_torch_state_dict``. PyTorch's function returns the module itself; this wraps it.
    """

    def __init__(self, layer: Any, dim: int | None = 0):
        super().__init__(layer)
        self.dim = None if dim is None or dim == -1 and not isinstance(dim, bool) else self._dim(dim, 0)
        W = layer.params["W"]
        xp = namespace(W)
        norm = self._norm(xp, W)
        self.params["g"] = xp.reshape(norm, ()) if self.dim is None else norm
        self.params["v"] = W
        self._hand_bias()
        self._cache = None

    def config(self) -> dict[str, Any]:
        return {"layer": self.layer, "dim": self.dim}

    def _axes(self, ndim: int) -> tuple[int, ...]:
        """The axes of W the norm is over: all but ``dim``'s, or all."""
        keep = None if self.dim is None else self._axis(self.dim)
        return tuple(a for a in range(ndim) if a != keep)

    def _norm(self, xp: Any, v: Any) -> Any:
        """|v| over the norm's axes, kept as axes of length 1 (an array where NumPy's whole sum is a scalar)."""
        return xp.sqrt(xp.sum(v * v, axis=self._axes(v.ndim), keepdims=True))

    def _compute_weight(self, xp: Any, train: bool) -> Any:
        g, v = self.params["g"], self.params["v"]
        norm = self._norm(xp, v)
        self._cache = (g, v, norm)
        return v * (g / norm)

    def _weight_grads(self, xp: Any, dw: Any) -> dict[str, Any]:
        """dg = sum(dw * v) / |v|, dv = g / |v| * dw - g * sum(dw * v) / |v|^3 * v, the sums over the norm's axes."""
        g, v, norm = self._need(self._cache)
        s = xp.sum(dw * v, axis=self._axes(v.ndim), keepdims=True)
        return {"g": xp.reshape(s / norm, g.shape), "v": (g / norm) * dw - (g * s / (norm * norm * norm)) * v}
