"""Embedding: integer ids -> rows of a weight matrix (the book's Embedding and TimeEmbedding)."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from .._user import flag, is_int
from ..backend import rows
from ..backend import device_of, fast_path, float_dtype_name, host_copy, isdtype, namespace, same_device, untracked
from .base import Layer, positive_int, pytorch_defaults_only
from .pytorch_params import PyTorchParam

# The portable backward's one-hot blocks hold at most this many elements (16 MiB in float32).
ONE_HOT_ELEMENTS = 1 << 22

# PyTorch's nn.Embedding arguments that xpnet has no use for: (the default, which means the same in
# xpnet and is accepted, what to do instead of any other value).
PYTORCH_ONLY = {
    "max_norm": (None, "xpnet does not renormalise rows; leave max_norm=None"),
    "norm_type": (2.0, "it is the norm of max_norm, which xpnet does not have; leave it out"),
    "scale_grad_by_freq": (False, "xpnet does not scale gradients by frequency; leave it False"),
    "sparse": (False, "xpnet's gradients are dense arrays; leave it False"),
    "_weight": (None, "use Embedding.from_pretrained(weights, freeze=False), or set layer.params['W'] "
                      "(or model.load_state_dict)"),
    "device": (None, "xpnet builds every layer on the host; move the layer (or its model) with .to(device)"),
}


class Embedding(Layer):
    """A lookup table, row ``id`` of W for each id: ids (N, T) (any shape (N, ...)) integers in
    [0, num_embeddings) -> y: (N, T, embedding_dim).

    params: W (num_embeddings, embedding_dim), drawn from N(0, 0.01**2) as the book's
    ``randn(V, D) / 100`` (PyTorch's ``nn.Embedding`` draws N(0, 1): ``init=1.0``). Caches the ids.
    ``backward(dy)`` adds each position's gradient into the row of its id (an id that appears twice
    gets both), fills ``grads["W"]`` and returns None: ids have no gradient.
    ``padding_idx`` as PyTorch's: that row starts as zeros and gets no gradient from this layer (the
    positions whose id it is still read it in forward); a negative one counts from the end and is kept
    as ``num_embeddings + padding_idx``. The arguments after it are keyword-only: PyTorch's fourth is
    ``max_norm``. PyTorch's other arguments are accepted at their defaults (``device=None``,
    ``sparse=False``...); another value fails with what to do instead.
    Weight tying: ``xn.layers.TiedLinear(embedding)`` uses this W as its output matrix; its share of
    the gradient is added to ``grads["W"]`` (:meth:`add_shared_grad`), so W is one parameter (that
    share reaches the padding row, as the tied ``nn.Linear``'s does in PyTorch).
    ``check_ids`` (default True) checks the ids' range in each forward, which reads one value back
    from the device (none for a batch of a BatchIterator or TokenStream: the range of the array it came from
    is read once an epoch, :mod:`xpnet.backend.rows`); turn it off once the data are known good (NumPy
    raises for ids past the end but takes negative ones from the end silently; CuPy wraps both to another row
    and JAX clamps them, silently too). ``xn.train``, ``xn.evaluate`` and the models' ``generate`` check the
    ids of the Embeddings that read the model's inputs (the first layer of a Sequential or a LanguageModel, the
    seq2seq models' two) once per run instead (``xpnet.models.ids``).
    """

    weight = PyTorchParam("W")  # PyTorch's name and layout
    kept_between_uses = ("_shared",)  # a TiedLinear's backward adds there, before this layer's backward of its call

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, *,
                 init: Any = "normal", dtype: Any = "float32", check_ids: bool = True, max_norm: Any = None,
                 norm_type: Any = 2.0, scale_grad_by_freq: Any = False, sparse: Any = False, _weight: Any = None,
                 _freeze: Any = False, device: Any = None):
        super().__init__()
        self.num_embeddings = positive_int(self, "num_embeddings", num_embeddings)
        self.embedding_dim = positive_int(self, "embedding_dim", embedding_dim)
        weight_hint = (None, PYTORCH_ONLY["_weight"][1].replace("Embedding.", f"{self.name}."))  # EmbeddingBag's own
        pytorch_defaults_only(self.name, {**PYTORCH_ONLY, "_weight": weight_hint}, {
            "max_norm": max_norm, "norm_type": norm_type, "scale_grad_by_freq": scale_grad_by_freq, "sparse": sparse,
            "_weight": _weight, "device": device})
        self.padding_idx = self._padding_index(padding_idx)
        self.init, self.dtype = init, float_dtype_name(dtype, self.name)
        self.check_ids = flag(check_ids, self.name, "check_ids")
        W = _init.weights((self.num_embeddings, self.embedding_dim), self.num_embeddings, self.embedding_dim,
                          init=init, dtype=self.dtype, who=self.name)
        if self.padding_idx is not None and W.flags.writeable:  # a skip_init placeholder is read-only zeros
            W[self.padding_idx, :] = 0
        self.params["W"] = W
        self._frozen = flag(_freeze, self.name, "_freeze")  # PyTorch's: W does not train (requires_grad_)
        self._ids = None
        self._shared = None  # gradients for W from a TiedLinear whose backward ran before this one's
        self._done = False  # this backward ran since the last forward: a TiedLinear adds into grads["W"]

    def _padding_index(self, padding_idx: Any) -> int | None:
        """``padding_idx`` in [-num_embeddings, num_embeddings) as an index in [0, num_embeddings), or None."""
        if padding_idx is None:
            return None
        n = self.num_embeddings
        if not is_int(padding_idx) or not -n <= padding_idx < n:
            raise ValueError(f"{self.name}: padding_idx must be an int in [{-n}, {n}) (num_embeddings={n}) "
                             f"or None, got {padding_idx!r}")
        return int(padding_idx) % n

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True, padding_idx: int | None = None,
                        **kwargs: Any) -> "Embedding":
        """PyTorch's ``nn.Embedding.from_pretrained``: W is a host copy of ``embeddings``
        (num_embeddings, embedding_dim), a float array of any backend, in its dtype; the padding row is
        kept as given (PyTorch's is too). Built on the host, as every layer: move it with ``.to(device)``.
        ``freeze=True`` (PyTorch's default) gives a frozen layer (``requires_grad_(False)``: W does not
        train). ``kwargs``: the constructor's."""
        freeze = flag(freeze, "Embedding.from_pretrained", "freeze")
        W = host_copy(embeddings)
        if W.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D (num_embeddings, embedding_dim), "
                             f"got shape {W.shape}")
        kwargs.setdefault("dtype", float_dtype_name(W.dtype, "Embedding.from_pretrained"))
        with _init.skip_init():
            layer = cls(*W.shape, padding_idx=padding_idx, **kwargs)
        layer.params["W"] = W.astype(layer.dtype, copy=False)
        return layer.requires_grad_(not freeze)

    @property
    def takes_ids(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        init = self.init if isinstance(self.init, (str, int, float)) else "normal"
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "init": init, "dtype": self.dtype, "check_ids": self.check_ids}

    def forward(self, ids: Any, train: bool = True) -> Any:
        xp = self._check_ids(ids, "ids")
        self._ids, self._shared, self._done = ids, None, False
        rows = xp.take(self.params["W"], xp.reshape(ids, (-1,)), axis=0)
        return xp.reshape(rows, (*ids.shape, self.embedding_dim))

    def _check_ids(self, ids: Any, what: str) -> Any:
        """The namespace of ``ids`` (``what`` in messages), integers on W's device, checked in range where
        ``check_ids`` says so."""
        if not hasattr(ids, "dtype"):  # a list of ids: namespace() would fail with no word of the layer
            raise TypeError(f"{self.name}: expected an integer array of {what}, got a {type(ids).__name__}; "
                            f"convert it with np.asarray({what}, dtype=np.int64) (or xn.to_device)")
        xp = namespace(ids)
        W = self.params["W"]
        if not isdtype(xp, ids.dtype, "integral"):
            raise TypeError(f"{self.name}: expected integer {what}, got dtype {ids.dtype}")
        if not same_device(ids, W):
            raise ValueError(f"{self.name}: {what} are on {device_of(ids)} but the weights are on {device_of(W)}; "
                             f"move the model with model.to(device) or the {what} with xn.to_device({what}, device)")
        if self.check_ids:
            self.check_range(ids)
        return xp

    def check_range(self, ids: Any) -> None:
        """Raise unless every id lies in [0, num_embeddings): one value read back from the ids' device
        (what ``check_ids`` does in each forward; ``xn.train`` does it once per run instead), none where ``ids``
        is a batch of a BatchIterator or TokenStream whose array's range, read once an epoch, is inside
        (:mod:`xpnet.backend.rows`)."""
        known = rows.bounds(ids)
        if known is not None and 0 <= known[0] and known[1] < self.num_embeddings:
            return
        xp = namespace(ids)
        if math.prod(ids.shape) and bool(xp.any((ids < 0) | (ids >= self.num_embeddings))):
            raise ValueError(f"{self.name}: ids must lie in [0, {self.num_embeddings}), got values in "
                             f"[{int(xp.min(ids))}, {int(xp.max(ids))}]")

    def backward(self, dy: Any) -> None:
        dy = untracked(dy)
        ids = self._need(self._ids)
        shape = (*ids.shape, self.embedding_dim)
        xp = self._check_grad(dy, shape)
        self._gather_grad(xp, xp.reshape(ids, (-1,)), xp.reshape(dy, (-1, self.embedding_dim)))
        return None

    def _gather_grad(self, xp: Any, ids: Any, d_rows: Any) -> None:
        """``grads["W"]``: each row of ``d_rows`` (M, D) added into the row of its id (M,) but the padding row,
        with what a TiedLinear shared; nothing when W is frozen (EmbeddingBag's backward ends here too)."""
        if self._frozen:  # requires_grad_(False): no gradient to gather, and none given back
            self._shared = None
            return
        if self.padding_idx is not None:
            # where, not a product with the mask: a non-finite dy at a padding position stays out, as in PyTorch
            zero = xp.zeros((), dtype=d_rows.dtype, device=d_rows.device)
            d_rows = xp.where((ids != self.padding_idx)[:, None], d_rows, zero)
        dW = rows_added(xp, ids, d_rows, self.num_embeddings)
        self.grads["W"] = dW if self._shared is None else dW + self._shared
        self._shared, self._done = None, True

    def add_shared_grad(self, dW: Any) -> None:
        """Add ``dW`` (num_embeddings, embedding_dim) to W's gradient of this step: what a layer sharing W
        (:class:`~xpnet.layers.TiedLinear`) found, before or after this layer's own backward; none when W
        is frozen."""
        if self._frozen:
            return
        if self._done:  # (.get: an internal read notes none, Grads.reads; None: zero_grad() cleared it since)
            earlier = self.grads.get("W")
            self.grads["W"] = dW if earlier is None else earlier + dW
        else:
            self._shared = dW if self._shared is None else self._shared + dW


def rows_added(xp: Any, ids: Any, rows: Any, n: int) -> Any:
    """(n, D): each row of ``rows`` (M, D) added into the row of its index in ``ids`` (M,), through the fast paths of
    ``embedding_backward`` (Embedding's and EmbeddingBag's gradients, EmbeddingBag's sums, GridSample's dx)."""
    return fast_path("embedding_backward", xp, embedding_backward)(ids, rows, n)


def embedding_backward(ids: Any, dy: Any, num_embeddings: int) -> Any:
    """dW (num_embeddings, D) with row v the sum of the rows of dy (M, D) whose id (M,) is v, portable.

    The array API has no scatter-add that adds repeated indices (``x[i] += v`` keeps one of them), so
    dW is a sum of one-hot matrix products, ``(arange(V)[:, None] == ids[None, lo:hi]) @ dy[lo:hi]``,
    over blocks of positions small enough that each one-hot block stays under ``ONE_HOT_ELEMENTS``.
    NumPy and PyTorch have fast paths (a Numba kernel or ``np.add.at``, ``index_add_``), tested equal to this.
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

