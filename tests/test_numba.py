"""The Numba kernels (``xpnet.backend.numba_kernels``) for BatchNorm, LayerNorm, softmax, the softmax
cross-entropy, ReLU, MaxPool2d, Embedding's backward and the optimizers' updates on NumPy arrays give the portable
code's numbers, are what NumPy arrays get where Numba is installed, and step aside for what they are not built
for."""

import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xpnet as xn
from xpnet import backend
from xpnet.backend import registry
from xpnet.layers import BatchNorm, Conv2d, Flatten, LayerNorm, Linear, MaxPool2d, ReLU, Softmax, activations, pool
from xpnet.layers.activations import relu_forward as _portable_relu

pytest.importorskip("numba", reason="Numba is not installed (pip install -e '.[numba]')")
from xpnet.backend import fast_numba, numba_kernels, numba_rows  # noqa: E402 - only where Numba is installed

OPS = ("batchnorm_forward", "batchnorm_backward", "relu_forward", "relu_backward", "maxpool2d_forward",
       "maxpool2d_backward", "layernorm_forward", "layernorm_backward", "softmax", "softmax_backward")
TOL = {"float16": {"rtol": 0, "atol": 0}, "float32": {"rtol": 2e-5, "atol": 2e-5},
       "float64": {"rtol": 1e-12, "atol": 1e-12}}


def run(layer, x, dy_seed=1, train=True, numba=True):
    """y, dx and the grads of one forward and backward, with the Numba kernels on or off."""
    previous = backend.set_numba(numba)
    try:
        y = layer.forward(x, train=train)
        dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(x.dtype)
        dx = layer.backward(dy)
        return [y, dx, *(layer.grads[k] for k in sorted(layer.grads))]
    finally:
        backend.set_numba(previous)


def assert_same(layer, x, train=True, exact=False):
    fast, ref = run(layer, x, train=train), run(layer, x, train=train, numba=False)
    for a, b in zip(fast, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        if exact:
            np.testing.assert_array_equal(a, b)
        else:  # sums in another order: equal to rounding relative to the largest entry
            tol = TOL[str(x.dtype)]
            np.testing.assert_allclose(a, b, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, float(np.abs(b).max())))


def test_numpy_arrays_get_the_kernels():
    for op in OPS:
        assert backend.fast_path(op, np) is (getattr(numba_kernels, op, None) or getattr(numba_rows, op)), op
    previous = backend.set_numba(False)
    try:
        assert all(backend.fast_path(op, np) is None for op in OPS)
    finally:
        backend.set_numba(previous)
    # BatchNorm through the kernel keeps x and the mean, the portable path x - mean.
    bn = BatchNorm(3)
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    bn.forward(x)
    assert bn._x_shift[0] is not None and bn._x_shift[1] is not None


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 4), c=st.integers(1, 5), hw=st.integers(3, 9), dtype=st.sampled_from(["float32", "float64"]),
       train=st.booleans(), shift=st.floats(-50, 50))
def test_batchnorm_equals_portable(n, c, hw, dtype, train, shift):
    x = (np.random.default_rng(n * 100 + c).standard_normal((n, c, hw, hw)) * 3 + shift).astype(dtype)
    bn = BatchNorm(c, dtype=dtype)
    bn.params["gamma"] = np.linspace(0.5, 2, c).astype(dtype)
    bn.params["beta"] = np.linspace(-1, 1, c).astype(dtype)
    bn.buffers["running_mean"] = np.full(c, shift, dtype)
    assert_same(bn, x, train=train)


def test_batchnorm_running_statistics_equal_portable():
    x = np.random.default_rng(0).standard_normal((8, 4, 6, 6)).astype(np.float32) * 2 + 1
    fast, ref = BatchNorm(4), BatchNorm(4)
    run(fast, x)
    run(ref, x, numba=False)
    for k in ("running_mean", "running_var"):
        np.testing.assert_allclose(fast.buffers[k], ref.buffers[k], rtol=1e-6)
    # PyTorch's running_var on both paths: the unbiased variance of the 8 * 6 * 6 values per channel
    unbiased = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(4, -1).var(axis=1, ddof=1)
    np.testing.assert_allclose(fast.buffers["running_var"], 0.9 + 0.1 * unbiased, rtol=1e-6)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False}, {"momentum": None},
                                    {"momentum": None, "affine": False}],
                         ids=["affine-False", "track-False", "momentum-None", "momentum-None-affine-False"])
def test_batchnorm_pytorch_options_equal_portable(kwargs, train):
    """PyTorch's options through the kernels (constant gamma 1 and beta 0 for affine=False; the batch's
    statistics in evaluation without running ones): three steps, the outputs, gradients and buffers."""
    rng = np.random.default_rng(3)
    fast, ref = BatchNorm(3, **kwargs), BatchNorm(3, **kwargs)
    for _ in range(3):
        x = (rng.standard_normal((4, 3, 4, 4)) * 2 + 1).astype(np.float32)
        for a, b in zip(run(fast, x, train=train), run(ref, x, train=train, numba=False), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * max(1.0, float(np.abs(b).max())))
        assert fast._x_shift[1] is not None and ref._x_shift[1] is None  # the kernel's cache, and the portable one's
    assert set(fast.buffers) == set(ref.buffers) and set(fast.grads) == set(ref.grads)
    for k in ref.buffers:
        np.testing.assert_allclose(fast.buffers[k], ref.buffers[k], rtol=1e-6, err_msg=k)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), dtype=st.sampled_from(["float32", "float64"]))
def test_relu_equals_portable(shape, dtype):
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(dtype)
    x.reshape(-1)[::3] = 0.0  # the kink itself: x = 0 is not positive
    assert_same(ReLU(), x, exact=True)


@st.composite
def pool_geometry(draw):
    """MaxPool2d's positional arguments (kernel, stride, padding, dilation, return_indices, ceil_mode) and an
    input shape it pools: at least the kernel, padded; with ceil_mode at least one window's start."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    least_h, least_w = (kh - sh + 1, kw - sw + 1) if ceil_mode else (kh, kw)
    return {"shape": (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(max(1, least_h - 2 * ph), 9)),
                      draw(st.integers(max(1, least_w - 2 * pw), 9))),
            "args": ((kh, kw), (sh, sw), (ph, pw), 1, False, ceil_mode)}


@settings(max_examples=60, deadline=None)
@given(g=pool_geometry(), dtype=st.sampled_from(["float32", "float64"]), ties=st.booleans())
def test_maxpool_equals_portable(g, dtype, ties):
    rng = np.random.default_rng(sum(g["shape"]))
    # With ties (small integers) the gradient must go to the same first maximum of each window.
    x = (rng.integers(-2, 3, g["shape"]) if ties else rng.standard_normal(g["shape"])).astype(dtype)
    layer = MaxPool2d(*g["args"])
    fast, ref = run(layer, x), run(MaxPool2d(*g["args"]), x, numba=False)
    np.testing.assert_array_equal(fast[0], ref[0])
    np.testing.assert_array_equal(layer._first, _first_of(MaxPool2d(*g["args"]), x))
    # Overlapping windows add into dx in another order: equal to rounding.
    np.testing.assert_allclose(fast[1], ref[1], **TOL[dtype])


@pytest.mark.parametrize("shape", [(3, 4, 7, 5), (2, 1, 5, 9), (1, 2, 1, 3)])
@pytest.mark.parametrize("args", [(2,), (3, 2, 1), ((2, 3), (2, 3), (1, 0)), ((3, 2), (3, 1), (1, 1))])
def test_maxpool_ceil_mode_windows_past_the_padding_equal_portable(shape, args):
    """ceil_mode's last windows run past the padded input, which the kernels read without bounds checks:
    they must see -inf there (the 2x2 kernel too); y, the first maxima and dx equal the portable path's,
    called directly and through the layer (whose NumPy input the Numba kernel accepts)."""
    x = np.random.default_rng(0).standard_normal(shape)
    layer = MaxPool2d(*args, ceil_mode=True)
    out_hw = layer._out_hw(shape)
    if min(out_hw) < 1:
        pytest.skip("no window: refused on both paths")
    geometry = (layer.kernel_size, layer.stride, layer.padding)
    y, first = numba_kernels.maxpool2d_forward(x, *geometry, out_hw, np.int8)
    y_ref, first_ref = pool.maxpool2d_forward(x, *geometry, out_hw, np.int8)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(first, first_ref)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(numba_kernels.maxpool2d_backward(dy, first, shape, *geometry),
                               pool.maxpool2d_backward(dy, first, shape, *geometry), **TOL["float64"])
    assert fast_numba._kernel_ready(x)
    fast, ref = run(layer, x), run(MaxPool2d(*args, ceil_mode=True), x, numba=False)
    np.testing.assert_array_equal(fast[0], ref[0])
    np.testing.assert_allclose(fast[1], ref[1], **TOL["float64"])


@pytest.mark.parametrize("shape", [(3, 4, 8, 6), (2, 3, 7, 9)])  # 2x2 windows tiling the image, and not
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool2x2_backward_equals_portable(shape, ties):
    rng = np.random.default_rng(0)
    x = (rng.integers(-1, 2, shape) if ties else rng.standard_normal(shape)).astype(np.float32)
    assert_same(MaxPool2d(2), x, exact=True)


def _first_of(layer, x):
    previous = backend.set_numba(False)
    try:
        layer.forward(x)
        return layer._first
    finally:
        backend.set_numba(previous)


@pytest.mark.parametrize("args", [(2,), (3, 2, 1), ((2, 3), (1, 2), (1, 1))])
def test_maxpool_nan_and_inf_as_portable(args):
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    x[0, 0, 0, 1] = np.nan
    x[0, 1, 2, 2] = np.inf
    x[1, 0] = -np.inf
    fast, ref = run(MaxPool2d(*args), x), run(MaxPool2d(*args), x, numba=False)
    np.testing.assert_array_equal(fast[0], ref[0])  # NaN where portable has NaN
    assert np.isnan(fast[0]).any() and np.isposinf(fast[0]).any()


@pytest.mark.parametrize("shape,args", [((1, 2, 5, 5), (2,)), ((1, 2, 6, 6), (2,)), ((2, 1, 7, 6), (3, 2, 1)),
                                        ((1, 2, 6, 7), ((2, 3), (1, 2), (1, 1))),
                                        ((1, 2, 5, 5), (2, 2, 0, 1, False, True)),  # ceil_mode: 3x3 windows
                                        ((2, 1, 6, 7), (3, 2, 1, 1, False, True))])
def test_maxpool_backward_with_inf_and_nan_in_dy_follows_one_rule_on_every_path(shape, args):
    """dy times each window's mask on both paths: an inf or NaN in dy makes the window's other pixels
    NaN; pixels in no window get 0. (5x5 with pool 2, windows that do not tile, used to differ.)"""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    results = []
    for numba in (True, False):
        layer, previous = MaxPool2d(*args), backend.set_numba(numba)
        try:
            y = layer.forward(x)
            dy = rng.standard_normal(y.shape).astype(np.float32) if not results else dy
            dy[0, 0, 0, 0], dy[0, -1, -1, -1], dy[-1, 0, -1, 0] = np.inf, np.nan, -np.inf
            with np.errstate(invalid="ignore"):  # NumPy's inf * 0 warns
                results.append(layer.backward(dy))
        finally:
            backend.set_numba(previous)
    fast, ref = results
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    np.testing.assert_allclose(fast, ref, **TOL["float32"])  # overlapping windows add in another order
    if args == (2,):  # the window of dy[0, 0, 0, 0] = inf: inf at its maximum, NaN on its other three pixels
        window = fast[0, 0, :2, :2].reshape(-1)
        assert np.isinf(window).sum() == 1 and np.isnan(window).sum() == 3
    if shape[2:] == (5, 5) and args == (2,):
        assert not np.isnan(fast[:, :, 4, :]).any() and not fast[:, :, 4, :].any()  # in no window


def test_relu_keeps_nan_and_turns_inf_gradient_at_zero_to_nan_as_portable():
    x = np.array([[np.nan, -1.0, 0.0, 2.0, -np.inf, np.inf]], np.float32)
    relu = ReLU()
    previous = backend.set_numba(True)
    try:
        y = relu.forward(x)
        dx = relu.backward(np.full_like(x, np.inf))
    finally:
        backend.set_numba(previous)
    np.testing.assert_array_equal(y, [[np.nan, 0, 0, 2, 0, np.inf]])
    np.testing.assert_array_equal(dx, [[np.nan, np.nan, np.nan, np.inf, np.nan, np.inf]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", [{}, {"bias": False}, {"elementwise_affine": False}, {"frozen": True}])
@pytest.mark.parametrize("shape,shift", [((4, 7, 33), 0.0), ((5, 2, 3, 4), 100.0)])
def test_layernorm_equals_portable(dtype, kwargs, shape, shift):
    """Every output, input gradient and parameter gradient, over one axis or several, far from zero too;
    frozen (requires_grad_(False)): dx alone, by both paths."""
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 3 + shift).astype(dtype)
    layer = LayerNorm(shape[2:], dtype=dtype, **{k: v for k, v in kwargs.items() if k != "frozen"})
    layer.requires_grad_("frozen" not in kwargs)
    for k, p in layer.params.items():
        layer.params[k] = rng.standard_normal(p.shape).astype(dtype)
    assert_same(layer, x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dim", [-1, 1])
def test_softmax_equals_portable_with_masked_and_nan_rows(dtype, dim):
    """Along the last axis through the kernel (another axis: the portable path); a row of -inf only (every key
    masked) or holding a NaN gives NaN in both, a partly masked row zeros where it is masked."""
    x = np.random.default_rng(2).standard_normal((3, 4, 9)).astype(dtype) * 4
    x[0, 0, :] = -np.inf
    x[0, 1, 2] = np.nan
    x[0, 3, :4] = -np.inf
    fast, ref = run(Softmax(dim=dim), x), run(Softmax(dim=dim), x, numba=False)
    for a, b in zip(fast, ref, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), **TOL[dtype])
    if dim == -1:
        assert np.all(fast[0][0, 3, :4] == 0) and np.allclose(fast[0][0, 3, 4:].sum(), 1)


def _cross_entropy(y, labels, numba, **kwargs):
    """The loss, dy, and the correct count xn.train reads (None: it takes the argmax itself), with the kernels on
    or off."""
    previous = backend.set_numba(numba)
    try:
        loss = xn.losses.SoftmaxCrossEntropy(**kwargs)
        value = loss.forward(y, labels)
        count = loss.correct_count()
        return value, loss.backward(), loss.backward(0.5), count
    finally:
        backend.set_numba(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("id_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_softmax_cross_entropy_kernel_equals_portable(dtype, id_dtype, ignore_index):
    """Integer labels through Numba's kernel (the loss, dy and the rows' hits in three passes): the portable
    code's loss and gradient, rows of ignore_index without gradient and out of the mean; the correct count is
    the argmax's, a NaN row's first NaN its argmax as NumPy's."""
    rng = np.random.default_rng(3)
    y = (rng.standard_normal((9, 5)) * 3).astype(dtype)
    labels = rng.integers(0, 5, 9).astype(id_dtype)
    labels[4] = 2
    y[1, 3] = np.nan
    value, dy, half, count = _cross_entropy(y, labels, True, ignore_index=ignore_index)
    ref_value, ref_dy, ref_half, _ = _cross_entropy(y, labels, False, ignore_index=ignore_index)
    assert count is not None  # the kernel's hits, read by xn.train in place of an argmax
    assert type(value) is type(ref_value) and dy.dtype == ref_dy.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.isnan(dy), np.isnan(ref_dy))
    for a, b in ((value, ref_value), (dy, ref_dy), (half, ref_half)):
        np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), **TOL[dtype])
    counted = labels != ignore_index
    assert int(count) == int(np.sum(np.argmax(y, axis=1)[counted] == labels[counted]))
    assert not dy[labels == ignore_index].any() if ignore_index == 2 else True


def test_softmax_cross_entropy_kernel_leaves_bad_labels_and_smoothing_to_the_portable_code():
    """A label outside [0, C) with check=False fails as NumPy's indexing does (the kernel reads nothing outside
    the row); label smoothing is the portable code's alone."""
    y = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(IndexError):
        xn.losses.SoftmaxCrossEntropy().forward(y, np.array([0, 4, 1]), check=False)
    assert numba_rows.softmax_cross_entropy(y, np.array([0, 4, 1]), -100, 0.0) is None
    value, dy, _, count = _cross_entropy(y, np.array([0, 3, 1]), True, label_smoothing=0.1)
    ref_value, ref_dy, _, _ = _cross_entropy(y, np.array([0, 3, 1]), False, label_smoothing=0.1)
    assert count is None
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_array_equal(dy, ref_dy)


@pytest.mark.parametrize("layer,x", [
    (BatchNorm(3), np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float16)),  # not built for
    (BatchNorm(3), np.random.default_rng(0).standard_normal((16, 3))),  # (N, D): NumPy's own sums
    (ReLU(), np.random.default_rng(0).standard_normal((4, 6)).T),  # not C-contiguous
    (MaxPool2d(2), np.random.default_rng(0).standard_normal((2, 3, 6, 6)).transpose(0, 1, 3, 2)),
])
def test_what_the_kernels_are_not_built_for_takes_the_portable_path(layer, x):
    if isinstance(layer, BatchNorm):
        layer = BatchNorm(3, dtype=str(x.dtype))
    assert_same(layer, x)


def _without_numba_family(monkeypatch):
    """The registry as in a fresh process that has not loaded the Numba family yet."""
    monkeypatch.setattr(registry, "_loaded", {k: v for k, v in registry._loaded.items() if k != "fast_numba"})
    monkeypatch.setattr(registry, "_FAST_PATHS", {k: [e for e in v if e[0] != "fast_numba"]
                                                  for k, v in registry._FAST_PATHS.items()})
    monkeypatch.setattr(registry, "_resolved", {})
    monkeypatch.setattr(registry, "_guards", {})
    monkeypatch.setattr(registry, "_answers", {})


def test_a_numba_that_fails_to_import_warns_once_and_falls_back(monkeypatch):
    _without_numba_family(monkeypatch)
    monkeypatch.delitem(sys.modules, "xpnet.backend.fast_numba", raising=False)
    monkeypatch.setitem(sys.modules, "xpnet.backend.numba_kernels", None)  # makes the import raise ImportError
    monkeypatch.delattr(xn.backend, "numba_kernels", raising=False)
    portable = []  # the inputs the portable relu_forward ran on
    monkeypatch.setattr(activations, "relu_forward", lambda x: portable.append(x) or _portable_relu(x))
    previous = backend.set_numba(True)
    try:
        x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
        with pytest.warns(UserWarning, match="numba is installed but failed to import.*XPNET_DISABLE_NUMBA"):
            y = ReLU().forward(x)
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        assert len(portable) == 1 and portable[0] is x
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once: no warning per call
            assert backend.fast_path("relu_forward", np) is None
            ReLU().forward(x)
        assert len(portable) == 2
        assert backend.set_numba(True) is True  # the user's switch is left as it was
    finally:
        backend.set_numba(previous)


def _plant(monkeypatch, op, fn):
    """Register ``fn`` in place of the Numba kernel for ``op`` (undone after the test)."""
    (family, _, accepts), = registry._FAST_PATHS[(op, "numpy")]
    monkeypatch.setitem(registry._FAST_PATHS, (op, "numpy"), [(family, fn, accepts)])
    monkeypatch.setattr(registry, "_resolved", {})
    monkeypatch.setattr(registry, "_guards", {})
    monkeypatch.setattr(registry, "_answers", {})


def _convnet(dtype):
    xn.init.seed(0)
    return xn.Sequential(Conv2d(1, 3, 3, padding=1, dtype=dtype), BatchNorm(3, dtype=dtype), ReLU(), MaxPool2d(2),
                         Flatten(), Linear(3 * 4 * 4, 5, dtype=dtype))


def test_gradcheck_passes_through_the_kernels_and_catches_a_planted_bug(monkeypatch):
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8))
    t = np.array([0, 1, 2, 3])
    assert xn.gradcheck(_convnet("float64"), x, t, xn.losses.SoftmaxCrossEntropy()).ok

    real = numba_kernels.batchnorm_backward

    def planted(*args, **kwargs):
        dx, dgamma, dbeta = real(*args, **kwargs)
        return dx * 1.01, dgamma, dbeta  # 1 % off in dx only

    _plant(monkeypatch, "batchnorm_backward", planted)
    assert not xn.gradcheck(_convnet("float64"), x, t, xn.losses.SoftmaxCrossEntropy()).ok



# -- the optimizers' updates ------------------------------------------------------------------------

UPDATES = {"SGD": lambda: xn.optim.SGD(0.1), "Momentum": lambda: xn.optim.Momentum(0.05, 0.9),
           "SGD-momentum": lambda: xn.optim.SGD(0.1, momentum=0.9, dampening=0.1),
           "SGD-nesterov": lambda: xn.optim.SGD(0.1, momentum=0.9, nesterov=True),
           "Nesterov": lambda: xn.optim.Nesterov(0.05, 0.9),
           "Nesterov-book": lambda: xn.optim.Nesterov(0.05, 0.9, convention="book"),
           "Adam": lambda: xn.optim.Adam(0.01), "Adam-book": lambda: xn.optim.Adam(0.01, convention="book"),
           "AdamW": lambda: xn.optim.AdamW(0.01), "SGD-decay": lambda: xn.optim.SGD(0.1, weight_decay=0.01),
           "AdaGrad": lambda: xn.optim.AdaGrad(0.05), "RMSprop": lambda: xn.optim.RMSprop(0.01, alpha=0.9)}


def _train_steps(make_opt, dtype, numba, special=False, transposed=False):
    """Four steps of an optimizer on a small model from fixed gradients: the parameters and the state."""
    previous = backend.set_numba(numba)
    try:
        xn.init.seed(0)
        model = xn.Sequential(Linear(6, 5, dtype=dtype), ReLU(), Linear(5, 3, dtype=dtype))
        if transposed:  # a parameter that is a transposed view: not C-contiguous
            model[0].params["W"] = np.ascontiguousarray(model[0].params["W"].T).T
        opt, rng = make_opt(), np.random.default_rng(1)
        for _ in range(4):
            for layer in (model[0], model[2]):
                for k, p in layer.params.items():
                    g = (rng.standard_normal(p.shape) * 10.0 ** rng.integers(-4, 3, p.shape)).astype(dtype)
                    if special:
                        g.flat[:4] = (np.inf, -np.inf, np.nan, -0.0)
                    layer.grads[k] = g
            with np.errstate(invalid="ignore"):
                opt.step(model)
        return model.named_params(), {n: dict(s) for n, s in opt.state.items()}
    finally:
        backend.set_numba(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(UPDATES))
def test_optimizer_updates_equal_portable_bit_for_bit(name, dtype):
    """One pass per parameter (SGD, Momentum, Adam and AdamW's Adam step) against the portable passes: the
    same arithmetic in the same order, so the same bits, also where gradients hold inf and NaN."""
    for special in (False, True):
        (fast, fast_state), (ref, ref_state) = (_train_steps(UPDATES[name], dtype, numba, special)
                                                for numba in (True, False))
        pairs = [(k, fast[k], ref[k]) for k in ref]
        pairs += [(f"{k}.{slot}", fast_state[k][slot], ref_state[k][slot]) for k in ref_state for slot in ref_state[k]]
        for k, a, b in pairs:  # the bytes: -0.0 is not 0.0 here, nor one NaN another
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (name, dtype, special, k, a, b)


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def test_numpy_parameters_get_the_update_kernels_and_others_the_portable_update():
    from xpnet.optim.base import unfused

    p, g, v = (np.zeros((3, 4), np.float32) for _ in range(3))
    for op, args in (("sgd_update", (p, g, 0.1)), ("momentum_update", (p, g, v, 0.1, 0.9)),
                     ("sgd_momentum_update", (p, g, v, 0.1, 0.9, 0.0, True, False)),
                     ("rms_update", (p, g, v, 0.1, 0.99, 1e-8)),
                     ("adam_update", (p, g, v, v.copy(), 0.9, 0.999, 0.1, 1e-8))):
        assert backend.fast_path(op, np, unfused)(*args) is None  # the kernel ran
        half = tuple(a.astype(np.float16) if isinstance(a, np.ndarray) else a for a in args)
        assert backend.fast_path(op, np, unfused)(*half) is NotImplemented  # not built for float16
        view = tuple(a.T if isinstance(a, np.ndarray) else a for a in args)
        assert backend.fast_path(op, np, unfused)(*view) is NotImplemented  # nor for a transposed view
        arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
        for i in arrays:  # any one array unfit: p or a state read-only, g or a state of another dtype or shape
            for unfit in (_read_only(args[i]), args[i].astype(np.float64), args[i][:, :2].copy()):
                if i == 1 and not unfit.flags.writeable:
                    continue  # the gradient is only read
                odd = (*args[:i], unfit, *args[i + 1:])
                assert backend.fast_path(op, np, unfused)(*odd) is NotImplemented, (op, i, unfit)
    # a transposed parameter takes the portable path and ends where a contiguous one does
    fast, ref = _train_steps(UPDATES["Adam"], "float32", True, transposed=True), _train_steps(UPDATES["Adam"],
                                                                                               "float32", False)
    for k in ref[0]:
        np.testing.assert_array_equal(fast[0][k], ref[0][k], err_msg=k)


def test_the_whole_step_sgd_kernels_take_every_fit_pair_and_refuse_any_unfit_one():
    from xpnet.optim.base import unfused

    ps, gs = [np.ones((3, 4), np.float32), np.ones(4, np.float64)], [np.ones((3, 4), np.float32), np.ones(4)]
    whole = backend.fast_path("sgd_updates", np, unfused)
    assert whole(ps, gs, 0.5) is None and ps[0][0, 0] == 0.5 and ps[1][0] == 0.5  # in place, each in its dtype
    for i, unfit in ((0, ps[0].astype(np.float16)), (0, np.ones((4, 3), np.float32).T), (0, _read_only(ps[0])),
                     (2, gs[0].astype(np.float64)), (2, gs[0][:, :2].copy()), (2, np.ones((4, 3), np.float32).T),
                     (0, ps[0].tolist())):
        odd = [list(ps), list(gs)]
        odd[i // 2][i % 2 if i else 0] = unfit
        assert whole(*odd, 0.5) is NotImplemented, (i, unfit)
    assert whole(ps, gs[:1], 0.5) is NotImplemented
    vs = [np.zeros((3, 4), np.float32), np.zeros(4)]
    momentum = backend.fast_path("sgd_momentum_updates", np, unfused)
    assert momentum(ps, gs, vs, 0.5, 0.9, 0.0, False) is None and vs[0][0, 0] == 1.0 and ps[0][0, 0] == 0.0
    for unfit in (_read_only(vs[0]), vs[0].astype(np.float64), np.zeros((4, 3), np.float32).T, vs[0][:, :2].copy(),
                  vs[0].tolist()):
        assert momentum(ps, gs, [unfit, vs[1]], 0.5, 0.9, 0.0, False) is NotImplemented, unfit
    assert momentum(ps, gs, vs[:1], 0.5, 0.9, 0.0, False) is NotImplemented
    assert vs[0][0, 0] == 1.0 and ps[0][0, 0] == 0.0  # a refusal touches nothing


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_updates_the_whole_step_in_one_call_as_one_parameter_at_a_time(monkeypatch, dtype):
    """SGD's step goes through a whole-step kernel once (param groups: once per group; a frozen layer left out;
    with momentum, from the step after the one that made the buffers), and leaves the same bits in the same arrays
    as the update of each parameter in turn; with weight decay, or in a subclass with an update of its own, it
    takes the per-parameter updates."""
    from xpnet.optim.sgd import SGD

    once = SGD._updated_at_once
    taken = []

    def spy(self, work):
        taken.append(once(self, work))
        return taken[-1]

    def steps(make_opt, whole):
        monkeypatch.setattr(SGD, "_updated_at_once", spy if whole else lambda self, work: False)
        xn.init.seed(0)
        model = xn.Sequential(Linear(6, 5, dtype=dtype), ReLU(), Linear(5, 4, dtype=dtype), Linear(4, 3, dtype=dtype))
        model[2].requires_grad_(False)
        arrays = dict(model.named_params())
        opt, rng = make_opt(model), np.random.default_rng(1)
        for _ in range(3):
            for layer in (model[0], model[3]):
                for k, p in layer.params.items():
                    layer.grads[k] = rng.standard_normal(p.shape).astype(dtype)
            opt.step(model)
        now = model.named_params()
        assert all(now[k] is arrays[k] for k in arrays)  # updated in place
        return now

    class Halved(SGD):  # an update of its own: the whole-step kernel would bypass it
        def _update(self, name, p, g, xp):
            return super()._update(name, p, g / 2, xp)

    makers = {"plain": lambda m: SGD(0.1), "groups": lambda m: SGD([{"params": m[0]}, {"params": m[3], "lr": 0.3}]),
              "momentum": lambda m: SGD(0.1, momentum=0.9, dampening=0.1),
              "nesterov": lambda m: SGD([{"params": m[0]}, {"params": m[3], "lr": 0.3}], 0.1, 0.9, nesterov=True),
              "decay": lambda m: SGD(0.1, weight_decay=0.01), "own update": lambda m: Halved(0.2)}
    expected = {"plain": [True] * 3, "groups": [True] * 6, "momentum": [False, True, True],  # the first step makes
                "nesterov": [False, False] + [True] * 4, "decay": [False] * 3, "own update": [False] * 3}  # the buffers
    for kind, make_opt in makers.items():
        taken.clear()
        fast, ref = steps(make_opt, True), steps(make_opt, False)
        assert taken == expected[kind], kind
        for k in ref:
            assert fast[k].dtype == ref[k].dtype and fast[k].tobytes() == ref[k].tobytes(), (kind, k)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("id_dtype", [np.int64, np.int32])
def test_the_embedding_kernel_adds_repeated_ids_as_np_add_at_does(dtype, id_dtype):
    """The same bits as NumPy's np.add.at (rows added in the order of the positions), repeats summed."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 40, 900).astype(id_dtype)
    ids[:200] = 5  # many repeats of one id
    dy = rng.standard_normal((900, 13)).astype(dtype)
    fast = backend.fast_path("embedding_backward", np)
    assert fast is numba_kernels.embedding_backward
    expected = np.zeros((40, 13), dtype)
    np.add.at(expected, ids, dy)
    got = fast(ids, dy, 40)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    layer = xn.layers.Embedding(40, 13, dtype=dtype)  # through the layer, Numba on and off
    layer.forward(ids.reshape(30, 30))
    layer.backward(dy.reshape(30, 30, 13))
    np.testing.assert_array_equal(layer.grads["W"], expected)


def test_the_embedding_kernel_treats_ids_as_numpys_indexing_does():
    dy = np.ones((2, 3), np.float32)
    kernel = numba_kernels.embedding_backward
    np.testing.assert_array_equal(kernel(np.array([-1, 0]), dy, 4), np.array([[1] * 3, [0] * 3, [0] * 3, [1] * 3]))
    for bad in (4, -5):
        with pytest.raises(IndexError, match="Embedding: an id lies outside the embedding matrix"):
            kernel(np.array([0, bad]), dy, 4)
    strided = np.ones((3, 2), np.float32).T  # not C-contiguous: np.add.at's path
    got = backend.fast_path("embedding_backward", np, None)
    assert got is numba_kernels.embedding_backward
    from xpnet.layers.embedding import embedding_backward as portable

    np.testing.assert_array_equal(backend.fast_path("embedding_backward", np, portable)(np.array([1, 1]), strided, 3),
                                  np.array([[0, 0, 0], [2, 2, 2], [0, 0, 0]], np.float32))
