"""MaxPool2d, AvgPool2d, GlobalAvgPool: forward against direct-loop NumPy references, gradients by
central differences, the one-max-per-window tie rule, placement on every case, clear errors."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xpnet as xn
from xpnet.layers import AvgPool2d, GlobalAvgPool, MaxPool2d
from xpnet.testing import assert_gradients_ok, assert_placed, tolerance

# (k, stride, padding, input H, W)
VARIANTS = [
    pytest.param(2, None, 0, 6, 6, id="k2"),
    pytest.param(2, None, 0, 7, 5, id="k2-odd-input"),
    pytest.param(3, 2, 1, 7, 6, id="k3-s2-p1"),
    pytest.param((2, 3), (1, 2), (1, 1), 5, 6, id="k2x3-s1x2-p1"),
    pytest.param(3, 1, 0, 5, 5, id="k3-s1-overlapping"),
]


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def reference_pool(x, k, stride, padding, reduce, pad_value):
    (kh, kw), (ph, pw) = _pair(k), _pair(padding)
    sh, sw = _pair(k if stride is None else stride)
    n, c, h, w = x.shape
    xpad = np.full((n, c, h + 2 * ph, w + 2 * pw), pad_value)
    xpad[:, :, ph:ph + h, pw:pw + w] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = reduce(xpad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw], axis=(2, 3))
    return y


@pytest.mark.parametrize("cls,reduce,pad_value", [(MaxPool2d, np.max, -np.inf), (AvgPool2d, np.mean, 0.0)])
@pytest.mark.parametrize("k,s,p,h,w", VARIANTS)
def test_forward_matches_direct_loop_reference(case, rng, cls, reduce, pad_value, k, s, p, h, w):
    dev, dtype = case
    x = rng.standard_normal((2, 3, h, w))
    y = cls(k, stride=s, padding=p).forward(xn.to_device(x.astype(dtype), dev))
    assert_placed(y, dev, dtype)
    np.testing.assert_allclose(xn.to_numpy(y), reference_pool(x, k, s, p, reduce, pad_value), **tolerance(dtype))


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
@pytest.mark.parametrize("k,s,p,h,w", VARIANTS)
def test_gradients_match_central_differences(dev, rng, cls, k, s, p, h, w):
    # Continuous random inputs have no ties, so max pooling is differentiable there.
    x = xn.to_device(rng.standard_normal((2, 2, h, w)), dev)
    assert_gradients_ok(cls(k, stride=s, padding=p), x, max_entries=40)


@pytest.mark.parametrize("k,s,h", [(2, None, 4), (3, 1, 5), (3, 2, 7)])
def test_max_pool_ties_send_the_whole_gradient_to_the_first_maximum(case, k, s, h):
    dev, dtype = case
    layer = MaxPool2d(k, stride=s)
    y = layer.forward(xn.to_device(np.zeros((1, 1, h, h), dtype), dev))
    dy = np.arange(1.0, y.shape[2] * y.shape[3] + 1).reshape(y.shape)
    dx = xn.to_numpy(layer.backward(xn.to_device(dy.astype(dtype), dev)))
    stride = k if s is None else s
    expected = np.zeros((1, 1, h, h))
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            expected[0, 0, i * stride, j * stride] += dy[0, 0, i, j]  # top-left of each window
    np.testing.assert_array_equal(dx, expected)


def test_max_pool_gradient_goes_to_the_maximum(rng):
    x = rng.permutation(16).astype(np.float64).reshape(1, 1, 4, 4)
    layer = MaxPool2d(2)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 2, 2)))
    windows = x.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)
    assert dx.sum() == 4
    np.testing.assert_array_equal(np.sort(x[dx == 1]), np.sort(windows.max(axis=1)))


def test_max_pool_ties_after_the_first_offset_go_to_the_earlier_one(case):
    dev, dtype = case
    window = np.array([[1.0, 3.0], [3.0, 2.0]])  # the maximum at offsets 1 and 2: offset 1 takes it
    layer = MaxPool2d(2)
    layer.forward(xn.to_device(window.reshape(1, 1, 2, 2).astype(dtype), dev))
    dx = xn.to_numpy(layer.backward(xn.to_device(np.full((1, 1, 1, 1), 5.0, dtype), dev)))
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 5.0], [0.0, 0.0]])


@pytest.mark.parametrize("where", [0, 127, 128, 143])
def test_max_pool_window_of_more_than_127_pixels(where):
    x = np.zeros((1, 1, 12, 12))
    x.flat[where] = 1.0
    layer = MaxPool2d(12)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    assert dx.flat[where] == 1.0 and dx.sum() == 1.0


def test_max_pool_backward_after_an_evaluation_forward(rng):
    """As every layer (and PyTorch in eval mode): gradients for the input, e.g. a saliency map of a
    trained model, after forward(x, train=False)."""
    x = rng.standard_normal((2, 3, 6, 6))
    layer = MaxPool2d(2)
    layer.forward(x, train=True)
    dx_train = layer.backward(np.ones((2, 3, 3, 3)))
    layer.forward(x, train=False)
    np.testing.assert_array_equal(layer.backward(np.ones((2, 3, 3, 3))), dx_train)


def test_global_avg_pool(case, rng):
    dev, dtype = case
    x = rng.standard_normal((3, 4, 5, 2))
    dy = rng.standard_normal((3, 4))
    layer = GlobalAvgPool()
    y = layer.forward(xn.to_device(x.astype(dtype), dev))
    dx = layer.backward(xn.to_device(dy.astype(dtype), dev))
    assert_placed(y, dev, dtype)
    assert_placed(dx, dev, dtype)
    np.testing.assert_allclose(xn.to_numpy(y), x.mean(axis=(2, 3)), **tolerance(dtype))
    np.testing.assert_allclose(xn.to_numpy(dx), np.broadcast_to(dy[:, :, None, None] / 10, x.shape),
                               **tolerance(dtype))


def test_global_avg_pool_gradients(dev, rng):
    assert_gradients_ok(GlobalAvgPool(), xn.to_device(rng.standard_normal((2, 3, 4, 3)), dev))


def test_same_numbers_on_numpy_and_strict_device1(rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    x = rng.standard_normal((2, 3, 7, 6))
    for layer in (MaxPool2d(3, stride=2, padding=1), AvgPool2d(3, stride=2, padding=1)):
        out = []
        for dev in (xn.device("cpu"), dev1):
            y = layer.forward(xn.to_device(x, dev))
            out.append((xn.to_numpy(y), xn.to_numpy(layer.backward(xn.to_device(np.cos(xn.to_numpy(y)), dev)))))
        np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding", [(None, 0), (1, 1), (2, 1)])
def test_matches_pytorch(rng, stride, padding):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x = rng.standard_normal((2, 3, 7, 8))
    for ours, theirs in ((MaxPool2d(3, stride=stride, padding=padding), torch.nn.MaxPool2d(3, stride, padding)),
                         (AvgPool2d(3, stride=stride, padding=padding), torch.nn.AvgPool2d(3, stride, padding))):
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        dy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(ours.forward(x), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_save_load_round_trip(tmp_path, rng):
    model = xn.Sequential(MaxPool2d(3, stride=2, padding=1), AvgPool2d((2, 1)), GlobalAvgPool())
    model.save(tmp_path / "pool.npz")
    loaded = xn.load(tmp_path / "pool.npz")
    assert [l.config() for l in loaded] == [l.config() for l in model]
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(xn.to_numpy(loaded.forward(x)), xn.to_numpy(model.forward(x)))


@pytest.mark.parametrize("layer,x,message", [
    (MaxPool2d(3), np.zeros((1, 1, 2, 5), np.float32), "smaller than the 3x3 kernel"),
    (AvgPool2d(2), np.zeros((1, 4, 4), np.float32), "expected a 4-d input"),
    (MaxPool2d(2), np.zeros((1, 1, 4, 4), np.int32), "floating-point input"),
    (GlobalAvgPool(), np.zeros((2, 3), np.float32), "expected a 4-d input"),
])
def test_bad_input_is_named_clearly(layer, x, message):
    with pytest.raises((ValueError, TypeError), match=message):
        layer.forward(x)


@pytest.mark.parametrize("kwargs,message", [
    ({"kernel_size": 0}, "kernel_size must be an int >= 1"),
    ({"kernel_size": 2, "stride": (1, 0)}, "stride"),
    ({"kernel_size": 2, "padding": 2}, "at most half the window"),
])
def test_bad_arguments_are_named_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MaxPool2d(**kwargs)


def test_backward_checks_dy_shape():
    layer = MaxPool2d(2)
    layer.forward(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="does not match the last forward"):
        layer.backward(np.zeros((1, 1, 3, 3), np.float32))


def test_pytorch_defaults_are_accepted_in_pytorchs_positions(rng):
    """MaxPool2d(kernel_size, stride, padding, dilation, return_indices, ceil_mode) and AvgPool2d(kernel_size,
    stride, padding, ceil_mode, count_include_pad, divisor_override), each at PyTorch's defaults."""
    x = rng.standard_normal((2, 3, 7, 8))
    for layer, plain in ((MaxPool2d(3, 2, 1, 1, False, False), MaxPool2d(3, 2, 1)),
                         (MaxPool2d(2, 2, ceil_mode=False, dilation=(1, 1), return_indices=False), MaxPool2d(2)),
                         (AvgPool2d(3, 1, 1, False, True, None), AvgPool2d(3, 1, 1)),
                         (AvgPool2d(3, 1, 1, count_include_pad=True, ceil_mode=False), AvgPool2d(3, 1, 1))):
        np.testing.assert_array_equal(layer.forward(x), plain.forward(x))
        assert layer.config() == plain.config()


@pytest.mark.parametrize("make,message", [
    (lambda: MaxPool2d(2, 2, 0, 0), r"^MaxPool2d: dilation must be an int >= 1 or a pair of them, got 0$"),
    (lambda: MaxPool2d(2, dilation=True), r"^MaxPool2d: dilation must be an int >= 1 or a pair of them, got True$"),
    (lambda: MaxPool2d(2, dilation=()), r"MaxPool2d: dilation must be an int >= 1 or a pair of them, got \(\)$"),
    (lambda: MaxPool2d(2, dilation=(1, 1, 1)), r"MaxPool2d: dilation must be an int >= 1 or a pair of them"),
])
def test_other_pytorch_values_are_refused_naming_the_layer(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -- PyTorch's ceil_mode, count_include_pad and divisor_override ---------------------------------------

# (H, W): odd sizes where ceil_mode adds a window, even ones, and inputs smaller than a 3-window (which
# only ceil_mode pools, where PyTorch does); kernel, stride and padding over each.
OPTION_GRID = [(h, w, k, s, p) for h, w in [(5, 7), (6, 6), (2, 3)] for k in [2, 3, (2, 3)] for s in [1, 2, 3]
               for p in [0, 1]]

OPTIONS = [
    pytest.param(MaxPool2d, {"ceil_mode": True}, id="max-ceil"),
    pytest.param(AvgPool2d, {"ceil_mode": True}, id="avg-ceil"),
    pytest.param(AvgPool2d, {"count_include_pad": False}, id="avg-exclude-pad"),
    pytest.param(AvgPool2d, {"ceil_mode": True, "count_include_pad": False}, id="avg-ceil-exclude-pad"),
    pytest.param(AvgPool2d, {"divisor_override": 5}, id="avg-divisor"),
    pytest.param(AvgPool2d, {"ceil_mode": True, "divisor_override": 5}, id="avg-ceil-divisor"),
]


def torch_pool(torch, cls, x, dy_seed, k, s, p, options):
    """PyTorch's y and dx (float64) for ``x``, with dy drawn from ``dy_seed``; None where PyTorch refuses
    the geometry (an empty output)."""
    fn = torch.nn.functional.max_pool2d if cls is MaxPool2d else torch.nn.functional.avg_pool2d
    xt = torch.tensor(x, requires_grad=True)
    try:
        yt = fn(xt, k, s, p, **options)
    except RuntimeError:
        return None
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    return yt.detach().numpy(), dy, xt.grad.numpy()


@pytest.mark.parametrize("cls,options", OPTIONS)
def test_pytorch_options_match_pytorch(dev, rng, cls, options):
    """Forward and input gradient equal PyTorch's own in float64, over the grid; where PyTorch finds no
    window (an input too small even with ceil_mode) xpnet refuses the input too."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    compared = 0
    # JAX compiles its operations for each new shape (37 s for the whole grid): every tenth geometry there (the
    # same array-API code as strict's, which runs every one).
    grid = OPTION_GRID[::10] if dev.name.startswith("jax") else OPTION_GRID
    for i, (h, w, k, s, p) in enumerate(grid):
        if 2 * p > min(_pair(k)):
            continue
        x = rng.standard_normal((2, 3, h, w))
        layer = cls(k, s, p, **options)
        expected = torch_pool(torch, cls, x, i, k, s, p, options)
        what = f"{h}x{w} kernel={k} stride={s} padding={p}"
        if expected is None:
            with pytest.raises(ValueError, match="smaller than|too small"):
                layer.forward(xn.to_device(x, dev))
            continue
        y_ref, dy, dx_ref = expected
        y = layer.forward(xn.to_device(x, dev))
        dx = layer.backward(xn.to_device(dy, dev))
        assert_placed(y, dev, "float64")
        assert_placed(dx, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(y), y_ref, rtol=1e-12, atol=1e-12, err_msg=f"y, {what}")
        np.testing.assert_allclose(xn.to_numpy(dx), dx_ref, rtol=1e-12, atol=1e-12, err_msg=f"dx, {what}")
        compared += 1
    assert compared >= (50 if grid is OPTION_GRID else 5)  # the grid is not all refusals


def test_ceil_mode_adds_the_windows_pytorch_adds():
    """The output sizes of PyTorch's rule (ATen's pooling_output_shape): round up, but the last window must
    start inside the input or its left padding."""
    cases = [  # H, kernel, stride, padding, floor size, ceil size
        (5, 2, 2, 0, 2, 3),  # one more window, half of it past the input
        (6, 2, 2, 0, 3, 3),  # nothing left over
        (6, 3, 2, 1, 3, 4),  # one more, starting on the last pixel
        (8, 3, 3, 1, 3, 3),  # rounding up gives one more, but it would start in the right padding: not added
        (9, 3, 3, 1, 3, 4),
        (2, 3, 3, 0, None, 1),  # input smaller than the kernel: only ceil_mode pools it
    ]
    for h, k, s, p, floor, ceil in cases:
        for ceil_mode, expected in ((False, floor), (True, ceil)):
            layer = AvgPool2d((1, k), (1, s), (0, p), ceil_mode=ceil_mode)
            x = np.zeros((1, 1, 1, h))
            if expected is None:
                with pytest.raises(ValueError, match="smaller than the 1x3 kernel"):
                    layer.forward(x)
            else:
                assert layer.forward(x).shape == (1, 1, 1, expected), (h, k, s, p, ceil_mode)


@pytest.mark.parametrize("cls,options", OPTIONS)
@pytest.mark.parametrize("k,s,p,h,w", [pytest.param(3, 2, 1, 6, 7, id="k3-s2-p1"),
                                       pytest.param((2, 3), (2, 3), (1, 0), 5, 7, id="k2x3-s2x3-p1x0")])
def test_pytorch_options_pass_gradcheck(dev, rng, cls, options, k, s, p, h, w):
    # Continuous random inputs have no ties, so max pooling is differentiable there.
    x = xn.to_device(rng.standard_normal((2, 2, h, w)), dev)
    assert_gradients_ok(cls(k, s, p, **options), x, max_entries=40)


@settings(max_examples=60, deadline=None)
@given(kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 4), sw=st.integers(1, 4),
       h=st.integers(1, 9), w=st.integers(1, 9), pad=st.tuples(st.booleans(), st.booleans()),
       ceil_mode=st.booleans(), count_include_pad=st.booleans(), divisor=st.sampled_from([None, 1, 4]),
       max_pool=st.booleans())
def test_any_geometry_matches_pytorch(kh, kw, sh, sw, h, w, pad, ceil_mode, count_include_pad, divisor, max_pool):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    p = (kh // 2 if pad[0] else 0, kw // 2 if pad[1] else 0)
    if max_pool:
        cls, options = MaxPool2d, {"ceil_mode": ceil_mode}
    else:
        cls, options = AvgPool2d, {"ceil_mode": ceil_mode, "count_include_pad": count_include_pad,
                                   "divisor_override": divisor}
    x = np.random.default_rng(h * 10 + w).standard_normal((1, 2, h, w))
    layer = cls((kh, kw), (sh, sw), p, **options)
    expected = torch_pool(torch, cls, x, 0, (kh, kw), (sh, sw), p, options)
    if expected is None:
        with pytest.raises(ValueError):
            layer.forward(x)
        return
    y_ref, dy, dx_ref = expected
    np.testing.assert_allclose(layer.forward(x), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), dx_ref, rtol=1e-12, atol=1e-12)


def test_ceil_mode_without_a_window_to_add_changes_nothing(rng):
    x = rng.standard_normal((2, 3, 8, 8))
    for cls in (MaxPool2d, AvgPool2d):
        layer, plain = cls(2, ceil_mode=True), cls(2)
        np.testing.assert_array_equal(layer.forward(x), plain.forward(x))
        dy = np.cos(plain.forward(x))
        np.testing.assert_array_equal(layer.backward(dy), plain.backward(dy))


def test_avg_pool_divisors_are_made_once_per_input_size_dtype_and_device(rng):
    """The (oh, ow) divisors of count_include_pad=False are kept while the input's size, dtype and device stay
    (no host copy per step, which a CUDA-graph capture refuses: tests/test_graph_layers.py), and made again
    when one of them changes."""
    strict = pytest.importorskip("array_api_strict")
    layer = AvgPool2d(3, 2, 1, count_include_pad=False)
    base = rng.standard_normal((2, 1, 6, 6))
    layer.forward(base)
    table = layer._tables[(6, 6)]
    layer.forward(rng.standard_normal((5, 3, 6, 6)))  # another batch: the same windows
    assert layer._tables[(6, 6)] is table
    on_strict = [xn.to_device(base, xn.Device(strict, strict.Device(name))) for name in ("CPU_DEVICE", "device1")]
    for before, x in ((base, rng.standard_normal((1, 2, 7, 5))), (base, base.astype(np.float32)), on_strict):
        layer.forward(before)
        fresh = AvgPool2d(3, 2, 1, count_include_pad=False)
        np.testing.assert_array_equal(xn.to_numpy(layer.forward(x)), xn.to_numpy(fresh.forward(x)))


def test_an_evaluation_on_another_image_size_keeps_the_training_sizes_divisors(rng):
    """A captured training step reads the divisor table it was captured with at every launch. AvgPool2d kept
    only the last size's table, so evaluating a fully convolutional net on images of another size between two
    epochs freed the table the graph still read. Each size keeps its own; the one training made stays."""
    layer = AvgPool2d(3, 2, 1, count_include_pad=False)
    layer.forward(rng.standard_normal((4, 2, 8, 8)))  # training images
    table = layer._tables[(8, 8)]
    layer.forward(rng.standard_normal((2, 2, 12, 10)), train=False)  # evaluation on larger images
    layer.forward(rng.standard_normal((4, 2, 8, 8)))
    assert layer._tables[(8, 8)] is table


def test_a_model_with_an_avg_pool_divisor_table_can_be_copied(dev, rng):
    """AvgPool2d kept its table of divisors keyed by the namespace module and the device object, which
    copy.deepcopy cannot copy (a module; JAX's Device): after a forward with count_include_pad=False,
    model.summary(), xn.gradcheck and copy.deepcopy raised "cannot pickle 'module' object"."""
    model = xn.Sequential(AvgPool2d(3, 2, 1, count_include_pad=False), xn.layers.Flatten(),
                          xn.layers.Linear(2 * 3 * 3, 2, dtype="float64")).to(dev)
    x = xn.to_device(rng.standard_normal((2, 2, 6, 6)), dev)
    y = model.forward(x)
    clone = copy.deepcopy(model)
    np.testing.assert_array_equal(xn.to_numpy(clone.forward(x)), xn.to_numpy(y))
    assert "(N, 2, 3, 3)" in model.summary((2, 6, 6))


def test_save_load_keeps_the_pytorch_options(tmp_path, rng):
    model = xn.Sequential(MaxPool2d(3, 2, ceil_mode=True), AvgPool2d(3, 1, 1, True, False),
                          AvgPool2d(2, ceil_mode=True, divisor_override=3))
    model.save(tmp_path / "pool.npz")
    loaded = xn.load(tmp_path / "pool.npz")
    assert [l.config() for l in loaded] == [l.config() for l in model]
    assert [repr(l) for l in loaded] == ["MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)",
                                         ("AvgPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True, "
                                          "count_include_pad=False)"),
                                         "AvgPool2d(kernel_size=2, stride=2, ceil_mode=True, divisor_override=3)"]
    x = rng.standard_normal((2, 3, 10, 9))
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


@pytest.mark.parametrize("config", [{"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1]},
                                    {"k": [3, 3], "stride": [2, 2], "padding": [1, 1]}])
def test_configs_saved_before_the_options_load_with_pytorchs_defaults(config):
    """Files saved before ceil_mode, count_include_pad and divisor_override (and before the PyTorch names)."""
    for cls in (MaxPool2d, AvgPool2d):
        layer = cls.from_config(dict(config))
        assert layer.config() == cls(3, 2, 1).config()
        assert layer.ceil_mode is False
    assert AvgPool2d.from_config(dict(config)).count_include_pad is True
    assert AvgPool2d.from_config(dict(config)).divisor_override is None


@pytest.mark.parametrize("make,error,message", [
    (lambda: MaxPool2d(2, ceil_mode=1), TypeError, "MaxPool2d: ceil_mode must be True or False, got 1"),
    (lambda: AvgPool2d(2, 2, 0, 1), TypeError, "AvgPool2d: ceil_mode must be True or False, got 1"),  # no bool
    (lambda: AvgPool2d(2, count_include_pad="no"), TypeError, "AvgPool2d: count_include_pad must be True or False"),
    (lambda: AvgPool2d(2, divisor_override=0), ValueError, "AvgPool2d: divisor_override must be a positive int"),
    (lambda: AvgPool2d(2, divisor_override=-4), ValueError, "AvgPool2d: divisor_override must be a positive int"),
    (lambda: AvgPool2d(2, divisor_override=True), ValueError, "AvgPool2d: divisor_override must be a positive int"),
    (lambda: AvgPool2d(2, divisor_override=2.0), ValueError, "AvgPool2d: divisor_override must be a positive int"),
])
def test_bad_pytorch_options_are_named_clearly(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_ceil_mode_refuses_an_input_with_no_window():
    with pytest.raises(ValueError, match=r"MaxPool2d: input \(1, 1, 2, 5\) padded by \(0, 0\) is 2x5, too small "
                                         r"for a 3x3 window every \(1, 1\) pixels even with ceil_mode=True"):
        MaxPool2d(3, 1, ceil_mode=True).forward(np.zeros((1, 1, 2, 5)))
