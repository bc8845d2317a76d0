"""CuPy's matrix product for a step being captured as a CUDA graph (source: :mod:`xpnet.backend.matmul_kernel`).

``matmul(a, b)`` is ``a @ b`` (cuBLAS) whenever the current stream is not capturing, and xpnet's own
kernel while it is, where CuPy refuses cuBLAS. Layers ask for it through the registry
(``fast_path("matmul", xp, operator.matmul)``), so no layer names CuPy. Imported only when a CuPy array
asks for it.
"""

from __future__ import annotations

from typing import Any, Callable

import cupy

from .matmul_kernel import matmul_name, matmul_source, plan

_KERNELS: dict[str, Any] = {}


def capturing() -> bool:
    """Whether the current CuPy stream is capturing a graph (the legacy default stream never is)."""
    stream = cupy.cuda.get_current_stream()
    return stream.ptr != 0 and bool(stream.is_capturing())


def kernel_matmul(a: Any, b: Any) -> Any:
    """``a @ b`` for 2-D float32/float64 arrays of one dtype, by xpnet's kernel (any strides, no copy)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype \
            or a.dtype.name not in ("float32", "float64"):
        raise ValueError(f"kernel_matmul: expected (m, k) @ (k, n) float32 or float64 arrays of one dtype, got "
                         f"{a.dtype}{tuple(a.shape)} @ {b.dtype}{tuple(b.shape)}")
    name = a.dtype.name
    kernel = _KERNELS.get(name)
    if kernel is None:
        kernel = _KERNELS[name] = cupy.RawKernel(matmul_source(name), matmul_name(name))
    (m, k), n = a.shape, b.shape[1]
    if not (m and n):
        return cupy.empty((m, n), dtype=a.dtype)
    size = a.itemsize
    grid, block, chunk = plan(m, n, k)
    c = cupy.empty((grid[2], m, n), dtype=a.dtype)
    kernel(grid, block, (a, b, c, m, n, k, a.strides[0] // size, a.strides[1] // size,
                         b.strides[0] // size, b.strides[1] // size, chunk))
    return c[0] if grid[2] == 1 else cupy.sum(c, axis=0)


def matmul(a: Any, b: Any) -> Any:
    """``a @ b``: cuBLAS, or xpnet's kernel while the current stream captures a graph."""
    if capturing() and a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype and a.dtype.name in ("float32", "float64"):
        return kernel_matmul(a, b)
    return a @ b


def register(add: Callable[..., Any]) -> None:
    add("matmul", matmul)
