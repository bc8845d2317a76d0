"""Every CUDA source of xpnet compiles with NVRTC, the compiler CuPy uses, for each type it is built for:
the raw kernels (loss, ReLU, pooling, the capturable matrix product) as CuPy gets them, and the bodies of
the elementwise and reduction kernels inside a stand-in of the kernel CuPy wraps around them. No GPU is
needed, so a kernel that does not compile is found here rather than in a GPU session's few minutes.
(Whether the kernels compute the right numbers is checked on the fake CuPy, which builds them with g++,
and by the ``gpu`` tests on a GPU.)
"""

from __future__ import annotations

import itertools
import re

import pytest

from xpnet.backend import cupy_kernels, matmul_kernel

import nvrtc

pytestmark = pytest.mark.skipif(nvrtc.library_path() is None, reason="NVRTC is not installed (the "
                                "nvidia-cuda-nvrtc wheel of the test extra: pip install -e '.[test]')")

# The types xpnet builds each placeholder with (xpnet.backend.cupy_layers, fast_cupy): T the floats, L the
# labels, I the pooling's index of the maximum.
_PLACEHOLDERS = {"T": ("float", "double"), "L": ("int", "long long"), "I": ("signed char", "int")}


def _compiles(source: str, what: str) -> None:
    ok, log = nvrtc.compile_log(source)
    assert ok, f"{what} does not compile with NVRTC:\n{log}\n{source}"
    assert "warning" not in log, f"{what}: NVRTC warns:\n{log}"


def _typedef_sets(text: str):
    """Each combination of the placeholder types ``text`` uses, as typedef lines."""
    used = [p for p in _PLACEHOLDERS if re.search(rf"\b{p}\b", text)]
    for types in itertools.product(*(_PLACEHOLDERS[p] for p in used)):
        yield "".join(f"typedef {c} {p};\n" for p, c in zip(used, types)), dict(zip(used, types))


def _params(text: str) -> list[tuple[str, str]]:
    """CuPy's "T x, int64 n" as [(C type or placeholder, name)]."""
    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        kind, name = item.split()
        out.append((cupy_kernels.C_TYPES.get(kind, kind), name))
    return out


def test_nvrtc_is_the_compiler_it_claims_to_be():
    """The check can fail: a source with an error is refused, naming it."""
    ok, log = nvrtc.compile_log('extern "C" __global__ void f(float* y) { y[0] = undefined_name; }')
    assert not ok and "undefined_name" in log


@pytest.mark.parametrize("name", sorted(cupy_kernels.RAW))
def test_raw_kernels_compile(name):
    source = cupy_kernels.RAW[name]
    for typedefs, types in _typedef_sets(source):
        _compiles(typedefs + source, f"RAW[{name!r}] with {types}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_capturable_matmul_compiles(dtype):
    _compiles(matmul_kernel.matmul_source(dtype), f"matmul_source({dtype!r})")


@pytest.mark.parametrize("name", sorted(cupy_kernels.ELEMENTWISE))
def test_elementwise_bodies_compile(name):
    """CuPy reads each input into a local of its type and binds each output by reference; so here."""
    in_params, out_params, body = cupy_kernels.ELEMENTWISE[name]
    ins, outs = _params(in_params), _params(out_params)
    args = ", ".join(f"const {t}* _in_{n}" for t, n in ins) + ", " + ", ".join(f"{t}* _out_{n}" for t, n in outs)
    locals_ = "".join(f"    const {t} {n} = _in_{n}[_i];\n" for t, n in ins) + \
        "".join(f"    {t}& {n} = _out_{n}[_i];\n" for t, n in outs)
    source = (f'extern "C" __global__ void xpnet_check({args}, long long _n) {{\n'
              f"    long long _i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n    if (_i >= _n) return;\n"
              f"{locals_}    {body}\n}}\n")
    for typedefs, types in _typedef_sets(in_params + out_params):
        _compiles(typedefs + source, f"ELEMENTWISE[{name!r}] with {types}")


@pytest.mark.parametrize("name", sorted(cupy_kernels.REDUCTION))
def test_reduction_expressions_compile(name):
    """map_expr over the inputs, reduce_expr over a and b, post_map_expr into y, as CuPy composes them."""
    in_params, out_params, map_expr, reduce_expr, post_map_expr, identity = cupy_kernels.REDUCTION[name]
    ins, outs = _params(in_params), _params(out_params)
    (out_type, out_name), = outs
    args = ", ".join(f"const {t}* _in_{n}" for t, n in ins) + f", {out_type}* _out"
    locals_ = "".join(f"    const {t} {n} = _in_{n}[_i];\n" for t, n in ins)
    source = (f'extern "C" __global__ void xpnet_check({args}, long long _n) {{\n'
              f"    long long _i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n    if (_i >= _n) return;\n"
              f"{locals_}    {out_type} _acc = ({out_type})({identity});\n"
              f"    {out_type} _mapped = ({out_type})({map_expr});\n"
              f"    {{ {out_type} a = _acc, b = _mapped; _acc = ({reduce_expr}); }}\n"
              f"    {out_type}& {out_name} = *_out;\n    {{ {out_type} a = _acc; {post_map_expr}; }}\n}}\n")
    for typedefs, types in _typedef_sets(in_params + out_params):
        _compiles(typedefs + source, f"REDUCTION[{name!r}] with {types}")
