"""The fake's ``cupy.RawKernel``: the CUDA source compiled by the host's C++ compiler and its threads run
on the host (one after another, or block by block as fibers where the kernel has barriers), so a kernel's
arithmetic, indexing and barriers are checked on a machine without a GPU.

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
- A kernel whose source has ``__shared__`` or ``__syncthreads()`` runs block by block, the threads of a
  block as fibers of one host thread (each started on its own stack by ``makecontext``, switched by ``_setjmp`` and
  ``_longjmp``, which leave the signal mask alone: ``swapcontext``'s system call per switch was five sixths of a
  tiled matrix product's time): each thread runs until its next ``__syncthreads()`` or
  its end, then the next thread runs; when all have arrived, the next phase starts, the threads taken in
  the opposite order (forward, backward, forward, ...; a kernel's odd-numbered launches start backward).
  ``__shared__`` variables are ``static``, shared by the threads of the block being run (blocks run one at
  a time); unlike CUDA they are zero at the first launch and keep what the last block left. A block where
  some threads return while others wait at a ``__syncthreads()`` fails the launch (CUDA: undefined, a hang
  or wrong results), naming the block and the thread.
- Fibers rather than host threads, so that a schedule is the same at every run: a missing
  ``__syncthreads()`` shows whenever a thread reads shared memory that a thread run after it in the same
  phase writes (or writes what one run after it still had to read), and hides otherwise. A phase run
  forward catches a thread reading what higher threads write, one run backward the converse; two
  launches of a kernel try both orders, so a check that launches a kernel twice catches a missing
  barrier between two threads in either direction (``tests/test_fake_raw_kernel.py`` shows one of each).
  Kernels without either word run their threads one after another, each to its end (fast).

What it cannot reproduce, and refuses rather than runs wrongly: dynamic shared memory (``extern
__shared__``, ``shared_mem=``), ``__syncthreads_count``/``_and``/``_or``, atomics, warp functions and
cooperative groups. The compiler is ``$CXX`` or ``g++``; without one, calling a kernel raises
``RuntimeError`` (tests skip on :func:`compiler`).
"""

import ctypes as _ctypes
import hashlib as _hashlib
import os as _os
import re as _re
import shutil as _shutil
import subprocess as _subprocess
import tempfile as _tempfile

import numpy as _np

from . import _rounding

_PRELUDE = r"""
#include <math.h>
#include <stdint.h>
#include <float.h>
// CUDA's min and max of two values of one type, as std::min and std::max (without <algorithm>, which doubles a
// kernel's build time).
template <class T> static inline const T& min(const T& a, const T& b) { return b < a ? b : a; }
template <class T> static inline const T& max(const T& a, const T& b) { return a < b ? b : a; }
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

# A block's threads as fibers: the kernel's body runs in each fiber; __syncthreads() hands back to the
# scheduler in xpnet_fake_launch, which resumes the threads in turn, forward then backward. A fiber's first entry
# is setcontext; every later switch a _longjmp (built with -U_FORTIFY_SOURCE: glibc's checked longjmp refuses to
# jump to another stack). A fiber runs the body block after block: a finished thread parks, and the next block
# resumes it into the body again, so fibers are made once per process (again after a launch that failed midway).
_BLOCKS = r"""
#include <setjmp.h>
#include <ucontext.h>
#include <stdio.h>
#include <stdlib.h>
#define __shared__ static
static jmp_buf xpnet_fake_scheduler;
static jmp_buf* xpnet_fake_fibers;
static unsigned xpnet_fake_current;
static void __syncthreads() {
    if (!_setjmp(xpnet_fake_fibers[xpnet_fake_current])) _longjmp(xpnet_fake_scheduler, 1);
}
"""

# The launch: gridDim, blockDim, then each block's threads; returns 0, or 1 with a message in xpnet_error.
_DRIVER = r"""
SETUP
extern "C" int xpnet_fake_launch(char* xpnet_error, unsigned xpnet_gx, unsigned xpnet_gy, unsigned xpnet_gz,
                                 unsigned xpnet_bx, unsigned xpnet_by, unsigned xpnet_bz DECLS) {
    gridDim = {xpnet_gx, xpnet_gy, xpnet_gz}; blockDim = {xpnet_bx, xpnet_by, xpnet_bz};
    for (unsigned xpnet_z = 0; xpnet_z < xpnet_gz; ++xpnet_z)
    for (unsigned xpnet_y = 0; xpnet_y < xpnet_gy; ++xpnet_y)
    for (unsigned xpnet_x = 0; xpnet_x < xpnet_gx; ++xpnet_x) {
        blockIdx = {xpnet_x, xpnet_y, xpnet_z};
THREADS
    }
    LAUNCHED
    return 0;
}
"""
_ONE_BY_ONE = r"""
        for (unsigned xpnet_k = 0; xpnet_k < xpnet_bz; ++xpnet_k)
        for (unsigned xpnet_j = 0; xpnet_j < xpnet_by; ++xpnet_j)
        for (unsigned xpnet_i = 0; xpnet_i < xpnet_bx; ++xpnet_i) {
            threadIdx = {xpnet_i, xpnet_j, xpnet_k};
            CALL
        }
"""
_FIBERS_SETUP = r"""
// The launch's call of the kernel, a closure over its arguments, and how to call it (no <functional>: see min).
static void* xpnet_fake_closure;
static void (*xpnet_fake_invoke)(void*);
static inline void xpnet_fake_body() { xpnet_fake_invoke(xpnet_fake_closure); }
static bool* xpnet_fake_done;
static bool* xpnet_fake_started;
static ucontext_t* xpnet_fake_starts;
static char* xpnet_fake_stacks;
static unsigned xpnet_fake_have;
static unsigned xpnet_fake_launches;
static void xpnet_fake_thread() {
    for (;;) {
        xpnet_fake_body();
        xpnet_fake_done[xpnet_fake_current] = true;
        __syncthreads();
    }
}
"""
_FIBERS = r"""
        const unsigned xpnet_n = xpnet_bx * xpnet_by * xpnet_bz;
        if (xpnet_fake_have < xpnet_n) {
            free(xpnet_fake_stacks); free(xpnet_fake_fibers); free(xpnet_fake_starts); free(xpnet_fake_done);
            free(xpnet_fake_started);
            xpnet_fake_stacks = (char*)malloc((size_t)xpnet_n * STACK);
            xpnet_fake_fibers = (jmp_buf*)malloc(xpnet_n * sizeof(jmp_buf));
            xpnet_fake_starts = (ucontext_t*)malloc(xpnet_n * sizeof(ucontext_t));
            xpnet_fake_done = (bool*)malloc(xpnet_n);
            xpnet_fake_started = (bool*)calloc(xpnet_n, 1);
            xpnet_fake_have = xpnet_n;
        }
        auto xpnet_body = [&]() { CALL };
        xpnet_fake_closure = &xpnet_body;
        xpnet_fake_invoke = [](void* body) { (*static_cast<decltype(xpnet_body)*>(body))(); };
        const unsigned xpnet_flip = xpnet_fake_launches % 2;
        for (unsigned t = 0; t < xpnet_n; ++t) xpnet_fake_done[t] = false;
        for (unsigned phase = 0;; ++phase) {
            unsigned finished = 0, first = 0;
            for (unsigned s = 0; s < xpnet_n; ++s) {
                const unsigned t = (phase + xpnet_flip) % 2 ? xpnet_n - 1 - s : s;
                xpnet_fake_current = t;
                threadIdx = {t % xpnet_bx, t / xpnet_bx % xpnet_by, t / (xpnet_bx * xpnet_by)};
                if (!_setjmp(xpnet_fake_scheduler)) {
                    if (xpnet_fake_started[t]) _longjmp(xpnet_fake_fibers[t], 1);
                    getcontext(&xpnet_fake_starts[t]);
                    xpnet_fake_starts[t].uc_stack.ss_sp = xpnet_fake_stacks + (size_t)t * STACK;
                    xpnet_fake_starts[t].uc_stack.ss_size = STACK;
                    xpnet_fake_starts[t].uc_link = nullptr;
                    makecontext(&xpnet_fake_starts[t], xpnet_fake_thread, 0);
                    xpnet_fake_started[t] = true;
                    setcontext(&xpnet_fake_starts[t]);
                }
                if (xpnet_fake_done[t] && finished++ == 0) first = t;
            }
            if (finished == xpnet_n) break;
            if (finished) {
                for (unsigned t = 0; t < xpnet_n; ++t) xpnet_fake_started[t] = false;  // some stopped midway
                snprintf(xpnet_error, 512, "block (%u, %u, %u): thread (%u, %u, %u) returned while %u other "
                         "threads waited at __syncthreads() number %u (CUDA: undefined behaviour, a hang or "
                         "wrong results)", xpnet_x, xpnet_y, xpnet_z, first % xpnet_bx, first / xpnet_bx % xpnet_by,
                         first / (xpnet_bx * xpnet_by), xpnet_n - finished, phase + 1);
                return 1;
            }
        }
""".replace("STACK", str(1 << 17))  # bytes of stack per thread: a kernel's locals and the maths library's calls

_REFUSED = (("extern __shared__", "dynamic shared memory is not emulated; give the array its size"),
            ("__syncthreads_", "__syncthreads_count, _and and _or are not emulated"),
            ("atomic", "atomics are not emulated"), ("__shfl", "warp shuffles are not emulated"),
            ("__syncwarp", "warp barriers are not emulated"), ("__activemask", "warp functions are not emulated"),
            ("__ballot", "warp votes are not emulated"), ("cooperative_groups", "cooperative groups are not emulated"))

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
        self._rounding = _rounding.kernel_label(name, code, "raw")  # FAKE_CUPY_ROUNDING's label, or None
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
        for pattern, why in _REFUSED:
            if _re.search(pattern.replace(" ", r"\s+"), self.code):
                raise NotImplementedError(f"fake RawKernel {self.name}: {why} ({pattern!r} in the source); write "
                                          f"the kernel without it")
        cxx = compiler()
        if cxx is None:
            raise RuntimeError("fake RawKernel: no C++ compiler (g++ or $CXX) to build the kernel with")
        self._params = self._signature()
        self.blocks = bool(_re.search(r"\b(__shared__|__syncthreads)\b", self.code))
        decls = ", ".join(f"{decl} {name}" for name, decl, _, _ in self._params)
        call = f"{self.name}({', '.join(name for name, *_ in self._params)});"
        setup, threads = (_FIBERS_SETUP.replace("CALL", call), _FIBERS) if self.blocks else ("", _ONE_BY_ONE)
        driver = _DRIVER.replace("DECLS", ", " + decls if decls else "").replace("SETUP", setup) \
            .replace("THREADS", threads.replace("CALL", call)) \
            .replace("LAUNCHED", "++xpnet_fake_launches;" if self.blocks else "")
        source = _PRELUDE + (_BLOCKS if self.blocks else "") + self.code + driver
        digest = _hashlib.sha256((source + cxx).encode()).hexdigest()[:20]
        folder = _os.path.join(_tempfile.gettempdir(), f"xpnet-fake-cupy-{_os.getuid()}")
        _os.makedirs(folder, exist_ok=True)
        library = _os.path.join(folder, f"{self.name}-{digest}.so")
        if not _os.path.exists(library):
            # Each process its own source and output, renamed into place whole: two processes building one kernel
            # at once (pytest -n) never read each other's half-written file.
            src = _os.path.join(folder, f"{self.name}-{digest}.{_os.getpid()}.cpp")
            with open(src, "w") as f:
                f.write(source)
            partial = f"{library}.{_os.getpid()}"
            proc = _subprocess.run([cxx, "-O1", "-U_FORTIFY_SOURCE", "-std=c++17", "-shared", "-fPIC", "-Wall",
                                    "-Werror=return-type", "-Wno-unused-function", "-Wno-unused-variable", "-o",
                                    partial, src], capture_output=True, text=True)
            _os.remove(src)
            if proc.returncode:
                raise RuntimeError(f"fake RawKernel {self.name}: the source does not compile:\n{proc.stderr}")
            _os.replace(partial, library)
        fn = _ctypes.CDLL(library).xpnet_fake_launch
        fn.restype = _ctypes.c_int
        fn.argtypes = [_ctypes.c_char_p] + [_ctypes.c_uint] * 6 + [_ctypes.c_void_p if pointer else _SCALARS[base][0]
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
        name = self.name

        def run(memory=memory):
            error = _ctypes.create_string_buffer(512)
            if fn(error, *dims, *values):
                raise RuntimeError(f"fake RawKernel {name}: {error.value.decode()}")

        _kernel(self.name, run, arrays, arrays, finish=lambda r: None, label=self._rounding)
