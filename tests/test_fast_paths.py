"""The NumPy/CuPy fast paths of ``xpnet.backend_fast`` give the same numbers as the portable code,
and ``set_fast_paths(False)`` switches them off."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xpnet as xn
from xpnet import backend, backend_fast
from xpnet.layers import Conv2d
from xpnet.layers._im2col import col2im_portable, im2col, im2col_portable


@pytest.fixture
def portable_only():
    previous = backend.set_fast_paths(False)
    yield
    backend.set_fast_paths(previous)


@st.composite
def conv_geometry(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    return {"shape": (draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), "kernel": (kh, kw),
            "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))), "padding": (ph, pw)}


@settings(max_examples=60, deadline=None)
@given(g=conv_geometry(), dtype=st.sampled_from(["float32", "float64"]))
def test_numpy_im2col_equals_portable(g, dtype):
    x = np.random.default_rng(0).standard_normal(g["shape"]).astype(dtype)
    fast = backend_fast.im2col_numpy(x, g["kernel"], g["stride"], g["padding"])
    ref = im2col_portable(x, g["kernel"], g["stride"], g["padding"])
    assert fast.dtype == x.dtype and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, ref)


@settings(max_examples=60, deadline=None)
@given(g=conv_geometry())
def test_col2im_is_the_adjoint_of_im2col(g):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: col2im sums every window back where it came from.
    rng = np.random.default_rng(1)
    x = rng.standard_normal(g["shape"])
    col = im2col(x, g["kernel"], g["stride"], g["padding"])
    c = rng.standard_normal(col.shape)
    back = col2im_portable(c, g["shape"], g["kernel"], g["stride"], g["padding"])
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(col * c), np.sum(x * back), rtol=1e-10)


@pytest.mark.parametrize("k,s,p", [(3, 1, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0)), (5, 1, 2)])
def test_conv_forward_and_backward_same_with_and_without_fast_paths(rng, k, s, p):
    x = rng.standard_normal((2, 3, 8, 7)).astype(np.float32)
    out = []
    for enabled in (True, False):
        previous = backend.set_fast_paths(enabled)
        try:
            xn.init.seed(0)
            layer = Conv2d(3, 4, k, stride=s, padding=p)
            y = layer.forward(x)
            dx = layer.backward(np.cos(y))
        finally:
            backend.set_fast_paths(previous)
        out.append((y, dx, layer.grads["W"], layer.grads["b"]))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_registry_picks_the_numpy_path_and_can_be_switched_off(portable_only):
    xp = xn.device("cpu").xp
    assert backend.fast_path("im2col", xp) is None
    backend.set_fast_paths(True)
    assert backend.fast_path("im2col", xp) is backend_fast.im2col_numpy


def test_no_fast_path_for_other_namespaces():
    strict = pytest.importorskip("array_api_strict")
    assert backend.fast_path("im2col", strict) is None


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.gpu
@pytest.mark.parametrize("k,s,p", [(3, 1, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0))])
def test_cupy_im2col_and_conv_equal_portable_and_cpu(rng, k, s, p):
    if not xn.cuda_available():
        pytest.skip(f"no GPU: {backend.cuda_unavailable_reason()}")
    dev = xn.device("cuda", fallback=False)
    x_host = rng.standard_normal((2, 3, 8, 7))
    x = dev.asarray(x_host)
    fast = backend_fast.im2col_cupy(x, _pair(k), _pair(s), _pair(p))
    np.testing.assert_array_equal(xn.to_numpy(fast), xn.to_numpy(im2col_portable(x, _pair(k), _pair(s), _pair(p))))
    out = []
    for where, xin in ((dev, x), (xn.device("cpu"), x_host)):
        xn.init.seed(0)
        layer = Conv2d(3, 4, k, stride=s, padding=p, dtype="float64").to(where)
        y = layer.forward(xin)
        out.append([xn.to_numpy(a) for a in (y, layer.backward(y * 1.0), layer.grads["W"])])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
