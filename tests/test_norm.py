"""BatchNorm over features (N, D) and channels (N, C, H, W): training and evaluation forward against
a NumPy reference, book-style running statistics, gradients, buffers kept in the layer dtype and moved
and saved with the model, clear errors."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import BatchNorm
from xpnet.layers.base import layer_from_config
from xpnet.testing import assert_gradients_ok, assert_placed

SHAPES = [pytest.param((6, 4), id="features"), pytest.param((3, 4, 3, 2), id="channels")]


def _axes(shape):
    return (0,) if len(shape) == 2 else (0, 2, 3)


def _bcast(v, shape):
    return v.reshape((1, -1) + (1,) * (len(shape) - 2))


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}


def _layer(rng, c, dtype, **kw):
    layer = BatchNorm(c, dtype=dtype, **kw)
    layer.params["gamma"] = rng.uniform(0.5, 2.0, c).astype(dtype)
    layer.params["beta"] = rng.standard_normal(c).astype(dtype)
    return layer


@pytest.mark.parametrize("shape", SHAPES)
def test_training_forward_and_running_statistics(case, rng, shape):
    dev, dtype = case
    layer = _layer(rng, 4, dtype, momentum=0.2)  # PyTorch's momentum: the weight of the new batch
    gamma, beta = layer.params["gamma"].astype(np.float64), layer.params["beta"].astype(np.float64)
    x = rng.standard_normal(shape) * 3 + 1
    layer.to(dev)
    before = dict(layer.buffers)
    y = layer.forward(xn.to_device(x.astype(dtype), dev), train=True)
    assert_placed(y, dev, dtype)
    if xn.backend.update_rule(xn.backend.namespace(y)) == "in place":
        # the same arrays, moved on (a captured CUDA graph replays its kernels on the arrays of the capture)
        assert all(layer.buffers[k] is v for k, v in before.items())
    mean, var = x.mean(axis=_axes(shape)), x.var(axis=_axes(shape))
    expected = _bcast(gamma, shape) * (x - _bcast(mean, shape)) / np.sqrt(_bcast(var, shape) + 1e-5) \
        + _bcast(beta, shape)
    np.testing.assert_allclose(xn.to_numpy(y), expected, **_tol(dtype))
    unbiased = var * x.size / 4 / (x.size / 4 - 1)  # PyTorch's running_var: n/(n-1), n values per channel
    for name, batch, start in (("running_mean", mean, 0.0), ("running_var", unbiased, 1.0)):
        assert_placed(layer.buffers[name], dev, dtype)
        np.testing.assert_allclose(xn.to_numpy(layer.buffers[name]), 0.8 * start + 0.2 * batch, **_tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_evaluation_uses_running_statistics_and_leaves_them(case, rng, shape):
    dev, dtype = case
    layer = _layer(rng, 4, dtype)
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    layer.buffers["running_mean"], layer.buffers["running_var"] = rm.astype(dtype), rv.astype(dtype)
    gamma, beta = layer.params["gamma"].astype(np.float64), layer.params["beta"].astype(np.float64)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    layer.to(dev)
    y = layer.forward(xn.to_device(x.astype(dtype), dev), train=False)
    dx = layer.backward(xn.to_device(dy.astype(dtype), dev))
    scale = _bcast(gamma / np.sqrt(rv + 1e-5), shape)
    np.testing.assert_allclose(xn.to_numpy(y), scale * (x - _bcast(rm, shape)) + _bcast(beta, shape), **_tol(dtype))
    np.testing.assert_allclose(xn.to_numpy(dx), scale * dy, **_tol(dtype))
    np.testing.assert_allclose(xn.to_numpy(layer.buffers["running_mean"]), rm, **_tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_training_gradients_match_central_differences(dev, rng, shape):
    layer = _layer(rng, 4, "float64").to(dev)
    assert_gradients_ok(layer, xn.to_device(rng.standard_normal(shape), dev), max_entries=40)


def test_same_numbers_on_numpy_and_strict_device1(rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    x, dy = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    out = []
    for dev in (xn.device("cpu"), dev1):
        layer = _layer(np.random.default_rng(0), 3, "float64").to(dev)
        y = layer.forward(xn.to_device(x, dev))
        dx = layer.backward(xn.to_device(dy, dev))
        out.append([xn.to_numpy(a) for a in (y, dx, layer.grads["gamma"], layer.buffers["running_var"])])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_matches_pytorch_outputs_and_gradients(rng):
    torch = pytest.importorskip("torch")
    x, dy = rng.standard_normal((5, 3, 4, 2)), rng.standard_normal((5, 3, 4, 2))
    ours = _layer(rng, 3, "float64")
    theirs = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.params["gamma"]))
        theirs.bias.copy_(torch.tensor(ours.params["beta"]))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours.forward(x), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.grads["gamma"], theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(ours.buffers[name], getattr(theirs, name).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 4), (5, 4, 3, 2), (2, 4)], ids=["features", "channels", "two-samples"])
def test_running_variance_and_evaluation_match_pytorch_after_training_steps(rng, shape):
    """PyTorch's running_var takes the unbiased batch variance (n/(n-1)); training still normalises with
    the biased one. Three training steps, then the evaluation output, in float64."""
    torch = pytest.importorskip("torch")
    ours = BatchNorm(4, momentum=0.3, dtype="float64")
    theirs = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(4, momentum=0.3,
                                                                                 dtype=torch.float64)
    for _ in range(3):
        x = rng.standard_normal(shape) * 3 + 1
        np.testing.assert_allclose(ours.forward(x, train=True), theirs(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-10, atol=1e-12)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(ours.buffers[name], getattr(theirs, name).numpy(), rtol=1e-12, atol=1e-14)
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ours.forward(x, train=False), theirs.eval()(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


def test_buffers_move_with_the_model_and_are_saved(tmp_path, rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    model = xn.Sequential(BatchNorm(3))
    model.forward(rng.standard_normal((8, 3)).astype(np.float32))
    model.save(tmp_path / "bn.npz")
    loaded = xn.load(tmp_path / "bn.npz", device=dev1)
    for name in ("running_mean", "running_var"):
        assert_placed(loaded[0].buffers[name], dev1, "float32")
        np.testing.assert_array_equal(xn.to_numpy(loaded[0].buffers[name]), model[0].buffers[name])
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(xn.to_numpy(loaded.forward(xn.to_device(x, dev1), train=False)),
                                  model.forward(x, train=False))


@pytest.mark.parametrize("x,train,message", [
    (np.zeros((4, 5), np.float32), True, r"expected input \(N, 3\) or \(N, 3, H, W\)"),
    (np.zeros((4, 3, 2), np.float32), True, "got shape"),
    (np.zeros((1, 3), np.float32), True, "more than one value per feature"),
    (np.zeros((4, 3), np.int32), True, "floating-point input"),
])
def test_bad_input_is_named_clearly(x, train, message):
    with pytest.raises((ValueError, TypeError), match=message):
        BatchNorm(3).forward(x, train=train)


def test_a_single_sample_is_fine_in_evaluation():
    y = BatchNorm(3).forward(np.ones((1, 3), np.float32), train=False)
    np.testing.assert_allclose(y, np.ones((1, 3)) / np.sqrt(1 + 1e-5), rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{"momentum": 1.5}, {"eps": 0.0}, {"num_features": 0}, {"convention": "keras"}])
def test_bad_arguments_are_named_clearly(kwargs):
    with pytest.raises(ValueError, match="BatchNorm"):
        BatchNorm(**{"num_features": 3, **kwargs})


# -- the book's convention and PyTorch's momentum (issue 17) --------------------------------------

def _book_batchnorm_running(x_batches, momentum=0.9):
    """The book's BatchNormalization (common/layers.py), from its formulas: running statistics start at
    0, running = momentum * running + (1 - momentum) * batch, eps 10e-7 in the evaluation forward."""
    mean, var = np.zeros(x_batches[0].shape[1]), np.zeros(x_batches[0].shape[1])
    for x in x_batches:
        mean = momentum * mean + (1 - momentum) * x.mean(axis=0)
        var = momentum * var + (1 - momentum) * np.mean((x - x.mean(axis=0)) ** 2, axis=0)
    return mean, var, lambda x: (x - mean) / np.sqrt(var + 10e-7)


def test_the_books_convention_reproduces_the_books_batchnorm(rng):
    batches = [rng.standard_normal((8, 3)) * 2 + 1 for _ in range(3)]
    mean, var, book_eval = _book_batchnorm_running(batches, momentum=0.7)
    layer = BatchNorm(3, momentum=0.7, dtype="float64", convention="book")
    assert layer.eps == 1e-6 and not np.any(layer.buffers["running_var"])
    for x in batches:
        layer.forward(x, train=True)
    np.testing.assert_allclose(layer.buffers["running_mean"], mean, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(layer.buffers["running_var"], var, rtol=1e-14, atol=1e-15)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(layer.forward(x, train=False), book_eval(x), rtol=1e-13)
    assert BatchNorm(3, convention="book").momentum == 0.9


def test_pytorch_momentum_means_what_pytorch_means(rng):
    torch = pytest.importorskip("torch")
    batches = [rng.standard_normal((6, 3, 2, 2)) for _ in range(3)]
    ours = BatchNorm(3, momentum=0.3, dtype="float64")
    theirs = torch.nn.BatchNorm2d(3, momentum=0.3, dtype=torch.float64)
    for x in batches:
        ours.forward(x, train=True)
        theirs(torch.tensor(x))
    np.testing.assert_allclose(ours.buffers["running_mean"], theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.buffers["running_var"], theirs.running_var.numpy(), rtol=1e-12)


def test_pytorch_momentum_without_torch(rng):
    x = rng.standard_normal((8, 2))
    layer = BatchNorm(2, momentum=0.1, dtype="float64")
    layer.forward(x, train=True)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=1e-14)


def test_the_books_momentum_typed_without_the_books_convention_warns():
    with pytest.warns(UserWarning, match="momentum=0.1 or convention='book'") as rec:
        BatchNorm(3, momentum=0.9)
    assert rec[0].filename == __file__
    with pytest.warns(UserWarning, match="convention='book'") as rec:  # also when xpnet builds the layer
        layer_from_config("BatchNorm", {"num_features": 3, "momentum": 0.9, "convention": "pytorch"})
    assert [w.filename for w in rec] == [__file__]


def test_files_saved_before_the_conventions_keep_the_books_momentum(tmp_path, rng):
    """An old file's BatchNorm config has momentum=0.9 in the book's sense and no convention."""
    layer = xn.layers.base.layer_from_config("BatchNorm", {"num_features": 2, "momentum": 0.9, "eps": 1e-5,
                                                            "dtype": "float64"})
    x = rng.standard_normal((8, 2))
    layer.forward(x, train=True)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(axis=0), rtol=1e-12)
    model = xn.Sequential(BatchNorm(2, momentum=0.25))
    model.save(tmp_path / "bn.npz")
    assert xn.load(tmp_path / "bn.npz")[0].config() == model[0].config()


# -- PyTorch's other constructor arguments ------------------------------------------------------------

def test_pytorch_positional_order_eps_then_momentum(rng):
    """nn.BatchNorm2d(4, 1e-3, 0.2): eps second, momentum third, as PyTorch (not momentum=1e-3, eps=0.2)."""
    layer = BatchNorm(4, 1e-3, 0.2, True, True, None, "float64")
    assert (layer.eps, layer.momentum, layer.dtype) == (1e-3, 0.2, "float64")
    torch = pytest.importorskip("torch")
    theirs = torch.nn.BatchNorm2d(4, 1e-3, 0.2, dtype=torch.float64)
    x = rng.standard_normal((3, 4, 2, 2))
    np.testing.assert_allclose(layer.forward(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], theirs.running_var.numpy(), rtol=1e-12)


def test_pytorch_defaults_are_accepted():
    layer = BatchNorm(3, affine=True, track_running_stats=True, device=None)
    assert set(layer.params) == {"gamma", "beta"} and layer.momentum == 0.1
    assert BatchNorm(3, convention="book").momentum == 0.9


@pytest.mark.parametrize("args", [(0.9,), (0.1, 1e-5), (0.01,)])
def test_a_momentum_passed_second_in_xpnets_old_order_is_refused_not_taken_for_eps(args):
    """BatchNorm once took (num_features, momentum, eps): BatchNorm(64, 0.9) now puts 0.9 in eps, PyTorch's
    second argument, which would have trained silently with eps 0.9."""
    with pytest.raises(ValueError, match=rf"^BatchNorm: eps={args[0]!r} is far above PyTorch's 1e-5 .*pass "
                                         rf"momentum={args[0]!r} by keyword$"):
        BatchNorm(3, *args)
    assert BatchNorm(3, 1e-3, 0.2).eps == 1e-3  # PyTorch's order, a plausible eps


@pytest.mark.parametrize("kwargs,message", [
    ({"momentum": None, "convention": "book"},
     r"momentum=None \(PyTorch's cumulative average.*with convention='book' momentum is the weight of the old"),
    ({"device": "cuda"}, r"BatchNorm: device='cuda' is not supported: .*\.to\(device\)"),
])
def test_pytorch_arguments_xpnet_lacks_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchNorm(3, **kwargs)


@pytest.mark.parametrize("kwargs", [{"affine": "no"}, {"track_running_stats": 0}])
def test_pytorch_flags_must_be_bools(kwargs):
    with pytest.raises(TypeError, match=f"BatchNorm: {next(iter(kwargs))} must be True or False"):
        BatchNorm(3, **kwargs)
