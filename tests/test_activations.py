"""PyTorch's activations (LeakyReLU, ELU, GELU, SiLU, Softplus, Softmax, LogSoftmax, Identity) against PyTorch itself
in float64 on every device, and GELU's erf: the portable one against ``math.erf`` and its coefficients computed
again, each library's fast path against the portable one."""

import math

import numpy as np
import pytest
from conftest import library_device, require_cuda

import xpnet as xn
from xpnet import backend
from xpnet.layers import _erf

torch = pytest.importorskip("torch", reason="the reference is PyTorch itself (pip install -e .[backends])")


# -- erf -------------------------------------------------------------------------------------------------------


def _erf_grid(dtype):
    """A dense grid over [-6.5, 6.5], the branch ends and their neighbours, tiny and subnormal x, and the tails
    up to the largest float and inf, in ``dtype``."""
    info = np.finfo(dtype)
    tiny = np.geomspace(info.smallest_subnormal, 1.0, 3000, dtype=dtype)
    ends = np.array([1.0, 6.0], dtype)
    ends = np.concatenate([ends, np.nextafter(ends, dtype(0)), np.nextafter(ends, dtype(10))])
    tails = np.array([0.0, 7.0, 30.0, 1e10, info.max, np.inf], dtype)
    grid = np.concatenate([np.linspace(-6.5, 6.5, 100_001, dtype=dtype), tiny, ends, tails])
    return np.concatenate([grid, -grid])


def _ulps(ours, reference):
    """|ours - reference| in units of the last place of the reference, in the reference's dtype."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference)
    return np.abs(ours - reference) / np.spacing(np.abs(reference)).astype(np.float64)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_portable_erf_is_within_an_ulp_of_math_erf(dev, dtype):
    x = _erf_grid(np.dtype(dtype).type)
    if dev.xp.__name__.startswith("jax"):  # XLA on the CPU flushes subnormals to zero (its own erf too)
        x = x[(x == 0) | (np.abs(x) >= np.finfo(dtype).tiny)]
    expected = np.array([math.erf(float(v)) for v in x]).astype(dtype)
    got = _erf.erf_portable(xn.to_device(x, dev))
    xn.testing.assert_placed(got, dev, dtype)
    ulps = _ulps(xn.to_numpy(got), expected)
    assert ulps.max() <= 1.0, f"{ulps.max()} ulps at x = {x[np.argmax(ulps)]!r}"
    assert np.isnan(xn.to_numpy(_erf.erf_portable(xn.to_device(np.array([np.nan], dtype), dev))))[0]


def _chebyshev_coefficients(mp, f, interval, degree, nodes=64):
    """The Chebyshev interpolant of ``f`` on ``interval`` at ``nodes`` points, its first ``degree + 1`` terms."""
    a, b = (mp.mpf(v) for v in interval)
    angles = [mp.pi * (j + mp.mpf(1) / 2) / nodes for j in range(nodes)]
    values = [f((a + b) / 2 + (b - a) / 2 * mp.cos(t)) for t in angles]
    c = [2 * mp.fsum(v * mp.cos(k * t) for v, t in zip(values, angles)) / nodes for k in range(degree + 1)]
    return (float(c[0] / 2), *(float(v) for v in c[1:]))


def test_erf_coefficients_are_the_chebyshev_series_of_their_functions():
    mp = pytest.importorskip("mpmath", reason="mpmath computes the coefficients again (it comes with PyTorch)")
    mp.mp.dps = 40

    def small(t):  # erf(x) / x - 1 at t = x**2
        x = mp.sqrt(t)
        return 2 / mp.sqrt(mp.pi) - 1 if t == 0 else mp.erf(x) / x - 1

    def tail(u):  # x * exp(x**2) * erfc(x) at u = 1 / x
        x = 1 / u
        return x * mp.exp(x * x) * mp.erfc(x)

    assert _erf._SMALL == _chebyshev_coefficients(mp, small, (0, 1), len(_erf._SMALL) - 1)
    assert _erf.SMALL_INTERVAL == (0.0, 1.0)
    assert _erf._TAIL == _chebyshev_coefficients(mp, tail, (mp.mpf(1) / 6, 1), len(_erf._TAIL) - 1)
    assert _erf.TAIL_INTERVAL == (1 / 6, 1.0)


# How far a library's erf may be from the portable one (within an ulp of math.erf): SciPy's float64 erf (Cephes)
# is 3 ulps from math.erf at x = 0.857, XLA's float32 erf 5 ulps at x = -3.79, CUDA documents 2 for both.
FAST_ULPS = {"float64": 4.0, "float32": 6.0}


def _fast_erf_equals_portable(fast_erf, x, dtype):
    """The fast path's erf and the portable one on the same input, in the input's dtype."""
    fast, portable = fast_erf(x), _erf.erf_portable(x)
    assert str(fast.dtype).endswith(dtype) and str(portable.dtype).endswith(dtype)
    ulps = _ulps(xn.to_numpy(fast), portable)
    assert ulps.max() <= FAST_ULPS[dtype], f"{ulps.max()} ulps at x = {x[np.argmax(ulps)]!r}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
def test_each_librarys_erf_equals_the_portable_one(library, dtype):
    grid = _erf_grid(np.dtype(dtype).type)
    if library == "numpy":
        pytest.importorskip("scipy", reason="NumPy's fast erf is SciPy's, which is not installed")
        from xpnet.backend import fast_scipy as fast
        dev = xn.device("cpu")
    elif library == "torch":
        from xpnet.backend import fast_torch as fast
        dev = library_device("torch:cpu")
    else:
        dev = library_device("jax:cpu")
        from xpnet.backend import fast_jax as fast
        grid = grid[(grid == 0) | (np.abs(grid) >= np.finfo(dtype).tiny)]  # XLA on the CPU flushes subnormals
    assert backend.fast_path("erf", dev.xp, _erf.erf_portable) is fast.erf
    _fast_erf_equals_portable(lambda x: fast.erf(xn.to_device(x, dev)), grid, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cupys_erf_kernel_equals_the_portable_one(dtype):
    dev = require_cuda()
    from xpnet.backend import fast_cupy

    assert backend.fast_path("erf", dev.xp, _erf.erf_portable) is fast_cupy.erf
    _fast_erf_equals_portable(lambda x: fast_cupy.erf(xn.to_device(x, dev)), _erf_grid(np.dtype(dtype).type), dtype)


def test_without_fast_paths_erf_is_the_portable_one():
    previous = backend.set_fast_paths(False)
    try:
        assert backend.fast_path("erf", xn.device("cpu").xp, _erf.erf_portable) is _erf.erf_portable
    finally:
        backend.set_fast_paths(previous)
