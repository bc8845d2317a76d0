"""Losses against NumPy references, stable for huge logits, with clear errors for bad labels."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.losses import MeanSquaredError, SoftmaxCrossEntropy
from xpnet.testing import assert_placed, tolerance


def _ref_ce(y, t):
    z = y - y.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    onehot = np.eye(y.shape[1])[t]
    p = np.exp(logp)
    return -(onehot * logp).sum() / len(y), (p - onehot) / len(y)


@pytest.mark.parametrize("labels", ["int", "one-hot"])
def test_softmax_cross_entropy(case, rng, labels):
    dev, dtype = case
    y = rng.standard_normal((6, 4)) * 3
    t = rng.integers(0, 4, 6)
    ref_loss, ref_dy = _ref_ce(y, t)
    target = t if labels == "int" else np.eye(4, dtype=dtype)[t]
    loss = SoftmaxCrossEntropy()
    value = loss.forward(xn.to_device(y.astype(dtype), dev), xn.to_device(target, dev))
    dy = loss.backward()
    assert_placed(value, dev, dtype)
    assert value.ndim == 0
    assert_placed(dy, dev, dtype)
    np.testing.assert_allclose(float(xn.to_numpy(value)), ref_loss, **tolerance(dtype))
    np.testing.assert_allclose(xn.to_numpy(dy), ref_dy, **tolerance(dtype))


@pytest.mark.parametrize("labels", ["int", "probabilities"])
def test_label_smoothing_equals_pytorch(rng, labels):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    y = rng.standard_normal((6, 4)) * 3
    t = rng.integers(0, 4, 6)
    target = t if labels == "int" else rng.dirichlet(np.ones(4), 6)
    loss = SoftmaxCrossEntropy(label_smoothing=0.2)
    value = float(loss.forward(y, target))
    dy = loss.backward()
    ty = torch.tensor(y, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(ty, torch.tensor(target), label_smoothing=0.2)
    ref.backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(dy, ty.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert value > SoftmaxCrossEntropy().forward(y, target) or labels == "probabilities"


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("labels, smoothing", [("int", 0.0), ("int", 0.2), ("probabilities", 0.0),
                                               ("probabilities", 0.2)])
def test_reduction_equals_pytorch(rng, reduction, labels, smoothing):
    """PyTorch's reduction: 'sum' is the sum over the counted positions (ignored labels left out), and
    its dy the gradient of that sum; over sequences (N, T, C), with a dout other than 1."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    y = rng.standard_normal((3, 4, 5)) * 3
    t = rng.integers(0, 5, (3, 4))
    t[0, :2] = t[2, 3] = 0  # the pad id: ignored
    target = t if labels == "int" else rng.dirichlet(np.ones(5), (3, 4))
    ignore = np.int64(0) if labels == "int" else -100  # PyTorch refuses ignore_index >= 0 with probability rows
    loss = SoftmaxCrossEntropy(ignore_index=ignore, label_smoothing=smoothing, reduction=reduction, dim=-1)  # (N, T, C)
    value = float(loss.forward(y, target))
    dy = loss.backward(0.5)
    ty = torch.tensor(y, requires_grad=True)
    rows = {"target": torch.tensor(target).permute(0, 2, 1)} if labels == "probabilities" else \
        {"target": torch.tensor(t), "ignore_index": 0}
    ref = torch.nn.functional.cross_entropy(ty.permute(0, 2, 1), label_smoothing=smoothing, reduction=reduction,
                                            **rows)
    (ref * 0.5).backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(dy, ty.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_reduction_sum_on_every_device(case, rng):
    """The sum is the mean times the counted positions, on the device, and dy alike."""
    dev, dtype = case
    y = xn.to_device((rng.standard_normal((4, 3, 5)) * 3).astype(dtype), dev)
    t = rng.integers(0, 5, (4, 3))
    t[1, 1] = -100
    t = xn.to_device(t, dev)
    mean, total = SoftmaxCrossEntropy(), SoftmaxCrossEntropy(reduction="sum")
    value, dy = total.forward(y, t), total.backward()
    assert_placed(value, dev, dtype)
    assert_placed(dy, dev, dtype)
    np.testing.assert_allclose(float(xn.to_numpy(value)), 11 * float(xn.to_numpy(mean.forward(y, t))),
                               **tolerance(dtype))
    np.testing.assert_allclose(xn.to_numpy(dy), 11 * xn.to_numpy(mean.backward()), **tolerance(dtype))
    assert repr(total) == "SoftmaxCrossEntropy(reduction='sum')"


def test_label_smoothing_gradients_match_central_differences(dev, rng):
    """On every device, in float64 (a central-difference check needs it)."""
    model = xn.Sequential(xn.layers.Linear(5, 4, dtype="float64")).to(dev)
    x, t = xn.to_device(rng.standard_normal((6, 5)), dev), xn.to_device(rng.integers(0, 4, 6), dev)
    report = xn.gradcheck(model, x, t, loss=SoftmaxCrossEntropy(label_smoothing=0.1))
    assert report.ok, report


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.1"])
def test_label_smoothing_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="label_smoothing must be a float in \\[0, 1\\]"):
        SoftmaxCrossEntropy(label_smoothing=bad)


def test_cross_entropy_no_nan_for_huge_logits(case):
    dev, dtype = case
    y = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    loss = SoftmaxCrossEntropy()
    value = float(xn.to_numpy(loss.forward(xn.to_device(y.astype(dtype), dev), xn.to_device(np.array([0, 0]), dev))))
    dy = xn.to_numpy(loss.backward())
    assert np.isfinite(value) and np.all(np.isfinite(dy))
    np.testing.assert_allclose(value, (1e4 + np.log(2)) / 2, rtol=1e-6)  # row 2 ties two logits


def test_softmax_normalises_per_row_not_over_the_batch():
    # the seeds' bug: a softmax over the whole batch. Per-row probabilities must sum to one.
    loss = SoftmaxCrossEntropy()
    y = np.array([[1.0, 2.0], [3.0, 10.0]])
    loss.forward(y, np.array([0, 1]))
    p = loss.backward() * 2 + np.eye(2)  # dy = (softmax - one_hot) / N
    np.testing.assert_allclose(p.sum(axis=1), [1.0, 1.0])


def test_mean_squared_error(case, rng):
    dev, dtype = case
    y, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss = MeanSquaredError()
    value = loss.forward(xn.to_device(y.astype(dtype), dev), xn.to_device(t.astype(dtype), dev))
    dy = loss.backward()
    assert_placed(dy, dev, dtype)
    np.testing.assert_allclose(float(xn.to_numpy(value)), ((y - t) ** 2).mean(), **tolerance(dtype))
    np.testing.assert_allclose(xn.to_numpy(dy), 2 * (y - t) / y.size, **tolerance(dtype))


def test_float_labels_are_rejected():
    with pytest.raises(TypeError, match="SoftmaxCrossEntropy: labels of shape \\(N,\\) must be integer"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0.0, 1.0]))


@pytest.mark.parametrize("t", [np.array([0, 3]), np.array([-1, 0])])
def test_labels_out_of_range(t):
    with pytest.raises(ValueError, match=r"SoftmaxCrossEntropy: labels must lie in \[0, 3\)"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3)), t)


def test_one_hot_of_wrong_width():
    with pytest.raises(ValueError, match="one-hot labels must have 3 columns"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.eye(4)[:2])


def test_label_count_mismatch():
    with pytest.raises(ValueError, match="2 predictions but 3 labels"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 1, 2]))


def test_pytorchs_classes_on_axis_1_say_where_xpnet_has_them():
    """nn.CrossEntropyLoss takes (N, C, T) scores with (N, T) labels; xpnet's classes are on the last axis."""
    scores, labels = np.zeros((2, 10, 5)), np.zeros((2, 5), dtype=np.int64)
    with pytest.raises(ValueError, match=r"labels must be integer indices of shape \(2, 10\) or one-hot rows of "
                                         r"shape \(2, 10, 5\), got \(2, 5\); the classes are on the last axis, "
                                         r"\(N, T, C\), where PyTorch's CrossEntropyLoss has them on axis 1"):
        SoftmaxCrossEntropy().forward(scores, labels)
    assert np.isclose(float(SoftmaxCrossEntropy().forward(np.transpose(scores, (0, 2, 1)), labels)), np.log(10))


def test_mse_shape_mismatch():
    with pytest.raises(ValueError, match="MeanSquaredError: predictions \\(2, 3\\) and targets \\(2, 2\\)"):
        MeanSquaredError().forward(np.zeros((2, 3)), np.zeros((2, 2)))


def test_targets_on_another_device():
    strict = pytest.importorskip("array_api_strict")
    d1 = xn.Device(strict, strict.Device("device1"))
    y = xn.to_device(np.zeros((2, 3)), d1)
    t = xn.to_device(np.array([0, 1]), xn.Device(strict))
    with pytest.raises(ValueError, match="predictions are on .*device1.* targets are on"):
        SoftmaxCrossEntropy().forward(y, t)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        SoftmaxCrossEntropy().backward()


def test_get_by_name():
    assert isinstance(xn.losses.get("cross_entropy"), SoftmaxCrossEntropy)
    assert isinstance(xn.losses.get(MeanSquaredError), MeanSquaredError)
    with pytest.raises(ValueError, match="loss: expected a Loss"):
        xn.losses.get("hinge")


@pytest.mark.parametrize("spec", ["cpu", "strict", "torch:cpu"])
@pytest.mark.parametrize("dtype", ["int32", "uint8", "int16"])
def test_integer_labels_of_any_dtype_give_the_int64_loss(spec, dtype):
    if spec == "strict":
        strict = pytest.importorskip("array_api_strict")
        dev = xn.Device(strict, strict.Device("device1"))
    elif spec == "torch:cpu":
        pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
        dev = xn.device(spec, fallback=False)
    else:
        dev = xn.device(spec)
    y = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
    t = np.array([0, 2, 1, 2])
    expected = SoftmaxCrossEntropy().forward(y, t)
    loss = SoftmaxCrossEntropy()
    got = loss.forward(xn.to_device(y, dev), xn.to_device(t, dev, dtype=dtype))
    np.testing.assert_allclose(xn.to_numpy(got), expected, rtol=1e-6)
    np.testing.assert_allclose(xn.to_numpy(loss.backward()), xn.to_numpy(_backward_of(y, t)), rtol=1e-6)


def _backward_of(y, t):
    loss = SoftmaxCrossEntropy()
    loss.forward(y, t)
    return loss.backward()
