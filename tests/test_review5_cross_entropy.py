"""SoftmaxCrossEntropy on logits of one class: softmax over one class is 1, the loss 0 whatever the logits, and
nothing trains; PyTorch's cross_entropy gives 0 for (N, 1) logits and (N,) labels without a word, and refuses
integer (N, 1) targets ("Expected floating point type for target with class probabilities, got Long"), which
xpnet read as one-hot rows (a gradient of 1/N for rows of 0, where the loss is 0). Refused, naming
SigmoidCrossEntropy, on every layout (dim) and target form."""

import numpy as np
import pytest

import xpnet as xn


@pytest.mark.parametrize("dim, shape, target, dtype", [
    (None, (4, 1), (4,), np.int64), (None, (4, 1), (4, 1), np.int64), (None, (4, 1), (4, 1), np.float64),
    (1, (4, 1, 3), (4, 3), np.int64), (1, (4, 1, 3), (4, 1, 3), np.float64), (None, (4, 3, 1), (4, 3), np.int64),
    (-1, (2, 3, 1), (2, 3, 1), np.float64)])
def test_logits_of_one_class_are_refused_naming_sigmoid_cross_entropy(dim, shape, target, dtype):
    t = np.zeros(target, dtype=dtype)
    loss = xn.losses.SoftmaxCrossEntropy(dim=dim)
    with pytest.raises(ValueError, match=rf"^SoftmaxCrossEntropy: logits of shape {re_shape(shape)} have 1 class: "
                                         r"softmax over one class is 1, so the loss is 0 and its gradient 0 whatever "
                                         r"the logits, and nothing trains; .* use SigmoidCrossEntropy \(PyTorch's "
                                         r"BCEWithLogitsLoss\)"):
        loss.forward(np.random.default_rng(0).standard_normal(shape), t)


def test_xn_train_with_one_output_and_cross_entropy_says_why():
    """The binary classifier with one output unit, trained with loss="cross_entropy" on labels (N, 1) of 0 and 1:
    refused before any step, not trained on the gradient of a constant."""
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.int64)
    model = xn.Sequential(xn.layers.Linear(3, 1))
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"have 1 class: .*SigmoidCrossEntropy"):
        xn.train(model, (x, y), loss="cross_entropy", optimizer=xn.optim.SGD(lr=0.1), epochs=1, batch_size=8,
                 progress=False)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_xn_evaluate_with_dim_1_and_labels_of_the_books_layout_names_the_loss_given():
    """SoftmaxCrossEntropy(dim=1) on (N, C, T) scores with labels (N, C), which fit the book's (N, T, C): the
    message told NLLLoss's story (drop the final LogSoftmax, loss='cross_entropy'); it names dim."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((6, 3, 5)), rng.integers(0, 4, (6, 4))
    model = xn.Sequential(xn.layers.Conv1d(3, 4, 1, dtype="float64"))
    with pytest.raises(ValueError, match=r"^evaluate data: SoftmaxCrossEntropy on scores of shape \(N, 4, 5\) needs "
                                         r"integer labels of shape \(N, 5\), got \(6, 4\) of dtype int64; "
                                         r"SoftmaxCrossEntropy\(dim=1\) takes the classes on axis 1, \(N, C, T\), "
                                         r"as PyTorch's: for \(N, T, C\) scores, the book's, leave dim out: "
                                         r"loss=xn\.losses\.SoftmaxCrossEntropy\(\)$"):
        xn.evaluate(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(dim=1))


@pytest.mark.parametrize("refused", ["label out of range", "labels of another layout"])
def test_a_refused_forward_leaves_the_last_forwards_backward(refused):
    """A forward refused on its labels changes nothing: backward() is still the last accepted forward's gradient
    (it failed: class weights with label smoothing lost their row sums, TypeError on None; dim=1 kept the refused
    3-d call's axes for a 2-d gradient, "axes don't match array")."""
    rng = np.random.default_rng(0)
    loss = xn.losses.SoftmaxCrossEntropy(label_smoothing=0.1, weight=np.array([1.0, 2.0, 3.0]), dim=1)
    y, t = rng.standard_normal((4, 3)), np.array([0, 1, 2, 1])
    value = float(loss.forward(y, t))
    expected = loss.backward()
    with pytest.raises(ValueError, match=r"^SoftmaxCrossEntropy: labels must"):
        if refused == "label out of range":
            loss.forward(y, np.array([0, 1, 2, 5]))
        else:
            loss.forward(rng.standard_normal((4, 3, 5)), np.zeros((4, 7), dtype=np.int64))
    np.testing.assert_array_equal(loss.backward(), expected)
    assert float(loss.forward(y, t)) == value


def test_the_name_crossentropyloss_points_at_dim_1_for_pytorchs_layout():
    """xn.losses.CrossEntropyLoss said "classes on the last axis" alone: since dim=1 the hint names PyTorch's axis
    and the loss's weight= and ignore_index too."""
    with pytest.raises(AttributeError, match=r"classes on the last axis \(N, \.\.\., C\), the book's, or on axis 1 "
                                             r"\(N, C, \.\.\.\) as CrossEntropyLoss has them with "
                                             r"SoftmaxCrossEntropy\(dim=1\)"):
        xn.losses.CrossEntropyLoss  # noqa: B018
