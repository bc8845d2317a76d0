"""Conv2d: forward against a direct-loop NumPy reference, gradients by central differences, on every
(namespace, device, dtype) case; the same numbers on numpy and array-api-strict device1; clear errors."""

import numpy as np
import pytest

import xpnet as xn
from conftest import part_of_the_grid_on_jax
from xpnet.layers import Conv2d, conv
from xpnet.layers._im2col import col2im_portable, input_grad_stride1
from xpnet.testing import assert_gradients_ok, assert_placed

# (in_ch, out_ch, kernel_size, stride, padding, input H, W)
VARIANTS = [
    pytest.param(2, 3, 3, 1, 0, 6, 5, id="k3-s1-p0"),
    pytest.param(3, 2, 3, 2, 1, 7, 6, id="k3-s2-p1"),
    pytest.param(1, 4, (3, 2), (2, 1), (1, 0), 5, 6, id="k3x2-s2x1-p1x0"),
    pytest.param(2, 2, 5, 2, 2, 5, 5, id="k5-s2-p2"),
    pytest.param(3, 2, 1, 1, 0, 3, 4, id="k1"),
    pytest.param(2, 3, 4, 3, 1, 8, 9, id="k4-s3-p1-uneven"),
    # 72 and 128 rows of col: one product over the batch instead of one per sample (Conv2d._per_sample)
    pytest.param(8, 3, 3, 1, 1, 5, 4, id="k3-p1-one-product"),
    pytest.param(8, 2, (4, 4), 2, (1, 0), 7, 6, id="k4-s2-p1x0-one-product"),
    # stride 1 over the batch: dx through input_grad_stride1's flat layout
    pytest.param(8, 2, (3, 5), 1, (1, 2), 4, 7, id="k3x5-p1x2-one-product"),
    pytest.param(8, 3, 3, 1, 3, 4, 5, id="k3-p3-one-product"),
    pytest.param(8, 2, 3, 1, 0, 6, 5, id="k3-p0-one-product"),
    # a mixed stride over the batch (issue 27: weakening `stride == (1, 1)` to `stride[0] == 1` sent
    # (1, 2) through the stride-1 input gradient, 0.4186 against 0.2951, and every test passed)
    pytest.param(8, 2, 3, (1, 2), 1, 6, 7, id="k3-s1x2-p1-one-product"),
]


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def reference_conv(x, W, b, stride, padding):
    """Direct loop over output pixels in float64 (cross-correlation, zero padding)."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n, _, h, w = x.shape
    f, _, kh, kw = W.shape
    xpad = np.zeros((n, x.shape[1], h + 2 * ph, w + 2 * pw))
    xpad[:, :, ph:ph + h, pw:pw + w] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.empty((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xpad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = np.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}


def _layer(rng, cin, cout, k, s, p, dtype="float64"):
    layer = Conv2d(cin, cout, k, stride=s, padding=p, dtype=dtype)
    layer.params["b"] = rng.standard_normal(cout).astype(dtype)
    return layer


@pytest.mark.parametrize("cin,cout,k,s,p,h,w", VARIANTS)
def test_forward_matches_direct_loop_reference(case, rng, cin, cout, k, s, p, h, w):
    dev, dtype = case
    layer = _layer(rng, cin, cout, k, s, p, dtype)
    W, b = layer.params["W"].astype(np.float64), layer.params["b"].astype(np.float64)
    x = rng.standard_normal((2, cin, h, w))
    layer.to(dev)
    y = layer.forward(xn.to_device(x.astype(dtype), dev))
    assert_placed(y, dev, dtype)
    np.testing.assert_allclose(xn.to_numpy(y), reference_conv(x, W, b, s, p), **_tol(dtype))


@pytest.mark.parametrize("cin,cout,k,s,p,h,w", VARIANTS)
def test_gradients_match_central_differences(dev, rng, request, cin, cout, k, s, p, h, w):
    part_of_the_grid_on_jax(dev, request, ("k3x2-s2x1-p1x0", "k4-s3-p1-uneven", "k3x5-p1x2", "k3-s1x2-p1"))
    layer = _layer(rng, cin, cout, k, s, p).to(dev)
    x = xn.to_device(rng.standard_normal((2, cin, h, w)), dev)
    assert_gradients_ok(layer, x, max_entries=40)


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 9 * 24 * 8])
def test_input_gradient_made_a_few_channels_at_a_time_is_the_same(monkeypatch, rng, chunk_bytes):
    # With stride > 1, backward builds dx a few input channels at a time to bound memory; any split
    # gives the same dx.
    x, dy = rng.standard_normal((2, 8, 6, 7)), rng.standard_normal((2, 3, 3, 4))
    layer = _layer(rng, 8, 3, 3, 2, 1)
    layer.forward(x)
    whole = layer.backward(dy)
    monkeypatch.setattr(conv, "_DCOL_CHUNK_BYTES", chunk_bytes)  # 1 channel at a time; 3, 3 and 2
    layer.forward(x)
    parts = layer.backward(dy)
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-12)
    assert parts.flags.c_contiguous


@pytest.mark.parametrize("k,p,h,w", [(3, 1, 5, 4), ((3, 5), (1, 2), 4, 7), (3, 3, 4, 5), (3, 0, 6, 5),
                                     ((2, 4), (0, 3), 3, 3), (1, 0, 2, 3), (5, (4, 1), 5, 6)])
def test_stride1_input_gradient_equals_dcol_and_col2im(rng, k, p, h, w):
    # input_grad_stride1 (flat layout, one product per kernel offset) is the same linear map as
    # col2im(W.T @ dy), for every padding, including padding the kernel cannot reach across.
    (kh, kw), (ph, pw) = _pair(k), _pair(p)
    n, c, f = 3, 4, 5
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    W, dy = rng.standard_normal((f, c, kh, kw)), rng.standard_normal((n, f, oh, ow))
    dy2 = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(f, -1)
    ref = col2im_portable(W.reshape(f, -1).T @ dy2, (n, c, h, w), (kh, kw), (1, 1), (ph, pw))
    np.testing.assert_allclose(input_grad_stride1(dy, W, (n, c, h, w), (ph, pw)), ref, rtol=1e-12, atol=1e-12)


def test_stride1_backward_frees_col_and_a_second_backward_says_so(rng):
    # col (C*kh*kw, N*oh*ow) is dropped once dW is made, before dcol (as large) exists: a step's peak
    # memory stays down. The Layer contract is one backward per forward; a second one is refused clearly.
    layer = _layer(rng, 8, 3, 3, 1, 1)
    x = rng.standard_normal((2, 8, 5, 4))
    dy = rng.standard_normal((2, 3, 5, 4))
    layer.forward(x)
    dx = layer.backward(dy)
    assert layer._col is None
    with pytest.raises(RuntimeError, match="Conv2d: backward called before forward \\(one backward per forward\\)"):
        layer.backward(dy)
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(dy), dx, rtol=1e-12)


def test_without_bias_has_only_W(rng):
    layer = Conv2d(2, 3, 3, bias=False, dtype="float64")
    assert set(layer.params) == {"W"}
    x = rng.standard_normal((2, 2, 4, 4))
    y = layer.forward(x)
    np.testing.assert_allclose(y, reference_conv(x, layer.params["W"], np.zeros(3), 1, 0), rtol=1e-10, atol=1e-12)
    layer.backward(np.ones_like(y))
    assert set(layer.grads) == {"W"}
    assert_gradients_ok(layer, x, max_entries=20)


def test_same_numbers_on_numpy_and_strict_device1(rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    x = rng.standard_normal((3, 2, 7, 6))
    dy = rng.standard_normal((3, 4, 4, 3))
    results = []
    for dev in (xn.device("cpu"), dev1):
        xn.init.seed(0)
        layer = _layer(np.random.default_rng(0), 2, 4, 3, 2, 1).to(dev)
        y = layer.forward(xn.to_device(x, dev))
        dx = layer.backward(xn.to_device(dy, dev))
        results.append([xn.to_numpy(a) for a in (y, dx, layer.grads["W"], layer.grads["b"])])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_weights_are_he_initialised_from_the_seed():
    xn.init.seed(3)
    a = Conv2d(4, 8, 3).params["W"]
    xn.init.seed(3)
    b = Conv2d(4, 8, 3).params["W"]
    assert a.shape == (8, 4, 3, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert 0.5 * np.sqrt(2 / 36) < a.std() < 1.5 * np.sqrt(2 / 36)


def test_save_load_round_trip(tmp_path, rng):
    model = xn.Sequential(Conv2d(1, 3, (3, 2), stride=(2, 1), padding=1), xn.layers.ReLU(), xn.layers.Flatten())
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    model.save(tmp_path / "conv.npz")
    loaded = xn.load(tmp_path / "conv.npz")
    assert loaded[0].config() == model[0].config()
    np.testing.assert_array_equal(xn.to_numpy(loaded.forward(x)), xn.to_numpy(model.forward(x)))


@pytest.mark.parametrize("make_x,message", [
    (lambda: np.zeros((2, 3, 8, 8), np.float32), "expected 2 input channels"),
    (lambda: np.zeros((2, 2, 2, 8), np.float32), "smaller than the 3x3 kernel"),
    (lambda: np.zeros((2, 2, 8), np.float32), "expected a 4-d input"),
    (lambda: np.zeros((2, 2, 8, 8), np.int64), "floating-point input"),
    (lambda: np.zeros((2, 2, 8, 8), np.float64), "dtype"),
])
def test_bad_input_is_named_clearly(make_x, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Conv2d(2, 4, 3).forward(make_x())


@pytest.mark.parametrize("kwargs,message", [
    ({"kernel_size": 0}, "kernel_size must be an int >= 1"),
    ({"kernel_size": (3, 3, 3)}, "kernel_size"),
    ({"kernel_size": 3, "stride": 0}, "stride must be an int >= 1"),
    ({"kernel_size": 3, "padding": -1}, "padding must be an int >= 0"),
    ({"kernel_size": 2.5}, "kernel_size"),
])
def test_bad_arguments_are_named_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Conv2d(2, 4, **kwargs)


@pytest.mark.parametrize("k", [1, 3, (5, 3)])
def test_padding_same_and_valid_as_pytorch(rng, k):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x = rng.standard_normal((2, 3, 7, 6))
    for padding in ("same", "valid"):
        ours = Conv2d(3, 4, k, padding=padding, dtype="float64")
        theirs = torch.nn.Conv2d(3, 4, k, padding=padding, dtype=torch.float64)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(ours.params["W"]))
            theirs.bias.copy_(torch.tensor(ours.params["b"]))
        np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{"kernel_size": 3, "stride": 2}, {"kernel_size": 2}, {"kernel_size": (3, 4)}])
def test_padding_same_beyond_stride_1_and_odd_kernels_is_refused_clearly(kwargs):
    with pytest.raises(ValueError, match="Conv2d: padding='same' needs stride 1 and odd kernel sizes"):
        Conv2d(2, 4, padding="same", **kwargs)


def test_backward_checks_dy_shape_and_order():
    layer = Conv2d(1, 2, 3)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 2, 2, 2), np.float32))
    layer.forward(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected dy of shape \(1, 2, 2, 2\)"):
        layer.backward(np.zeros((1, 2, 3, 3), np.float32))


def test_pytorch_keyword_names_and_files_saved_before_the_rename(tmp_path):
    import json

    xn.init.seed(0)
    model = xn.Sequential(Conv2d(in_channels=1, out_channels=2, kernel_size=3, stride=1, padding=1),
                          xn.layers.MaxPool2d(kernel_size=2, stride=2, padding=0),
                          xn.layers.AvgPool2d(kernel_size=(1, 2)))
    assert (model[0].in_channels, model[0].out_channels, model[1].kernel_size) == (1, 2, (2, 2))
    path = tmp_path / "model.npz"
    model.save(path)
    # The same file as written before Conv2d took in_channels/out_channels and the pools kernel_size.
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["__xpnet_model__"]))
    old = {"in_channels": "in_ch", "out_channels": "out_ch", "kernel_size": "k"}
    for i, layer in enumerate(meta["layers"]):
        layer["config"] = {(old[k] if (k != "kernel_size" or i > 0) and k in old else k): v
                           for k, v in layer["config"].items()}
    assert "in_ch" in meta["layers"][0]["config"] and "k" in meta["layers"][1]["config"]
    arrays["__xpnet_model__"] = np.asarray(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    loaded = xn.load(tmp_path / "old.npz")
    assert repr(loaded) == repr(model)


# (in_channels, out_channels, groups): two groups; depthwise; depthwise with a channel multiplier of 2;
# 72 rows of col per group, so one product over the batch per group (Conv2d._per_sample)
GROUPED = [pytest.param(4, 6, 2, id="g2"), pytest.param(4, 4, 4, id="depthwise"),
           pytest.param(3, 6, 3, id="depthwise-x2"), pytest.param(16, 4, 2, id="g2-one-product")]


@pytest.mark.parametrize("cin,cout,groups", GROUPED)
@pytest.mark.parametrize("s,p,bias", [(1, 0, True), (1, 1, False), (2, 0, False), (2, 1, True)],
                         ids=["s1-p0-bias", "s1-p1", "s2-p0", "s2-p1-bias"])
def test_groups_as_pytorch_forward_and_gradients(dev, rng, request, cin, cout, groups, s, p, bias):
    part_of_the_grid_on_jax(dev, request, ("s2-p1-bias", "s1-p0-bias-g2-one-product"))
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    layer = Conv2d(cin, cout, 3, s, p, 1, groups, bias, dtype="float64")
    assert layer.params["W"].shape == (cout, cin // groups, 3, 3)
    if bias:
        layer.params["b"] = rng.standard_normal(cout)
    x = rng.standard_normal((2, cin, 7, 6))
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(layer.params["W"], requires_grad=True)
    tb = torch.tensor(layer.params["b"], requires_grad=True) if bias else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, groups=groups)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    layer.to(dev)
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dy, dev))
    assert_placed(y, dev, "float64")
    assert_placed(dx, dev, "float64")
    ours = [y, dx, layer.grads["W"]] + ([layer.grads["b"]] if bias else [])
    theirs = [ty, tx.grad, tw.grad] + ([tb.grad] if bias else [])
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(xn.to_numpy(a), b.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_grouped_conv_in_a_small_model_passes_gradcheck(rng):
    xn.init.seed(0)
    model = xn.Sequential(Conv2d(2, 4, 3, padding=1, groups=2, dtype="float64"), xn.layers.Tanh(),
                          Conv2d(4, 4, 3, stride=2, groups=4, dtype="float64"), xn.layers.Flatten(),
                          xn.layers.Linear(64, 3, dtype="float64"))
    report = xn.gradcheck(model, rng.standard_normal((2, 2, 9, 9)), rng.integers(0, 3, 2), "cross_entropy")
    assert report.ok, report


def test_groups_save_load_round_trip_and_repr(tmp_path, rng):
    model = xn.Sequential(Conv2d(4, 8, 3, padding=1, groups=4), xn.layers.ReLU(), Conv2d(8, 2, 1))
    assert repr(model[0]) == "Conv2d(in_channels=4, out_channels=8, kernel_size=3, padding=1, groups=4, bias=True)"
    assert "groups" not in repr(model[2])
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    model.save(tmp_path / "grouped.npz")
    loaded = xn.load(tmp_path / "grouped.npz")
    assert loaded[0].groups == 4 and loaded[0].config() == model[0].config()
    np.testing.assert_array_equal(xn.to_numpy(loaded.forward(x)), xn.to_numpy(model.forward(x)))


def test_files_saved_before_groups_load_as_one_group():
    config = Conv2d(2, 3, 3).config()
    del config["groups"]
    assert Conv2d.from_config(config).groups == 1


def test_groups_initialised_with_one_groups_fan_in():
    xn.init.seed(0)
    W = Conv2d(64, 64, 3, groups=64).params["W"]
    assert W.shape == (64, 1, 3, 3)
    assert 0.8 * np.sqrt(2 / 9) < W.std() < 1.2 * np.sqrt(2 / 9)


@pytest.mark.parametrize("cin,cout,groups", [(3, 4, 2), (4, 3, 2), (2, 2, 4)])
def test_groups_not_dividing_the_channels_is_refused_naming_both(cin, cout, groups):
    with pytest.raises(ValueError, match=rf"^Conv2d: in_channels \({cin}\) and out_channels \({cout}\) must both be "
                                         rf"divisible by groups \({groups}\)$"):
        Conv2d(cin, cout, 3, groups=groups)


@pytest.mark.parametrize("cin,cout,k,s,p", [(4, 4, 3, 1, 1), (3, 6, 3, 2, 0), (2, 6, (3, 2), (2, 1), (1, 0)),
                                            (5, 10, 5, 2, 2)])
def test_depthwise_windows_equal_the_per_group_products(monkeypatch, dev, rng, cin, cout, k, s, p):
    # groups == in_channels goes through _depthwise.py (a sum over kernel offsets), not one im2col product
    # per channel; both give the same numbers.
    layer = Conv2d(cin, cout, k, s, p, groups=cin, dtype="float64")
    layer.params["b"] = rng.standard_normal(cout)
    layer.to(dev)
    x = xn.to_device(rng.standard_normal((2, cin, 7, 6)), dev)
    results = []
    for windows in (True, False):
        monkeypatch.setattr(conv, "_DEPTHWISE_WINDOWS", windows)
        y = layer.forward(x)
        dy = xn.to_device(np.cos(np.arange(np.prod(y.shape))).reshape(tuple(y.shape)), dev)
        dx = layer.backward(dy)
        assert_placed(dx, dev, "float64")
        results.append([xn.to_numpy(a) for a in (y, dx, layer.grads["W"], layer.grads["b"])])
        layer.forward(x)
        layer.backward_params(dy)
        np.testing.assert_array_equal(xn.to_numpy(layer.grads["W"]), results[-1][2])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
