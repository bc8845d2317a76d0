"""Nearest-neighbour upsampling of NCHW images by a whole-number factor (PyTorch's nn.Upsample, mode 'nearest')."""

from __future__ import annotations

import numbers
from typing import Any

from ..backend import untracked
from ._im2col import Pair, as_pair
from .base import Layer, pytorch_defaults_only

_MODES = ("nearest", "nearest-exact")


class Upsample(Layer):
    """Each pixel repeated sh times down and sw times across: y[n, c, i, j] = x[n, c, i // sh, j // sw].

    x: (N, C, H, W) -> y: (N, C, H*sh, W*sw). PyTorch's arguments in its order: ``scale_factor`` (sh, sw), an int
    or a pair of them >= 1 (a float that is a whole number too), or ``size`` (oh, ow), an int or a pair, which must
    be a whole multiple of each input's (H, W); exactly one of the two. This is PyTorch's ``mode='nearest'`` (the
    source pixel floor(dst * H / oh)) and ``'nearest-exact'`` (floor((dst + 0.5) * H / oh)): both are i // sh
    where oh = H*sh. Refused: PyTorch's other modes (they interpolate), fractional scales and sizes that are not
    a multiple of the input (where PyTorch's nearest pixel comes from a float32 product: floor(dst * float32(H /
    oh)), which differs from the exact rule at some sizes, e.g. 14 -> 46 rows), ``align_corners`` and
    ``recompute_scale_factor`` other than None. (PyTorch's float32 index differs from i // sh at some scales
    above 40 too, e.g. 41 on 2 rows; xpnet's is exact there.)
    Backward: dx is the sum of each sh x sw block of dy. Caches the input shape and (sh, sw).
    """

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: Any = None, recompute_scale_factor: Any = None):
        super().__init__()
        if not isinstance(mode, str) or mode not in _MODES:
            raise ValueError(f"{self.name}: mode={mode!r} is not supported: xpnet's Upsample repeats pixels "
                             "('nearest', or 'nearest-exact', the same for whole-number scales); PyTorch's "
                             "interpolating modes ('linear', 'bilinear', 'bicubic', 'trilinear', 'area') are not in "
                             "xpnet (for a learned upsampling: xn.layers.ConvTranspose2d)")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"{self.name}: pass exactly one of size and scale_factor (as PyTorch), got size={size!r} "
                             f"and scale_factor={scale_factor!r}")
        pytorch_defaults_only(self.name, {
            "align_corners": (None, "it applies to PyTorch's interpolating modes; nearest has none, leave it None"),
            "recompute_scale_factor": (None, "the output is (H*sh, W*sw) for a whole-number scale; leave it None")},
            {"align_corners": align_corners, "recompute_scale_factor": recompute_scale_factor})
        self.mode = mode
        self.size = None if size is None else as_pair(self.name, "size", size, 1)
        self.scale_factor = None if scale_factor is None else self._whole_scale(scale_factor)
        self._shape = None
        self._scale: Pair | None = None

    def _whole_scale(self, scale_factor: Any) -> Pair:
        """scale_factor as a pair of ints >= 1 (floats that are whole numbers taken as ints)."""
        items = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
        if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Real)
                                  or not float(v).is_integer() or v < 1 for v in items):
            raise ValueError(f"{self.name}: scale_factor must be a whole number >= 1 or a pair of them, got "
                             f"{scale_factor!r}: xpnet's Upsample repeats each pixel a whole number of times")
        return int(items[0]), int(items[1])

    def config(self) -> dict[str, Any]:
        return {"size": None if self.size is None else list(self.size),
                "scale_factor": None if self.scale_factor is None else list(self.scale_factor), "mode": self.mode}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-d input (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        sh, sw = self._scales(h, w, tuple(x.shape))
        self._shape, self._scale = tuple(x.shape), (sh, sw)
        y = xp.broadcast_to(xp.reshape(x, (n, c, h, 1, w, 1)), (n, c, h, sh, w, sw))
        return xp.reshape(y, (n, c, h * sh, w * sw))

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        n, c, h, w = self._need(self._shape)
        sh, sw = self._scale
        xp = self._check_grad(dy, (n, c, h * sh, w * sw))
        return xp.sum(xp.reshape(dy, (n, c, h, sh, w, sw)), axis=(3, 5))

    def _scales(self, h: int, w: int, shape: tuple[int, ...]) -> Pair:
        """(sh, sw): scale_factor, or size over the input's (H, W) where it divides."""
        if self.size is None:
            return self.scale_factor
        oh, ow = self.size
        if oh % h or ow % w:
            raise ValueError(f"{self.name}: size={self.size} is not a whole multiple of the input's {h}x{w} (input "
                             f"shape {shape}): xpnet's Upsample repeats each pixel a whole number of times; pass a "
                             "size that is a multiple of the input's, or scale_factor")
        return oh // h, ow // w
