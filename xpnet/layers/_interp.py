"""PyTorch's source pixels and weights along one axis of an image, for Upsample (from aten/src/ATen/native/UpSample.h
and UpSampleKernel.cpp: ``nearest_idx``, ``nearest_exact_idx``, ``compute_source_index_and_lambda``, the cubic
``compute_indices_weights``) and adaptive average pooling (AdaptivePooling.h's windows), and the (out, in) matrices
Upsample and AdaptiveAvgPool2d multiply by: y = A_h @ x @ A_w^T, dx = A_h^T @ dy @ A_w.

The rows are plain Python on the host, once per input size: each output index reads k <= 4 input indices with
weights (``matrix`` makes them an (out, in) matrix on the device), computed in the input's precision as PyTorch
computes them (float32 arithmetic is each double result rounded to float32, which is exact for one +, -, * or / of
float32 values). ``scale`` is the user's scale factor for the axis where PyTorch's
kernel receives it (a ``scale_factor`` without ``recompute_scale_factor``), else None: the ratio is then in / out.

Large images are resized by their taps instead of the matrices (``banded``): along each axis, y = the sum over
j < k of weight[:, j] * x taken at index[:, j], and the backward is the same gather over the rows of A^T (each
input index's outputs and weights, made on the host), so no scatter-add is needed; both equal the products.
"""

from __future__ import annotations

import math
import operator
import struct
from typing import Any, Callable

from ..backend import fast_path, index_dtype, namespace
from ._im2col import Pair

Row = list[tuple[int, float]]  # (input index, weight) pairs of one output index
Band = tuple[Any, Any]  # (index, weight), both (out, k) on the device: the rows of a matrix, padded to k taps
# ((oh, ow), (sh, sw) where a broadcast repeats the pixels else None, (A_h, A_w) or (None, None), the bands of
# A_h, A_w, A_h^T, A_w^T or None)
Plan = tuple[Pair, "Pair | None", tuple[Any, Any], "tuple[Band, Band, Band, Band] | None"]
# The smallest side from which a NumPy image is resized by its taps where Numba is installed. Measured with
# benchmarks/upsample.py (bilinear x2, forward + backward): the taps win from 16 x 16 on, the products below.
BANDED_FROM = 16


def float32(v: float) -> float:
    """``v`` rounded to the nearest float32, as C's cast."""
    return struct.unpack("f", struct.pack("f", v))[0]


def rounding(dtype: str) -> Callable[[float], float]:
    """How each arithmetic result is rounded for an input of ``dtype`` (PyTorch's opmath is float32 below float64)."""
    return float if dtype == "float64" else float32


def output_size(in_size: int, size: int | None, scale: float) -> int:
    """PyTorch's output length: ``size``, else floor(in_size * scale) in double."""
    return size if size is not None else int(in_size * scale)


def nearest(in_size: int, out_size: int, scale: float | None, exact: bool) -> list[int]:
    """The source index of each output index: ``floorf(dst * s)`` ('nearest'), ``floorf((dst + 0.5) * s)``
    ('nearest-exact', the product in double then cast to float32), s = float32(1 / scale or in / out)."""
    ratio = float32(1.0 / scale if scale else in_size / out_size)
    if exact:
        return [min(math.floor(float32((dst + 0.5) * ratio)), in_size - 1) for dst in range(out_size)]
    if out_size == in_size:
        return list(range(out_size))
    if out_size == 2 * in_size:
        return [dst >> 1 for dst in range(out_size)]
    return [min(math.floor(float32(dst * ratio)), in_size - 1) for dst in range(out_size)]


def _ratio(in_size: int, out_size: int, align_corners: bool, scale: float | None, rnd: Callable) -> float:
    """area_pixel_compute_scale: input pixels per output pixel."""
    if align_corners:
        return rnd((in_size - 1) / (out_size - 1)) if out_size > 1 else 0.0
    return rnd(1.0 / scale) if scale else rnd(in_size / out_size)


def _source(ratio: float, dst: int, align_corners: bool, rnd: Callable) -> float:
    """area_pixel_compute_source_index before its clamp: the output pixel's centre in input coordinates."""
    return rnd(ratio * dst) if align_corners else rnd(rnd(ratio * rnd(dst + 0.5)) - 0.5)


def linear(in_size: int, out_size: int, align_corners: bool, scale: float | None, dtype: str) -> list[Row]:
    """Two (index, weight) pairs per output index: the pixels either side of its source and their weights."""
    if out_size == in_size:
        return [[(dst, 1.0)] for dst in range(out_size)]
    rnd = rounding(dtype)
    ratio, rows = _ratio(in_size, out_size, align_corners, scale, rnd), []
    for dst in range(out_size):
        src = max(_source(ratio, dst, align_corners, rnd), 0.0)
        i0 = min(int(src), in_size - 1)
        lambda1 = min(max(rnd(src - i0), 0.0), 1.0)
        rows.append([(i0, rnd(1.0 - lambda1)), (i0 + (i0 < in_size - 1), lambda1)])
    return rows


def _cubic_weights(t: float, rnd: Callable) -> list[float]:
    """get_cubic_upsample_coefficients with A = -0.75: the weights of pixels -1, 0, 1, 2 around the source."""
    a = -0.75

    def near(x: float) -> float:  # cubic_convolution1, |x| <= 1: ((A + 2) * x - (A + 3)) * x * x + 1
        return rnd(rnd(rnd(rnd(rnd((a + 2) * x) - (a + 3)) * x) * x) + 1)

    def far(x: float) -> float:  # cubic_convolution2, 1 < |x| < 2: ((A * x - 5A) * x + 8A) * x - 4A
        return rnd(rnd(rnd(rnd(rnd(rnd(a * x) - 5 * a) * x) + 8 * a) * x) - 4 * a)

    return [far(rnd(t + 1.0)), near(t), near(rnd(1.0 - t)), far(rnd(rnd(1.0 - t) + 1.0))]


def cubic(in_size: int, out_size: int, align_corners: bool, scale: float | None, dtype: str) -> list[Row]:
    """Four (index, weight) pairs per output index, the indices clamped to the image (edge pixels repeat)."""
    rnd = rounding(dtype)
    ratio, rows = _ratio(in_size, out_size, align_corners, scale, rnd), []
    for dst in range(out_size):
        src = _source(ratio, dst, align_corners, rnd)
        i = min(math.floor(float32(src)), in_size - 1)
        t = min(max(rnd(src - i), 0.0), 1.0)
        rows.append([(max(min(i + j - 1, in_size - 1), 0), w) for j, w in enumerate(_cubic_weights(t, rnd))])
    return rows


def window(i: int, in_size: int, out_size: int) -> tuple[int, int]:
    """PyTorch's adaptive pooling window of output index i, [floor(i * in / out), ceil((i + 1) * in / out)), in
    integers as AdaptivePooling.h's start_index and end_index."""
    return i * in_size // out_size, -(-(i + 1) * in_size // out_size)


def adaptive(in_size: int, out_size: int) -> list[Row]:
    """Adaptive average pooling: each output index averages its window, weights 1 / the window's length."""
    rows = []
    for i in range(out_size):
        start, stop = window(i, in_size, out_size)
        rows.append([(j, 1.0 / (stop - start)) for j in range(start, stop)])
    return rows


def whole_repeats(rows: list[list[Row]], sizes: tuple[int, ...], out: Pair) -> Pair | None:
    """(sh, sw) where each axis reads input index dst // s with weight 1, else None."""
    repeats = []
    for axis_rows, n, o in zip(rows, sizes, out):
        s = o // n
        if o % n or any(row != [(dst // s, 1.0)] for dst, row in enumerate(axis_rows)):
            return None
        repeats.append(s)
    return repeats[0], repeats[1]


def band(rows: list[Row], x: Any) -> Band:
    """The (out, k) indices and weights of ``rows`` on x's device in x's dtype, a shorter row padded with its last
    index at weight 0."""
    xp, k = namespace(x), max(len(row) for row in rows)
    padded = [row + [(row[-1][0], 0.0)] * (k - len(row)) for row in rows]
    index = xp.asarray([[i for i, _ in row] for row in padded], dtype=index_dtype(xp), device=x.device)
    return index, xp.asarray([[w for _, w in row] for row in padded], dtype=x.dtype, device=x.device)


def matrix(rows: list[Row], in_size: int, x: Any) -> Any:
    """The (out, in) matrix of ``rows`` on x's device, in x's dtype, built there from their ``band`` (weights of
    one input index added), so that the host handles k numbers a row, not in_size."""
    xp = namespace(x)
    index, weight = band(rows, x)
    hits = index[:, :, None] == xp.arange(in_size, dtype=index.dtype, device=x.device)
    return xp.sum(xp.where(hits, weight[:, :, None], xp.zeros((), dtype=x.dtype, device=x.device)), axis=1)


def plan_key(x: Any) -> tuple[Any, ...]:
    """What a plan is made for: x's image size, array type, dtype and device, in a key that a deep copy of the layer
    can copy (summary, gradcheck and xpnet.testing copy models; JAX's Device object refuses it)."""
    return tuple(x.shape[2:]), type(x), str(x.dtype), str(x.device)


def banded(x: Any) -> bool:
    """Whether to resize x by its taps rather than the two products: where a compiled kernel gathers them
    (NumPy with Numba; the portable gathers measured slower than the products on NumPy and PyTorch's CPU) and
    the image is large enough (``BANDED_FROM``)."""
    return min(x.shape[2:]) >= BANDED_FROM and fast_path("resize_taps", namespace(x)) is not None


def transposed(rows: list[Row], in_size: int) -> list[Row]:
    """The rows of A^T: each input index's (output index, weight) pairs; an index no output reads gets weight 0."""
    cols: list[Row] = [[] for _ in range(in_size)]
    for dst, row in enumerate(rows):
        for i, w in row:
            cols[i].append((dst, w))
    return [col or [(0, 0.0)] for col in cols]


def plan(rows: list[list[Row]], x: Any) -> Plan:
    """The plan of resizing x (N, C, H, W) by the rows of each axis: a broadcast where they repeat whole pixels,
    else the taps of A_h, A_w and their transposes where ``banded(x)``, else the two matrices, on x's device."""
    in_hw = tuple(x.shape[2:])
    out = (len(rows[0]), len(rows[1]))
    repeat = whole_repeats(rows, in_hw, out)
    if repeat is not None:
        return out, repeat, (None, None), None
    if banded(x):
        bands = [band(r, x) for r in rows] + [band(transposed(r, i), x) for r, i in zip(rows, in_hw)]
        return out, None, (None, None), tuple(bands)
    return out, None, tuple(matrix(r, i, x) for r, i in zip(rows, in_hw)), None


def resize(xp: Any, x: Any, plan: Plan) -> Any:
    """y (N, C, oh, ow) = A_h @ x @ A_w^T on each image of x (by products or taps), or the pixels repeated
    (sh, sw) times."""
    (oh, ow), repeat, (a_h, a_w), bands = plan
    if bands is not None:
        along = fast_path("resize_taps", xp, taps)
        return along(along(x, *bands[0], 2), *bands[1], 3)
    if repeat is None:
        return _sandwich(xp, x, a_h, a_w)
    n, c, h, w = x.shape
    return xp.reshape(xp.broadcast_to(xp.reshape(x, (n, c, h, 1, w, 1)), (n, c, h, repeat[0], w, repeat[1])),
                      (n, c, oh, ow))


def resize_back(xp: Any, dy: Any, plan: Plan, in_hw: Pair) -> Any:
    """dx (N, C, H, W) = A_h^T @ dy @ A_w (by products or taps), or each (sh, sw) block of dy summed."""
    _, repeat, (a_h, a_w), bands = plan
    if bands is not None:
        along = fast_path("resize_taps", xp, taps)
        return along(along(dy, *bands[2], 2), *bands[3], 3)
    if repeat is None:
        return _sandwich(xp, dy, a_h.T, a_w.T)
    n, c = dy.shape[:2]
    return xp.sum(xp.reshape(dy, (n, c, in_hw[0], repeat[0], in_hw[1], repeat[1])), axis=(3, 5))


def taps(v: Any, index: Any, weight: Any, axis: int) -> Any:
    """v (N, C, H, W) resized along ``axis`` (2 or 3) by its (out, k) taps: the sum over j of weight[:, j] times
    v taken at index[:, j] (Numba's kernel on NumPy: ``xpnet.backend.numba_resize``)."""
    xp = namespace(v)
    y = None
    for j in range(index.shape[1]):
        w = weight[:, j] if axis == 3 else weight[:, j:j + 1]
        term = xp.take(v, index[:, j], axis=axis) * w
        y = term if y is None else y + term
    return y


def layer_backward(layer: Any, dy: Any) -> Any:
    """dx of a layer that resized its last input by its cached plan (Upsample, AdaptiveAvgPool2d: ``_shape``, and
    ``_plan`` as (key, plan)), after checking dy's shape."""
    n, c, h, w = layer._need(layer._shape)
    plan = layer._plan[1]
    xp = layer._check_grad(dy, (n, c, *plan[0]))
    return resize_back(xp, dy, plan, (h, w))


def _sandwich(xp: Any, v: Any, left: Any, right: Any) -> Any:
    """left @ v @ right^T for each image of v: (N, C, h, w) -> (N, C, oh, ow) for left (oh, h), right (ow, w).
    Two 2-d products over all images at once (NumPy's broadcast 2-d @ 3-d product is some 50 times slower)."""
    n, c, h, w = v.shape
    oh, ow = left.shape[0], right.shape[0]
    matmul = fast_path("matmul", xp, operator.matmul)
    cols = matmul(xp.reshape(xp.permute_dims(v, (0, 1, 3, 2)), (n * c * w, h)), left.T)
    rows = xp.reshape(xp.permute_dims(xp.reshape(cols, (n * c, w, oh)), (0, 2, 1)), (n * c * oh, w))
    return xp.reshape(matmul(rows, right.T), (n, c, oh, ow))
