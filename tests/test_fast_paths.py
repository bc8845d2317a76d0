"""The NumPy/CuPy/PyTorch/JAX fast paths of ``xpnet.backend`` (``fast_numpy``, ``fast_cupy``, ``fast_torch``,
``fast_jax``) give the same numbers as the portable code,
and ``set_fast_paths(False)`` switches them off."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import require_cuda
from hypothesis import given, settings
from hypothesis import strategies as st

import xpnet as xn
from xpnet import backend
from xpnet.backend import cupy_kernels, fast_numpy
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
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    low_h, low_w = max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dw * (kw - 1) + 1 - 2 * pw)
    h, w = draw(st.integers(low_h, max(low_h, 9))), draw(st.integers(low_w, max(low_w, 9)))
    return {"shape": (draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), "kernel": (kh, kw),
            "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))), "padding": (ph, pw), "dilation": (dh, dw)}


@settings(max_examples=60, deadline=None)
@given(g=conv_geometry(), dtype=st.sampled_from(["float32", "float64"]), per_sample=st.booleans())
def test_numpy_im2col_equals_portable(g, dtype, per_sample):
    x = np.random.default_rng(0).standard_normal(g["shape"]).astype(dtype)
    fast = fast_numpy.im2col(x, g["kernel"], g["stride"], g["padding"], per_sample, g["dilation"])
    ref = im2col_portable(x, g["kernel"], g["stride"], g["padding"], per_sample, g["dilation"])
    assert fast.dtype == x.dtype and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, ref)


@settings(max_examples=60, deadline=None)
@given(g=conv_geometry(), per_sample=st.booleans())
def test_col2im_is_the_adjoint_of_im2col(g, per_sample):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: col2im sums every window back where it came from.
    rng = np.random.default_rng(1)
    x = rng.standard_normal(g["shape"])
    col = im2col(x, g["kernel"], g["stride"], g["padding"], per_sample, g["dilation"])
    c = rng.standard_normal(col.shape)
    back = col2im_portable(c, g["shape"], g["kernel"], g["stride"], g["padding"], per_sample, g["dilation"])
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(col * c), np.sum(x * back), rtol=1e-10)


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 0, 1), (3, 2, 1, 1), ((2, 3), (1, 2), (1, 0), 1), (5, 1, 2, 1),
                                     (3, (2, 1), 1, (2, 3))])
def test_conv_forward_and_backward_same_with_and_without_fast_paths(rng, k, s, p, d):
    x = rng.standard_normal((2, 3, 8, 7)).astype(np.float32)
    out = []
    for enabled in (True, False):
        previous = backend.set_fast_paths(enabled)
        try:
            xn.init.seed(0)
            layer = Conv2d(3, 4, k, stride=s, padding=p, dilation=d)
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
    assert backend.fast_path("im2col", xp) is fast_numpy.im2col


def test_numpy_batch_rows_equal_portable_and_batches_alike(rng):
    """A training batch's rows through ``ndarray.take`` (fast_numpy.take_rows): the portable gather's arrays, and
    BatchIterator's batches the same with the fast paths on and off."""
    from xpnet.datasets.batches import _take_rows

    x, y = rng.standard_normal((23, 3, 2)).astype(np.float32), rng.integers(0, 5, 23)
    assert backend.fast_path("take_rows", np, _take_rows) is fast_numpy.take_rows
    rows = rng.permutation(23)[:7]
    for a in (x, y):
        fast, portable = fast_numpy.take_rows(a, rows), _take_rows(a, rows)
        assert fast.dtype == portable.dtype and fast.shape == portable.shape and np.array_equal(fast, portable)
    epochs = []
    for on in (True, False):
        previous = backend.set_fast_paths(on)
        try:
            epochs.append(list(xn.datasets.BatchIterator(x, y, batch_size=5, seed=3).epoch(1)))
        finally:
            backend.set_fast_paths(previous)
    assert len(epochs[0]) == len(epochs[1]) == 5
    for fast, portable in zip(*epochs):
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(fast, portable))


def test_numpy_bias_gradient_sum_equals_portable_bit_for_bit(rng):
    """Linear's bias gradient through ``ndarray.sum`` (fast_numpy.column_sums): np.sum's bits, with and without
    the fast paths, for a layer over (N, T, D) sequences too."""
    from xpnet.layers.linear import column_sums

    assert backend.fast_path("column_sums", np, column_sums) is fast_numpy.column_sums
    for dtype in (np.float32, np.float64):
        dy = (rng.standard_normal((37, 5)) * 10.0 ** rng.integers(-3, 4, (37, 5))).astype(dtype)
        assert fast_numpy.column_sums(dy).tobytes() == column_sums(dy).tobytes() == np.sum(dy, axis=0).tobytes()
        grads = []
        for fast in (True, False):
            previous = backend.set_fast_paths(fast)
            try:
                layer = xn.layers.Linear(4, 5, dtype=np.dtype(dtype).name)
                layer.forward(rng.standard_normal((3, 2, 4)).astype(dtype))
                layer.backward(dy[:6].reshape(3, 2, 5))
                grads.append(layer.grads["b"])
            finally:
                backend.set_fast_paths(previous)
        assert grads[0].dtype == dtype and grads[0].tobytes() == grads[1].tobytes()


@pytest.mark.parametrize("value, on", [("0", True), ("false", True), ("1", False), ("yes", False),
                                      ("maybe", None)])
def test_the_environment_switch_reads_0_as_on_and_refuses_what_it_cannot_read(value, on):
    """XPNET_DISABLE_FAST_PATHS=0 switched the fast paths off (any value set did), the opposite of what it says."""
    code = "from xpnet.backend.registry import fast_paths_enabled; print(fast_paths_enabled())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XPNET_DISABLE_FAST_PATHS": value})
    if on is None:
        assert proc.returncode != 0 and ("ValueError: XPNET_DISABLE_FAST_PATHS='maybe' in the environment: expected "
                                         "1 (switch these fast paths off) or 0 (leave them on)") in proc.stderr
    else:
        assert proc.returncode == 0 and proc.stdout.split() == [str(on)], proc.stderr


def test_no_fast_path_for_other_namespaces():
    strict = pytest.importorskip("array_api_strict")
    assert backend.fast_path("im2col", strict) is None


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.gpu
@pytest.mark.parametrize("k,s,p,d", [(3, 1, 0, 1), (3, 2, 1, 1), ((2, 3), (1, 2), (1, 0), 1), (3, 1, 2, (2, 3))])
def test_cupy_im2col_and_conv_equal_portable_and_cpu(rng, k, s, p, d):
    dev = require_cuda()
    x_host = rng.standard_normal((2, 3, 8, 7))
    x = dev.asarray(x_host)
    from xpnet.backend import fast_cupy

    geometry = (_pair(k), _pair(s), _pair(p), False, _pair(d))
    fast = fast_cupy.im2col(x, *geometry)
    np.testing.assert_array_equal(xn.to_numpy(fast), xn.to_numpy(im2col_portable(x, *geometry)))
    out = []
    for where, xin in ((dev, x), (xn.device("cpu"), x_host)):
        xn.init.seed(0)
        layer = Conv2d(3, 4, k, stride=s, padding=p, dilation=d, dtype="float64").to(where)
        y = layer.forward(xin)
        out.append([xn.to_numpy(a) for a in (y, layer.backward(y * 1.0), layer.grads["W"])])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_cupy_channel_dot_equals_portable_and_cpu(rng, dtype, rtol):
    """BatchNorm's per-channel sums: one reduction kernel on CuPy against the portable vecdot (which
    array-api-compat runs as a batched matmul there) and against NumPy."""
    dev = require_cuda()
    from xpnet.backend import fast_cupy
    from xpnet.layers.norm import _channel_dot

    a_host, b_host = rng.standard_normal((16, 5, 49)).astype(dtype), rng.standard_normal((16, 5, 49)).astype(dtype)
    a, b = dev.asarray(a_host), dev.asarray(b_host)
    fast = [fast_cupy.channel_dot(a, b), fast_cupy.channel_dot(a)]
    previous = backend.set_fast_paths(False)
    try:
        portable = [_channel_dot(dev.xp, a, b), _channel_dot(dev.xp, a)]
    finally:
        backend.set_fast_paths(previous)
    host = [(a_host * b_host).sum(axis=(0, 2)), a_host.sum(axis=(0, 2))]
    for f, p, h in zip(fast, portable, host):
        assert str(f.dtype) == dtype and tuple(f.shape) == (5,)
        np.testing.assert_allclose(xn.to_numpy(f), xn.to_numpy(p), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(xn.to_numpy(f), h, rtol=rtol, atol=rtol)


@settings(max_examples=40, deadline=None)
@given(g=conv_geometry(), dtype=st.sampled_from(["float32", "float64"]), per_sample=st.booleans())
def test_torch_unfold_and_fold_equal_portable_im2col_and_col2im(g, dtype, per_sample):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    rng = np.random.default_rng(0)
    x = torch.asarray(rng.standard_normal(g["shape"]).astype(dtype))
    args = (g["kernel"], g["stride"], g["padding"], per_sample, g["dilation"])
    from xpnet.backend import fast_torch

    col = fast_torch.im2col(x, *args)
    assert col.dtype == x.dtype
    np.testing.assert_array_equal(col.numpy(), im2col_portable(x, *args).numpy())
    c = torch.asarray(rng.standard_normal(tuple(col.shape)).astype(dtype))
    # fold sums overlapping windows in its own order: equal up to rounding, not bit for bit
    np.testing.assert_allclose(fast_torch.col2im(c, g["shape"], *args).numpy(),
                               col2im_portable(c, g["shape"], *args).numpy(), **xn.testing.tolerance(dtype))


def test_registry_picks_the_torch_paths():
    xp = pytest.importorskip("array_api_compat.torch", reason="torch is not installed (pip install -e '.[backends]')")
    from xpnet.backend import fast_torch

    assert backend.fast_path("im2col", xp) is fast_torch.im2col
    assert backend.fast_path("col2im", xp) is fast_torch.col2im


# -- JAX: one compiled function per geometry, against the portable code. The portable code runs on the
# inputs' NumPy copies: the same operations in the same IEEE arithmetic as on JAX arrays, without JAX compiling each
# of them (~20 s for these cases). The layers on JAX, through these paths, are checked against PyTorch in test_conv,
# test_pool, test_conv_transpose and test_dilation.

JAX_CONV = [((2, 3, 7, 6), (3, 2), (1, 2), (1, 0), (1, 1), False),  # (shape, kernel, stride, padding, dilation,
            ((1, 2, 9, 8), (2, 3), (2, 1), (1, 1), (2, 1), True),  # per_sample)
            ((2, 2, 5, 5), (3, 3), (3, 2), (0, 1), (1, 2), True),
            ((1, 1, 4, 3), (1, 1), (1, 1), (0, 0), (1, 1), False)]


def _jax():
    from conftest import library_device

    dev = library_device("jax:cpu")  # float64 on
    from xpnet.backend import fast_jax

    return dev, fast_jax


@pytest.mark.parametrize("shape,kernel,stride,padding,dilation,per_sample", JAX_CONV)
def test_jax_im2col_and_col2im_equal_portable(shape, kernel, stride, padding, dilation, per_sample):
    dev, fast_jax = _jax()
    rng = np.random.default_rng(0)
    host = rng.standard_normal(shape)
    host[0, 0, 1, 1], host[-1, -1, -1, 0] = np.inf, np.nan  # a gather moves them, never spreads them
    args = (kernel, stride, padding, per_sample, dilation)
    col = fast_jax.im2col(xn.to_device(host, dev), *args)
    assert str(col.dtype) == "float64"
    np.testing.assert_array_equal(xn.to_numpy(col), im2col_portable(host, *args))
    c = rng.standard_normal(tuple(col.shape))
    back = fast_jax.col2im(xn.to_device(c, dev), shape, *args)
    assert back.shape == shape
    # the same sums in the same order (the offsets' windows added to zeros one after the other): bit for bit
    np.testing.assert_array_equal(xn.to_numpy(back), col2im_portable(c, shape, *args))


@pytest.mark.parametrize("shape,kernel,padding,dilation", [((2, 3, 5, 4), (3, 2), (1, 1), (1, 2)),
                                                            ((1, 2, 6, 5), (2, 3), (0, 2), (2, 1)),
                                                            ((1, 2, 1, 3), (3, 2), (2, 0), (2, 1))])  # a row past dx
def test_jax_stride1_input_gradient_passes_equal_portable(shape, kernel, padding, dilation):
    from xpnet.layers._im2col import conv_out_hw, flat_dy_portable, shifted_sums_portable

    dev, fast_jax = _jax()
    rng = np.random.default_rng(1)
    n, c, h, w = shape
    oh, ow = conv_out_hw((h, w), kernel, (1, 1), padding, dilation)
    rows, wp = max(h + padding[0], oh), w + 2 * padding[1]  # as input_grad_stride1 lays them out
    dy = rng.standard_normal((n, 4, oh, ow))
    np.testing.assert_array_equal(xn.to_numpy(fast_jax.flat_dy(xn.to_device(dy, dev), rows, wp)),
                                  flat_dy_portable(dy, rows, wp))
    dcol = rng.standard_normal((c, kernel[0] * kernel[1], n * rows * wp))
    args = (shape, kernel, padding, dilation, rows, wp)
    # the same sums in the same order: bit for bit
    np.testing.assert_array_equal(xn.to_numpy(fast_jax.shifted_sums(xn.to_device(dcol, dev), *args)),
                                  shifted_sums_portable(dcol, *args))


# (kernel, stride, padding, dilation, ceil_mode); x is (2, 2, 7, 6) with its top-left 2x2 of channel 0 -inf, so that
# a padded window there holds only -inf.
JAX_POOL = [((3, 3), (2, 2), (1, 1), (1, 1), True), ((2, 2), (1, 1), (1, 1), (2, 2), False),
            ((3, 2), (2, 1), (1, 0), (1, 1), False), ((2, 2), (2, 2), (0, 0), (1, 1), True)]


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", JAX_POOL)
def test_jax_maxpool_equals_portable_on_ties_nans_and_infs(kernel, stride, padding, dilation, ceil_mode):
    from xpnet.layers import pool
    from xpnet.layers._im2col import out_size, span

    dev, fast_jax = _jax()
    rng = np.random.default_rng(2)
    host = rng.integers(-1, 2, (2, 2, 7, 6)).astype(np.float64)  # three values: ties everywhere
    host[0, 0, :2, :2] = -np.inf
    host[0, 1, 3, 2] = host[0, 1, 4, 3] = host[1, 0, 5, 5] = np.nan
    host[1, 1, 2, 3], host[1, 1, 6, 0], host[1, 0, 0, 4] = np.inf, -np.inf, np.inf
    rows, cols = span(kernel, dilation)
    out_hw = (out_size(7, rows, stride[0], padding[0], ceil_mode), out_size(6, cols, stride[1], padding[1], ceil_mode))
    y, first = fast_jax.maxpool2d_forward(xn.to_device(host, dev), kernel, stride, padding, out_hw, dev.xp.int8,
                                          dilation)
    y_ref, first_ref = pool.maxpool2d_forward(host, kernel, stride, padding, out_hw, np.int8, dilation)
    assert str(first.dtype) == "int8" and y.shape == y_ref.shape
    np.testing.assert_array_equal(xn.to_numpy(y), y_ref)
    np.testing.assert_array_equal(xn.to_numpy(first), first_ref)
    dy = rng.standard_normal(tuple(y.shape))
    dy[1, 1, 0, 0] = np.inf  # its whole window's gradient NaN (inf * 0), as the portable code's
    geometry = ((2, 2, 7, 6), kernel, stride, padding, dilation)
    with np.errstate(invalid="ignore"):
        dx_ref = pool.maxpool2d_backward(dy, first_ref, *geometry)
    # each pixel's shares added in the offsets' order: bit for bit, but for the sign of a zero where the windows
    # do not overlap (the portable code writes them, -0.0 from a negative dy * 0 stays; added to 0.0 it is 0.0)
    np.testing.assert_array_equal(xn.to_numpy(fast_jax.maxpool2d_backward(xn.to_device(dy, dev), first, *geometry)),
                                  dx_ref)


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", [((3, 3), (2, 2), (1, 1), True),
                                                              ((2, 3), (1, 2), (1, 0), False),
                                                              ((2, 2), (2, 2), (0, 0), True)])
def test_jax_avgpool_window_sums_and_backward_equal_portable(kernel, stride, padding, ceil_mode):
    """The same sums in the same order: bit for bit, an inf and a NaN in x and in the shares included (the
    portable backward writes non-overlapping windows where this adds them to zeros: equal, -0.0 == 0.0)."""
    from xpnet.layers import pool
    from xpnet.layers._im2col import out_size

    dev, fast_jax = _jax()
    rng = np.random.default_rng(3)
    host = rng.standard_normal((2, 2, 7, 6))
    host[0, 1, 3, 2], host[1, 0, 5, 5] = np.inf, np.nan
    out_hw = tuple(out_size(size, k, s, p, ceil_mode) for size, k, s, p in zip((7, 6), kernel, stride, padding))
    y = fast_jax.avgpool2d_sums(xn.to_device(host, dev), kernel, stride, padding, out_hw)
    np.testing.assert_array_equal(xn.to_numpy(y), pool.avgpool2d_sums(host, kernel, stride, padding, out_hw))
    share = rng.standard_normal((2, 2, *out_hw))
    share[1, 1, 0, 0] = np.inf
    dx = fast_jax.avgpool2d_backward(xn.to_device(share, dev), (2, 2, 7, 6), kernel, stride, padding)
    np.testing.assert_array_equal(xn.to_numpy(dx), pool.avgpool2d_backward(share, (2, 2, 7, 6), kernel, stride,
                                                                           padding))


def test_registry_picks_the_jax_paths_and_can_be_switched_off(portable_only):
    dev, fast_jax = _jax()
    ops = ("im2col", "col2im", "conv_flat_dy", "conv_shifted_sums", "maxpool2d_forward", "maxpool2d_backward",
           "avgpool2d_sums", "avgpool2d_backward")
    assert all(backend.fast_path(op, dev.xp, im2col_portable) is im2col_portable for op in ops)
    backend.set_fast_paths(True)
    picked = [backend.fast_path(op, dev.xp, im2col_portable) for op in ops]
    assert picked == [fast_jax.im2col, fast_jax.col2im, fast_jax.flat_dy, fast_jax.shifted_sums,
                      fast_jax.maxpool2d_forward, fast_jax.maxpool2d_backward, fast_jax.avgpool2d_sums,
                      fast_jax.avgpool2d_backward]


# -- optimizers: one work buffer through ``out=`` (NumPy, CuPy) against a temporary per operation --------


def _optimizer_run(name, dev, enabled, rng_seed=0, steps=4):
    """Parameters and state after ``steps`` updates of two parameters of different sizes, with the
    ``out=`` path on or off (the Numba kernels of SGD, Momentum and Adam off: tests/test_numba.py
    compares them)."""
    rng = np.random.default_rng(rng_seed)
    params = {"a": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}

    class Model:
        def __init__(self):
            self.p = {k: xn.to_device(v, dev) for k, v in params.items()}
            self.g = {}

        def named_params(self):
            return self.p

        def named_grads(self):
            return self.g

    model, opt = Model(), xn.optim.OPTIMIZERS[name](lr=0.05)
    previous, numba = backend.set_fast_paths(enabled), backend.set_numba(False)
    try:
        for _ in range(steps):
            model.g = {k: xn.to_device(rng.standard_normal(v.shape).astype(np.float32), dev) for k, v in params.items()}
            opt.step(model)
    finally:
        backend.set_fast_paths(previous)
        backend.set_numba(numba)
    return model.p, opt


@pytest.mark.parametrize("name", sorted(xn.optim.OPTIMIZERS))
def test_optimizer_out_path_equals_temporaries_bit_for_bit(name):
    fast, opt = _optimizer_run(name, xn.device("cpu"), True)
    slow, _ = _optimizer_run(name, xn.device("cpu"), False)
    for k in fast:
        np.testing.assert_array_equal(fast[k], slow[k])
    # The shared work buffer is scratch: never in the checkpointed state.
    held = [a for slots in opt.state_dict()["state"].values() for a in slots.values()]
    assert not any(np.shares_memory(a, buf) for a in held for buf in opt._work_buffers.values())


def test_optimizer_work_buffer_is_shared_and_not_kept_after_moving():
    _, opt = _optimizer_run("adam", xn.device("cpu"), True)
    (buf,) = opt._work_buffers.values()
    assert buf.shape == (15,)  # one buffer, the size of the largest parameter
    opt.to(xn.device("cpu"))
    assert opt._work_buffers == {}


def _run_kernel_source_in_numpy(name, arrays, scalars):
    """Execute a fused CuPy kernel's C body as NumPy statements (the bodies are plain arithmetic,
    one statement per ';'), so its arithmetic is checked here without a GPU."""
    in_params, out_params, body = cupy_kernels.ELEMENTWISE[name]
    declared = [p.split()[1] for p in (in_params + ", " + out_params).split(", ")]
    scope = {"sqrt": np.sqrt, **arrays, **scalars}
    assert sorted(declared) == sorted(scope.keys() - {"sqrt"}), "kernel parameters and test names differ"
    for statement in filter(None, (s.strip() for s in body.split(";"))):
        exec(statement, {}, scope)  # noqa: S102 - the kernel bodies of this package, nothing else
    return scope


@pytest.mark.parametrize("name,opt,extra", [
    ("sgd", lambda: xn.optim.SGD(lr=0.05), set()),
    ("momentum", lambda: xn.optim.Momentum(lr=0.05, momentum=0.8), {"v"}),
    ("adam", lambda: xn.optim.Adam(lr=0.05, betas=(0.8, 0.9), eps=1e-3), {"m", "v"}),
    ("adamw", lambda: xn.optim.AdamW(lr=0.05, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.5), {"m", "v"}),
    ("sgd_momentum", lambda: xn.optim.SGD(lr=0.05, momentum=0.8, dampening=0.3), {"v"}),
    ("sgd_nesterov", lambda: xn.optim.SGD(lr=0.05, momentum=0.8, nesterov=True), {"v"}),
    ("rms", lambda: xn.optim.RMSprop(lr=0.05, alpha=0.7, eps=1e-3), {"h"}),
    ("rms", lambda: xn.optim.AdaGrad(lr=0.05, eps=1e-3), {"h"}),
])
def test_fused_cupy_kernel_bodies_do_the_portable_arithmetic(name, opt, extra):
    rng = np.random.default_rng(3)
    p, opt = rng.standard_normal((4, 3)), opt()
    state = {k: np.zeros_like(p) for k in extra}
    kernel_p = p.copy()
    model = type("M", (), {"named_params": lambda self: {"w": p}, "named_grads": lambda self: {"w": g}})()
    for t in range(1, 4):
        g = rng.standard_normal(p.shape)
        opt.step(model)  # on NumPy: the portable arithmetic (Numba's kernels where installed, bit for bit)
        if name.startswith("sgd_") and t == 1:  # the first step (v = g) is the portable update's on CuPy too
            kernel_p, state = p.copy(), {"v": opt.state["w"]["v"].copy()}
            continue
        if name == "sgd":
            scalars = {"lr": opt.lr}
        elif name.startswith("sgd_"):
            scalars = {"lr": opt.lr, "momentum": opt.momentum, "keep": 1 - opt.dampening}
        elif name == "rms":
            alpha = getattr(opt, "alpha", 1.0)  # AdaGrad: a decay and a scale of 1
            scalars = {"lr": opt.lr, "decay": alpha, "scale": 1.0 if alpha == 1.0 else 1 - alpha, "eps": opt.eps}
        elif name == "momentum":
            scalars = {"lr": opt.lr, "momentum": opt.momentum}
        else:
            (b1, b2), c = opt.betas, np.sqrt(1 - opt.betas[1] ** t)
            scalars = {"one_minus_b1": 1 - b1, "b2": b2, "one_minus_b2": 1 - b2,
                       "step": opt.lr * c / (1 - b1 ** t), "eps": opt.eps * c}
            if name == "adamw":
                scalars["keep"] = 1 - opt.lr * opt.weight_decay
        out = _run_kernel_source_in_numpy(name, {"g": g, "p": kernel_p, **state}, scalars)
        kernel_p, state = out["p"], {k: out[k] for k in extra}
    np.testing.assert_allclose(kernel_p, p, rtol=1e-12, atol=1e-14)
    for k in extra:
        np.testing.assert_allclose(state[k], opt.state["w"][k], rtol=1e-12, atol=1e-14)


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(xn.optim.OPTIMIZERS))
def test_cupy_optimizers_fast_equal_portable_and_cpu(name):
    """Fused kernels (all but Nesterov's book conventions; SGD's with momentum after its first step) against the
    portable path on the GPU and against the CPU."""
    dev = require_cuda()
    fast, _ = _optimizer_run(name, dev, True)
    slow, _ = _optimizer_run(name, dev, False)
    cpu, _ = _optimizer_run(name, xn.device("cpu"), True)
    for k in fast:
        np.testing.assert_allclose(xn.to_numpy(fast[k]), xn.to_numpy(slow[k]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(xn.to_numpy(fast[k]), cpu[k], rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), c=st.integers(1, 12), dtype=st.sampled_from(["float32", "float64"]),
       dout=st.sampled_from([1.0, 0.5]))
def test_numpy_cross_entropy_of_labels_equals_portable(m, c, dtype, dout):
    """No ignored label and no smoothing: NumPy's fast path leaves the per-row weights out; the loss,
    softmax and gradient are the portable function's, bit for bit."""
    from xpnet.losses import cross_entropy_labels, cross_entropy_labels_backward

    rng = np.random.default_rng(m * 100 + c)
    y, labels = (rng.standard_normal((m, c)) * 4).astype(dtype), rng.integers(0, c, m)
    fast = backend.fast_path("cross_entropy_labels", np, cross_entropy_labels)
    assert fast is not cross_entropy_labels
    value, p, kept, rows = fast(y, labels, -100, 0.0)
    ref_value, ref_p, ref_labels, ref_rows = cross_entropy_labels(y, labels, -100, 0.0)
    assert rows is None and type(value) is type(ref_value) and value.dtype == ref_value.dtype == y.dtype
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_array_equal(p, ref_p)
    np.testing.assert_array_equal(kept, ref_labels)
    classes = np.arange(c)[None, :]
    back = backend.fast_path("cross_entropy_labels_backward", np, cross_entropy_labels_backward)
    dy = back(p, kept, rows, 0.0, dout, classes)
    np.testing.assert_array_equal(dy, cross_entropy_labels_backward(ref_p, ref_labels, ref_rows, 0.0, dout, classes))
    assert dy.dtype == y.dtype


def test_numpy_cross_entropy_sends_ignored_labels_and_smoothing_to_the_portable_code(rng):
    """Label smoothing goes to the portable code, ignored labels to Numba's kernel where it is installed (else
    to the portable code too); either way the values are the portable code's, ignored rows without gradient."""
    y, labels = rng.standard_normal((6, 4)).astype(np.float32), np.array([0, 3, -1, 2, -1, 1])
    for smoothing, ignore in ((0.0, -1), (0.1, -100)):
        loss = xn.losses.SoftmaxCrossEntropy(ignore_index=ignore, label_smoothing=smoothing)
        fast_value, fast_dy = loss.forward(y, np.abs(labels) if ignore == -100 else labels), loss.backward()
        previous = backend.set_fast_paths(False)
        try:
            ref_value, ref_dy = loss.forward(y, np.abs(labels) if ignore == -100 else labels), loss.backward()
        finally:
            backend.set_fast_paths(previous)
        if smoothing:  # the portable code itself
            np.testing.assert_array_equal(fast_value, ref_value)
            np.testing.assert_array_equal(fast_dy, ref_dy)
        else:  # Numba's kernel takes ignored labels (its sums in float64)
            np.testing.assert_allclose(fast_value, ref_value, rtol=1e-6)
            np.testing.assert_allclose(fast_dy, ref_dy, rtol=1e-6, atol=1e-7)
        if ignore == -1:
            assert not fast_dy[2].any() and not fast_dy[4].any()  # ignored rows get no gradient


@pytest.mark.parametrize("make", [lambda: xn.layers.RNN(5, 7), lambda: xn.layers.LSTM(5, 7),
                                  lambda: xn.layers.GRU(5, 7), lambda: xn.layers.GRU(5, 7, convention="book")],
                         ids=["rnn", "lstm", "gru", "gru-book"])
def test_recurrent_layers_on_numpys_fast_paths_equal_portable_bit_for_bit(make, rng):
    """NumPy's fast paths (without MKL, whose own are in tests/test_mkl.py): the backward steps multiply
    by a contiguous copy of Wh.T (OpenBLAS is faster with it), and the LSTM's steps compute their gates
    in place; outputs and gradients are the portable path's (through the transposed view, with new
    arrays), bit for bit."""
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)
    dhs = rng.standard_normal((3, 6, 7)).astype(np.float32)
    results = []
    mkl = backend.set_mkl(False)
    try:
        for on in (True, False):
            previous = backend.set_fast_paths(on)
            try:
                xn.init.seed(0)
                layer = make()
                hs = layer.forward(x)
                dx = layer.backward(dhs)
                results.append((hs, dx, dict(layer.grads), layer.dh))
            finally:
                backend.set_fast_paths(previous)
        assert backend.fast_path("step_weights_transposed", np) is fast_numpy.step_weights_transposed
        assert backend.fast_path("lstm_step", np) is fast_numpy.lstm_step
        assert backend.fast_path("lstm_step_backward", np) is fast_numpy.lstm_step_backward
    finally:
        backend.set_mkl(mkl)  # a failure above must not leave MKL off for the tests after this one
    (hs, dx, grads, dh), (ref_hs, ref_dx, ref_grads, ref_dh) = results
    np.testing.assert_array_equal(hs, ref_hs)
    np.testing.assert_array_equal(dx, ref_dx)
    np.testing.assert_array_equal(dh, ref_dh)
    for k, g in grads.items():
        np.testing.assert_array_equal(g, ref_grads[k])
    assert fast_numpy.step_weights_transposed(np.ones((2, 3), np.float32), 6).flags.c_contiguous


@pytest.mark.parametrize("threads", [1, 2])
def test_numpy_cross_entropy_over_two_threads_gives_the_same_bits(threads, rng, monkeypatch):
    """A large softmax is split by rows over two threads where NumPy's BLAS has two: every number, the
    loss included, is the one-thread result."""
    y = (rng.standard_normal((301, 1000)) * 4).astype(np.float32)
    labels = rng.integers(0, 1000, 301)
    loss = xn.losses.SoftmaxCrossEntropy()
    previous = backend.set_numba(False)  # NumPy's own path, which Numba's kernel takes below the split size
    try:
        _same_bits_over_threads(loss, y, labels, threads, monkeypatch)
    finally:
        backend.set_numba(previous)


def _same_bits_over_threads(loss, y, labels, threads, monkeypatch):
    monkeypatch.setattr(fast_numpy, "numpy_blas_threads", lambda: 1)
    monkeypatch.setattr(fast_numpy, "_pool", [])
    ref_value, ref_dy = loss.forward(y, labels), loss.backward(0.5)
    splits = []
    monkeypatch.setattr(fast_numpy, "SPLIT_ELEMENTS", 1000)
    monkeypatch.setattr(fast_numpy, "numpy_blas_threads", lambda: threads)
    original = fast_numpy._row_halves
    monkeypatch.setattr(fast_numpy, "_row_halves", lambda run, rows, n: splits.append(rows) or original(run, rows, n))
    value, dy = loss.forward(y, labels), loss.backward(0.5)
    assert splits == [301, 301]
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_array_equal(dy, ref_dy)
    assert bool(fast_numpy._pool) == (threads == 2)
