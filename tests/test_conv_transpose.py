"""ConvTranspose2d and Upsample: equal to PyTorch's nn.ConvTranspose2d and nn.Upsample in float64 (outputs and every
gradient) on every device; PyTorch's state dicts; seeded init within PyTorch's bounds; gradcheck and training of a
small encoder-decoder; planted bugs caught; every error message."""

import re

import numpy as np
import pytest

import xpnet as xn
from conftest import part_of_the_grid_on_jax
from xpnet.layers import Conv2d, ConvTranspose2d, Upsample, conv_transpose, upsample
from xpnet.layers._im2col import group_blocks, im2col
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

TOL = {"rtol": 1e-12, "atol": 1e-12}

# (in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias, input H, W)
VARIANTS = [
    pytest.param(2, 3, 3, 1, 0, 0, 1, True, 4, 5, id="k3-s1"),
    pytest.param(3, 2, 3, 2, 1, 1, 1, True, 5, 4, id="k3-s2-p1-op1"),
    pytest.param(2, 3, 4, 2, 1, 0, 1, False, 3, 3, id="k4-s2-p1-nobias"),
    pytest.param(1, 2, (3, 2), (2, 3), (1, 0), (1, 2), 1, True, 3, 4, id="k3x2-s2x3-p1x0-op1x2"),
    pytest.param(3, 2, 5, 3, 2, (2, 0), 1, True, 2, 3, id="k5-s3-p2-op2x0"),
    pytest.param(2, 2, 2, 3, 0, 1, 1, True, 3, 2, id="k2-s3-gaps"),  # stride > kernel: rows only the bias reaches
    pytest.param(4, 6, 3, 2, 1, 1, 2, True, 3, 5, id="groups2"),
    pytest.param(3, 3, (2, 3), 1, (1, 1), 0, 3, False, 4, 3, id="depthwise-nobias"),
    pytest.param(2, 3, 1, 1, 0, 0, 1, True, 1, 1, id="k1-one-pixel"),
    pytest.param(8, 4, 3, 2, 0, 0, 1, True, 7, 6, id="k3-s2-odd"),
]


def _torch_layer(cin, cout, k, s, p, op, g, bias, rng):
    theirs = torch.nn.ConvTranspose2d(cin, cout, k, s, p, op, g, bias, dtype=torch.float64)
    with torch.no_grad():
        for param in theirs.parameters():
            param.copy_(torch.from_numpy(rng.standard_normal(tuple(param.shape))))
    return theirs


def _pytorch_results(theirs, x, rng):
    """PyTorch's y, dx, and its parameters' gradients (weight, bias) for a random dy; and that dy."""
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    grads = [p.grad.numpy() for p in theirs.parameters()]
    return [ty.detach().numpy(), tx.grad.numpy(), *grads], dy


def _assert_as_pytorch(layer, theirs, x, dev, rng):
    """layer on dev, with theirs's weights, gives PyTorch's y, dx, dW (and db) for the same x and dy."""
    expected, dy = _pytorch_results(theirs, x, rng)
    model = xn.Sequential(layer).to(dev, dtype="float64")
    xn.load_torch_state_dict(model, {"0." + k: v for k, v in theirs.state_dict().items()})
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dy, dev))
    assert_placed(y, dev, "float64")
    assert_placed(dx, dev, "float64")
    ours = [y, dx, layer.grads["W"]] + ([layer.grads["b"]] if "b" in layer.grads else [])
    assert len(ours) == len(expected)
    for name, a, b in zip(["y", "dx", "dW", "db"], ours, expected):
        np.testing.assert_allclose(xn.to_numpy(a), b, err_msg=name, **TOL)


@pytest.mark.parametrize("cin,cout,k,s,p,op,g,bias,h,w", VARIANTS)
def test_equal_to_pytorch_in_float64(dev, request, cin, cout, k, s, p, op, g, bias, h, w):
    part_of_the_grid_on_jax(dev, request, ("k3x2-s2x3-p1x0-op1x2", "k2-s3-gaps", "groups2", "depthwise-nobias"))
    rng = np.random.default_rng(0)
    theirs = _torch_layer(cin, cout, k, s, p, op, g, bias, rng)
    layer = ConvTranspose2d(cin, cout, k, s, p, op, g, bias)
    assert tuple(layer.params["W"].shape) == tuple(theirs.weight.shape)
    _assert_as_pytorch(layer, theirs, rng.standard_normal((2, cin, h, w)), dev, rng)


def test_backward_params_gives_backwards_gradients(rng):
    layer = ConvTranspose2d(4, 6, 3, 2, 1, 1, groups=2, dtype="float64")
    x, dy = rng.standard_normal((2, 4, 3, 3)), rng.standard_normal((2, 6, 6, 6))
    layer.forward(x)
    layer.backward(dy)
    full = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward_params(dy)
    for k, v in full.items():
        np.testing.assert_array_equal(layer.grads[k], v)


def test_is_the_input_gradient_of_the_conv2d_it_undoes(rng):
    # ConvTranspose2d(a, b, k, s, p) with W is dx of Conv2d(b, a, k, s, p) with the same W: its forward is that
    # Conv2d's backward, and its output has the size of that Conv2d's input.
    conv = Conv2d(3, 4, 3, stride=2, padding=1, dtype="float64")
    up = ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, bias=False, dtype="float64")
    up.params["W"] = conv.params["W"]
    x = rng.standard_normal((2, 3, 8, 6))
    y = conv.forward(x)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(up.forward(dy), conv.backward(dy), **TOL)


# ----------------------------------------------------------------------------------------------------------------
# Upsample
# ----------------------------------------------------------------------------------------------------------------

UPSAMPLES = [
    pytest.param({"scale_factor": 2}, (3, 5), id="scale2"),
    pytest.param({"scale_factor": (3, 2)}, (2, 3), id="scale3x2"),
    pytest.param({"scale_factor": 2.0}, (1, 4), id="scale2.0"),
    pytest.param({"scale_factor": (1, 4)}, (3, 1), id="scale1x4"),
    pytest.param({"size": (6, 10)}, (3, 5), id="size-multiple"),
    pytest.param({"size": 9, "mode": "nearest-exact"}, (3, 1), id="size9-nearest-exact"),
]


@pytest.mark.parametrize("kwargs,hw", UPSAMPLES)
def test_upsample_equal_to_pytorch(dev, kwargs, hw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *hw))
    expected, dy = _pytorch_results(torch.nn.Upsample(**kwargs), x, rng)
    layer = Upsample(**kwargs)
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dy, dev))
    assert_placed(y, dev, "float64")
    assert_placed(dx, dev, "float64")
    np.testing.assert_allclose(xn.to_numpy(y), expected[0], **TOL)
    np.testing.assert_allclose(xn.to_numpy(dx), expected[1], **TOL)


def test_upsample_picks_pytorchs_pixels_for_every_whole_scale_and_size():
    # PyTorch computes the nearest pixel in float32; for whole-number scales up to 40 that is i // s exactly.
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    for sh in range(1, 9):
        for sw in (1, 2, 3, 5, 7, 40):
            for mode in ("nearest", "nearest-exact"):
                for kwargs in ({"scale_factor": (sh, sw)}, {"size": (4 * sh, 5 * sw)}):
                    expected = torch.nn.Upsample(**kwargs, mode=mode)(x).numpy()
                    np.testing.assert_array_equal(Upsample(**kwargs, mode=mode).forward(x.numpy()), expected)


def test_upsample_float32_keeps_its_dtype_and_the_gradient_sums_blocks():
    layer = Upsample(scale_factor=(2, 3))
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    y = layer.forward(x)
    assert y.dtype == np.float32 and y.shape == (1, 1, 4, 9)
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, np.full((1, 1, 2, 3), 6, np.float32))


# ----------------------------------------------------------------------------------------------------------------
# Weights: PyTorch's state dicts, the seeded init and its bounds, save and load
# ----------------------------------------------------------------------------------------------------------------

def _torch_autoencoder():
    nn = torch.nn
    return nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU()),
                         nn.Sequential(nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1), nn.Tanh(),
                                       nn.Upsample(scale_factor=2), nn.ConvTranspose2d(2, 1, 3, padding=1, bias=False)))


def _autoencoder(dtype="float32"):
    L = xn.layers
    return xn.Sequential(xn.Sequential(L.Conv2d(1, 4, 3, stride=2, padding=1, dtype=dtype), L.ReLU()),
                         xn.Sequential(ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, dtype=dtype),
                                       L.Tanh(), Upsample(scale_factor=2),
                                       ConvTranspose2d(2, 1, 3, padding=1, bias=False, dtype=dtype)))


def test_pytorchs_state_dict_gives_pytorchs_outputs_and_comes_back(rng):
    torch.manual_seed(0)
    theirs = _torch_autoencoder().double()
    x = rng.standard_normal((3, 1, 6, 5))
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    ours = _autoencoder("float64")
    assert xn.load_torch_state_dict(ours, theirs.state_dict()) == ([], [])
    assert ours.forward(x).shape == (3, 1, 12, 12)
    np.testing.assert_allclose(ours.forward(x, train=False), expected, **TOL)
    back = xn.torch_state_dict(ours)
    assert back.keys() == theirs.state_dict().keys()
    fresh = _torch_autoencoder().double()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()})
    np.testing.assert_allclose(fresh(torch.from_numpy(x)).detach().numpy(), expected, **TOL)


def test_a_weight_of_the_wrong_layout_is_refused_naming_the_key():
    theirs = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3))  # W (6, 4, 3, 3): Conv2d's layout, not (4, 6, 3, 3)
    with pytest.raises(ValueError, match=r"layer '0' \(ConvTranspose2d\(.*\)\): PyTorch's '0.weight' has shape "
                                         r"\(6, 4, 3, 3\), expected \(4, 6, 3, 3\)"):
        xn.load_torch_state_dict(xn.Sequential(ConvTranspose2d(4, 6, 3)), theirs.state_dict())


@pytest.mark.parametrize("cin,cout,k,g", [(4, 6, 3, 1), (6, 4, (2, 5), 2), (8, 8, 4, 8)])
def test_init_is_pytorchs_bounds_and_the_same_on_every_device(dev, cin, cout, k, g):
    xn.init.seed(7)
    layer = ConvTranspose2d(cin, cout, k, groups=g)
    host = {name: np.array(v) for name, v in layer.params.items()}
    xn.init.seed(7)
    on_dev = ConvTranspose2d(cin, cout, k, groups=g).to(dev)
    for name, v in on_dev.params.items():
        assert_placed(v, dev, "float32")
        np.testing.assert_array_equal(xn.to_numpy(v), host[name])
    theirs = torch.nn.ConvTranspose2d(cin, cout, k, groups=g)
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(theirs.weight)
    bound = 1 / np.sqrt(fan_in)
    for name, torch_name in (("W", "weight"), ("b", "bias")):
        ours, pytorchs = host[name], getattr(theirs, torch_name).detach().numpy()
        assert ours.shape == pytorchs.shape
        assert np.abs(pytorchs).max() <= bound and np.abs(ours).max() <= bound
    W = host["W"]  # U(-bound, bound): its spread, not a narrower draw
    assert W.max() > 0.8 * bound and W.min() < -0.8 * bound and abs(W.std() - bound / np.sqrt(3)) < 0.2 * bound


def test_conv2ds_initialisers_draw_from_pytorchs_fan_in():
    xn.init.seed(0)
    layer = ConvTranspose2d(16, 64, 3, init="he")  # fan_in = 64 * 3 * 3, as PyTorch's weight.size(1) * kh * kw
    assert 0.9 * np.sqrt(2 / 576) < layer.params["W"].std() < 1.1 * np.sqrt(2 / 576)
    np.testing.assert_array_equal(layer.params["b"], np.zeros(64, np.float32))
    assert ConvTranspose2d(2, 3, 3, init=0.5, dtype="float64").params["W"].dtype == np.float64


def test_save_load_repr_and_summary(tmp_path, rng):
    model = _autoencoder()
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    model.save(tmp_path / "ae.npz")
    loaded = xn.load(tmp_path / "ae.npz")
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert repr(model[1][0]) == ("ConvTranspose2d(in_channels=4, out_channels=2, kernel_size=3, stride=2, padding=1, "
                                 "output_padding=1, bias=True)")
    assert repr(model[1][2]) == "Upsample(scale_factor=2)"
    assert repr(Upsample(size=(4, 6), mode="nearest-exact")) == "Upsample(size=(4, 6), mode='nearest-exact')"
    assert repr(ConvTranspose2d(4, 4, 3, groups=2, init="he")) == \
        "ConvTranspose2d(in_channels=4, out_channels=4, kernel_size=3, groups=2, bias=True, init='he')"
    table = model.summary(input_shape=(1, 6, 6))
    for row in (r"1\.0 +ConvTranspose2d +\(N, 2, 6, 6\) +74", r"1\.2 +Upsample +\(N, 2, 12, 12\) +0",
                r"1\.3 +ConvTranspose2d +\(N, 1, 12, 12\) +18"):
        assert re.search(row, table), table


# ----------------------------------------------------------------------------------------------------------------
# A small encoder-decoder: gradcheck on every device, training
# ----------------------------------------------------------------------------------------------------------------

def test_gradcheck_of_an_encoder_decoder(dev, rng):
    xn.init.seed(0)
    model = xn.Sequential(Conv2d(2, 3, 3, stride=2, padding=1, dtype="float64"), xn.layers.Tanh(),
                          ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, groups=1, dtype="float64"),
                          xn.layers.Tanh(), Upsample(scale_factor=(2, 1)),
                          ConvTranspose2d(4, 2, (2, 3), padding=(0, 1), groups=2, dtype="float64")).to(dev)
    x = rng.standard_normal((2, 2, 4, 3))
    t = rng.standard_normal((2, 2, 9, 4))
    report = xn.gradcheck(model, x, t, "mse", max_entries=12)
    assert report.ok, report


def test_a_tiny_autoencoder_trains(rng):
    # Images of one smooth blob each, reconstructed through a 2x smaller code.
    yy, xx = np.mgrid[0:8, 0:8]
    centres = rng.uniform(1, 7, (128, 2))
    x = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 4.0)[:, None]
    x = x.astype(np.float32)
    xn.init.seed(0)
    L = xn.layers
    model = xn.Sequential(L.Conv2d(1, 8, 3, stride=2, padding=1), L.ReLU(),
                          ConvTranspose2d(8, 4, 4, stride=2, padding=1), L.ReLU(), Upsample(scale_factor=2),
                          L.Conv2d(4, 1, 3, stride=2, padding=1))
    history = xn.train(model, (x, x), loss=xn.losses.MeanSquaredError(), optimizer=xn.optim.Adam(0.01), epochs=15,
                       batch_size=32, device="cpu", progress=False)
    losses = [e["train_loss"] for e in history.epochs]
    assert losses[-1] < 0.2 * losses[0], losses


# ----------------------------------------------------------------------------------------------------------------
# Planted bugs: the checks above catch them
# ----------------------------------------------------------------------------------------------------------------

def _first_window_only(x, kernel, stride, padding, per_sample=False, dilation=(1, 1)):
    """im2col with the kernel offsets past the stride zeroed: each output pixel sends its gradient to one input
    pixel, as if the windows tiled the output without overlapping."""
    col = im2col(x, kernel, stride, padding, per_sample, dilation)
    (kh, kw), (sh, sw) = kernel, stride
    keep = ((np.arange(kh)[:, None] < sh) & (np.arange(kw)[None, :] < sw)).astype(col.dtype).reshape(-1)
    return col * np.tile(keep, col.shape[0] // (kh * kw))[:, None]


def _in_and_out_swapped(a, axis, groups):
    """The weight read with in and out swapped, as Conv2d's (out, in, kh, kw); other arrays as they are."""
    return group_blocks(np.swapaxes(a, 0, 1) if a.ndim == 4 else a, axis, groups)


@pytest.mark.parametrize("attr,mutant", [("im2col", _first_window_only), ("group_blocks", _in_and_out_swapped)],
                         ids=["backward-forgets-overlap", "weight-in-out-swapped"])
def test_planted_bugs_are_caught(monkeypatch, attr, mutant):
    rng = np.random.default_rng(0)
    theirs = _torch_layer(3, 3, 3, 2, 1, 1, 1, True, rng)
    x = rng.standard_normal((2, 3, 4, 5))
    _assert_as_pytorch(ConvTranspose2d(3, 3, 3, 2, 1, 1), theirs, x, xn.device("cpu"), np.random.default_rng(1))
    monkeypatch.setattr(conv_transpose, attr, mutant)
    with pytest.raises(AssertionError):
        _assert_as_pytorch(ConvTranspose2d(3, 3, 3, 2, 1, 1), theirs, x, xn.device("cpu"), np.random.default_rng(1))
    layer = ConvTranspose2d(3, 3, 3, 2, 1, 1, dtype="float64")
    assert not xn.gradcheck(layer, x, max_entries=20).ok


def test_planted_upsample_backward_bug_is_caught(monkeypatch, rng):
    # dx taken from one pixel of each block instead of the block's sum
    def one_pixel(self, dy):
        return dy[:, :, ::2, ::2]

    x = rng.standard_normal((2, 2, 3, 3))
    assert xn.gradcheck(Upsample(scale_factor=2), x).ok
    monkeypatch.setattr(upsample.Upsample, "backward", one_pixel)
    assert not xn.gradcheck(Upsample(scale_factor=2), x).ok


# ----------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,kwargs,error,message", [
    ((0, 2, 3), {}, ValueError, r"^ConvTranspose2d: in_channels must be a positive int, got 0$"),
    ((2, 2.5, 3), {}, ValueError, r"^ConvTranspose2d: out_channels must be a positive int, got 2.5$"),
    ((4, 3, 3), {"groups": 2}, ValueError,
     r"^ConvTranspose2d: in_channels \(4\) and out_channels \(3\) must both be divisible by groups \(2\)$"),
    ((2, 2, 3), {"groups": 0}, ValueError, r"^ConvTranspose2d: groups must be a positive int, got 0$"),
    ((2, 2, 0), {}, ValueError, r"^ConvTranspose2d: kernel_size must be an int >= 1 or a pair of them, got 0$"),
    ((2, 2, (3, 3, 3)), {}, ValueError, r"^ConvTranspose2d: kernel_size must be an int >= 1 or a pair"),
    ((2, 2, 3), {"stride": 0}, ValueError, r"^ConvTranspose2d: stride must be an int >= 1 or a pair of them, got 0$"),
    ((2, 2, 3), {"padding": -1}, ValueError, r"^ConvTranspose2d: padding must be an int >= 0 or a pair of them"),
    ((2, 2, 3), {"padding": "same"}, ValueError,
     r"^ConvTranspose2d: padding must be an int >= 0 or a pair of them, got 'same'$"),
    ((2, 2, 3), {"output_padding": -1}, ValueError, r"^ConvTranspose2d: output_padding must be an int >= 0"),
    ((2, 2, 3), {"output_padding": 1}, ValueError,
     (r"^ConvTranspose2d: output_padding must be smaller than stride or dilation \(PyTorch's rule\), got "
      r"output_padding=\(1, 1\), stride=\(1, 1\) and dilation=\(1, 1\)$")),
    ((2, 2, 3), {"stride": (2, 3), "output_padding": (1, 3)}, ValueError,
     r"got output_padding=\(1, 3\), stride=\(2, 3\) and dilation=\(1, 1\)$"),
    ((2, 2, 3), {"dilation": (2, 3), "output_padding": (2, 2)}, ValueError,
     r"got output_padding=\(2, 2\), stride=\(1, 1\) and dilation=\(2, 3\)$"),
    ((2, 2, 3), {"dilation": 0}, ValueError,
     r"^ConvTranspose2d: dilation must be an int >= 1 or a pair of them, got 0$"),
    ((2, 2, 3), {"dilation": (2, True)}, ValueError,
     r"^ConvTranspose2d: dilation must be an int >= 1 or a pair of them, got \(2, True\)$"),
    ((2, 2, 3), {"padding_mode": "reflect"}, ValueError,
     r"^ConvTranspose2d: padding_mode='reflect' is not supported: PyTorch's ConvTranspose2d pads with zeros only"),
    ((2, 2, 3), {"device": "cuda"}, ValueError,
     r"^ConvTranspose2d: device='cuda' is not supported: make the layer, then move it"),
    ((2, 2, 3), {"bias": 1}, TypeError, r"ConvTranspose2d: bias must be True or False"),
    ((2, 2, 3), {"init": "kaiming"}, ValueError, r"^ConvTranspose2d: init must be one of 'pytorch', 'he'"),
    ((2, 2, 3), {"dtype": "int32"}, ValueError, r"^ConvTranspose2d: dtype must be a real floating type"),
])
def test_bad_arguments_are_named_clearly(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        ConvTranspose2d(*args, **kwargs)


def test_dilation_one_in_any_spelling_is_accepted():
    ConvTranspose2d(2, 2, 3, dilation=(1, 1), padding_mode="zeros", device=None)


@pytest.mark.parametrize("make_x,error,message", [
    (lambda: np.zeros((2, 2, 4), np.float32), ValueError,
     r"^ConvTranspose2d: expected a 4-d input \(N, C, H, W\), got shape \(2, 2, 4\)$"),
    (lambda: np.zeros((2, 3, 4, 4), np.float32), ValueError,
     r"^ConvTranspose2d: expected 2 input channels \(N, 2, H, W\), got shape \(2, 3, 4, 4\)$"),
    (lambda: np.zeros((2, 2, 4, 4), np.int64), TypeError, r"^ConvTranspose2d: expected a floating-point input"),
    (lambda: np.zeros((2, 2, 4, 4), np.float64), TypeError,
     r"^ConvTranspose2d: input dtype float64 does not match the parameters' dtype float32"),
    (lambda: np.zeros((2, 2, 1, 4), np.float32), ValueError,
     (r"^ConvTranspose2d: an input of 1x4 gives an output of -1x4 \(\(H - 1\)\*stride - 2\*padding \+ "
      r"dilation\*\(kernel_size - 1\) \+ output_padding \+ 1, with padding=\(2, 1\)\): padding is too large for "
      r"this input$")),
])
def test_bad_inputs_are_named_clearly(make_x, error, message):
    with pytest.raises(error, match=message):
        ConvTranspose2d(2, 4, 3, padding=(2, 1)).forward(make_x())


def test_pytorchs_output_size_is_refused_saying_what_to_do():
    layer = ConvTranspose2d(1, 1, 3, stride=2, padding=1)
    x = np.zeros((1, 1, 4, 4), np.float32)
    for call in (lambda: layer(x, [8, 8]), lambda: layer.forward(x, (1, 1, 8, 8))):
        with pytest.raises(TypeError, match=r"^ConvTranspose2d.forward\(x, train\): train must be True or False, got "
                                            r"(list|tuple); PyTorch's forward\(x, output_size\) is not taken here: "
                                            r"choose the output size with ConvTranspose2d\(..., output_padding=...\)$"):
            call()
    with pytest.raises(TypeError, match="output_size"):
        layer.forward(x, output_size=[8, 8])
    assert layer.forward(x).shape == (1, 1, 7, 7)
    assert ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1).forward(x).shape == (1, 1, 8, 8)


def test_backward_checks_order_and_dy_shape():
    layer = ConvTranspose2d(1, 2, 3, stride=2)
    with pytest.raises(RuntimeError, match=r"^ConvTranspose2d: backward called before forward"):
        layer.backward(np.zeros((1, 2, 5, 5), np.float32))
    layer.forward(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"^ConvTranspose2d: expected dy of shape \(1, 2, 5, 5\) \(the last forward's "
                                         r"output\), got \(1, 2, 4, 4\)$"):
        layer.backward(np.zeros((1, 2, 4, 4), np.float32))


@pytest.mark.parametrize("kwargs,message", [
    ({"scale_factor": 2, "mode": "linear"},
     (r"^Upsample: mode='linear' is not supported: it resizes 3-d \(N, C, L\) inputs; for \(N, C, H, W\) images "
      r"PyTorch's mode is 'bilinear'$")),
    ({"scale_factor": 2, "mode": "trilinear"}, r"^Upsample: mode='trilinear' is not supported: it resizes 5-d"),
    ({"scale_factor": 2, "mode": "Bilinear"},
     r"^Upsample: mode='Bilinear' is not supported: expected one of \('nearest', 'nearest-exact', 'bilinear', "),
    ({"scale_factor": 2, "mode": None}, r"^Upsample: mode=None is not supported"),
    ({}, r"^Upsample: pass exactly one of size and scale_factor \(as PyTorch\), got size=None and scale_factor=None$"),
    ({"size": 4, "scale_factor": 2},
     r"^Upsample: pass exactly one of size and scale_factor \(as PyTorch\), got size=4 and scale_factor=2$"),
    ({"scale_factor": (2, 0)}, r"^Upsample: scale_factor must be a number > 0 or a pair of them, got \(2, 0\)$"),
    ({"scale_factor": -2}, r"^Upsample: scale_factor must be a number > 0 or a pair of them, got -2$"),
    ({"scale_factor": float("inf")}, r"^Upsample: scale_factor must be a number > 0"),
    ({"scale_factor": True}, r"^Upsample: scale_factor must be a number > 0"),
    ({"scale_factor": "2"}, r"^Upsample: scale_factor must be a number > 0"),
    ({"scale_factor": (1, 2, 3)}, r"^Upsample: scale_factor must be a number > 0 or a pair of them"),
    ({"size": 0}, r"^Upsample: size must be an int >= 1 or a pair of them, got 0$"),
    ({"size": 2.5}, r"^Upsample: size must be an int >= 1 or a pair of them, got 2.5$"),
    ({"scale_factor": 2, "align_corners": False},
     (r"^Upsample: align_corners=False applies to the interpolating modes \('bilinear', 'bicubic'\), not "
      r"mode='nearest'; leave it None \(PyTorch refuses it too\)$")),
    ({"size": 4, "mode": "bilinear", "recompute_scale_factor": True},
     (r"^Upsample: recompute_scale_factor=True is not meaningful with an explicit size \(as PyTorch\): leave it "
      r"None$")),
])
def test_upsample_bad_arguments_are_named_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Upsample(**kwargs)


def test_upsample_bad_inputs_and_dy_are_named_clearly():
    with pytest.raises(ValueError, match=r"^Upsample: scale_factor=\(0.2, 0.2\) makes an output of 0x0 from the "
                                         r"input's 3x3 \(input shape \(1, 2, 3, 3\)\); each side needs at least 1 "
                                         r"pixel$"):
        Upsample(scale_factor=0.2).forward(np.zeros((1, 2, 3, 3), np.float32))
    for kwargs in ({"scale_factor": 2, "mode": "bilinear", "align_corners": "yes"},
                   {"scale_factor": 2, "recompute_scale_factor": 1}):
        with pytest.raises(TypeError, match=r"^Upsample: (align_corners|recompute_scale_factor) must be True or "
                                            r"False, got ('yes'|1)$"):
            Upsample(**kwargs)
    layer = Upsample(scale_factor=2)
    with pytest.raises(ValueError, match=r"^Upsample: expected a 4-d input \(N, C, H, W\), got shape \(2, 3, 4\)$"):
        layer.forward(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(TypeError, match=r"^Upsample: expected a floating-point input, got dtype int64"):
        layer.forward(np.zeros((2, 3, 4, 4), np.int64))
    with pytest.raises(RuntimeError, match=r"^Upsample: backward called before forward"):
        layer.backward(np.zeros((2, 3, 8, 8), np.float32))
    layer.forward(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"^Upsample: expected dy of shape \(2, 3, 8, 8\) \(the last forward's "
                                         r"output\), got \(2, 3, 4, 4\)$"):
        layer.backward(np.zeros((2, 3, 4, 4), np.float32))


def test_hints_send_pytorchs_other_upsampling_names_here():
    with pytest.raises(AttributeError, match=r"UpsamplingNearest2d': xn.layers.Upsample\(size=None, "
                                             r"scale_factor=None\) is nn.UpsamplingNearest2d"):
        xn.layers.UpsamplingNearest2d  # noqa: B018
    with pytest.raises(AttributeError, match=r"UpsamplingBilinear2d': xn.layers.Upsample\(size=None, "
                                             r"scale_factor=None, mode='bilinear', align_corners=True\) is "
                                             r"nn.UpsamplingBilinear2d"):
        xn.layers.UpsamplingBilinear2d  # noqa: B018


def test_grouped_and_plain_transposed_convolutions_are_captured():
    """Nothing stands in the capture's way (tests/test_graph_layers.py trains both captured, equal to eager)."""
    import types

    from xpnet.training.graph import obstacle

    x, t = np.zeros((64, 1, 4, 4), np.float32), np.zeros((64, 1, 8, 8), np.float32)
    batches = xn.datasets.BatchIterator(x, t, batch_size=8)
    cuda = types.SimpleNamespace(is_cupy=True, name="cuda:0")
    mse = xn.losses.MeanSquaredError()
    grouped = xn.Sequential(ConvTranspose2d(1, 2, 3, padding=1), ConvTranspose2d(2, 2, 2, 2, groups=2))
    assert obstacle(grouped, mse, xn.optim.SGD(0.1), batches, cuda) is None
    plain = xn.Sequential(ConvTranspose2d(1, 2, 3, padding=1), Upsample(scale_factor=2), ConvTranspose2d(2, 1, 1))
    assert obstacle(plain, mse, xn.optim.SGD(0.1), batches, cuda) is None
