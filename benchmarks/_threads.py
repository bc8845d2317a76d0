"""The threads a benchmark ran with, printed beside its figures: BLAS timings depend on them.

NumPy's BLAS starts one thread per core; on a busy machine fewer are often faster. Set them with
OMP_NUM_THREADS=1 (or OPENBLAS_NUM_THREADS / MKL_NUM_THREADS) before Python starts, or with
threadpoolctl's ``threadpool_limits(1, user_api="blas")`` inside a script.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def optional_torch() -> object | None:
    """torch where it is installed (a benchmark's PyTorch baseline and thread line), else None."""
    try:
        import torch  # noqa: PLC0415 - optional, only for the baseline
    except ImportError:
        return None
    return torch


def thread_line(torch: object | None = None) -> str:
    """One line: the BLAS libraries loaded and their thread counts (and PyTorch's, if given)."""
    try:
        from threadpoolctl import threadpool_info  # noqa: PLC0415 - in the test extra
    except ImportError:
        env = ", ".join(f"{k}={os.environ[k]}" for k in _ENV if k in os.environ) or "none of " + "/".join(_ENV)
        blas = f"BLAS threads not read (pip install threadpoolctl); set: {env}"
    else:
        pools = [f"{p['internal_api']} {p.get('version') or ''} {_threads(p['num_threads'])}".replace("  ", " ")
                 for p in threadpool_info() if p["user_api"] == "blas"]
        blas = "BLAS: " + ("; ".join(pools) or "none loaded")
    line = f"threads: {blas}; {os.cpu_count()} cores; {numba_line()}; {mkl_line()}"
    if torch is not None:
        line += f"; torch {torch.__version__} {_threads(torch.get_num_threads())}"
    return line


def numba_line() -> str:
    """Whether xpnet's Numba kernels (BatchNorm, LayerNorm, softmax, ReLU, MaxPool2d on NumPy, one thread) are in
    use."""
    import numpy as np  # noqa: PLC0415

    from xpnet import backend  # noqa: PLC0415

    if importlib.util.find_spec("numba") is None:
        return "Numba kernels: off (numba not installed)"
    if backend.fast_path("relu_forward", np) is None:
        return "Numba kernels: off (XPNET_DISABLE_NUMBA or set_numba(False))"
    return f"Numba kernels: on (numba {importlib.metadata.version('numba')}, 1 thread)"


def mkl_line() -> str:
    """Whether xpnet's products on NumPy go through MKL (xpnet.backend.fast_mkl), and on what threads."""
    import numpy as np  # noqa: PLC0415

    from xpnet import backend  # noqa: PLC0415

    try:
        version = importlib.metadata.version("mkl")
    except importlib.metadata.PackageNotFoundError:
        return "MKL: off (mkl not installed)"
    if backend.fast_path("step_weights", np) is None:
        return "MKL: off (XPNET_DISABLE_MKL or set_mkl(False))"
    if mkl_runs_products():
        return f"MKL: on (mkl {version}: layers' products and packed step products, on NumPy's BLAS thread count)"
    return f"MKL: on (mkl {version}: packed step products only, 1 thread: no libgomp)"


def mkl_runs_products() -> bool:
    """Whether MKL runs the layers' large products on NumPy arrays: installed, switched on and threaded
    (xpnet.backend.fast_mkl's ``"matmul"``)."""
    import numpy as np  # noqa: PLC0415

    from xpnet import backend  # noqa: PLC0415

    if backend.fast_path("matmul", np) is None:
        return False
    from xpnet.backend import fast_mkl  # noqa: PLC0415 - loaded by the line above

    return fast_mkl.THREADED


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"
