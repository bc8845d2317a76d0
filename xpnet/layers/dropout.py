"""Dropout: zero a fraction ``p`` of activations in training; inverted (PyTorch) or the book's scaling. Dropout1d
and Dropout2d: whole channels, as PyTorch's. AlphaDropout: SELU's, PyTorch's."""

from __future__ import annotations

from typing import Any

from .. import _chainer
from .. import init as _init
from .._user import keyword_hints
from .._user import seed as _seed
from ..backend import fast_path, keep_scale, untracked
from .base import INPLACE, Layer, pytorch_defaults_only


class Dropout(Layer):
    """Dropout: each activation zeroed with probability ``p`` in training. x: (N, ...) -> y: (N, ...).

    ``convention="pytorch"`` (the default, inverted dropout): y = x * mask / (1 - p) in training,
    y = x in evaluation. ``convention="book"`` (the book's Dropout): y = x * mask in training,
    y = x * (1 - p) in evaluation; weights trained by the book's code need it.
    Caches the scaled mask. The mask is drawn from the layer's own generator (seeded from
    ``seed``, else from ``xn.init``'s generator), on the device where the backend allows it.
    """

    @keyword_hints("Dropout", _chainer.DROPOUT)
    def __init__(self, p: float = 0.5, seed: int | None = None, convention: str = "pytorch", *,
                 inplace: bool = False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"{self.name}: p must be a float in [0, 1), got {p!r}")
        if isinstance(seed, bool):  # PyTorch's Dropout(p, inplace)
            raise ValueError(f"{self.name}: the second argument is seed (an int), got {seed!r}; PyTorch's second, "
                             "inplace, goes by name here: inplace=False")
        pytorch_defaults_only(self.name, {"inplace": INPLACE}, {"inplace": inplace})
        if convention not in ("pytorch", "book"):
            raise ValueError(f"{self.name}: convention must be 'pytorch' or 'book', got {convention!r}")
        self.p = float(p)
        self.seed = _seed(seed, self.name, optional=True)
        self.convention = convention
        self.rng = _init.make_rng(seed)
        self._scale = None
        self._shape = None

    def config(self) -> dict[str, Any]:
        return {"p": self.p, "seed": self.seed, "convention": self.convention}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        train = self._check_train(train)
        xp = self._check_float(x)
        self._shape = tuple(x.shape)
        book = self.convention == "book"
        if not train or self.p == 0.0:
            self._scale = 1.0 - self.p if book else 1.0
            return x * self._scale if book else x
        kept = 1.0 if book else 1.0 / (1.0 - self.p)
        y, self._scale = self._drop(xp, x, kept)
        return y

    def _drop(self, xp: Any, x: Any, kept: float) -> tuple[Any, Any]:
        """Training forward: (y, scale)."""
        return fast_path("dropout_forward", xp, dropout_forward)(x, self.p, kept, self.rng, self)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        scale = self._need(self._scale)
        self._check_grad(dy, self._shape)
        return dy * scale


class _ChannelDropout(Dropout):
    """Dropout of whole channels: PyTorch's arguments (p, inplace) and Dropout's seed; a subclass gives the shape
    of its scale, one value per channel (``_channels``), and checks the input's axes."""

    def __init__(self, p: float = 0.5, seed: int | None = None, *, inplace: bool = False):
        super().__init__(p, seed, inplace=inplace)

    def config(self) -> dict[str, Any]:
        return {"p": self.p, "seed": self.seed}

    def _channels(self, x: Any) -> tuple[int, ...]:
        raise NotImplementedError

    def _drop(self, xp: Any, x: Any, kept: float) -> tuple[Any, Any]:
        scale = keep_scale(self.rng, self._channels(x), x, self, self.p, kept)
        return x * scale, scale


class Dropout2d(_ChannelDropout):
    """PyTorch's nn.Dropout2d(p): x: (N, C, H, W) -> y: (N, C, H, W), each channel of each sample zeroed whole
    with probability ``p`` in training and the rest scaled by 1 / (1 - p); y = x in evaluation. Caches the scale
    (N, C, 1, 1), drawn as Dropout draws (``xpnet.backend.uniform``: its own generator, seeded from ``seed`` or
    ``xn.init``'s, on the device where the backend allows it). A 3-d input, which PyTorch reads as (N, C, L)
    with a warning, is refused, and so is a 2-d one, whose values PyTorch drops one by one (Dropout)."""

    def forward(self, x: Any, train: bool = True) -> Any:
        if getattr(x, "ndim", 4) == 2:  # pytorch/examples' mnist_rnn: Dropout2d after a BatchNorm1d of (N, 64)
            raise ValueError(f"Dropout2d: expected (N, C, H, W), got shape {tuple(x.shape)}; PyTorch drops single "
                             "values of a 2-d input, as Dropout does (deprecated, with a warning): use "
                             "xn.layers.Dropout(p)")
        if getattr(x, "ndim", 4) != 4:
            raise ValueError(f"Dropout2d: expected (N, C, H, W), got shape {tuple(x.shape)} (PyTorch reads a 3-d "
                             "input as (N, C, L)); for that, Dropout1d")
        return super().forward(x, train)

    def _channels(self, x: Any) -> tuple[int, ...]:
        return (*x.shape[:2], 1, 1)


class Dropout1d(_ChannelDropout):
    """PyTorch's nn.Dropout1d(p): x: (N, C, L) or one sample (C, L) -> y: the same shape, each channel zeroed whole
    with probability ``p`` in training and the rest scaled by 1 / (1 - p); y = x in evaluation. Caches the scale
    (N, C, 1) or (C, 1), drawn as Dropout2d draws."""

    def forward(self, x: Any, train: bool = True) -> Any:
        if getattr(x, "ndim", 3) not in (2, 3):
            raise ValueError(f"Dropout1d: expected (N, C, L) or (C, L), got shape {tuple(x.shape)}; images (N, C, "
                             "H, W) go to Dropout2d")
        return super().forward(x, train)

    def _channels(self, x: Any) -> tuple[int, ...]:
        return (*x.shape[:-1], 1)


class AlphaDropout(_ChannelDropout):
    """PyTorch's nn.AlphaDropout(p): x: (N, ...) -> y: x's shape, each activation set with probability ``p`` to
    SELU's saturation -alpha in training, then ``a * (.) + b`` with PyTorch's a and b, so that inputs of mean 0
    and variance 1 keep them; y = x in evaluation. Caches the scale a * mask, drawn as Dropout draws."""

    _ALPHA = 1.7580993408473766  # -SELU's limit at -inf, divided by its scale (PyTorch's constant)

    def _channels(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def _drop(self, xp: Any, x: Any, kept: float) -> tuple[Any, Any]:
        alpha, p = self._ALPHA, self.p
        a = (alpha * alpha * p + 1.0) ** -0.5 * (1.0 - p) ** -0.5
        scale = keep_scale(self.rng, tuple(x.shape), x, self, p, a)
        return (x + alpha) * scale - alpha * a * (1.0 - p), scale


def dropout_forward(x: Any, p: float, kept: float, rng: Any, owner: Any) -> tuple[Any, Any]:
    """Training forward: (y, scale) with scale = (u >= p) * kept for u uniform in [0, 1) drawn by
    ``xpnet.backend.uniform(rng, x.shape, x, owner)``, and y = x * scale."""
    scale = keep_scale(rng, tuple(x.shape), x, owner, p, kept)
    return x * scale, scale
