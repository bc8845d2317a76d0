"""A spatial transformer's two steps (PyTorch's ``F.affine_grid`` and ``F.grid_sample``), as layers: AffineGrid
makes the sampling grid from a batch of 2x3 affine matrices, GridSample reads the input at the grid's points
(bilinear, zero outside, PyTorch's ``padding_mode='zeros'``). Both keep PyTorch's ``align_corners`` meaning."""

from __future__ import annotations

from typing import Any

from .._user import is_int
from ..backend import untracked
from .embedding import rows_added
from .two_inputs import _TwoInputs


def _align(layer: str, align_corners: Any) -> bool:
    if align_corners is None:
        return False
    if not isinstance(align_corners, bool):
        raise TypeError(f"{layer}: align_corners must be True, False or None (False), got {align_corners!r}")
    return align_corners


class AffineGrid(_TwoInputs):
    """``F.affine_grid(theta, size, align_corners=False)``: theta (N, 2, 3), size (N, C, H, W) -> grid
    (N, H, W, 2), the point (x, y) of each output pixel, ``theta @ (x_w, y_h, 1)`` with x, y in [-1, 1]
    (pixel centres unless ``align_corners``). ``backward(dgrid)`` returns dtheta. Caches the base grid."""

    _inputs = ("theta", "size")

    def __init__(self, align_corners: bool | None = False) -> None:
        super().__init__()
        self.align_corners = _align(self.name, align_corners)
        self._base, self._shape = None, None

    def config(self) -> dict[str, Any]:
        return {"align_corners": self.align_corners}

    def _line(self, xp: Any, n: int, like: Any) -> Any:
        x = xp.linspace(-1.0, 1.0, n, dtype=like.dtype, device=like.device) if n > 1 else \
            xp.zeros((1,), dtype=like.dtype, device=like.device)
        return x if self.align_corners else x * ((n - 1) / n)

    def forward(self, theta: Any, size: Any, train: bool = True) -> Any:  # type: ignore[override]
        self._check_pair_train(train)
        theta = untracked(theta)
        xp = self._check_float(theta)
        size = tuple(size)
        if len(size) != 4 or not all(is_int(s) and s > 0 for s in size):
            raise ValueError(f"{self.name}: size must be the input's (N, C, H, W) (x.shape), got {size!r}; "
                             "5-d volumes are not supported")
        if tuple(theta.shape) != (size[0], 2, 3):
            raise ValueError(f"{self.name}: theta must be ({size[0]}, 2, 3) for size {size}, got "
                             f"{tuple(theta.shape)} (theta.view(-1, 2, 3) is xp.reshape(theta, (-1, 2, 3)))")
        h, w = size[2], size[3]
        xs, ys = self._line(xp, w, theta), self._line(xp, h, theta)
        base = xp.stack([xp.broadcast_to(xs[None, :], (h, w)), xp.broadcast_to(ys[:, None], (h, w)),
                         xp.ones((h, w), dtype=theta.dtype, device=theta.device)], axis=-1)
        self._base, self._shape = xp.reshape(base, (h * w, 3)), (size[0], h, w, 2)
        grid = self._base @ xp.permute_dims(theta, (0, 2, 1))
        return xp.reshape(grid, self._shape)

    def backward(self, dgrid: Any) -> Any:  # type: ignore[override]
        dgrid = untracked(dgrid)
        base = self._need(self._base)
        # the shape checked, not only the size: a (N, W, H, 2) dgrid would reshape silently into wrong rows
        xp = self._check_grad(dgrid, self._shape)
        d = xp.reshape(dgrid, (dgrid.shape[0], base.shape[0], 2))
        return xp.permute_dims(xp.permute_dims(base, (1, 0)) @ d, (0, 2, 1))


class GridSample(_TwoInputs):
    """``F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False)``: input
    (N, C, H, W), grid (N, Ho, Wo, 2) of (x, y) in [-1, 1] -> (N, C, Ho, Wo), each output the bilinear mix of
    the four input pixels around its point, pixels outside the input read as 0. ``backward(dy)`` returns
    ``(dx, dgrid)``. Caches the four corners' flat indices, masks, weights and input values."""

    _inputs = ("input", "grid")

    def __init__(self, mode: str = "bilinear", padding_mode: str = "zeros", align_corners: bool | None = None) -> None:
        super().__init__()
        if mode != "bilinear":
            raise ValueError(f"{self.name}: mode={mode!r} is not supported, only 'bilinear' (PyTorch's default)")
        if padding_mode != "zeros":
            raise ValueError(f"{self.name}: padding_mode={padding_mode!r} is not supported, only 'zeros' (PyTorch's "
                             "default)")
        self.align_corners = _align(self.name, align_corners)
        self._cache = None

    def config(self) -> dict[str, Any]:
        return {"align_corners": self.align_corners}

    def forward(self, x: Any, grid: Any, train: bool = True) -> Any:  # type: ignore[override]
        self._check_pair_train(train)
        x, grid = untracked(x), untracked(grid)
        xp = self._check_pair(x, grid)
        if x.ndim != 4 or grid.ndim != 4 or grid.shape[3] != 2 or grid.shape[0] != x.shape[0]:
            raise ValueError(f"{self.name}: expected input (N, C, H, W) and grid (N, Ho, Wo, 2), got "
                             f"{tuple(x.shape)} and {tuple(grid.shape)}")
        n, c, h, w = x.shape
        p = grid.shape[1] * grid.shape[2]
        g = xp.reshape(grid, (n, p, 2))
        scale = [(s - 1) / 2 if self.align_corners else s / 2 for s in (w, h)]
        ix, iy = ((g[:, :, i] + 1) * scale[i] + (0.0 if self.align_corners else -0.5) for i in (0, 1))
        x0, y0 = xp.floor(ix), xp.floor(iy)
        fx, fy = ix - x0, iy - y0
        flat = xp.reshape(x, (n, c, h * w))
        y, corners = 0.0, []
        for dx_, dy_ in ((0, 0), (1, 0), (0, 1), (1, 1)):
            cx, cy = x0 + dx_, y0 + dy_
            inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
            idx = xp.astype(xp.where(inside, cy * w + cx, 0.0), xp.int64)
            wx, wy = (fx if dx_ else 1 - fx), (fy if dy_ else 1 - fy)
            weight = xp.where(inside, wx * wy, 0.0)
            vals = xp.take_along_axis(flat, xp.broadcast_to(idx[:, None, :], (n, c, p)), axis=2)
            y = y + weight[:, None, :] * vals
            corners.append((idx, inside, vals, weight, wx, wy, dx_, dy_))
        self._cache = (tuple(x.shape), tuple(grid.shape), scale, corners)
        return xp.reshape(y, (n, c) + tuple(grid.shape[1:3]))

    def backward(self, dy: Any) -> tuple[Any, Any]:  # type: ignore[override]
        dy = untracked(dy)
        x_shape, g_shape, scale, corners = self._need(self._cache)
        n, c, h, w = x_shape
        p = g_shape[1] * g_shape[2]
        xp = self._check_grad(dy, (n, c) + g_shape[1:3])
        dy = xp.reshape(dy, (n, c, p))
        offsets = xp.reshape(xp.arange(n, dtype=xp.int64, device=dy.device) * (h * w), (n, 1))
        rows, ids, dgx, dgy = [], [], 0.0, 0.0
        for idx, inside, vals, weight, wx, wy, dx_, dy_ in corners:
            rows.append(xp.reshape(xp.permute_dims(weight[:, None, :] * dy, (0, 2, 1)), (n * p, c)))
            ids.append(xp.reshape(idx + offsets, (n * p,)))
            seen = xp.where(inside[:, None, :], vals * dy, 0.0)
            dgx = dgx + xp.sum(seen, axis=1) * (wy if dx_ else -wy)
            dgy = dgy + xp.sum(seen, axis=1) * (wx if dy_ else -wx)
        summed = rows_added(xp, xp.concat(ids), xp.concat(rows), n * h * w)
        dx = xp.permute_dims(xp.reshape(summed, (n, h * w, c)), (0, 2, 1))
        dgrid = xp.stack([dgx * scale[0], dgy * scale[1]], axis=-1)
        return xp.reshape(dx, x_shape), xp.reshape(dgrid, g_shape)
