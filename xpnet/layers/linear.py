"""Linear (the book's Affine): y = x @ W + b."""

from __future__ import annotations

import operator
from typing import Any

from .. import _chainer
from .. import init as _init
from .._user import flag, is_bool, keyword_hints
from ..backend import fast_path, namespace, untracked
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .pytorch_params import PyTorchParam


class Linear(Layer):
    """Fully connected layer.

    x: (..., in_features) -> y: (..., out_features), over any leading axes (PyTorch's nn.Linear; the
    book's TimeAffine on (N, T, H) sequences). Otherwise x: (N, ...) with prod(...) == in_features is
    flattened to (N, in_features) like the book's tensor-aware Affine -> y: (N, out_features). The
    last axis decides: an input whose last axis is in_features keeps its leading axes.
    Caches the input as a 2-D matrix and its original shape. params: W (in_features, out_features),
    b (out_features,) (none with ``bias=False``, by keyword: the third argument is ``init``, where
    PyTorch's is ``bias``, and a bool there is refused); ``weight`` is PyTorch's (out_features, in_features), the
    view W.T, and ``bias`` is b or None (``has_bias`` the flag). The products go through the ``"matmul"`` fast
    path: on CuPy, cuBLAS, or while a CUDA graph is being captured (where cuBLAS is refused) xpnet's own
    kernel.
    """

    weight = PyTorchParam("W", transposed=True)  # PyTorch's name and layout (the transpose of W)
    bias = PyTorchParam("b")  # None when built without one

    @keyword_hints("Linear", _chainer.LINEAR)
    def __init__(self, in_features: int, out_features: int, init: Any = "he", bias: bool = True,
                 dtype: str = "float32", *, device: Any = None):
        super().__init__()
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        if in_features is None:
            raise ValueError(_chainer.lazy_size(self.name, "in_features"))
        self.in_features = positive_int(self, "in_features", in_features)
        self.out_features = positive_int(self, "out_features", out_features)
        if is_bool(init):
            raise TypeError(f"{self.name}: the third argument is init (the weights' initialiser: 'he', 'xavier', "
                            f"...), got {init!r}; PyTorch's third, bias, is bias={init!r} here, and Chainer's third, "
                            f"nobias, is bias={not init!r}")
        self.init, self.has_bias, self.dtype = init, flag(bias, self.name, "bias"), _init.dtype_name(dtype, self.name)
        self.params["W"] = _init.weights((self.in_features, self.out_features), self.in_features,
                                         self.out_features, init=init, dtype=dtype, who=self.name)
        if self.has_bias:
            self.params["b"] = _init.zeros((self.out_features,), dtype=dtype)
        self._x = None
        self._shape = None

    def config(self) -> dict[str, Any]:
        init = self.init if isinstance(self.init, (str, int, float)) else "he"
        return {"in_features": self.in_features, "out_features": self.out_features, "init": init,
                "bias": self.has_bias, "dtype": self.dtype}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        self._check_like_params(x)
        shape, n = x.shape, self.in_features
        leading = len(shape) > 2 and shape[-1] == n
        if not (len(shape) == 2 and shape[1] == n) and (len(shape) < 2 or (not leading and _width(x) != n)):
            one = x.ndim == 1 and x.shape[0] == self.in_features  # PyTorch's unbatched input
            raise ValueError(f"Linear: expected input of shape (N, {self.in_features}) (or (..., "
                             f"{self.in_features}), or (N, ...) with {self.in_features} features), got "
                             f"{tuple(x.shape)}" + ("; one sample (PyTorch's unbatched input) is a batch of one here: "
                                                    "x[None], and y[0] for its output" if one else ""))
        self._shape = x.shape
        x2 = x if x.ndim == 2 else xp.reshape(x, (-1 if leading else x.shape[0], self.in_features))
        self._x = x2
        y = fast_path("matmul", xp, operator.matmul)(x2, self.params["W"])
        if self.has_bias:
            y += self.params["b"]
        return xp.reshape(y, (*x.shape[:-1], self.out_features)) if leading else y

    def backward(self, dy: Any) -> Any:
        xp, dy2 = self._backward_params(dy)
        dx = fast_path("matmul", xp, operator.matmul)(dy2, self.params["W"].T)
        return dx if len(self._shape) == 2 else xp.reshape(dx, self._shape)

    def backward_params(self, dy: Any) -> None:
        self._backward_params(dy)

    def _backward_params(self, dy: Any) -> tuple[Any, Any]:
        """Fills grads; returns the namespace and dy as the (rows, out_features) matrix x2 had."""
        dy = untracked(dy)
        x2 = self._x
        if x2 is None:
            self._need(x2)  # raises, saying backward came before forward
        shape = self._shape  # the forward's output: leading axes kept when the last one was in_features
        out = (*shape[:-1], self.out_features) if len(shape) > 2 and shape[-1] == self.in_features \
            else (shape[0], self.out_features)
        xp = self._check_grad(dy, out)
        dy2 = dy if dy.ndim == 2 else xp.reshape(dy, (x2.shape[0], self.out_features))
        if self._frozen:  # requires_grad_(False): no weight product, the saving fine-tuning is for
            return xp, dy2
        self.grads["W"] = fast_path("matmul", xp, operator.matmul)(x2.T, dy2)
        if self.has_bias:
            self.grads["b"] = fast_path("column_sums", xp, column_sums)(dy2)
        return xp, dy2

    def planned_calls(self) -> tuple[Any, Any, Any] | None:
        """``(forward(x), backward(dy), backward_params(dy))`` for steps whose input and dy have the type, dtype
        and shape of the last forward's and backward's, which passed their checks (``xn.train``'s planned steps,
        :mod:`xpnet.training.planned`): the same products, caches and gradients, the fast paths found once. None
        where the last forward took other than a 2-d input, or none ran."""
        x2, shape = self._x, self._shape
        if x2 is None or shape is None or len(shape) != 2 or self._frozen:
            return None
        xp = namespace(x2)
        matmul = fast_path("matmul", xp, operator.matmul)
        sums = fast_path("column_sums", xp, column_sums) if self.has_bias else None
        params, grads, own = self.params, self.grads, self.__dict__

        def forward(x: Any) -> Any:
            own["_shape"] = x.shape
            own["_x"] = x
            y = matmul(x, params["W"])
            if sums is not None:
                y += params["b"]
            return y

        def backward_params(dy: Any) -> None:
            grads["W"] = matmul(own["_x"].T, dy)
            if sums is not None:
                grads["b"] = sums(dy)

        def backward(dy: Any) -> Any:
            backward_params(dy)
            return matmul(dy, params["W"].T)

        return forward, backward, backward_params


def column_sums(dy2: Any) -> Any:
    """The bias gradient: ``dy2`` (rows, out_features) summed over its rows -> (out_features,)."""
    return namespace(dy2).sum(dy2, axis=0)


def _width(x: Any) -> int:
    n = 1
    for d in x.shape[1:]:
        n *= int(d)
    return n
