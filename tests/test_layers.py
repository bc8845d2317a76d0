"""Core layers on every (namespace, device, dtype) case: forward against NumPy references,
backward against analytic formulas, placement kept, and the incoming gradient never written into."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Dropout, Flatten, Linear, ReLU, Sigmoid, Tanh, Unflatten
from xpnet.testing import assert_placed, tolerance


def _run(layer, case, x_host, dy_host):
    """forward and backward on the case's device; returns host copies of y, dx and the untouched-dy check."""
    dev, dtype = case
    layer.to(dev, dtype=dtype)
    x = xn.to_device(x_host.astype(dtype), dev)
    dy = xn.to_device(dy_host.astype(dtype), dev)
    dy_before = xn.to_numpy(dy).copy()
    y = layer.forward(x)
    dx = layer.backward(dy)
    assert_placed(y, dev, dtype)
    assert_placed(dx, dev, dtype)
    np.testing.assert_array_equal(xn.to_numpy(dy), dy_before, err_msg="backward wrote into dy")
    return xn.to_numpy(y), xn.to_numpy(dx)


def test_linear(case, rng):
    x = rng.standard_normal((5, 4))
    dy = rng.standard_normal((5, 3))
    layer = Linear(4, 3)
    layer.params["b"] = rng.standard_normal(3).astype(np.float32)
    W, b = layer.params["W"].astype(np.float64), layer.params["b"].astype(np.float64)
    y, dx = _run(layer, case, x, dy)
    t = tolerance(case[1])
    np.testing.assert_allclose(y, x @ W + b, **t)
    np.testing.assert_allclose(dx, dy @ W.T, **t)
    np.testing.assert_allclose(xn.to_numpy(layer.grads["W"]), x.T @ dy, **t)
    np.testing.assert_allclose(xn.to_numpy(layer.grads["b"]), dy.sum(axis=0), **t)


def test_linear_flattens_image_batches_like_the_tensor_aware_affine(case, rng):
    x = rng.standard_normal((2, 3, 2, 2))
    dy = rng.standard_normal((2, 5))
    layer = Linear(12, 5)
    W = layer.params["W"].astype(np.float64)
    y, dx = _run(layer, case, x, dy)
    np.testing.assert_allclose(y, x.reshape(2, 12) @ W + 0.0, **tolerance(case[1]))
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, (dy @ W.T).reshape(x.shape), **tolerance(case[1]))


def test_linear_without_bias(case, rng):
    layer = Linear(3, 2, bias=False)
    assert set(layer.params) == {"W"}
    _run(layer, case, rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))
    assert set(layer.grads) == {"W"}


def test_relu(case, rng):
    x = rng.standard_normal((6, 5))
    dy = rng.standard_normal((6, 5))
    y, dx = _run(ReLU(), case, x, dy)
    np.testing.assert_array_equal(y, np.maximum(x.astype(case[1]), 0))
    np.testing.assert_allclose(dx, np.where(x > 0, dy, 0), **tolerance(case[1]))


def test_sigmoid_is_stable_and_correct(case, rng):
    x = np.concatenate([rng.standard_normal((3, 4)), np.array([[-1e4, -80.0, 80.0, 1e4]])])
    dy = rng.standard_normal(x.shape)
    y, dx = _run(Sigmoid(), case, x, dy)
    ref = np.exp(-np.logaddexp(0.0, -x))
    np.testing.assert_allclose(y, ref, **tolerance(case[1]))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx, dy * ref * (1 - ref), **tolerance(case[1]))


def test_tanh(case, rng):
    x = rng.standard_normal((3, 4))
    dy = rng.standard_normal((3, 4))
    y, dx = _run(Tanh(), case, x, dy)
    np.testing.assert_allclose(y, np.tanh(x), **tolerance(case[1]))
    np.testing.assert_allclose(dx, dy * (1 - np.tanh(x) ** 2), **tolerance(case[1]))


def test_flatten(case, rng):
    x = rng.standard_normal((2, 3, 4))
    dy = rng.standard_normal((2, 12))
    y, dx = _run(Flatten(), case, x, dy)
    np.testing.assert_array_equal(y, x.astype(case[1]).reshape(2, 12))
    np.testing.assert_array_equal(dx, dy.astype(case[1]).reshape(2, 3, 4))


@pytest.mark.parametrize("dims", [(), (2,), (0,), (1, 2), (-3, -2), (3,), (0, -1), (2, 2)])
def test_flatten_takes_pytorchs_start_dim_and_end_dim(case, rng, dims):
    """Flatten(start_dim=2) (a vision transformer's (N, C, H, W) -> (N, C, H*W)) was a TypeError; it merges the
    axes PyTorch's nn.Flatten merges, and backward restores the shape."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x = rng.standard_normal((2, 3, 4, 5))
    want = torch.nn.Flatten(*dims)(torch.from_numpy(x)).numpy()
    dy = rng.standard_normal(want.shape)
    y, dx = _run(Flatten(*dims), case, x, dy)
    np.testing.assert_array_equal(y, want.astype(case[1]))
    np.testing.assert_array_equal(dx, dy.astype(case[1]).reshape(x.shape))


@pytest.mark.parametrize("dims, error, message", [
    ((4,), ValueError, r"Flatten: start_dim=4 is out of range for a 4-d input \(expected -4..3\)"),
    ((1, -5), ValueError, r"Flatten: end_dim=-5 is out of range for a 4-d input"),
    ((2, 1), ValueError, r"Flatten: start_dim=2 comes after end_dim=1 on a 4-d input"),
    (("1",), TypeError, r"Flatten: start_dim must be an int \(an axis\), got '1'"),
])
def test_flatten_names_axes_it_cannot_merge(dims, error, message):
    with pytest.raises(error, match=message):
        Flatten(*dims).forward(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize("dim, sizes", [(1, (4, 5)), (1, (2, -1)), (-1, (5, 1, 2, 2)), (0, (1, 2)), (2, (20,))])
def test_unflatten_splits_as_pytorchs(case, rng, dim, sizes):
    """Unflatten(1, (C, H, W)) after a decoder's Linear: PyTorch's nn.Unflatten's shape (a -1 taking the rest of
    the axis), the values as they were, and backward giving dy the input's shape back."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x = rng.standard_normal((2, 20, 20))
    want = torch.nn.Unflatten(dim, sizes)(torch.from_numpy(x)).numpy()
    dy = rng.standard_normal(want.shape)
    y, dx = _run(Unflatten(dim, sizes), case, x, dy)
    np.testing.assert_array_equal(y, want.astype(case[1]))
    np.testing.assert_array_equal(dx, dy.astype(case[1]).reshape(x.shape))


def test_unflatten_undoes_flatten_in_a_decoder():
    """An autoencoder's Linear -> Unflatten -> ConvTranspose2d trains end to end (the gradient reaches the first
    layer through the reshape)."""
    xn.init.seed(0)
    model = xn.Sequential(Flatten(), xn.layers.Linear(16, 8 * 2 * 2), Unflatten(1, (8, 2, 2)),
                          xn.layers.ConvTranspose2d(8, 1, 2, stride=2))
    x = np.random.default_rng(0).standard_normal((6, 1, 4, 4)).astype(np.float64)
    model.to(dtype="float64")
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)


@pytest.mark.parametrize("args, shape, error, message", [
    ((1, (3, 5)), (2, 20), ValueError, r"Unflatten: sizes \[3, 5\] do not multiply up to axis 1 of the input, 20"),
    ((1, (3, -1)), (2, 20), ValueError, r"Unflatten: sizes \[3, -1\] do not multiply up to axis 1"),
    ((2, (4, 5)), (2, 20), ValueError, r"Unflatten: dim=2 is out of range for a 2-d input of shape \(2, 20\)"),
    ((1, 20), (2, 20), TypeError, r"Unflatten: unflattened_size must be a tuple of ints >= 1 \(one of them may "
                                  r"be -1\), got 20"),
    ((1, (-1, -1)), (2, 20), TypeError, r"got \(-1, -1\)"),
    ((1.0, (4, 5)), (2, 20), TypeError, r"Unflatten: dim must be an int \(an axis\), got 1.0"),
])
def test_unflatten_names_what_does_not_fit(args, shape, error, message):
    with pytest.raises(error, match=message):
        Unflatten(*args).forward(np.zeros(shape))


def test_dropout_train_scales_kept_units_and_eval_is_identity(case, rng):
    x = rng.standard_normal((200, 50)) + 3.0
    dy = rng.standard_normal((200, 50))
    layer = Dropout(0.3, seed=1)
    y, dx = _run(layer, case, x, dy)
    kept = y != 0
    assert 0.65 < kept.mean() < 0.75
    xd = x.astype(case[1])
    np.testing.assert_allclose(y[kept], xd[kept] / 0.7, **tolerance(case[1]))
    np.testing.assert_allclose(dx, np.where(kept, dy / 0.7, 0), **tolerance(case[1]))
    dev, dtype = case
    xe = xn.to_device(xd, dev)
    assert layer.forward(xe, train=False) is xe


def test_dropout_with_the_books_convention_does_not_rescale_in_training(case, rng):
    """The book's Dropout: y = x * mask in training, x * (1 - ratio) at test."""
    x, dy = rng.standard_normal((200, 50)) + 3.0, rng.standard_normal((200, 50))
    layer = Dropout(0.3, seed=1, convention="book")
    y, dx = _run(layer, case, x, dy)
    kept = y != 0
    assert 0.65 < kept.mean() < 0.75
    xd = x.astype(case[1])
    np.testing.assert_allclose(y[kept], xd[kept], **tolerance(case[1]))
    np.testing.assert_allclose(dx, np.where(kept, dy, 0), **tolerance(case[1]))
    dev, dtype = case
    y_test = xn.to_numpy(layer.forward(xn.to_device(xd, dev), train=False))
    np.testing.assert_allclose(y_test, xd * 0.7, **tolerance(case[1]))
    with pytest.raises(ValueError, match="Dropout: convention"):
        Dropout(0.5, convention="Book")


@pytest.mark.parametrize("name,std", [("relu", lambda i, o: np.sqrt(2 / i)), ("he", lambda i, o: np.sqrt(2 / i)),
                                      ("sigmoid", lambda i, o: np.sqrt(1 / i)),
                                      ("xavier", lambda i, o: np.sqrt(2 / (i + o)))])
def test_init_names_of_the_book_and_of_pytorch(name, std):
    """The book's weight_init_std='relu' is He; its 'sigmoid' (and its 'xavier') is sqrt(1/fan_in)."""
    xn.init.seed(0)
    w = Linear(400, 300, init=name).params["W"].astype(np.float64)
    assert abs(w.std() / std(400, 300) - 1) < 0.01
    xn.init.seed(0)
    np.testing.assert_allclose(w, xn.init.weights((400, 300), 400, 300, init=std(400, 300), dtype="float64"),
                               rtol=1e-6)


def test_dropout_same_seed_same_mask_on_every_device(case, rng):
    """Where masks are drawn on the host (NumPy, array-api-strict, PyTorch and JAX on the CPU), the same
    seed gives NumPy's very mask; CuPy draws on the GPU from a generator derived from the seed: there the
    same seed gives the same mask again, another seed another, each with about the kept fraction."""
    x = np.ones((64, 64))
    y1, _ = _run(Dropout(0.5, seed=3), case, x, x)
    if not case[0].is_cupy:
        y2, _ = _run(Dropout(0.5, seed=3), (xn.device("cpu"), case[1]), x, x)
        np.testing.assert_array_equal(y1, y2)
        return
    again, _ = _run(Dropout(0.5, seed=3), case, x, x)
    other, _ = _run(Dropout(0.5, seed=4), case, x, x)
    np.testing.assert_array_equal(y1, again)
    assert not np.array_equal(y1, other)
    assert set(np.unique(y1).tolist()) == {0.0, 2.0} and 0.45 < (y1 != 0).mean() < 0.55


@pytest.mark.parametrize("layer", [Linear(3, 2), ReLU(), Sigmoid(), Tanh(), Flatten(), Dropout(0.5)],
                         ids=lambda l: l.name)
def test_integer_input_is_rejected_with_the_layer_name(layer):
    with pytest.raises(TypeError, match=f"{layer.name}: expected a floating-point input"):
        layer.forward(np.ones((2, 3), dtype=np.int64))


@pytest.mark.parametrize("layer", [Linear(3, 2), ReLU(), Sigmoid(), Tanh(), Flatten(), Dropout(0.5)],
                         ids=lambda l: l.name)
def test_backward_before_forward(layer):
    with pytest.raises(RuntimeError, match=f"{layer.name}: backward called before forward"):
        layer.backward(np.ones((2, 2), dtype=np.float32))


def test_linear_wrong_width_names_expected_and_received():
    with pytest.raises(ValueError, match=r"Linear: expected input of shape \(N, 3\).*got \(2, 4\)"):
        Linear(3, 2).forward(np.ones((2, 4), np.float32))


def test_linear_input_on_another_device_is_rejected():
    strict = pytest.importorskip("array_api_strict")
    layer = Linear(3, 2).to(xn.Device(strict, strict.Device("device1")))
    x = xn.to_device(np.ones((2, 3), np.float32), xn.Device(strict))
    with pytest.raises(ValueError, match="Linear: input is on .*CPU_DEVICE.* parameters are on .*device1"):
        layer.forward(x)
    with pytest.raises(ValueError, match="Linear: input is on cpu"):
        layer.forward(np.ones((2, 3), np.float32))


def test_linear_dtype_mismatch_is_rejected():
    with pytest.raises(TypeError, match="Linear: input dtype float64 does not match"):
        Linear(3, 2).forward(np.ones((2, 3)))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_linear_bad_sizes(bad):
    with pytest.raises(ValueError, match="Linear: in_features must be a positive int"):
        Linear(bad, 2)


@pytest.mark.parametrize("p", [-0.1, 1.0, "0.5"])
def test_dropout_bad_p(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be a float in \[0, 1\)"):
        Dropout(p)


def test_same_seed_same_initial_weights_on_every_device(case):
    xn.init.seed(7)
    a = Linear(5, 4)
    xn.init.seed(7)
    b = Linear(5, 4).to(case[0])
    np.testing.assert_array_equal(xn.to_numpy(b.params["W"]), a.params["W"])


@pytest.mark.parametrize("init,std", [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(2 / 500)),
                                      ("normal", 0.01), (0.05, 0.05)])
def test_initialisers_have_the_documented_scale(init, std):
    W = Linear(400, 100, init=init).params["W"]
    assert W.dtype == np.float32
    assert abs(W.std() / std - 1) < 0.02
    assert abs(W.mean()) < 4 * std / np.sqrt(W.size)


def test_unknown_init():
    with pytest.raises(ValueError, match="Linear: init must be one of 'he', 'relu', 'xavier'"):
        Linear(3, 2, init="kaiming-ish")
