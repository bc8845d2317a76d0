"""TiedLinear: an output layer that shares an Embedding's matrix (weight tying, the book's BetterRnnlm)."""

from __future__ import annotations

import operator
from typing import Any

from .. import init as _init
from .._user import flag
from ..backend import XpnetDeviceError, device_of, fast_path, same_device, untracked
from .base import Layer
from .embedding import Embedding
from .pytorch_params import PyTorchParam


class TiedLinear(Layer):
    """y = x @ embedding.W.T + b: scores over the embedding's vocabulary from its own matrix.

    x: (..., embedding_dim) -> y: (..., num_embeddings). The weight is the embedding's ``W``
    (num_embeddings, embedding_dim), read at each forward, so it is one parameter held by two layers:
    ``named_params()`` lists it once (under the embedding), every optimizer updates it once, files
    save it once, and its gradient is the sum of both layers' (this layer adds its share through
    ``embedding.add_shared_grad``, whichever backward runs first). params: b (num_embeddings,) only.
    The book's ``TimeAffine(embed_W.T, b)``; PyTorch's ``decoder.weight = encoder.weight``.
    Caches the input as a matrix and its shape. The embedding must also be part of the model (it is
    not a child of this layer). ``weight`` is that W itself (PyTorch's tied ``decoder.weight``, so
    ``xn.init.uniform_(decoder.weight, -0.1, 0.1)`` writes into the embedding's), ``bias`` is b or None
    (``has_bias`` the flag).
    """

    bias = PyTorchParam("b")  # None when built without one, as PyTorch's

    def __init__(self, embedding: Embedding, bias: bool = True):
        super().__init__()
        if not isinstance(embedding, Embedding):
            raise TypeError(f"TiedLinear: expected the xn.layers.Embedding whose matrix it shares, got "
                            f"{type(embedding).__name__}")
        self.embedding = embedding
        self.in_features, self.out_features = embedding.embedding_dim, embedding.num_embeddings
        self.has_bias = flag(bias, self.name, "bias")
        if self.has_bias:
            self.params["b"] = _init.zeros((self.out_features,), dtype=embedding.dtype)
        self._x = None
        self._shape = None

    @property
    def weight(self) -> Any:
        return self.embedding.params["W"]

    def __repr__(self) -> str:
        return f"{self.name}(embedding={self.embedding!r}{'' if self.has_bias else ', bias=False'})"

    def config(self) -> dict[str, Any]:
        """The embedding itself: a model file records it once and ties the two again on loading."""
        return {"embedding": self.embedding, "bias": self.has_bias}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        W = self.embedding.params["W"]
        self._check_like_params(x)
        if not same_device(x, W):
            raise XpnetDeviceError(f"TiedLinear: input is on {device_of(x)} but the W of its Embedding is on "
                                   f"{device_of(W)}: the Embedding is not part of the model that was moved (it is "
                                   "not TiedLinear's child); put it in the model, before the TiedLinear")
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"TiedLinear: expected input of shape (..., {self.in_features}), got {tuple(x.shape)}")
        self._shape = tuple(x.shape)
        self._x = xp.reshape(x, (-1, self.in_features))
        y = fast_path("matmul", xp, operator.matmul)(self._x, xp.permute_dims(W, (1, 0)))
        if self.has_bias:
            y = y + self.params["b"]
        return xp.reshape(y, (*x.shape[:-1], self.out_features))

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        x2 = self._need(self._x)
        xp = self._check_grad(dy, (*self._shape[:-1], self.out_features))
        dy2 = xp.reshape(dy, (x2.shape[0], self.out_features))
        if self.has_bias and not self._frozen:
            self.grads["b"] = xp.sum(dy2, axis=0)
        matmul = fast_path("matmul", xp, operator.matmul)
        if not self.embedding._frozen:  # a frozen W takes no gradient: no weight product
            self.embedding.add_shared_grad(matmul(xp.permute_dims(dy2, (1, 0)), x2))
        return xp.reshape(matmul(dy2, self.embedding.params["W"]), self._shape)
