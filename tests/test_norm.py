"""BatchNorm over features (N, D) and channels (N, C, H, W): training and evaluation forward against
a NumPy reference, book-style running statistics, gradients, buffers kept in the layer dtype and moved
and saved with the model, clear errors."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import BatchNorm
from xpnet.layers.base import layer_from_config
from xpnet.testing import assert_gradients_ok, assert_placed

SHAPES = [pytest.param((6, 4), id="features"), pytest.param((3, 4, 5), id="sequence"),
          pytest.param((3, 4, 3, 2), id="channels")]


def _axes(shape):
    return (0, *range(2, len(shape)))


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
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
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


@pytest.mark.parametrize("shape", [(8, 4), (3, 4, 5), (5, 4, 3, 2), (2, 4)],
                         ids=["features", "sequence", "channels", "two-samples"])
def test_running_variance_and_evaluation_match_pytorch_after_training_steps(rng, shape):
    """PyTorch's running_var takes the unbiased batch variance (n/(n-1)); training still normalises with
    the biased one. Three training steps, then the evaluation output, in float64."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    ours = BatchNorm(4, momentum=0.3, dtype="float64")
    theirs = (torch.nn.BatchNorm1d if len(shape) < 4 else torch.nn.BatchNorm2d)(4, momentum=0.3,
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
    (np.zeros((4, 5), np.float32), True, r"expected input \(N, 3\), \(N, 3, L\) or \(N, 3, H, W\)"),
    (np.zeros((4, 3, 2, 2, 2), np.float32), True, "got shape"),
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
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
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
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
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
                                         rf"momentum={args[0]!r} by keyword, "):
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


# -- PyTorch's affine=False, track_running_stats=False and momentum=None, against PyTorch itself ----------

OPTIONS = [pytest.param({"momentum": None}, id="momentum-None"),
           pytest.param({"affine": False}, id="affine-False"),
           pytest.param({"track_running_stats": False}, id="track-False"),
           pytest.param({"momentum": None, "affine": False}, id="momentum-None-affine-False"),
           pytest.param({"track_running_stats": False, "affine": False}, id="track-False-affine-False")]
# (N, D) features, and channels of 9 values each: NumPy's fast path (Numba) takes (N, C, L) with L >= 8.
OPTION_SHAPES = [pytest.param((6, 4), id="features"), pytest.param((3, 4, 3, 3), id="channels")]
CLOSE = {"rtol": 1e-12, "atol": 1e-12}


def _expected_buffers(kwargs):
    if not kwargs.get("track_running_stats", True):
        return set()
    return {"running_mean", "running_var"} | ({"num_batches_tracked"} if kwargs.get("momentum", 0.1) is None else set())


def _compare_with_pytorch(dev, rng, shape, kwargs, ours=None, steps=4):
    """``steps`` training forwards and backwards, then one in evaluation, of xpnet's BatchNorm on ``dev``
    and PyTorch's, float64, the same (random) gamma and beta: y, dx, every parameter gradient and every
    buffer after each step (num_batches_tracked too), each in xpnet's namespace, device and dtype."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    c = shape[1]
    ours = BatchNorm(c, dtype="float64", **kwargs) if ours is None else ours
    theirs = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(c, dtype=torch.float64, **kwargs)
    assert set(ours.buffers) == _expected_buffers(kwargs)
    if ours.affine:
        gamma, beta = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
        ours.params["gamma"], ours.params["beta"] = gamma, beta
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(gamma))
            theirs.bias.copy_(torch.from_numpy(beta))
    else:
        assert ours.params == {} and theirs.weight is None and theirs.bias is None
    ours.to(dev)

    def close(a, b, what):
        assert_placed(a, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(a), b.detach().numpy(), **CLOSE, err_msg=what)

    for step in range(steps + 1):
        train = step < steps
        theirs.train(train)
        x, dy = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
        xt = torch.tensor(x, requires_grad=True)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(torch.from_numpy(dy))
        where = f"{'training step ' + str(step + 1) if train else 'evaluation'}"
        close(ours.forward(xn.to_device(x, dev), train=train), yt, f"{where}: y")
        close(ours.backward(xn.to_device(dy, dev)), xt.grad, f"{where}: dx")
        assert set(ours.grads) == ({"gamma", "beta"} if ours.affine else set())
        for name, theirs_name in (("gamma", "weight"), ("beta", "bias")):
            if ours.affine:
                close(ours.grads[name], getattr(theirs, theirs_name).grad, f"{where}: d{name}")
        for name in ours.buffers:
            close(ours.buffers[name], getattr(theirs, name), f"{where}: {name}")
    return ours


@pytest.mark.parametrize("shape", OPTION_SHAPES)
@pytest.mark.parametrize("kwargs", OPTIONS)
def test_pytorch_options_equal_pytorch(dev, rng, shape, kwargs):
    _compare_with_pytorch(dev, rng, shape, kwargs)


@pytest.mark.parametrize("kwargs", OPTIONS)
def test_pytorch_options_equal_pytorch_without_the_fast_paths(rng, kwargs):
    previous = xn.backend.set_fast_paths(False)
    try:
        _compare_with_pytorch(xn.device("cpu"), rng, (3, 4, 3, 3), kwargs)
    finally:
        xn.backend.set_fast_paths(previous)


class _ExponentialForNone(BatchNorm):
    """Bug: momentum=None moves the running statistics on with PyTorch's default 0.1, not 1/n."""

    def _weights(self, count):
        self.momentum = 0.1
        try:
            return super()._weights(count)
        finally:
            self.momentum = None


def test_a_cumulative_average_taken_for_momentum_01_is_caught(rng):
    with pytest.raises(AssertionError, match="training step 1: running_mean"):
        _compare_with_pytorch(xn.device("cpu"), rng, (6, 4), {"momentum": None},
                              ours=_ExponentialForNone(4, momentum=None, dtype="float64"))


def test_evaluation_without_running_statistics_refuses_one_value_per_feature_as_pytorch():
    layer = BatchNorm(3, track_running_stats=False)
    with pytest.raises(ValueError, match=r"^BatchNorm: evaluation with track_running_stats=False \(the batch's "
                                         r"statistics, as PyTorch\) needs more than one value per feature, got "
                                         r"input shape \(1, 3\); use a larger batch$"):
        layer.forward(np.ones((1, 3), np.float32), train=False)
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.nn.BatchNorm1d(3, track_running_stats=False).eval()(torch.ones(1, 3))
    assert layer.forward(np.ones((2, 3, 1, 1), np.float32), train=False).shape == (2, 3, 1, 1)


@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False, "affine": False},
                                    {"momentum": None}], ids=["affine-False", "nothing-held", "momentum-None"])
def test_gradcheck_passes_with_the_pytorch_options(dev, kwargs):
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(3, 4), BatchNorm(4, **kwargs), xn.layers.Tanh(), xn.layers.Linear(4, 2))
    x = xn.to_device(np.random.default_rng(0).standard_normal((5, 3)).astype("float32"), dev)
    report = xn.gradcheck(model.to(dev), x)
    assert report.ok, str(report)


def test_affine_false_has_no_parameters_anywhere(tmp_path):
    model = xn.Sequential(xn.layers.Linear(3, 4), BatchNorm(4, affine=False), xn.layers.Linear(4, 2))
    assert list(model.named_params()) == ["0.W", "0.b", "2.W", "2.b"]
    assert "parameters: 26 " in model.summary()
    optimizer = xn.optim.SGD(model, lr=0.1, momentum=0.9)
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    model.forward(x)
    model.backward(np.ones((8, 2), np.float32) / 8)
    optimizer.step()
    assert sorted(optimizer.state) == ["0.W", "0.b", "2.W", "2.b"]
    assert sorted(model.state_dict()) == ["0.W", "0.b", "1.running_mean", "1.running_var", "2.W", "2.b"]


def test_summary_and_train_probe_a_batchnorm_without_running_statistics():
    """Both probe in evaluation mode, where such a BatchNorm still needs two values per feature."""
    model = xn.Sequential(xn.layers.Linear(2, 4), BatchNorm(4, track_running_stats=False), xn.layers.Linear(4, 3))
    assert "(N, 4)" in model.summary()
    x, t = xn.datasets.spiral(20, 3, seed=0)
    h = xn.train(model, (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=8, progress=False)
    assert len(h.epochs) == 1


def test_input_on_another_device_than_the_buffers_is_named():
    strict = pytest.importorskip("array_api_strict")
    layer = BatchNorm(3, affine=False).to(xn.Device(strict, strict.Device("device1")))
    with pytest.raises(xn.backend.XpnetDeviceError, match="BatchNorm: input is on cpu but the layer's buffers are on"):
        layer.forward(np.ones((4, 3), np.float32))


def test_the_options_show_in_repr_and_are_saved(tmp_path, rng):
    layer = BatchNorm(3, momentum=None, affine=False, track_running_stats=False)
    assert repr(layer) == "BatchNorm(num_features=3, momentum=None, eps=1e-05, affine=False, track_running_stats=False)"
    assert repr(BatchNorm(3)) == "BatchNorm(num_features=3, momentum=0.1, eps=1e-05)"
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    for kwargs in ({"momentum": None}, {"affine": False}, {"track_running_stats": False},
                   {"momentum": None, "affine": False, "eps": 1e-3}):
        model = xn.Sequential(xn.layers.Linear(3, 4), BatchNorm(4, **kwargs))
        for _ in range(3):
            model.forward(rng.standard_normal((8, 3)).astype(np.float32))
        model.save(tmp_path / "bn.npz")
        loaded = xn.load(tmp_path / "bn.npz", device=dev1)
        assert loaded[1].config() == model[1].config() and repr(loaded) == repr(model)
        assert sorted(loaded.state()) == sorted(model.state())
        for k, v in model.state().items():
            assert_placed(loaded.state()[k], dev1, "float32")
            np.testing.assert_array_equal(xn.to_numpy(loaded.state()[k]), v, err_msg=k)
        x = rng.standard_normal((5, 3)).astype(np.float32)
        np.testing.assert_array_equal(xn.to_numpy(loaded.forward(xn.to_device(x, dev1), train=False)),
                                      model.forward(x, train=False))
        if kwargs.get("momentum", 0.1) is None:
            assert float(xn.to_numpy(loaded[1].buffers["num_batches_tracked"])) == 3.0


def test_files_from_before_the_options_load_with_pytorchs_defaults():
    layer = layer_from_config("BatchNorm", {"num_features": 2, "momentum": 0.1, "eps": 1e-5, "dtype": "float32",
                                            "convention": "pytorch"})
    assert layer.affine and layer.track_running_stats and set(layer.params) == {"gamma", "beta"}
    assert set(layer.buffers) == {"running_mean", "running_var"}


def test_a_pytorch_state_dict_with_momentum_none_loads():
    """PyTorch's int64 num_batches_tracked goes into xpnet's float one (weight and bias are gamma and beta)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    theirs = torch.nn.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for _ in range(5):
        theirs(torch.from_numpy(rng.standard_normal((6, 3))))
    names = {"weight": "0.gamma", "bias": "0.beta"}
    state = {names.get(k, f"0.{k}"): v.numpy() for k, v in theirs.state_dict().items()}
    model = xn.Sequential(BatchNorm(3, momentum=None, dtype="float64"))
    model.load_state_dict(state)
    assert float(model[0].buffers["num_batches_tracked"]) == 5.0
    x = rng.standard_normal((6, 3))
    model.forward(x)
    theirs(torch.from_numpy(x))
    np.testing.assert_allclose(model[0].buffers["running_var"], theirs.running_var.numpy(), **CLOSE)


def test_a_last_evaluation_batch_of_one_sample_joins_the_one_before_without_running_statistics():
    """BatchNorm(track_running_stats=False) normalises evaluation batches with their own statistics: a
    validation set one sample past a multiple of the evaluation batch (1025 = 1024 + 1) trained a whole
    epoch, then failed on its last batch of one ('use a larger batch', a batch the user never chose)."""
    rng = np.random.default_rng(0)
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(4, 8), BatchNorm(8, track_running_stats=False), xn.layers.Linear(8, 3))
    x, t = rng.standard_normal((64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    xv, tv = rng.standard_normal((1025, 4)).astype(np.float32), rng.integers(0, 3, 1025)
    history = xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=32,
                       validation=(xv, tv), progress=False)
    loss = xn.losses.SoftmaxCrossEntropy()
    whole = float(loss.forward(model.forward(xv, train=False), tv))  # the 1025 samples as one batch
    assert history.epochs[0]["val_loss"] == pytest.approx(whole, rel=1e-6)
    assert xn.evaluate(model, (xv, tv), loss=loss)["loss"] == pytest.approx(whole, rel=1e-6)
    with pytest.raises(ValueError, match="evaluation with track_running_stats=False"):
        model.forward(xv[:1], train=False)  # one sample alone is still refused
