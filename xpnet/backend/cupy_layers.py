"""CuPy kernels for the layers that otherwise launch one kernel per array operation: softmax
cross-entropy of integer labels, Softmax along the last axis (rows of up to ``MAX_CLASSES``), Embedding's
backward (a segment sum by id over the sorted ids), ReLU, MaxPool2d, GlobalAvgPool's backward, Dropout, the
uniform numbers of ``xpnet.backend.random``, Conv2d's im2col's inverses (sources in
:mod:`xpnet.backend.cupy_kernels`; the normalisation layers' in :mod:`xpnet.backend.cupy_norms`, the recurrent
steps' in :mod:`xpnet.backend.cupy_cells`, which build theirs with :func:`_launch`). Each function has the signature
and the results of the portable function it stands for (``xpnet.losses``, ``xpnet.layers.activations``,
``.softmax``, ``.embedding``, ``.pool``, ``._im2col``) and of the Numba kernels that do the same for NumPy
(:mod:`xpnet.backend.numba_kernels`), and is tested equal to it; other dtypes and layouts take the portable path
(the ``accepts`` functions below).

Launches of a 784-100-10 MLP's SGD step at batch 100 inside ``xn.train`` (the kernels, reductions and
array operations CuPy starts, counted on the fake CuPy of ``tests/fake_cupy`` by
``tests/test_cupy_layers.py``): 49 with the portable loss and ReLU, 21 with these kernels and the epoch
sums' (``fast_cupy.epoch_sums``), 18 with SGD's update of the four parameters in one kernel
(``fast_cupy.sgd_updates``). The loss takes three (the count of labels that are not ``ignore_index``,
one thread per row writing its loss, dy and whether its first maximum is at the label, the sum of the
losses), its backward none for ``dout = 1`` (dy was written by the forward), and the trainer's sums two
(``count_nonzero`` of the rows' hits, then one kernel adding the batch's loss and correct count to the
epoch's) instead of six (``argmax``, ``==``, ``count_nonzero``, the loss's product and two adds). The recurrent
layers' time steps are in :mod:`xpnet.backend.cupy_cells`.

Kernels are built on first use for each dtype and kept. Raw kernels get contiguous arrays (they read
memory by index); the accepts functions send other layouts to the portable path.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import cupy

from .cupy_kernels import C_TYPES, ELEMENTWISE, RAW, REDUCTION
from .kept import kept

# Rows of more classes than this take the portable loss (and Softmax): one thread walks its row three times.
MAX_CLASSES = 1024
_BLOCK = 256
_KERNELS: dict[Any, Any] = {}


def elementwise(name: str) -> Any:
    kernel = _KERNELS.get(name)
    if kernel is None:
        in_params, out_params, body = ELEMENTWISE[name]
        kernel = _KERNELS[name] = cupy.ElementwiseKernel(in_params, out_params, body, f"xpnet_{name}")
    return kernel


def reduction(name: str) -> Any:
    kernel = _KERNELS.get(name)
    if kernel is None:
        kernel = _KERNELS[name] = cupy.ReductionKernel(*REDUCTION[name], name=f"xpnet_{name}")
    return kernel


def _launch(name: str, threads: int, args: tuple[Any, ...], one_block: bool = False, **types: Any) -> None:
    """The raw kernel ``name`` for the dtypes ``types`` (T=..., L=..., I=...), one thread per index below
    ``threads`` (``one_block``: one block of up to _BLOCK threads, each taking every _BLOCK-th index)."""
    key = (name, *(str(cupy.dtype(t)) for t in types.values()))
    kernel = _KERNELS.get(key)
    if kernel is None:
        typedefs = "".join(f"typedef {C_TYPES[str(cupy.dtype(t))]} {alias};\n" for alias, t in types.items())
        kernel = _KERNELS[key] = cupy.RawKernel(typedefs + RAW[name], f"xpnet_{name}")
    if one_block:
        kernel((1,), (max(1, min(threads, _BLOCK)),), args)
    elif threads:
        kernel(((threads + _BLOCK - 1) // _BLOCK,), (_BLOCK,), args)


def _floats(*arrays: Any) -> bool:
    """float32/float64 CuPy arrays of one dtype, C-contiguous."""
    return all(isinstance(a, cupy.ndarray) and a.dtype == arrays[0].dtype and a.flags.c_contiguous
               for a in arrays) and arrays[0].dtype in (cupy.float32, cupy.float64)


# -- softmax cross-entropy of integer labels ---------------------------------------------------------


def _loss_ready(y2: Any, labels: Any, ignore_index: int, label_smoothing: float) -> bool:
    return (_floats(y2) and 1 <= y2.shape[1] <= MAX_CLASSES and y2.shape[0] >= 1
            and isinstance(labels, cupy.ndarray) and labels.dtype in (cupy.int32, cupy.int64)
            and labels.flags.c_contiguous and -2 ** 63 <= ignore_index < 2 ** 63)


# A count the caller knows on the host, as the kernel reads it (1,): per (count, label dtype, GPU), made once.
_COUNTS: dict[tuple[int, str, int], Any] = {}


def softmax_cross_entropy(y2: Any, labels: Any, ignore_index: int, label_smoothing: float,
                          count: int | None = None) -> tuple[Any, Any, Any]:
    """``xpnet.losses.cross_entropy_labels`` and its backward for dout = 1 in one pass over the logits
    (M, C): (the mean loss (0-d), dy (M, C), and for each row whether its first maximum is at the label
    (M,) bool). Rows weigh 1 / (the number of labels that are not ``ignore_index``), ignored rows 0: counted by a
    reduction, or ``count`` where the caller knows it (labels checked once to hold no ``ignore_index``: M), kept
    on the device per value, so that such a step launches no count."""
    m, c = y2.shape
    if count is None:
        valid = reduction("count_valid")(labels, ignore_index)
    else:
        valid = kept(_COUNTS, (int(count), str(labels.dtype), int(labels.device.id)),
                     lambda: cupy.full((1,), int(count), dtype=labels.dtype))
    loss, dy, hit = cupy.empty(m, y2.dtype), cupy.empty_like(y2), cupy.empty(m, cupy.bool_)
    _launch("softmax_cross_entropy", m, (y2, labels, valid, loss, dy, hit, int(ignore_index),
                                         float(label_smoothing), m, c), T=y2.dtype, L=labels.dtype)
    return cupy.sum(loss), dy, hit


# -- Softmax along the last axis ----------------------------------------------------------------------


def _softmax_ready(x: Any, axis: int) -> bool:
    return _floats(x) and x.ndim >= 1 and axis == x.ndim - 1 and x.size > 0 and x.shape[-1] <= MAX_CLASSES


def softmax(x: Any, axis: int) -> Any:
    """See ``xpnet.layers.softmax.softmax``: one kernel, a thread per row (the portable path launches eight)."""
    y = cupy.empty_like(x)
    c = x.shape[-1]
    _launch("softmax", x.size // c, (x, y, x.size // c, c), T=x.dtype)
    return y


def _softmax_backward_ready(y: Any, dy: Any, axis: int) -> bool:
    return _softmax_ready(y, axis) and _floats(y, dy) and tuple(dy.shape) == tuple(y.shape)


def softmax_backward(y: Any, dy: Any, axis: int) -> Any:
    """See ``xpnet.layers.softmax.softmax_backward``: one kernel, a thread per row (the portable path launches
    four)."""
    dx = cupy.empty_like(y)
    c = y.shape[-1]
    _launch("softmax_backward", y.size // c, (y, dy, dx, y.size // c, c), T=y.dtype)
    return dx


# -- Embedding's backward (rows added by index) ------------------------------------------------------

# The ids are sorted in chunks of at least this many positions (see _chunk).
SORT_CHUNK = 1024


def _embedding_ready(ids: Any, dy: Any, num_embeddings: int) -> bool:
    return (isinstance(ids, cupy.ndarray) and ids.ndim == 1 and ids.dtype in (cupy.int32, cupy.int64)
            and ids.flags.c_contiguous and _floats(dy) and dy.ndim == 2 and dy.shape[0] == ids.shape[0])


def _chunk(m: int) -> int:
    """The sort's chunk for M ids: a power of two about 4 sqrt(M), at least SORT_CHUNK, so that a thread's scan of its
    chunk and its binary searches in the M / chunk others stay about even (O(M^1.5) work in all)."""
    return max(SORT_CHUNK, 1 << ((m.bit_length() + 1) // 2 + 2))


def embedding_backward(ids: Any, dy: Any, num_embeddings: int) -> Any:
    """See ``xpnet.layers.embedding.embedding_backward``: dW (V, D) as a segment sum of dy's rows (M, D) by id, each
    id's rows added in the order of their positions (deterministic: no atomics, no cuBLAS, nothing read back, so it
    runs inside a captured graph): a stable sort of the ids in chunks, its merge (when M passes one chunk), then a
    thread per element of dW, which it writes whole (no zeros first): two or three kernels, O(M^1.5 + V * D log M +
    M * D) work where the portable one-hot products are O(V * M * D)."""
    m, d = dy.shape
    dw = cupy.empty((num_embeddings, d), dy.dtype)
    chunk = _chunk(m)
    keys, order = cupy.empty(m, ids.dtype), cupy.empty(m, cupy.int64)
    _launch("sort_chunks", m, (ids, keys, order, m, chunk), L=ids.dtype)
    if m > chunk:
        chunked = keys, order
        keys, order = cupy.empty(m, ids.dtype), cupy.empty(m, cupy.int64)
        _launch("merge_chunks", m, (*chunked, keys, order, m, chunk), L=ids.dtype)
    _launch("segment_rows", num_embeddings * d, (keys, order, dy, dw, m, d, int(num_embeddings)), T=dy.dtype,
            L=ids.dtype)
    return dw


# -- ReLU --------------------------------------------------------------------------------------------


def _relu_ready(x: Any) -> bool:
    return _floats(x)


def relu_forward(x: Any) -> tuple[Any, Any]:
    """See ``xpnet.layers.activations.relu_forward``: y and the mask in one pass."""
    y, mask = cupy.empty_like(x), cupy.empty(x.shape, cupy.bool_)
    _launch("relu_forward", x.size, (x, y, mask, x.size), T=x.dtype)
    return y, mask


def _relu_backward_ready(dy: Any, mask: Any) -> bool:
    return (isinstance(dy, cupy.ndarray) and dy.dtype in (cupy.float32, cupy.float64)
            and isinstance(mask, cupy.ndarray) and mask.dtype == cupy.bool_)


def relu_backward(dy: Any, mask: Any) -> Any:
    """See ``xpnet.layers.activations.relu_backward``: dy * mask, one kernel."""
    dx = cupy.empty_like(dy)
    elementwise("relu_backward")(dy, mask, dx)
    return dx


# -- MaxPool2d over (N, C, H, W) ---------------------------------------------------------------------


def _index_ready(dtype: Any) -> bool:
    return cupy.dtype(dtype) in (cupy.int8, cupy.int32)


def _pool_ready(x: Any, kernel: Any, stride: Any, padding: Any, out_hw: Any, index_dtype: Any,
                dilation: Any = (1, 1)) -> bool:
    """Contiguous windows (a dilated MaxPool2d runs as portable code) of floats, int8 or int32 offsets."""
    return tuple(dilation) == (1, 1) and _floats(x) and _index_ready(index_dtype)


def _geometry(x_shape: tuple[int, ...], out_hw: Any, kernel: Any, stride: Any, padding: Any) -> tuple[int, ...]:
    n, c, h, w = x_shape
    return (n * c, h, w, *out_hw, *kernel, *stride, *padding)


def maxpool2d_forward(x: Any, kernel: Any, stride: Any, padding: Any, out_hw: Any, index_dtype: Any,
                      dilation: Any = (1, 1)) -> tuple[Any, Any]:
    """See ``xpnet.layers.pool.maxpool2d_forward``: one thread per output; ``dilation`` (1, 1) only
    (``_pool_ready`` sends the others to the portable path)."""
    shape = (x.shape[0], x.shape[1], *out_hw)
    y, first = cupy.empty(shape, x.dtype), cupy.empty(shape, index_dtype)
    geometry = _geometry(x.shape, out_hw, kernel, stride, padding)
    _launch("maxpool2d_forward", y.size, (x, y, first, x.dtype.type(-math.inf), *geometry), T=x.dtype, I=index_dtype)
    return y, first


def _pool_backward_ready(dy: Any, first: Any, x_shape: Any, kernel: Any, stride: Any, padding: Any,
                         dilation: Any = (1, 1)) -> bool:
    return (tuple(dilation) == (1, 1) and _floats(dy) and isinstance(first, cupy.ndarray)
            and first.flags.c_contiguous and _index_ready(first.dtype))


def maxpool2d_backward(dy: Any, first: Any, x_shape: tuple[int, ...], kernel: Any, stride: Any,
                       padding: Any, dilation: Any = (1, 1)) -> Any:
    """See ``xpnet.layers.pool.maxpool2d_backward``: one thread per input pixel, gathering from the
    windows that hold it (no atomics); ``dilation`` (1, 1) only, as the forward."""
    dx = cupy.empty(tuple(x_shape), dy.dtype)
    geometry = _geometry(tuple(x_shape), dy.shape[2:], kernel, stride, padding)
    _launch("maxpool2d_backward", dx.size, (dy, first, dx, *geometry), T=dy.dtype, I=first.dtype)
    return dx


# -- GlobalAvgPool's backward ------------------------------------------------------------------------


def _spread_ready(dy: Any, shape: tuple[int, int, int, int]) -> bool:
    return _floats(dy) and tuple(dy.shape) == tuple(shape[:2])


def global_avg_pool_backward(dy: Any, shape: tuple[int, int, int, int]) -> Any:
    """See ``xpnet.layers.pool.global_avg_pool_backward``: one kernel (the portable path launches three)."""
    dx = cupy.empty(tuple(shape), dy.dtype)
    _launch("spread_mean", dx.size, (dy, dx, 1.0 / (shape[2] * shape[3]), shape[2] * shape[3], dx.size), T=dy.dtype)
    return dx


# -- random numbers and Dropout ---------------------------------------------------------------------


def philox_seed(state: Any, key: int) -> None:
    """Write ``{key, 0}`` into the draw state (uint64 (2,), on the current GPU) with one kernel: no copy
    from the host, so seeding never waits for what is queued before it."""
    _launch("philox_seed", 1, (state, int(key)))


def _count_draw(state: Any) -> None:
    """The draw count of ``state`` up by one, one kernel on its view (``state[1:] += 1`` writes the view back into
    the state with a second, a copy)."""
    count = state[1:]
    count += cupy.uint64(1)


# A draw of up to this many numbers runs as one block of _BLOCK threads that also moves the draw count on (one launch,
# each thread taking up to 8 counters): past it, a grid of blocks and the count's own launch (no block can write the
# count while another may still have to read it).
ONE_BLOCK_DRAW = 4 * _BLOCK * 8


def _draw(name: str, n: int, args: tuple[Any, ...], state: Any, dtype: Any) -> None:
    """The draw kernel ``name`` over ``n`` numbers (``args`` its arguments), the count of ``state`` then up by one:
    one launch up to ONE_BLOCK_DRAW numbers (``name``_counted), else two; the same numbers either way."""
    if n <= ONE_BLOCK_DRAW:
        _launch(f"{name}_counted", (n + 3) // 4, args, one_block=True, T=dtype)
        return
    _launch(name, (n + 3) // 4, args, T=dtype)
    _count_draw(state)


def philox_uniform(state: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """Uniform numbers in [0, 1) of ``shape`` and ``dtype`` (float32/float64) from the Philox draw state
    ``{key, draw count}`` (uint64 (2,), on the current GPU; see ``cupy_kernels._PHILOX``), whose count
    then goes up by one: one launch up to ONE_BLOCK_DRAW numbers, else two, each reading the state on the device
    (capturable)."""
    out = cupy.empty(shape, dtype)
    _draw("philox_uniform", out.size, (out, state, out.size), state, out.dtype)
    return out


def _dropout_ready(x: Any, p: float, kept: float, rng: Any, owner: Any) -> bool:
    return _floats(x)


def dropout_forward(x: Any, p: float, kept: float, rng: Any, owner: Any) -> tuple[Any, Any]:
    """See ``xpnet.layers.dropout.dropout_forward``: the numbers of :func:`philox_uniform`, the mask, the
    scale and y in one kernel (the portable path on CuPy launches five), the draw count moved on inside it up to
    ONE_BLOCK_DRAW numbers, else by a second launch."""
    from .random import cupy_draw_state  # noqa: PLC0415 - random imports this module on CuPy

    state = cupy_draw_state(rng, x, owner)
    y, scale = cupy.empty_like(x), cupy.empty_like(x)
    _draw("dropout_forward", x.size, (x, y, scale, state, float(p), float(kept), x.size), state, x.dtype)
    return y, scale


# -- Conv2d's input gradient ---------------------------------------------------------------------------


def _shifted_sums_ready(dcol: Any, x_shape: tuple[int, ...], kernel: Any, padding: Any, dilation: Any, rows: int,
                        wp: int) -> bool:
    return _floats(dcol) and dcol.ndim == 3 and len(x_shape) == 4


def conv_shifted_sums(dcol: Any, x_shape: tuple[int, ...], kernel: Any, padding: Any, dilation: Any, rows: int,
                      wp: int) -> Any:
    """See ``xpnet.layers._im2col.shifted_sums_portable``: dx (N, C, H, W), C-contiguous, in one kernel (the portable
    path launches a zeros and kh*kw adds)."""
    n, c, h, w = x_shape
    dx = cupy.empty(tuple(x_shape), dcol.dtype)
    _launch("shifted_sums", dx.size, (dcol, dx, n, c, h, w, kernel[0], kernel[1], padding[0], padding[1], dilation[0],
                                      dilation[1], rows, wp, dx.size), T=dx.dtype)
    return dx


def _flat_dy_ready(dy: Any, rows: int, wp: int) -> bool:
    return _floats(dy) and dy.ndim == 4


def conv_flat_dy(dy: Any, rows: int, wp: int) -> Any:
    """See ``xpnet.layers._im2col.flat_dy_portable``: (F, N*rows*wp) in one kernel (the portable path launches a zeros
    and a copy into it)."""
    n, f, oh, ow = dy.shape
    flat = cupy.empty((f, n * rows * wp), dy.dtype)
    _launch("flat_dy", flat.size, (dy, flat, n, f, oh, ow, rows, wp, flat.size), T=dy.dtype)
    return flat


def _col2im_ready(col: Any, x_shape: tuple[int, ...], kernel: Any, stride: Any, padding: Any, per_sample: bool = False,
                  dilation: Any = (1, 1)) -> bool:
    return _floats(col) and col.ndim == (3 if per_sample else 2) and len(x_shape) == 4


def col2im(col: Any, x_shape: tuple[int, ...], kernel: Any, stride: Any, padding: Any, per_sample: bool = False,
           dilation: Any = (1, 1)) -> Any:
    """See ``xpnet.layers._im2col.col2im_portable``: dx (N, C, H, W), C-contiguous, in one kernel (the portable path
    launches a zeros and kh*kw adds)."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    dx = cupy.empty(tuple(x_shape), col.dtype)
    _launch("col2im", dx.size, (col, dx, n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, int(per_sample), dx.size),
            T=dx.dtype)
    return dx


def register(add: Callable[..., Any]) -> None:
    add("softmax_cross_entropy", softmax_cross_entropy, accepts=_loss_ready)
    for op, accepts in (("relu_forward", _relu_ready), ("relu_backward", _relu_backward_ready),
                        ("maxpool2d_forward", _pool_ready), ("maxpool2d_backward", _pool_backward_ready),
                        ("dropout_forward", _dropout_ready), ("softmax", _softmax_ready),
                        ("softmax_backward", _softmax_backward_ready), ("embedding_backward", _embedding_ready),
                        ("conv_shifted_sums", _shifted_sums_ready), ("col2im", _col2im_ready),
                        ("conv_flat_dy", _flat_dy_ready), ("global_avg_pool_backward", _spread_ready)):
        add(op, globals()[op], accepts)
