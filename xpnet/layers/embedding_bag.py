"""EmbeddingBag: PyTorch's bags of ids -> the sum, mean or max of their rows (its text classifiers' first layer)."""

from __future__ import annotations

from typing import Any

from .._user import flag
from ..backend import device_of, host_copy, isdtype, namespace, same_device, untracked
from .base import described
from .embedding import Embedding, rows_added
from .uses import called

MODES = ("sum", "mean", "max")


class EmbeddingBag(Embedding):
    """input (M,) ids with offsets (B,), where each bag starts -> y: (B, embedding_dim); or input (B, T) ids,
    a bag per row, without offsets (PyTorch's two forms of ``forward(input, offsets)``).

    ``mode``: ``"mean"`` (PyTorch's default), ``"sum"`` or ``"max"`` (per feature) of the rows of a bag's ids;
    an empty bag gives zeros, as PyTorch's. ``include_last_offset=True``: offsets has B + 1 entries, the last M.
    ``padding_idx``: positions with that id are left out of their bag (and of its mean's count), and its row gets
    no gradient. ``per_sample_weights`` (input's shape, ``mode="sum"`` only) scales each row before the sum.
    params: W (num_embeddings, embedding_dim), drawn from N(0, 1) as PyTorch's (``init=`` as Embedding's). The
    arguments are PyTorch's, in its order (``mode`` is sixth: pass it by name). Caches the ids, each position's
    bag, and the mean's scales, the max's winning positions or the per-sample weights. ``backward(dy)`` (B, D)
    adds each position's share into its id's row through Embedding's scatter-add, and returns None (ids have no
    gradient), or ``(None, None, d_per_sample_weights)`` (one per input) where the forward had them.
    ``check_ids`` checks the ids' range and that the offsets start at 0, never decrease and stay within M: two
    values read back per forward (``"max"`` of 1-D ids reads the longest bag's length too, check or not). For
    (B, T) ids the bags' layout is made once per shape and kept, and the range check reads nothing where the ids
    are a batch of a BatchIterator (:meth:`Embedding.check_range`).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm: Any = None, norm_type: Any = 2.0,
                 scale_grad_by_freq: Any = False, mode: str = "mean", sparse: Any = False, _weight: Any = None,
                 include_last_offset: bool = False, padding_idx: int | None = None, device: Any = None,
                 dtype: Any = "float32", *, init: Any = 1.0, check_ids: bool = True, _freeze: Any = False):
        super().__init__(num_embeddings, embedding_dim, padding_idx, init=init, dtype=dtype, check_ids=check_ids,
                         max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq,
                         sparse=sparse, _weight=_weight, _freeze=_freeze, device=device)
        if mode not in MODES:
            raise ValueError(f"EmbeddingBag: mode must be 'sum', 'mean' or 'max', got {mode!r}")
        self.mode = mode
        self.include_last_offset = flag(include_last_offset, self.name, "include_last_offset")
        self._cache, self._even_bags = None, None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "mode": self.mode, "include_last_offset": self.include_last_offset}

    def __call__(self, input: Any, offsets: Any = None, per_sample_weights: Any = None,  # type: ignore[override]
                 train: bool | None = None) -> Any:
        """PyTorch's ``bag(input, offsets, per_sample_weights)``: ``forward`` in the layer's mode, as a use."""
        return self.forward(input, offsets, per_sample_weights, train=called(self, train, "input, offsets"))

    def forward(self, input: Any, offsets: Any = None, per_sample_weights: Any = None,  # type: ignore[override]
                train: bool = True) -> Any:
        xp = self._check_ids(input, "ids")
        if input.ndim == 2 and offsets is None:
            ids, (starts, ends, bag) = xp.reshape(input, (-1,)), self._rows_as_bags(xp, input)
        else:
            ids, starts = self._bags(xp, input, offsets)
            ends, bag = self._layout(xp, starts, ids.shape[0])
        m, n_bags = ids.shape[0], starts.shape[0]
        rows = xp.take(self.params["W"], ids, axis=0)
        valid = None if self.padding_idx is None else ids != self.padding_idx
        zero = xp.zeros((), dtype=rows.dtype, device=rows.device)
        weights = self._sample_weights(xp, input, per_sample_weights)
        self._ids, self._shared, self._done = ids, None, False
        if self.mode == "max":  # a bag per row: the longest is T, known without a read
            longest = (input.shape[1] if n_bags and m else 0) if input.ndim == 2 else None
            return self._max(xp, rows, valid, starts, ends - starts, bag, zero, longest)
        kept = rows if valid is None else xp.where(valid[:, None], rows, zero)
        summed = rows_added(xp, bag, kept if weights is None else kept * weights[:, None], n_bags)
        scale = None
        if self.mode == "mean":
            counts = (xp.astype(ends - starts, rows.dtype) if valid is None else
                      rows_added(xp, bag, xp.astype(valid, rows.dtype)[:, None], n_bags)[:, 0])
            scale = 1 / xp.maximum(counts, xp.ones((), dtype=rows.dtype, device=rows.device))
            summed = summed * scale[:, None]
        self._cache = (n_bags, bag, (tuple(input.shape), scale, weights, None if weights is None else kept))
        return summed

    @staticmethod
    def _layout(xp: Any, starts: Any, m: int) -> tuple[Any, Any]:
        """Where each bag ends (B,) and the bag of each of the ``m`` positions (M,), from where each starts."""
        ends = xp.concat([starts[1:], xp.full((1,), m, dtype=starts.dtype, device=starts.device)])
        bag = xp.searchsorted(starts, xp.arange(m, dtype=starts.dtype, device=starts.device), side="right") - 1
        return ends, bag

    def _rows_as_bags(self, xp: Any, input: Any) -> tuple[Any, Any, Any]:
        """For ids (B, T), a bag per row: where each bag starts and ends (B,) and each position's bag (B * T,),
        made once per (B, T, array type, dtype, device) and kept: nothing to copy or launch in the next
        forwards, and a CUDA-graph capture finds them made in its warm-up steps."""
        n, t = input.shape
        key = (n, t, type(input), str(input.dtype), str(input.device))
        if self._even_bags is None or self._even_bags[0] != key:
            starts = xp.arange(n, dtype=input.dtype, device=input.device) * t
            self._even_bags = (key, (starts, *self._layout(xp, starts, n * t)))
        return self._even_bags[1]

    def _bags(self, xp: Any, input: Any, offsets: Any) -> tuple[Any, Any]:
        """The ids (M,) and where each bag starts (B,), checked where ``check_ids`` says so."""
        if input.ndim == 2:
            raise ValueError(f"{self.name}: input of shape {tuple(input.shape)} is a bag per row and takes no "
                             "offsets, as PyTorch's: pass the ids flat, (M,), with offsets, or the rows alone")
        if input.ndim != 1:
            raise ValueError(f"{self.name}: expected ids (M,) with offsets or (B, T) without, got shape "
                             f"{tuple(input.shape)}")
        if offsets is None or getattr(offsets, "ndim", None) != 1:
            got = "None" if offsets is None else f"{type(offsets).__name__} {getattr(offsets, 'shape', offsets)}"
            raise ValueError(f"{self.name}: 1-D ids need offsets, a 1-D integer array of where each bag starts "
                             f"(PyTorch's forward(text, offsets)), got {got}")
        if not isdtype(xp, offsets.dtype, "integral") or not same_device(offsets, input):
            raise TypeError(f"{self.name}: offsets must be integers on the ids' device ({device_of(input)}), got "
                            f"{offsets.dtype} on {device_of(offsets)}")
        m, given = input.shape[0], offsets.shape[0]
        if self.check_ids and (given or m or self.include_last_offset):
            last = offsets[-1:] if self.include_last_offset else xp.asarray([m], dtype=offsets.dtype,
                                                                               device=offsets.device)
            bounds = xp.concat([offsets[:1], offsets, last])
            if given == int(self.include_last_offset) or bool(
                    xp.any(bounds[1:] < bounds[:-1]) | (offsets[0] != 0) | (last[0] != m)):
                end = "the last of them M" if self.include_last_offset else "at most M"
                raise ValueError(f"{self.name}: offsets must start at 0 and never decrease, {end} = {m} (the number "
                                 f"of ids), got {host_copy(offsets)[:20].tolist()}")
        return input, offsets[:-1] if self.include_last_offset else offsets

    def _sample_weights(self, xp: Any, input: Any, weights: Any) -> Any:
        """``per_sample_weights`` flat (M,), checked, or None."""
        if weights is None:
            return None
        if self.mode != "sum":
            raise ValueError(f"{self.name}: per_sample_weights need mode='sum', as PyTorch's, got mode={self.mode!r}")
        weights = untracked(weights)
        W = self.params["W"]
        if not hasattr(weights, "shape") or tuple(weights.shape) != tuple(input.shape) or weights.dtype != W.dtype \
                or not same_device(weights, W):
            shape = f" of shape {tuple(weights.shape)}" if hasattr(weights, "shape") else ""
            raise ValueError(f"{self.name}: per_sample_weights must be an array of the ids' shape "
                             f"{tuple(input.shape)} in W's dtype {W.dtype} on its device ({device_of(W)}), got "
                             f"{described(weights)}{shape}")
        return xp.reshape(weights, (-1,))

    def _max(self, xp: Any, rows: Any, valid: Any, starts: Any, lengths: Any, bag: Any, zero: Any,
             longest: int | None) -> Any:
        """Each bag's maximum per feature, over its rows laid out as (B, L, D), L the longest bag (read back from
        the device where ``longest`` is None)."""
        n_bags, dim = starts.shape[0], self.embedding_dim
        if longest is None:
            longest = int(xp.max(lengths)) if n_bags and rows.shape[0] else 0
        if not longest:
            self._cache = (n_bags, bag, None)
            return xp.zeros((n_bags, dim), dtype=rows.dtype, device=rows.device)
        step = xp.arange(longest, dtype=starts.dtype, device=starts.device)
        inside = step[None, :] < lengths[:, None]
        at = xp.reshape(xp.where(inside, starts[:, None] + step[None, :], xp.zeros_like(starts[:1, None])), (-1,))
        ok = inside if valid is None else inside & xp.reshape(xp.take(valid, at), inside.shape)
        laid = xp.reshape(xp.take(rows, at, axis=0), (n_bags, longest, dim))
        laid = xp.where(ok[:, :, None], laid, xp.full((), -xp.inf, dtype=rows.dtype, device=rows.device))
        some = xp.any(ok, axis=1)[:, None]
        self._cache = (n_bags, bag, (xp.argmax(laid, axis=1), step, starts, some))
        return xp.where(some, xp.max(laid, axis=1), zero)

    def backward(self, dy: Any) -> Any:
        n_bags, bag, kept = self._need(self._cache)
        xp = self._check_grad(untracked(dy), (n_bags, self.embedding_dim))
        if self.mode == "max":
            self._gather_grad(xp, self._ids, self._max_rows(xp, dy, bag, kept))
            return None
        shape, scale, weights, rows = kept
        d_rows = xp.take(dy if scale is None else dy * scale[:, None], bag, axis=0)
        self._gather_grad(xp, self._ids, d_rows if weights is None else d_rows * weights[:, None])
        return None if weights is None else (None, None, xp.reshape(xp.sum(d_rows * rows, axis=1), shape))

    def _max_rows(self, xp: Any, dy: Any, bag: Any, kept: Any) -> Any:
        """dy (B, D) at each position (M, D): a bag's gradient goes to the position of its maximum, per feature."""
        m, dim = bag.shape[0], self.embedding_dim
        if kept is None:
            return xp.zeros((m, dim), dtype=dy.dtype, device=dy.device)
        winner, step, starts, some = kept
        hit = (step[None, :, None] == winner[:, None, :]) & some[:, :, None]
        laid = xp.where(hit, dy[:, None, :], xp.zeros((), dtype=dy.dtype, device=dy.device))
        at = bag * step.shape[0] + xp.arange(m, dtype=bag.dtype, device=bag.device) - xp.take(starts, bag)
        return xp.take(xp.reshape(laid, (-1, dim)), at, axis=0)


def uncut_bags_hint(xs: Any) -> str:
    """What to write where inputs cut into batches alike (``xn.train``, ``predict``) hold two 1-D integer arrays of
    different lengths, PyTorch's flat ids and offsets of an EmbeddingBag; "" for any other inputs."""
    flat = {int(x.shape[0]) for x in xs if getattr(x, "ndim", None) == 1 and isdtype(namespace(x), x.dtype, "integral")}
    if len(flat) < 2:
        return ""
    return ("; flat ids with offsets (an EmbeddingBag's forward(text, offsets)) cannot be cut into batches alike: "
            "give it (B, T) ids, a bag per row padded with its padding_idx, or loop over batches of your own "
            "(docs/from-pytorch.md, the text-classification tutorial)")
