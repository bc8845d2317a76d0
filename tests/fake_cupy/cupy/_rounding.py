"""``FAKE_CUPY_ROUNDING=1``: what a GPU rounds otherwise than NumPy comes out a unit or two in the last place off.

A real GPU sums in another order (CUB's reductions, cuBLAS's products), its ``exp``, ``log``, ``tanh``... are CUDA's,
not NumPy's, and NVRTC contracts ``a * b + c`` in a kernel into one fused multiply-add (``--fmad=true``, its
default). The fake computes everything with NumPy, so a test asserting exact equality, or equality within a tolerance
tighter than that, between CuPy and NumPy results or between a fused kernel and the portable code it stands for,
passes on the fake and fails on the GPU. With this on, such results are moved: CuPy's reductions, products and
transcendental functions by 1 or 2 units in the last place, the kernels of one's own (ElementwiseKernel,
ReductionKernel, RawKernel) by 1 where their source calls a transcendental function, an ElementwiseKernel's also
where a statement multiplies and adds, a ReductionKernel's always (its sum's order); the sign and size fixed by the
kernel's name, so one kernel gives the same numbers every time (a resumed run, a replayed graph) and two kernels, or
CuPy and NumPy, differ. Left exact, as on a GPU: whole numbers (counts, masks, sums of whole numbers), what IEEE
rounds exactly (+, *, /, sqrt, comparisons, copies, max), and reductions and products of arrays of whole numbers.
"""

import os as _os
import re as _re
import zlib as _zlib

import numpy as _np

ENABLED = _os.environ.get("FAKE_CUPY_ROUNDING", "").strip() == "1"

# CuPy's names (functions, ndarray methods, ufuncs and their methods) whose results a GPU rounds otherwise: sums and
# products (exact on whole numbers, as anywhere), and transcendental functions.
SUMS = {
    "matmul", "dot", "vdot", "inner", "tensordot", "einsum",
    "sum", "mean", "var", "std", "prod", "cumsum", "cumprod", "nansum", "nanmean", "nanvar", "nanstd", "average",
    "trace", "add.reduce", "multiply.reduce", "add.accumulate", "multiply.accumulate", "add.at", "norm",
    "vector_norm", "matrix_norm",
}
FUNCTIONS = {
    "exp", "expm1", "exp2", "log", "log1p", "log2", "log10", "logaddexp", "logaddexp2", "power", "float_power",
    "tanh", "sinh", "cosh", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "arcsinh", "arccosh",
    "arctanh", "cbrt", "hypot",
}
INEXACT = SUMS | FUNCTIONS


def _whole(a):
    return bool(_np.all(_np.isfinite(a) & (a == _np.round(a)))) if a.size else True


def _move(a, k, before=None):
    """``a`` (a NumPy float array, in place) moved by about k units in the last place where it is no whole number
    (and, given ``before``, where the kernel changed it)."""
    moved = _np.isfinite(a) & (a != _np.round(a))
    if before is not None:
        moved &= (a != before)
    a[moved] *= a.dtype.type(1 + k * _np.finfo(a.dtype).eps)


_TRANSCENDENTAL = _re.compile(r"\b(exp|expf|expm1|expm1f|log|logf|log1p|log1pf|tanh|tanhf|erf|erff|pow|powf|sin|sinf|"
                               r"cos|cosf|__expf|__logf)\s*\(")


def kernel_label(name, source, kind):
    """The rounding label of a kernel of one's own (``kernel:<name>``), or None where a GPU computes it as NumPy
    does: ``kind`` "elementwise" (its operation), "reduction" (always: the sum's order) or "raw" (CUDA source)."""
    if kind == "reduction" or _TRANSCENDENTAL.search(source):
        return f"kernel:{name}"
    if kind == "elementwise" and any("*" in st and ("+" in st or "-" in st) for st in source.split(";")):
        return f"kernel:{name}"
    return None


def wrap(name, compute, inputs, writes, leaves):
    """``compute`` whose new float results and float arrays written in place come out moved, for a kernel of
    ``name`` (a CuPy name in INEXACT, or a label of :func:`kernel_label`)."""
    if not ENABLED or not (name in INEXACT or name.startswith("kernel:")):
        return compute
    h = _zlib.crc32(name.encode())
    k = (1 + (h >> 1) % 2 if name in INEXACT else 1) * (1 if h % 2 else -1)  # +-1..2 ulp, custom kernels +-1
    floats = [x._a for x in inputs if hasattr(x, "_a") and x._a.dtype.kind == "f"]

    def run():
        if name in SUMS and floats and all(_whole(a) for a in floats):
            return compute()  # sums and products of whole numbers: exact on a GPU as well
        targets = [w._a for w in writes if w._a.dtype.kind == "f"]
        before = [t.copy() for t in targets]
        raw = compute()
        for t, b in zip(targets, before):
            _move(t, k, b)
        if isinstance(raw, _np.floating):  # a whole reduction's NumPy scalar
            moved = _np.array(raw)
            _move(moved, k)
            return moved[()]
        for r in leaves(raw):
            if isinstance(r, _np.ndarray) and r.dtype.kind == "f" and r.flags.writeable \
                    and not any(_np.may_share_memory(r, t) for t in targets) \
                    and not any(_np.may_share_memory(r, x._a) for x in inputs if hasattr(x, "_a")):
                _move(r, k)
        return raw

    return run
