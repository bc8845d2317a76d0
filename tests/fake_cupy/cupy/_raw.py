"""The fake's ``cupy.RawKernel``: the CUDA source compiled by the host's C++ compiler and its threads run
one after another, so a kernel's arithmetic and indexing are checked on a machine without a GPU.

What it reproduces of CuPy (``_core/raw.pyx``, ``_core/_scalar.pyx``, the user guide's "Raw kernels"):

- ``kernel(grid, block, args)``; ``grid``/``block`` tuples of up to three sizes (an int or a list raises
  ``TypeError``, as ``cupy/cuda/function.pyx``'s ``Function.__call__(tuple grid, tuple block, ...)``), within
  CUDA's limits (1024 threads per block, 65535 blocks along y and z), else the launch fails.
- Arrays go in as the address of their first element: strides are not passed, so a non-contiguous view
  is read as if it were contiguous, as on the GPU.
- Scalars go in by value as CuPy passes them, whatever the source declares: a Python ``int`` as
  ``long long``, ``float`` as ``double``, ``bool`` as ``bool``, a NumPy scalar as its own type. CuPy
  checks none of this; here a scalar or an array whose type is not the declared one raises ``TypeError``,
  since on the GPU it would read garbage.
- Arrays must be on the current device, as for every kernel of the fake; on a capturing stream the
  launch is recorded (every array argument may be written) and replayed by the graph.

What it cannot reproduce, and refuses rather than runs wrongly: ``__shared__`` memory, ``__syncthreads``,
atomics and warp functions (threads here run one at a time, to the end). The compiler is ``$CXX`` or
``g++``; without one, calling a kernel raises ``RuntimeError`` (tests skip on :func:`compiler`).
"""

import ctypes as _ctypes
import hashlib as _hashlib
import os as _os
import re as _re
import shutil as _shutil
import subprocess as _subprocess
import tempfile as _tempfile

import numpy as _np

_PRELUDE = r"""
#include <math.h>
#include <stdint.h>
#include <float.h>
#include <algorithm>
using std::min;
using std::max;
struct xpnet_fake_dim3 { unsigned int x, y, z; };
static xpnet_fake_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __ldg(p) (*(p))
#define rsqrtf(v) (1.0f / sqrtf(v))
#define rsqrt(v) (1.0 / sqrt(v))
#define __expf expf
#define __logf logf
"""

_REFUSED = ("__shared__", "__syncthreads", "atomic", "__shfl", "__syncwarp", "cooperative_groups")

# Declared scalar types -> (ctypes type, the NumPy dtype CuPy must be given to pass that type).
_SCALARS = {
    "bool": (_ctypes.c_bool, _np.bool_), "char": (_ctypes.c_byte, _np.int8),
    "signed char": (_ctypes.c_byte, _np.int8), "unsigned char": (_ctypes.c_ubyte, _np.uint8),
    "short": (_ctypes.c_short, _np.int16), "unsigned short": (_ctypes.c_ushort, _np.uint16),
    "int": (_ctypes.c_int, _np.int32), "unsigned int": (_ctypes.c_uint, _np.uint32),
    "unsigned": (_ctypes.c_uint, _np.uint32), "long long": (_ctypes.c_longlong, _np.int64),
    "long long int": (_ctypes.c_longlong, _np.int64), "unsigned long long": (_ctypes.c_ulonglong, _np.uint64),
    "int32_t": (_ctypes.c_int, _np.int32), "int64_t": (_ctypes.c_longlong, _np.int64),
    "ptrdiff_t": (_ctypes.c_longlong, _np.int64), "size_t": (_ctypes.c_ulonglong, _np.uint64),
    "float": (_ctypes.c_float, _np.float32), "double": (_ctypes.c_double, _np.float64),
}
_PYTHON = {bool: _np.bool_, int: _np.int64, float: _np.float64}  # CuPy: bool, long long, double


def compiler():
    """The host C++ compiler the fake builds kernels with, or None."""
    return _shutil.which(_os.environ.get("CXX", "g++"))


def _base_type(text, typedefs):
    words = [w for w in _re.sub(r"[*&]", " ", text).split() if w not in ("const", "volatile", "__restrict__")]
    name = " ".join(words)
    seen = set()
    while name in typedefs and name not in seen:
        seen.add(name)
        name = typedefs[name]
    return name


class RawKernel:
    """``cupy.RawKernel(code, name)``: compiled on first call (cached by source), run thread by thread."""

    def __init__(self, code, name, options=(), backend="nvrtc", **kwargs):
        self.code, self.name, self.options = code, name, options
        self._fn = None
        self._params = None

    def _signature(self):
        match = _re.search(r'extern\s+"C"\s+__global__\s+void\s+' + _re.escape(self.name) + r"\s*\(([^)]*)\)",
                           self.code)
        if match is None:
            raise ValueError(f'fake RawKernel: no `extern "C" __global__ void {self.name}(...)` in the source')
        typedefs = {m.group(2): " ".join(m.group(1).split())
                    for m in _re.finditer(r"typedef\s+([\w\s]+?)\s+(\w+)\s*;", self.code)}
        params = []
        for text in filter(None, (p.strip() for p in match.group(1).split(","))):
            name = _re.findall(r"\w+", text)[-1]
            decl = text[: text.rfind(name)]
            params.append((name, decl, "*" in decl, _base_type(decl, typedefs)))
        return params

    def _compile(self):
        for word in _REFUSED:
            if word in self.code:
                raise NotImplementedError(f"fake RawKernel {self.name}: {word} cannot be emulated by running "
                                          f"threads one after another; write the kernel without it")
        cxx = compiler()
        if cxx is None:
            raise RuntimeError("fake RawKernel: no C++ compiler (g++ or $CXX) to build the kernel with")
        self._params = self._signature()
        decls = ", ".join(f"{decl} {name}" for name, decl, _, _ in self._params)
        names = ", ".join(name for name, *_ in self._params)
        driver = f"""
extern "C" void xpnet_fake_launch(unsigned xpnet_gx, unsigned xpnet_gy, unsigned xpnet_gz, unsigned xpnet_bx,
                                  unsigned xpnet_by, unsigned xpnet_bz{", " if decls else ""}{decls}) {{
    gridDim = {{xpnet_gx, xpnet_gy, xpnet_gz}}; blockDim = {{xpnet_bx, xpnet_by, xpnet_bz}};
    for (unsigned xpnet_z = 0; xpnet_z < xpnet_gz; ++xpnet_z)
    for (unsigned xpnet_y = 0; xpnet_y < xpnet_gy; ++xpnet_y)
    for (unsigned xpnet_x = 0; xpnet_x < xpnet_gx; ++xpnet_x) {{
        blockIdx = {{xpnet_x, xpnet_y, xpnet_z}};
        for (unsigned xpnet_k = 0; xpnet_k < xpnet_bz; ++xpnet_k)
        for (unsigned xpnet_j = 0; xpnet_j < xpnet_by; ++xpnet_j)
        for (unsigned xpnet_i = 0; xpnet_i < xpnet_bx; ++xpnet_i) {{
            threadIdx = {{xpnet_i, xpnet_j, xpnet_k}};
            {self.name}({names});
        }}
    }}
}}
"""
        source = _PRELUDE + self.code + driver
        digest = _hashlib.sha256((source + cxx).encode()).hexdigest()[:20]
        folder = _os.path.join(_tempfile.gettempdir(), f"xpnet-fake-cupy-{_os.getuid()}")
        _os.makedirs(folder, exist_ok=True)
        library = _os.path.join(folder, f"{self.name}-{digest}.so")
        if not _os.path.exists(library):
            src = _os.path.join(folder, f"{self.name}-{digest}.cpp")
            with open(src, "w") as f:
                f.write(source)
            partial = f"{library}.{_os.getpid()}"
            proc = _subprocess.run([cxx, "-O1", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Werror=return-type",
                                    "-Wno-unused-function", "-Wno-unused-variable", "-o", partial, src],
                                   capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"fake RawKernel {self.name}: the source does not compile:\n{proc.stderr}")
            _os.replace(partial, library)
        fn = _ctypes.CDLL(library).xpnet_fake_launch
        fn.restype = None
        fn.argtypes = [_ctypes.c_uint] * 6 + [_ctypes.c_void_p if pointer else _SCALARS[base][0]
                                              for _, _, pointer, base in self._params]
        self._fn = fn

    def _argument(self, param, value):
        from . import ndarray
        from ._dispatch import _check
        name, decl, pointer, base = param
        if pointer:
            if not isinstance(value, ndarray):
                raise TypeError(f"fake RawKernel {self.name}: {name} ({decl.strip()}) needs a cupy array, "
                                f"got {type(value).__name__}")
            _check(value)
            expected = _SCALARS.get(base, (None, None))[1]
            if expected is not None and value.dtype != _np.dtype(expected):
                raise TypeError(f"fake RawKernel {self.name}: {name} is declared {decl.strip()} but the array is "
                                f"{value.dtype}; CuPy would pass its memory unconverted")
            return value._a.__array_interface__["data"][0]
        if base not in _SCALARS:
            raise TypeError(f"fake RawKernel {self.name}: scalar {name} of type {base!r} is not emulated")
        ctype, dtype = _SCALARS[base]
        given = _PYTHON.get(type(value)) or (value.dtype.type if isinstance(value, _np.generic) else None)
        if given is None or _np.dtype(given) != _np.dtype(dtype):
            raise TypeError(f"fake RawKernel {self.name}: {name} is declared {base} but gets {value!r} "
                            f"({type(value).__name__}), which CuPy passes as "
                            f"{_np.dtype(given).name if given else 'nothing it knows'}; pass {_np.dtype(dtype).name}")
        return value.item() if isinstance(value, _np.generic) else value

    def __call__(self, grid, block, args, *, shared_mem=0, **kwargs):
        if self._fn is None:
            self._compile()
        if shared_mem:
            raise NotImplementedError("fake RawKernel: dynamic shared memory cannot be emulated")
        if len(args) != len(self._params):
            raise TypeError(f"fake RawKernel {self.name}: {len(self._params)} parameters, {len(args)} arguments")
        dims = []
        for arg, what in (("grid", grid), ("block", block)):
            if not isinstance(what, tuple):  # cupy/cuda/function.pyx: Function.__call__(self, tuple grid, tuple block)
                raise TypeError(f"Argument '{arg}' has incorrect type (expected tuple, got {type(what).__name__})")
            if not 1 <= len(what) <= 3 or any(int(d) < 1 for d in what):
                raise ValueError(f"fake RawKernel {self.name}: grid and block are 1 to 3 positive sizes, got {what}")
            dims.extend(int(d) for d in what + (1,) * (3 - len(what)))
        gx, gy, gz, bx, by, bz = dims
        from .cuda import CUDARuntimeError  # CuPy raises cupy_backends' CUDADriverError (a RuntimeError) here
        if bx * by * bz > 1024 or bz > 64 or gx > 2 ** 31 - 1 or gy > 65535 or gz > 65535:
            raise CUDARuntimeError("CUDA_ERROR_INVALID_VALUE", f"invalid argument (grid {grid}, block {block}: CUDA "
                                   "allows 1024 threads per block, 64 along z, 65535 blocks along y and z)")
        from ._dispatch import _kernel
        values = [self._argument(p, a) for p, a in zip(self._params, args)]
        arrays = [a for a in args if hasattr(a, "_a")]
        memory, fn = [a._a for a in arrays], self._fn  # the launch holds the memory its pointers point to
        _kernel(self.name, lambda memory=memory: fn(*dims, *values), arrays, arrays, finish=lambda r: None)
