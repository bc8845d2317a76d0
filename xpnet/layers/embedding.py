"""Embedding: integer ids -> rows of a weight matrix (the book's Embedding and TimeEmbedding)."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from ..backend import device_of, fast_path, isdtype, namespace, same_device
from .base import Layer, positive_int

# The portable backward's one-hot blocks hold at most this many elements (16 MiB in float32).
ONE_HOT_ELEMENTS = 1 << 22


class Embedding(Layer):
    """ids: (N, T) (any shape (N, ...)) integers in [0, num_embeddings) -> y: (N, T, embedding_dim).

    params: W (num_embeddings, embedding_dim), drawn from N(0, 0.01**2) as the book's
    ``randn(V, D) / 100`` (PyTorch's ``nn.Embedding`` draws N(0, 1): ``init=1.0``). Caches the ids.
    ``backward(dy)`` adds each position's gradient into the row of its id (an id that appears twice
    gets both), fills ``grads["W"]`` and returns None: ids have no gradient.
    Weight tying: ``xn.layers.TiedLinear(embedding)`` uses this W as its output matrix; its share of
    the gradient is added to ``grads["W"]`` (:meth:`add_shared_grad`), so W is one parameter.
    ``check_ids`` (default True) checks the ids' range in each forward, which reads one value back
    from the device; turn it off once the data are known good (NumPy itself raises for ids past the
    end, but takes negative ones from the end, and JAX clamps them silently).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, init: Any = "normal", dtype: str = "float32",
                 check_ids: bool = True):
        super().__init__()
        self.num_embeddings = positive_int(self, "num_embeddings", num_embeddings)
        self.embedding_dim = positive_int(self, "embedding_dim", embedding_dim)
        self.init, self.dtype, self.check_ids = init, str(dtype), bool(check_ids)
        self.params["W"] = _init.weights((self.num_embeddings, self.embedding_dim), self.num_embeddings,
                                         self.embedding_dim, init=init, dtype=dtype)
        self._ids = None
        self._shared = None  # gradients for W from a TiedLinear whose backward ran before this one's
        self._done = False  # this backward ran since the last forward: a TiedLinear adds into grads["W"]

    @property
    def takes_ids(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        init = self.init if isinstance(self.init, (str, int, float)) else "normal"
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim, "init": init,
                "dtype": self.dtype, "check_ids": self.check_ids}

    def forward(self, ids: Any, train: bool = True) -> Any:
        xp = namespace(ids)
        W = self.params["W"]
        if not isdtype(xp, ids.dtype, "integral"):
            raise TypeError(f"Embedding: expected integer ids, got dtype {ids.dtype}")
        if not same_device(ids, W):
            raise ValueError(f"Embedding: ids are on {device_of(ids)} but the weights are on {device_of(W)}; move the "
                             "model with model.to(device) or the ids with xn.to_device(ids, device)")
        if self.check_ids and math.prod(ids.shape) and bool(xp.any((ids < 0) | (ids >= self.num_embeddings))):
            raise ValueError(f"Embedding: ids must lie in [0, {self.num_embeddings}), got values in "
                             f"[{int(xp.min(ids))}, {int(xp.max(ids))}]")
        self._ids, self._shared, self._done = ids, None, False
        rows = xp.take(W, xp.reshape(ids, (-1,)), axis=0)
        return xp.reshape(rows, (*ids.shape, self.embedding_dim))

    def backward(self, dy: Any) -> None:
        ids = self._need(self._ids)
        xp = self._check_float(dy)
        if tuple(dy.shape) != (*ids.shape, self.embedding_dim):
            raise ValueError(f"Embedding: expected dy of shape {(*ids.shape, self.embedding_dim)}, "
                             f"got {tuple(dy.shape)}")
        dW = fast_path("embedding_backward", xp, embedding_backward)(
            xp.reshape(ids, (-1,)), xp.reshape(dy, (-1, self.embedding_dim)), self.num_embeddings)
        self.grads["W"] = dW if self._shared is None else dW + self._shared
        self._shared, self._done = None, True
        return None

    def add_shared_grad(self, dW: Any) -> None:
        """Add ``dW`` (num_embeddings, embedding_dim) to W's gradient of this step: what a layer sharing W
        (:class:`~xpnet.layers.TiedLinear`) found, before or after this layer's own backward."""
        if self._done:
            self.grads["W"] = self.grads["W"] + dW
        else:
            self._shared = dW if self._shared is None else self._shared + dW


def embedding_backward(ids: Any, dy: Any, num_embeddings: int) -> Any:
    """dW (num_embeddings, D) with row v the sum of the rows of dy (M, D) whose id (M,) is v, portable.

    The array API has no scatter-add that adds repeated indices (``x[i] += v`` keeps one of them), so
    dW is a sum of one-hot matrix products, ``(arange(V)[:, None] == ids[None, lo:hi]) @ dy[lo:hi]``,
    over blocks of positions small enough that each one-hot block stays under ``ONE_HOT_ELEMENTS``.
    NumPy and PyTorch have fast paths (``np.add.at``, ``index_add_``), tested equal to this.
    """
    xp = namespace(dy)
    m = ids.shape[0]
    vocab = xp.arange(num_embeddings, dtype=ids.dtype, device=ids.device)[:, None]
    block = max(1, ONE_HOT_ELEMENTS // num_embeddings)
    dW = xp.zeros((num_embeddings, dy.shape[1]), dtype=dy.dtype, device=dy.device)
    for lo in range(0, m, block):
        hi = min(lo + block, m)
        dW = dW + xp.astype(vocab == ids[None, lo:hi], dy.dtype) @ dy[lo:hi, :]
    return dW
