"""NVIDIA's runtime compiler (NVRTC), the one CuPy builds kernels with, called through ctypes: it compiles
CUDA C++ to PTX on a machine without a GPU or driver, so xpnet's CUDA sources are checked before they meet
a GPU. NVRTC comes from the ``nvidia-cuda-nvrtc`` wheel (the ``test`` extra on Linux x86-64).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os

# The architecture of the H200 that ci/gpu-session.sh runs on (Hopper); CuPy compiles for the device's own.
ARCH = "compute_90"


def library_path() -> str | None:
    """Where libnvrtc is installed (nvidia/cu13/lib or nvidia/cuda_nvrtc/lib), or None."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or spec.submodule_search_locations is None:
        return None
    found = sorted(p for d in spec.submodule_search_locations
                   for p in glob.glob(os.path.join(d, "*", "lib", "libnvrtc.so*")) if "builtins" not in p)
    return found[-1] if found else None


def compile_log(source: str, name: str = "xpnet_check.cu", options: tuple[str, ...] = ()) -> tuple[bool, str]:
    """(whether ``source`` compiles, NVRTC's log: errors and warnings)."""
    lib = ctypes.CDLL(library_path())
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    prog = ctypes.c_void_p()
    result = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
    if result:
        raise RuntimeError(f"nvrtcCreateProgram: {lib.nvrtcGetErrorString(result).decode()}")
    try:
        flags = [f"--gpu-architecture={ARCH}", "--std=c++17", *options]
        array = (ctypes.c_char_p * len(flags))(*(f.encode() for f in flags))
        result = lib.nvrtcCompileProgram(prog, len(flags), array)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        return result == 0, log.value.decode(errors="replace")
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
