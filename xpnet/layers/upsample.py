"""Resizing of NCHW images, PyTorch's nn.Upsample / F.interpolate: 'nearest', 'nearest-exact', 'bilinear', 'bicubic',
'area'."""

from __future__ import annotations

import math
import numbers
from typing import Any

from .._user import flag
from ..backend import dtype_name, untracked
from . import _interp
from ._im2col import as_pair
from .base import Layer

_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
_REFUSED = {
    "linear": "it resizes 3-d (N, C, L) inputs; for (N, C, H, W) images PyTorch's mode is 'bilinear'",
    "trilinear": "it resizes 5-d (N, C, D, H, W) volumes; xpnet's Upsample takes (N, C, H, W) images ('bilinear')",
}


class Upsample(Layer):
    """y = A_h @ x @ A_w^T on each (H, W) image: every output pixel a weighted sum of input pixels, as PyTorch's.

    x: (N, C, H, W) -> y: (N, C, oh, ow). PyTorch's arguments in its order, exactly one of ``size`` (oh, ow) (an
    int or a pair) and ``scale_factor`` (a number > 0 or a pair; oh = floor(H * scale)). ``mode``: 'nearest' (source
    pixel floor(dst * float32(H / oh)) in float32, PyTorch's rule: 14 -> 46 rows reads row 6 at 23, not 7),
    'nearest-exact' (floor((dst + 0.5) * H / oh)), 'bilinear' and 'bicubic' (A = -0.75, edge pixels repeated) with
    ``align_corners`` (None is False; it must stay None for the nearest modes and 'area'), 'area' (the mean of
    PyTorch's adaptive pooling window, as AdaptiveAvgPool2d((oh, ow))). With a ``scale_factor`` the pixels
    are placed by 1 / scale_factor, as PyTorch's, unless ``recompute_scale_factor=True`` places them by H / oh.
    A_h (oh, H) and A_w (ow, W) hold PyTorch's indices and weights (xpnet/layers/_interp.py), computed on the host
    and made into the matrices on the input's device once per input size; where the pixels are whole-number repeats
    (y[i, j] = x[i // sh, j // sw]) a broadcast replaces the products. Backward: dx = A_h^T @ dy @ A_w (for the
    repeats, each sh x sw block of dy summed). Caches the input shape and the plan of its size.
    """

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: Any = None, recompute_scale_factor: Any = None):
        super().__init__()
        if not isinstance(mode, str) or mode not in _MODES:
            why = _REFUSED.get(mode) if isinstance(mode, str) else None
            raise ValueError(f"{self.name}: mode={mode!r} is not supported: " + (why or f"expected one of {_MODES}"))
        if (size is None) == (scale_factor is None):
            raise ValueError(f"{self.name}: pass exactly one of size and scale_factor (as PyTorch), got size={size!r} "
                             f"and scale_factor={scale_factor!r}")
        if mode in ("nearest", "nearest-exact", "area") and align_corners is not None:
            raise ValueError(f"{self.name}: align_corners={align_corners!r} applies to the interpolating modes "
                             f"('bilinear', 'bicubic'), not mode={mode!r}; leave it None (PyTorch refuses it too)")
        if recompute_scale_factor is not None:
            recompute_scale_factor = flag(recompute_scale_factor, self.name, "recompute_scale_factor")
        if recompute_scale_factor and size is not None:
            raise ValueError(f"{self.name}: recompute_scale_factor=True is not meaningful with an explicit size (as "
                             "PyTorch): leave it None")
        self.mode = mode
        self.size = None if size is None else as_pair(self.name, "size", size, 1)
        self.scale_factor = None if scale_factor is None else self._scale_pair(scale_factor)
        self.align_corners = None if align_corners is None else flag(align_corners, self.name, "align_corners")
        self.recompute_scale_factor = recompute_scale_factor
        self._shape = None
        self._plan: tuple[Any, Any] | None = None  # (_interp.plan_key of an input, its plan)

    def _scale_pair(self, scale_factor: Any) -> tuple[float, float]:
        """scale_factor as a pair of finite numbers > 0 (whole numbers as ints, for the repr)."""
        items = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
        if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
                                  or v <= 0 for v in items):
            raise ValueError(f"{self.name}: scale_factor must be a number > 0 or a pair of them, got {scale_factor!r}")
        return tuple(int(v) if float(v).is_integer() else float(v) for v in items)

    def config(self) -> dict[str, Any]:
        return {"size": None if self.size is None else list(self.size),
                "scale_factor": None if self.scale_factor is None else list(self.scale_factor), "mode": self.mode,
                "align_corners": self.align_corners, "recompute_scale_factor": self.recompute_scale_factor}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        xp = self._check_float(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-d input (N, C, H, W), got shape {tuple(x.shape)}")
        plan = self._plan_for(x)
        self._shape = tuple(x.shape)
        return _interp.resize(xp, x, plan)

    def backward(self, dy: Any) -> Any:
        return _interp.layer_backward(self, untracked(dy))

    def _plan_for(self, x: Any) -> _interp.Plan:
        """The plan of x's size (``_interp.plan``), made once per input size, dtype and device."""
        key = _interp.plan_key(x)
        if self._plan is not None and self._plan[0] == key:
            return self._plan[1]
        sizes = self.size or (None, None)
        scales = self.scale_factor or (1, 1)
        given = (None, None) if self.size is not None or self.recompute_scale_factor else self.scale_factor
        out = tuple(_interp.output_size(i, s, f) for i, s, f in zip(x.shape[2:], sizes, scales))
        if min(out) < 1:
            raise ValueError(f"{self.name}: scale_factor={self.scale_factor} makes an output of {out[0]}x{out[1]} "
                             f"from the input's {x.shape[2]}x{x.shape[3]} (input shape {tuple(x.shape)}); each side "
                             "needs at least 1 pixel")
        rows = [self._rows(i, o, s, x) for i, o, s in zip(x.shape[2:], out, given)]
        self._plan = (key, _interp.plan(rows, x))
        return self._plan[1]

    def _rows(self, in_size: int, out_size: int, scale: float | None, x: Any) -> list[_interp.Row]:
        """PyTorch's (index, weight) pairs of each output index along one axis."""
        if self.mode == "area":  # F.interpolate's adaptive_avg_pool2d, its size floor(H * scale_factor)
            return _interp.adaptive(in_size, out_size)
        if self.mode.startswith("nearest"):
            return [[(i, 1.0)] for i in _interp.nearest(in_size, out_size, scale, self.mode == "nearest-exact")]
        rows = _interp.linear if self.mode == "bilinear" else _interp.cubic
        return rows(in_size, out_size, bool(self.align_corners), scale, dtype_name(x))

