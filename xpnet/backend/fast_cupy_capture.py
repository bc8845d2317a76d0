"""CuPy's matrix product for a step being captured as a CUDA graph (source: :mod:`xpnet.backend.matmul_kernel`).

``matmul(a, b)`` is ``a @ b`` (cuBLAS) whenever the current stream is not capturing, and xpnet's own
kernel while it is (and in the warm-up step before a capture, :func:`products_as_captured`), where CuPy
refuses cuBLAS: 2-d products (Linear's) and stacks of them (Conv2d's per-sample products); ``heads_matmul``
the same for MultiheadAttention's (N, heads, m, k) products. Layers ask for it through the registry
(``fast_path("matmul", xp, operator.matmul)``), so no layer names CuPy. Imported only when a CuPy array
asks for it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import cupy

from .matmul_kernel import matmul_name, matmul_source, plan

_KERNELS: dict[str, Any] = {}
_as_captured = False  # within products_as_captured(): the products a capture would take, eagerly


@contextlib.contextmanager
def products_as_captured(on: bool = True) -> Iterator[None]:
    """Within (where ``on``), :func:`matmul` and :func:`heads_matmul` take xpnet's kernel as while capturing, but
    run it: a warm-up step so builds and loads every kernel the capture will record (NVRTC's compile and the
    module's load then happen before the capture, not inside it) and leaves their blocks in the pool."""
    global _as_captured
    before, _as_captured = _as_captured, bool(on) or _as_captured
    try:
        yield
    finally:
        _as_captured = before


def capturing() -> bool:
    """Whether the current CuPy stream is capturing a graph (the legacy default stream never is)."""
    stream = cupy.cuda.get_current_stream()
    return stream.ptr != 0 and bool(stream.is_capturing())


def _kernel_takes(a: Any, b: Any) -> bool:
    """Whether :func:`kernel_matmul` multiplies ``a`` and ``b``: float32 or float64 of one dtype, each 2-d
    or 3-d (a stack of matrices, or one of them broadcast over the other's stack)."""
    return a.ndim in (2, 3) and b.ndim in (2, 3) and a.dtype == b.dtype and a.dtype.name in ("float32", "float64")


def kernel_matmul(a: Any, b: Any) -> Any:
    """``a @ b`` by xpnet's kernel (any strides, no copy) for (m, k) @ (k, n), or stacks of them:
    (batch, m, k) @ (batch, k, n), either side 2-d or of batch 1 broadcast over the other's; one launch."""
    stacks = [x.shape[0] for x in (a, b) if x.ndim == 3]
    batch = max(stacks, default=1)
    if not _kernel_takes(a, b) or a.shape[-1] != b.shape[-2] or any(s not in (1, batch) for s in stacks):
        raise ValueError(f"kernel_matmul: expected (m, k) @ (k, n) float32 or float64 arrays of one dtype (or "
                         f"stacks of them, (batch, m, k) @ (batch, k, n)), got {a.dtype}{tuple(a.shape)} @ "
                         f"{b.dtype}{tuple(b.shape)}")
    name = a.dtype.name
    kernel = _KERNELS.get(name)
    if kernel is None:
        kernel = _KERNELS[name] = cupy.RawKernel(matmul_source(name), matmul_name(name))
    (m, k), n = a.shape[-2:], b.shape[-1]
    shape = (batch, m, n) if stacks else (m, n)
    if not (m and n and batch):
        return cupy.empty(shape, dtype=a.dtype)
    size = a.itemsize
    grid, block, chunk, splits = plan(m, n, k, batch)
    c = cupy.empty((batch, splits, m, n), dtype=a.dtype)
    sab, sbb = ((x.strides[0] // size if x.ndim == 3 and x.shape[0] == batch > 1 else 0) for x in (a, b))
    kernel(grid, block, (a, b, c, m, n, k, a.strides[-2] // size, a.strides[-1] // size,
                         b.strides[-2] // size, b.strides[-1] // size, chunk, splits, sab, sbb))
    c = c[:, 0] if splits == 1 else cupy.sum(c, axis=1)
    return c if stacks else c[0]


def matmul(a: Any, b: Any) -> Any:
    """``a @ b``: cuBLAS, or xpnet's kernel while the current stream captures a graph."""
    if (_as_captured or capturing()) and _kernel_takes(a, b):
        return kernel_matmul(a, b)
    return a @ b


def heads_matmul(a: Any, b: Any) -> Any:
    """``a @ b`` for (N, H, m, k) @ (N, H, k, n) (attention's heads): cuBLAS, or while the current stream
    captures a graph xpnet's kernel over the stack of N * H products (each operand made contiguous)."""
    if not ((_as_captured or capturing()) and a.ndim == b.ndim == 4 and _kernel_takes(a[0], b[0])):
        return a @ b
    (n, h, m, k), w = a.shape, b.shape[3]
    c = kernel_matmul(cupy.ascontiguousarray(a).reshape(n * h, m, k), cupy.ascontiguousarray(b).reshape(n * h, k, w))
    return c.reshape(n, h, m, w)


def register(add: Callable[..., Any]) -> None:
    add("matmul", matmul)
    add("heads_matmul", heads_matmul)
