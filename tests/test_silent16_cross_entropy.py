"""SoftmaxCrossEntropy(dim=1): PyTorch's layout of the logits, classes on axis 1, (N, C, L) and (N, C, H, W).

xpnet's default reads the classes on the last axis (the book's (N, T, C)). PyTorch's (N, C, L) logits were read that
way without a word where the shapes allow both readings (labels (N, C) for (N, C, C) logits) and always for
probability targets of the logits' shape: another loss, silently. ``dim=1`` reads PyTorch's layout; the default
refuses labels that fit PyTorch's layout only, naming ``dim=1``. torch.nn.functional.cross_entropy is the
reference, in float64."""

import itertools

import numpy as np
import pytest

import xpnet as xn

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

OPTIONS = [{}, {"weight": True, "label_smoothing": 0.1, "reduction": "sum"},
           {"ignore_index": 1, "label_smoothing": 0.2}]


def _torch_cross_entropy(y, t, options):
    yt = torch.tensor(y, requires_grad=True)
    value = torch.nn.functional.cross_entropy(yt, torch.tensor(t), **{
        k: torch.tensor(v) if k == "weight" else v for k, v in options.items()})
    value.backward()
    return value.item(), yt.grad.numpy()


@pytest.mark.parametrize("shape, probabilities, options", [
    (shape, probabilities, options) for shape, probabilities, options in itertools.product(
        [(2, 5, 5), (2, 4, 4, 4), (2, 5, 3, 4), (3, 4)], [False, True], OPTIONS)
    if not (probabilities and "ignore_index" in options)])
def test_dim_1_is_pytorchs_cross_entropy_value_and_gradient(shape, probabilities, options):
    rng = np.random.default_rng(16)
    y = rng.standard_normal(shape)
    if probabilities:
        t = rng.random(shape)
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = rng.integers(0, shape[1], (shape[0], *shape[2:]))
        t.reshape(-1)[::4] = options.get("ignore_index", 0)
    options = {k: rng.random(shape[1]) + 0.1 if k == "weight" else v for k, v in options.items()}
    value_t, dy_t = _torch_cross_entropy(y, t, options)
    loss = xn.losses.SoftmaxCrossEntropy(dim=1, **options)
    value = float(loss.forward(y, t))
    dy = loss.backward()
    assert dy.shape == y.shape
    np.testing.assert_allclose(value, value_t, rtol=1e-12, atol=0)
    np.testing.assert_allclose(dy, dy_t, rtol=1e-12, atol=1e-15)
    # where the shapes read both ways, dim=-1 (the book's layout) gives another loss, and the default, which
    # would have read them so, refuses them naming both
    if len(shape) > 2 and (probabilities or shape[1:] == (shape[-1],) * (len(shape) - 1)):
        if "weight" not in options:
            assert abs(float(xn.losses.SoftmaxCrossEntropy(dim=-1, **options).forward(y, t)) - value_t) > 1e-3
        with pytest.raises(ValueError, match=r"read two ways: classes on the last axis \(N, \.\.\., C\), the book's "
                                             r"TimeSoftmaxWithLoss, or on axis 1 \(N, C, \.\.\.\), PyTorch's "
                                             r"CrossEntropyLoss; say which: SoftmaxCrossEntropy\(dim=-1\) or "
                                             r"SoftmaxCrossEntropy\(dim=1\)$"):
            xn.losses.SoftmaxCrossEntropy(**options).forward(y, t)


def test_the_default_refuses_labels_of_pytorchs_layout_naming_dim_1():
    y, t = np.zeros((2, 5, 3, 4)), np.zeros((2, 3, 4), dtype=np.int64)
    with pytest.raises(ValueError, match=r"got \(2, 3, 4\); the classes are on the last axis, \(N, \.\.\., C\), "
                                         r".*pass dim=1, SoftmaxCrossEntropy\(dim=1\)$"):
        xn.losses.SoftmaxCrossEntropy().forward(y, t)


@pytest.mark.parametrize("dim", [0, 3, -3])
def test_a_dim_that_is_no_class_axis_is_refused(dim):
    with pytest.raises(ValueError, match=rf"^SoftmaxCrossEntropy: dim={dim} is not a class axis of logits of shape "
                                         r"\(2, 5, 3\)"):
        xn.losses.SoftmaxCrossEntropy(dim=dim).forward(np.zeros((2, 5, 3)), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"dim \(the class axis of the logits\) must be an int"):
        xn.losses.SoftmaxCrossEntropy(dim=1.0)


def test_train_and_evaluate_take_pytorchs_layout_with_dim_1():
    """A Conv1d's (N, C, T) scores and (N, T) labels: xn.evaluate's loss is torch's cross_entropy of the model's
    output, its perplexity (with class weights, from the unweighted loss) too; the default names dim=1."""
    rng = np.random.default_rng(16)
    x, t = rng.standard_normal((6, 3, 5)), rng.integers(0, 4, (6, 5))
    model = xn.Sequential(xn.layers.Conv1d(3, 4, 1, dtype="float64"))
    logs = xn.evaluate(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(dim=1, weight=np.arange(1.0, 5.0)))
    scores = torch.tensor(model.predict(x))
    expected = torch.nn.functional.cross_entropy(scores, torch.tensor(t), weight=torch.arange(1.0, 5.0,
                                                 dtype=torch.float64)).item()
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-12)
    np.testing.assert_allclose(logs["perplexity"], np.exp(torch.nn.functional.cross_entropy(
        scores, torch.tensor(t)).item()), rtol=1e-12)
    with pytest.raises(ValueError, match=r"for PyTorch's \(N, C, T\) scores pass "
                                         r"loss=xn\.losses\.SoftmaxCrossEntropy\(dim=1\)$"):
        xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=xn.optim.SGD(lr=0.1), epochs=1,
                 batch_size=6, progress=False)
