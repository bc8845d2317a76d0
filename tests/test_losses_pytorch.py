"""The losses PyTorch users reach for, equal to PyTorch's in float64 (loss and dy) on every device:
SigmoidCrossEntropy (BCEWithLogitsLoss), MeanAbsoluteError (L1Loss), SmoothL1Loss, HuberLoss,
MeanSquaredError's reduction and SoftmaxCrossEntropy's class weights; their errors; xn.train with them."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.losses import (HuberLoss, MeanAbsoluteError, MeanSquaredError, SigmoidCrossEntropy, SmoothL1Loss,
                          SoftmaxCrossEntropy)
from xpnet.testing import assert_placed, tolerance

EXACT = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _compare(loss, reference, y, t, dev, dout=0.7, **tensors):
    """``loss`` on ``dev`` in float64 against ``reference(y, t, **tensors)``, PyTorch's, on the host: the value
    and dy (for a dout other than 1), both placed on ``dev`` in float64."""
    import torch

    value = loss.forward(xn.to_device(y, dev), xn.to_device(t, dev))
    dy = loss.backward(dout)
    assert_placed(value, dev, "float64")
    assert value.ndim == 0
    assert_placed(dy, dev, "float64")
    ty = torch.tensor(y, requires_grad=True)
    ref = reference(ty, torch.tensor(t), **{k: torch.tensor(v) if hasattr(v, "shape") else v
                                           for k, v in tensors.items()})
    (ref * dout).backward()
    np.testing.assert_allclose(float(xn.to_numpy(value)), ref.item(), **EXACT)
    np.testing.assert_allclose(xn.to_numpy(dy), ty.grad.numpy(), **EXACT)


def _logits_and_targets(rng):
    """Logits (6, 3) with +-800, 0 and 1e-17 among them; targets 0, 1, 0.5 and fractions."""
    y = rng.standard_normal((6, 3)) * 3
    y[0], y[1] = [800.0, -800.0, 0.0], [-800.0, 800.0, 1e-17]
    t = rng.uniform(size=(6, 3))
    t[0], t[1], t[2] = [0.0, 1.0, 0.5], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]
    return y, t


# ----------------------------------------------------------------------------------------
# SigmoidCrossEntropy: PyTorch's BCEWithLogitsLoss
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{}, {"pos_weight": "classes"}, {"weight": "rows"},
                                      {"weight": "elements", "pos_weight": "classes", "reduction": "sum"}],
                         ids=["plain", "pos_weight", "weight", "both-sum"])
def test_sigmoid_cross_entropy_equals_pytorch(dev, rng, torch, settings):
    y, t = _logits_and_targets(rng)
    arrays = {"classes": np.array([0.5, 2.0, 3.0]), "rows": rng.uniform(0.1, 2, (6, 1)),
              "elements": rng.uniform(0.1, 2, (6, 3))}
    kwargs = {k: arrays.get(v, v) for k, v in settings.items()}
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        _compare(SigmoidCrossEntropy(**kwargs), torch.nn.functional.binary_cross_entropy_with_logits, y, t, dev,
                 **kwargs)


def test_sigmoid_cross_entropy_is_finite_for_huge_logits(dev):
    """log(1 + exp(800)) as 800, no overflow: NumPy warnings are errors here, and the loss is exact."""
    y, t = np.array([[800.0, -800.0, 800.0, -800.0]]), np.array([[0.0, 1.0, 1.0, 0.0]])
    loss = SigmoidCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = float(xn.to_numpy(loss.forward(xn.to_device(y, dev), xn.to_device(t, dev))))
        dy = xn.to_numpy(loss.backward())
    assert value == 400.0
    np.testing.assert_array_equal(dy, [[0.25, -0.25, 0.0, 0.0]])


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "float32"])
def test_sigmoid_cross_entropy_takes_labels_of_any_dtype(dev, rng, dtype):
    """0/1 labels of an integer or bool dtype, or float32 ones for float64 logits, give the float64 loss."""
    y, t = rng.standard_normal((5, 2)), rng.integers(0, 2, (5, 2))
    loss = SigmoidCrossEntropy()
    expected, expected_dy = float(loss.forward(y, t.astype(np.float64))), loss.backward()
    got = loss.forward(xn.to_device(y, dev), xn.to_device(t.astype(dtype), dev))
    assert_placed(got, dev, "float64")
    np.testing.assert_allclose(float(xn.to_numpy(got)), expected, **EXACT)
    np.testing.assert_allclose(xn.to_numpy(loss.backward()), expected_dy, **EXACT)


def test_sigmoid_cross_entropy_counts_the_logits_on_their_targets_side():
    """Keras's binary_accuracy on logits: y > 0 where t >= 0.5; a logit of 0 is a 0."""
    loss = SigmoidCrossEntropy()
    assert loss.correct_count() is None
    loss.forward(np.array([[2.0], [0.0], [-1.0], [1e-17], [-3.0]]), np.array([[1.0], [0.0], [0.6], [0.5], [0.4]]))
    assert int(loss.correct_count()) == 4


def test_sigmoid_cross_entropy_weights_are_copied_once_per_device_and_dtype(monkeypatch, rng):
    """The weights live on the host; each step reuses their copy on the data's device (no host copy per step)."""
    from xpnet.losses import base

    strict = pytest.importorskip("array_api_strict")
    d1 = xn.Device(strict, strict.Device("device1"))
    sent = []
    to_device = base.to_device
    monkeypatch.setattr(base, "to_device", lambda *a, **k: (sent.append(1), to_device(*a, **k))[1])
    loss = SigmoidCrossEntropy(pos_weight=[1.0, 2.0])
    y, t = xn.to_device(rng.standard_normal((4, 2)), d1), xn.to_device(rng.uniform(size=(4, 2)), d1)
    for _ in range(3):
        loss.forward(y, t)
        loss.backward()
    assert len(sent) == 1
    loss.forward(xn.to_device(rng.standard_normal((4, 2)).astype("float32"), d1), xn.to_device(np.ones((4, 2)), d1))
    assert len(sent) == 2



def test_a_loss_with_weights_can_be_copied_and_pickled_after_use(dev, rng):
    """The weights' device copy was kept under the namespace module and the device object: after one forward,
    copy.deepcopy and pickle of the loss raised "cannot pickle 'module' object"."""
    import copy
    import pickle

    y = xn.to_device(rng.standard_normal((4, 3)), dev)
    t = xn.to_device(np.array([0, 1, 2, 1]), dev)
    loss = xn.losses.SoftmaxCrossEntropy(weight=np.array([1.0, 2.0, 3.0]))
    want = float(loss.forward(y, t))
    assert float(copy.deepcopy(loss).forward(y, t)) == want
    if dev.is_numpy:
        assert float(pickle.loads(pickle.dumps(loss)).forward(y, t)) == want

# ----------------------------------------------------------------------------------------
# MeanAbsoluteError (L1Loss), SmoothL1Loss, HuberLoss, MeanSquaredError's reduction
# ----------------------------------------------------------------------------------------

REGRESSION = [
    (lambda: MeanSquaredError(), "mse_loss", {}),
    (lambda: MeanSquaredError(reduction="sum"), "mse_loss", {"reduction": "sum"}),
    (lambda: MeanAbsoluteError(), "l1_loss", {}),
    (lambda: MeanAbsoluteError("sum"), "l1_loss", {"reduction": "sum"}),
    (lambda: SmoothL1Loss(), "smooth_l1_loss", {}),
    (lambda: SmoothL1Loss(beta=0.5), "smooth_l1_loss", {"beta": 0.5}),
    (lambda: SmoothL1Loss(beta=0.0), "smooth_l1_loss", {"beta": 0.0}),
    (lambda: SmoothL1Loss("sum", 2.0), "smooth_l1_loss", {"reduction": "sum", "beta": 2.0}),
    (lambda: HuberLoss(), "huber_loss", {}),
    (lambda: HuberLoss(delta=0.5), "huber_loss", {"delta": 0.5}),
    (lambda: HuberLoss("sum", 2.0), "huber_loss", {"reduction": "sum", "delta": 2.0}),
]
REGRESSION_IDS = ["mse", "mse-sum", "l1", "l1-sum", "smooth_l1", "smooth_l1-beta0.5", "smooth_l1-beta0",
                  "smooth_l1-sum-beta2", "huber", "huber-delta0.5", "huber-sum-delta2"]


def _differences_with_kinks(rng):
    """Targets (4, 6) and predictions that differ from them by 0, +-0.5, +-1, +-2 exactly (every loss's kinks)
    and by other amounts."""
    t = np.round(rng.standard_normal((4, 6)) * 64) / 64  # multiples of 1/64: t + d - t is d exactly
    d = np.round(rng.standard_normal((4, 6)) * 128) / 64
    d[0] = [0.0, 0.5, -0.5, 1.0, -1.0, 2.0]
    d[1, :2] = [-2.0, 0.0]
    return t + d, t


@pytest.mark.parametrize("make, reference, settings", REGRESSION, ids=REGRESSION_IDS)
def test_regression_losses_equal_pytorch(dev, rng, torch, make, reference, settings):
    """Their values and gradients, at the kinks too (y - t of 0, +-beta, +-delta), as PyTorch's autograd."""
    y, t = _differences_with_kinks(rng)
    np.testing.assert_array_equal((y - t)[0], [0.0, 0.5, -0.5, 1.0, -1.0, 2.0])  # the kinks survive the rounding
    _compare(make(), getattr(torch.nn.functional, reference), y, t, dev, **settings)


@pytest.mark.parametrize("make", [r[0] for r in REGRESSION], ids=REGRESSION_IDS)
def test_regression_losses_keep_float32_and_their_repr(case, rng, make):
    dev, dtype = case
    loss = make()
    y, t = _differences_with_kinks(rng)
    value = loss.forward(xn.to_device(y.astype(dtype), dev), xn.to_device(t.astype(dtype), dev))
    assert_placed(value, dev, dtype)
    assert_placed(loss.backward(), dev, dtype)
    assert loss.mean_count() == 24
    assert repr(loss) == repr(eval(repr(loss), vars(xn.losses)))


def test_reprs_name_what_differs_from_the_defaults():
    assert repr(MeanSquaredError()) == "MeanSquaredError()"
    assert repr(MeanSquaredError(reduction="sum")) == "MeanSquaredError(reduction='sum')"
    assert repr(SmoothL1Loss(beta=0.5)) == "SmoothL1Loss(beta=0.5)"
    assert repr(HuberLoss("sum", delta=2)) == "HuberLoss(reduction='sum', delta=2.0)"
    assert repr(SigmoidCrossEntropy(pos_weight=[3])) == "SigmoidCrossEntropy(pos_weight=[3.0])"
    assert repr(SoftmaxCrossEntropy(weight=[1, 2])) == "SoftmaxCrossEntropy(weight=[1.0, 2.0])"


def test_sigmoid_cross_entropy_keeps_the_dtype(case, rng):
    dev, dtype = case
    y, t = _logits_and_targets(rng)
    loss = SigmoidCrossEntropy(pos_weight=np.array([1.0, 2.0, 0.5]), weight=np.ones((6, 1)))
    value = loss.forward(xn.to_device(y.astype(dtype), dev), xn.to_device(t.astype(dtype), dev))
    assert_placed(value, dev, dtype)
    assert_placed(loss.backward(), dev, dtype)
    reference = SigmoidCrossEntropy(pos_weight=np.array([1.0, 2.0, 0.5]))
    np.testing.assert_allclose(float(xn.to_numpy(value)), float(reference.forward(y, t)), **tolerance(dtype))


# ----------------------------------------------------------------------------------------
# SoftmaxCrossEntropy(weight=...): PyTorch's class weights
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("labels", ["int", "probabilities"])
def test_class_weights_equal_pytorch(dev, rng, torch, reduction, smoothing, labels):
    """Integer labels: the weighted mean divides by the counted labels' weights, ignore_index left out, label
    smoothing weighs each class; probability rows: the mean over rows (PyTorch ignores no row). Over sequences
    (N, T, C), PyTorch's classes on axis 1."""
    y = rng.standard_normal((3, 4, 5)) * 3
    t = rng.integers(0, 5, (3, 4))
    t[0, :2] = t[2, 3] = -100
    weight = rng.uniform(0.1, 2.0, 5)
    target = t if labels == "int" else rng.dirichlet(np.ones(5), (3, 4))
    loss = SoftmaxCrossEntropy(label_smoothing=smoothing, reduction=reduction, weight=weight, dim=-1)  # (N, T, C)

    def reference(ty, tt, **kwargs):
        return torch.nn.functional.cross_entropy(ty.permute(0, 2, 1), tt if labels == "int" else tt.permute(0, 2, 1),
                                                 **kwargs)

    _compare(loss, reference, y, target, dev, weight=weight, label_smoothing=smoothing, reduction=reduction)


def test_class_weights_of_ones_are_the_unweighted_loss(case, rng):
    """On every device and dtype: weights of 1 give the loss without weights (whose fast paths the tests
    compare with PyTorch), and the weights of 2 on one class move the loss toward that class's rows."""
    dev, dtype = case
    y = xn.to_device((rng.standard_normal((8, 4)) * 3).astype(dtype), dev)
    t = xn.to_device(rng.integers(0, 4, 8), dev)
    plain, ones = SoftmaxCrossEntropy(label_smoothing=0.1), SoftmaxCrossEntropy(label_smoothing=0.1, weight=[1.0] * 4)
    value = ones.forward(y, t)
    assert_placed(value, dev, dtype)
    assert_placed(ones.backward(), dev, dtype)
    np.testing.assert_allclose(xn.to_numpy(value), xn.to_numpy(plain.forward(y, t)), **tolerance(dtype))
    np.testing.assert_allclose(xn.to_numpy(ones.backward()), xn.to_numpy(plain.backward()), **tolerance(dtype))


def test_class_weights_where_every_label_is_ignored_give_0():
    """PyTorch gives NaN; xpnet's loss is 0, as without weights."""
    loss = SoftmaxCrossEntropy(weight=[1.0, 2.0])
    assert float(loss.forward(np.ones((2, 2)), np.array([-100, -100]))) == 0.0
    np.testing.assert_array_equal(loss.backward(), np.zeros((2, 2)))


# ----------------------------------------------------------------------------------------
# Planted bugs: the comparison with PyTorch catches them
# ----------------------------------------------------------------------------------------


def test_a_bce_backward_without_the_sigmoid_is_caught(rng, torch, monkeypatch):
    y, t = _logits_and_targets(rng)
    monkeypatch.setattr(SigmoidCrossEntropy, "backward", lambda self, dout=1.0: (self._y - self._t) * self._scale(dout))
    with pytest.raises(AssertionError):
        _compare(SigmoidCrossEntropy(), torch.nn.functional.binary_cross_entropy_with_logits, y, t, xn.device("cpu"))


def test_a_huber_gradient_of_the_wrong_sign_past_delta_is_caught(rng, torch, monkeypatch):
    y, t = _differences_with_kinks(rng)

    def wrong(self, dout=1.0):
        d = self._diff
        return np.where(np.abs(d) < self.delta, d, -self.delta * np.sign(d)) * self._scale(dout)

    monkeypatch.setattr(HuberLoss, "backward", wrong)
    with pytest.raises(AssertionError):
        _compare(HuberLoss(), torch.nn.functional.huber_loss, y, t, xn.device("cpu"))


# ----------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [MeanSquaredError, MeanAbsoluteError, SmoothL1Loss, HuberLoss, SigmoidCrossEntropy])
def test_reduction_none_is_refused_as_cross_entropy_refuses_it(make):
    message = r"reduction='none' is not supported: xpnet has no loss per position \(its backward starts from one " \
              r"number\): pass 'mean' or 'sum'"
    with pytest.raises(ValueError, match=f"^{make.__name__}: {message}$"):
        make(reduction="none")
    with pytest.raises(ValueError, match=f"{message}, with ignore_index to leave positions out$"):
        SoftmaxCrossEntropy(reduction="none")
    with pytest.raises(ValueError, match=f"^{make.__name__}: reduction='avg' is not supported: expected 'mean' or "
                                         "'sum'$"):
        make(reduction="avg")


@pytest.mark.parametrize("make", [MeanSquaredError, MeanAbsoluteError, SmoothL1Loss, HuberLoss, SigmoidCrossEntropy])
def test_elementwise_losses_refuse_what_the_existing_ones_refuse(make):
    loss = make()
    with pytest.raises(RuntimeError, match=f"^{make.__name__}: backward called before forward$"):
        loss.backward()
    with pytest.raises(ValueError, match=rf"^{make.__name__}: predictions \(2, 3\) and targets \(2, 2\) differ in "
                                         r"shape"):
        loss.forward(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(TypeError, match=f"^{make.__name__}: expected floating-point predictions, got dtype int64$"):
        loss.forward(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3)))
    loss.forward(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match=rf"^{make.__name__}: backward\(dout\): dout must be a number"):
        loss.backward("1")


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "1", True])
def test_smooth_l1_beta_and_huber_delta_are_checked(bad):
    with pytest.raises(ValueError, match=r"^SmoothL1Loss: beta must be a finite float >= 0 \(the width of the squared "
                                         r"part\), got "):
        SmoothL1Loss(beta=bad)
    with pytest.raises(ValueError, match=r"^HuberLoss: delta must be a finite float > 0 \(where the loss turns "
                                         r"linear\), got "):
        HuberLoss(delta=bad)
    with pytest.raises(ValueError, match=r"^HuberLoss: delta must be a finite float > 0 .* got 0$"):
        HuberLoss(delta=0)


def test_sigmoid_cross_entropy_errors():
    with pytest.raises(ValueError, match=r"^SigmoidCrossEntropy: targets must lie in \[0, 1\] \(0/1 labels or "
                                         r"probabilities\), got values in \[0, 2\]: outside it the loss has no "
                                         r"minimum; for more than two classes use SoftmaxCrossEntropy$"):
        SigmoidCrossEntropy().forward(np.zeros((3, 1)), np.array([[0], [1], [2]]))
    with pytest.raises(ValueError, match=r"got values in \[-1, 1\]"):
        SigmoidCrossEntropy().forward(np.zeros(2), np.array([-1.0, 1.0]))
    SigmoidCrossEntropy().forward(np.zeros(2), np.array([-1.0, 1.0]), check=False)  # xn.train checks once, before
    with pytest.raises(ValueError, match=r"^SigmoidCrossEntropy: predictions \(4, 1\) and targets \(4,\) differ in "
                                         r"shape: reshape the targets to \(4, 1\) \(xn.train does it for you\)$"):
        SigmoidCrossEntropy().forward(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match=r"^SigmoidCrossEntropy: pos_weight of shape \(2,\) does not broadcast to the "
                                         r"logits' shape \(4, 3\) \(a \(K,\) pos_weight weighs the last axis\)$"):
        SigmoidCrossEntropy(pos_weight=[1.0, 2.0]).forward(np.zeros((4, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"^SigmoidCrossEntropy: weight of shape \(3, 1\) does not broadcast"):
        SigmoidCrossEntropy(weight=np.ones((3, 1))).forward(np.zeros((4, 3)), np.zeros((4, 3)))
    with pytest.raises(TypeError, match=r"^SigmoidCrossEntropy: the first argument is weight \(an array\), got "
                                        r"'sum'; pass reduction='sum' by name$"):
        SigmoidCrossEntropy("sum")


@pytest.mark.parametrize("make, arg", [(lambda w: SigmoidCrossEntropy(weight=w), "weight"),
                                       (lambda w: SigmoidCrossEntropy(pos_weight=w), "pos_weight"),
                                       (lambda w: SoftmaxCrossEntropy(weight=w), "weight")])
def test_weights_must_be_finite_non_negative_numbers(make, arg):
    who = "SoftmaxCrossEntropy" if "Softmax" in repr(make([1.0])) else "SigmoidCrossEntropy"
    with pytest.raises(ValueError, match=rf"^{who}: {arg} must hold finite weights >= 0 \(a negative weight rewards "
                                         rf"the error it weighs\), got -1.0$"):
        make([1.0, -1.0])
    with pytest.raises(ValueError, match=rf"^{who}: {arg} must hold finite weights >= 0 .* got nan$"):
        make(np.array([np.nan]))
    with pytest.raises(TypeError, match=rf"^{who}: {arg} must be an array of real numbers, got ndarray of dtype bool$"):
        make(np.array([True, False]))
    with pytest.raises(TypeError, match=rf"^{who}: {arg} must be an array of real numbers, got list of dtype <U1$"):
        make(["a"])


def test_class_weight_errors():
    with pytest.raises(ValueError, match=r"^SoftmaxCrossEntropy: weight must be a 1-d array \(one weight per class\), "
                                         r"got shape \(2, 2\)$"):
        SoftmaxCrossEntropy(weight=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"^SoftmaxCrossEntropy: weight holds 3 class weights but the logits have 4 "
                                         r"classes$"):
        SoftmaxCrossEntropy(weight=[1.0, 2.0, 3.0]).forward(np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(TypeError, match=r"^SoftmaxCrossEntropy: the first argument is ignore_index \(an int\), got a "
                                        r"ndarray; PyTorch's first, weight \(class weights\), is passed by name here: "
                                        r"SoftmaxCrossEntropy\(weight=...\)$"):
        SoftmaxCrossEntropy(np.ones(3))


# ----------------------------------------------------------------------------------------
# Names, xn.train, xn.evaluate, gradcheck
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kind", [("bce", SigmoidCrossEntropy), ("bce_with_logits", SigmoidCrossEntropy),
                                        ("sigmoid_cross_entropy", SigmoidCrossEntropy), ("l1", MeanAbsoluteError),
                                        ("mae", MeanAbsoluteError), ("mean_absolute_error", MeanAbsoluteError),
                                        ("smooth_l1", SmoothL1Loss), ("huber", HuberLoss)])
def test_losses_by_name(name, kind):
    assert type(xn.losses.get(name)) is kind


@pytest.mark.parametrize("loss", [MeanSquaredError(reduction="sum"), MeanAbsoluteError(reduction="sum"),
                                  SmoothL1Loss(reduction="sum"), HuberLoss(reduction="sum"),
                                  SigmoidCrossEntropy(reduction="sum")], ids=lambda loss: loss.name)
def test_train_and_evaluate_refuse_a_sum(loss):
    x, t = xn.datasets.xor(40, dtype="float64")
    model = xn.Sequential(xn.layers.Linear(2, 1, dtype="float64"))
    with pytest.raises(ValueError, match=r"^train: the loss has reduction='sum'; train averages the loss over batches"):
        xn.train(model, (x, t), loss=loss, optimizer="sgd", epochs=1, batch_size=10, progress=False)
    with pytest.raises(ValueError, match=r"^evaluate: the loss has reduction='sum'"):
        xn.evaluate(model, (x, t), loss=loss)


def _binary_model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(2, 16, dtype="float64"), xn.layers.Tanh(),
                         xn.layers.Linear(16, 1, dtype="float64"))


@pytest.mark.parametrize("labels", ["int64", "bool", "float32-column"])
def test_train_with_bce_lowers_the_loss_and_logs_accuracy(dev, labels):
    """XOR's 0/1 labels, (N,) of int or bool, or (N, 1) float32 for a float64 model: the loss falls and the
    accuracy (logits thresholded at 0) reaches 1; evaluate gives the last epoch's validation figures."""
    x, t = xn.datasets.xor(200, seed=0, dtype="float64")
    y = t.astype("float32")[:, None] if labels == "float32-column" else t.astype(labels)
    model = _binary_model()
    h = xn.train(model, (x, y), validation=(x, y), loss="bce", optimizer=xn.optim.Adam(0.05), epochs=25,
                 batch_size=50, device=dev, progress=False, seed=0)
    first, last = h.epochs[0], h.epochs[-1]
    assert last["train_loss"] < 0.1 < first["train_loss"]
    assert last["train_accuracy"] == 1.0 and last["val_accuracy"] == 1.0
    result = xn.evaluate(model, (x, y), loss=SigmoidCrossEntropy(), batch_size=64)
    assert result["accuracy"] == 1.0
    assert result["loss"] == pytest.approx(last["val_loss"], rel=1e-9)


def test_train_with_bce_accuracy_counts_each_target():
    """Half the logits on the wrong side: an accuracy of 0.5 before training, counted by element."""
    x = np.array([[1.0], [1.0], [-1.0], [-1.0]])
    model = xn.Sequential(xn.layers.Linear(1, 1, dtype="float64"))
    params = model.named_params()
    params["0.W"][...] = 1.0
    params["0.b"][...] = 0.0
    result = xn.evaluate(model, (x, np.array([1, 0, 0, 1])), loss="bce")
    assert result["accuracy"] == 0.5
    assert result["loss"] == pytest.approx(np.log1p(np.exp(-1.0)) / 2 + np.log1p(np.exp(1.0)) / 2)


def test_train_with_bce_of_several_labels_logs_the_loss_alone():
    """(N, K) targets: several labels per sample; no accuracy is logged (one per sample is not defined)."""
    x, t = xn.datasets.xor(80, seed=0, dtype="float64")
    y = np.stack([t, 1 - t], axis=1)
    model = xn.Sequential(xn.layers.Linear(2, 8, dtype="float64"), xn.layers.Tanh(),
                          xn.layers.Linear(8, 2, dtype="float64"))
    h = xn.train(model, (x, y), loss=SigmoidCrossEntropy(pos_weight=[1.0, 2.0]), optimizer=xn.optim.Adam(0.05),
                 epochs=5, batch_size=20, progress=False)
    assert h.epochs[-1]["train_accuracy"] is None and h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]


def test_train_with_bce_refuses_targets_it_cannot_take():
    x, t = xn.datasets.xor(40, dtype="float64")
    with pytest.raises(ValueError, match=r"^train data: SigmoidCrossEntropy needs targets in \[0, 1\] \(0/1 labels or "
                                         r"probabilities\), got values in \[0, 2\]; for more than two classes use "
                                         r"SoftmaxCrossEntropy$"):
        xn.train(_binary_model(), (x, t * 2), loss="bce", optimizer="sgd", epochs=1, batch_size=10, progress=False)
    with pytest.raises(ValueError, match=r"^train data: SigmoidCrossEntropy needs targets shaped like the model output "
                                         r"\(N, 1\), got \(40, 2\)$"):
        xn.train(_binary_model(), (x, np.zeros((40, 2))), loss="bce", optimizer="sgd", epochs=1, batch_size=10,
                 progress=False)
    with pytest.raises(TypeError, match=r"^train data: SoftmaxCrossEntropy with targets of shape \(N,\) needs integer "
                                        r"class indices, got dtype bool"):
        xn.train(_binary_model(), (x, t.astype(bool)), loss="cross_entropy", optimizer="sgd", epochs=1,
                 batch_size=10, progress=False)


@pytest.mark.parametrize("loss", ["l1", "smooth_l1", "huber"])
def test_train_with_regression_losses_lowers_the_loss(dev, loss):
    x, t = xn.datasets.xor(200, seed=0, dtype="float64")
    y = x[:, :1] * x[:, 1:]
    h = xn.train(_binary_model(), (x, y), loss=loss, optimizer=xn.optim.Adam(0.02), epochs=15, batch_size=50,
                 device=dev, progress=False, seed=0)
    assert h.epochs[-1]["train_loss"] < 0.5 * h.epochs[0]["train_loss"]
    assert h.epochs[-1]["train_accuracy"] is None


def test_train_with_class_weights(rng):
    """A weighted SoftmaxCrossEntropy trains; its epoch figure weighs each batch's weighted mean by its labels."""
    x, t = xn.datasets.spiral(60, classes=3, seed=0, dtype="float64")
    model = xn.Sequential(xn.layers.Linear(2, 32, dtype="float64"), xn.layers.ReLU(),
                          xn.layers.Linear(32, 3, dtype="float64"))
    loss = SoftmaxCrossEntropy(weight=[1.0, 2.0, 0.5], label_smoothing=0.1)
    h = xn.train(model, (x, t), loss=loss, optimizer=xn.optim.Adam(0.02), epochs=20, batch_size=180, progress=False)
    assert h.epochs[-1]["train_loss"] < 0.7 * h.epochs[0]["train_loss"]
    assert xn.evaluate(model, (x, t), loss=loss)["loss"] == pytest.approx(float(loss.forward(model.forward(x), t)))


@pytest.mark.parametrize("loss, targets", [
    (SigmoidCrossEntropy(pos_weight=[2.0, 0.5, 1.0]), "probabilities"), (MeanAbsoluteError(), "real"),
    (SmoothL1Loss(beta=0.5), "real"), (HuberLoss(delta=0.5), "real"), (MeanSquaredError(reduction="sum"), "real"),
    (SoftmaxCrossEntropy(weight=[1.0, 2.0, 0.5], label_smoothing=0.1, ignore_index=1), "labels")],
    ids=["bce", "l1", "smooth_l1", "huber", "mse-sum", "weighted-ce"])
def test_gradcheck_with_each_loss(dev, rng, loss, targets):
    model = xn.Sequential(xn.layers.Linear(4, 3, dtype="float64")).to(dev)
    x = xn.to_device(rng.standard_normal((6, 4)), dev)
    t = {"probabilities": rng.uniform(size=(6, 3)), "real": rng.standard_normal((6, 3)) * 2,
         "labels": rng.integers(0, 3, 6)}[targets]
    report = xn.gradcheck(model, x, xn.to_device(t, dev), loss=loss)
    assert report.ok, report


def test_the_new_losses_are_captured_and_others_named():
    """Their steps are elementwise kernels and reductions with nothing read back: not an obstacle to a CUDA
    graph; a loss of the user's own is named."""
    import types

    from xpnet.training.graph import obstacle

    model = xn.Sequential(xn.layers.Linear(2, 1))
    batches = xn.datasets.BatchIterator(np.zeros((64, 2), np.float32), np.zeros(64), batch_size=8, shuffle=True)
    cuda = types.SimpleNamespace(is_cupy=True, name="cuda:0")
    captured = (SigmoidCrossEntropy(pos_weight=[2.0]), MeanAbsoluteError(), SmoothL1Loss(), HuberLoss(),
                MeanSquaredError(reduction="sum"), SoftmaxCrossEntropy(weight=[1.0]), xn.losses.NLLLoss(),
                xn.losses.BCELoss(), xn.losses.KLDivLoss(reduction="batchmean"))
    for loss in captured:
        assert obstacle(model, loss, xn.optim.SGD(0.1), batches, cuda) is None, loss

    class Mine(xn.losses.Loss):
        pass

    why = obstacle(model, Mine(), xn.optim.SGD(0.1), batches, cuda)
    assert why.startswith("the loss Mine is not captured in this version (captured: ")
    assert all(type(loss).__name__ in why for loss in captured), why


@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_train_takes_class_labels_equal_to_ignore_index_as_pytorch(torch, ignore_index):
    """xn.train with (N,) labels of which some equal ignore_index (PyTorch's CrossEntropyLoss(ignore_index=...)
    leaves those rows out of the mean; xn.train refused them as out of range): the weights after two epochs of
    SGD equal PyTorch's in float64, and the accuracy, of the training history and of xn.evaluate, is over the
    labels that count, also where ignore_index names a class (0)."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    t[::4] = ignore_index
    model = xn.Sequential(xn.layers.Linear(5, 3, dtype="float64"))
    reference = torch.nn.Linear(5, 3, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(model.layers[0].params["W"].T.copy()))
        reference.bias.copy_(torch.from_numpy(model.layers[0].params["b"].copy()))
    loss = SoftmaxCrossEntropy(ignore_index=ignore_index)
    history = xn.train(model, (x, t), loss=loss, optimizer=xn.optim.SGD(0.5), epochs=2, batch_size=10,
                       shuffle=False, progress=False)
    criterion, opt = torch.nn.CrossEntropyLoss(ignore_index=ignore_index), torch.optim.SGD(reference.parameters(), 0.5)
    counted = t != ignore_index
    for _ in range(2):
        hits = 0  # the epoch's correct labels that count, as each batch's forward saw them
        for start in range(0, 40, 10):
            opt.zero_grad()
            out = reference(torch.from_numpy(x[start:start + 10]))
            criterion(out, torch.from_numpy(t[start:start + 10])).backward()
            opt.step()
            hits += int(((out.argmax(1).numpy() == t[start:start + 10]) & counted[start:start + 10]).sum())
    assert history.epochs[-1]["train_accuracy"] == pytest.approx(hits / counted.sum(), abs=1e-12)
    np.testing.assert_allclose(model.layers[0].params["W"], reference.weight.detach().numpy().T, **EXACT)
    np.testing.assert_allclose(model.layers[0].params["b"], reference.bias.detach().numpy(), **EXACT)
    with torch.no_grad():
        out = reference(torch.from_numpy(x))
        expected = {"loss": float(criterion(out, torch.from_numpy(t))),
                    "accuracy": float((out.argmax(1).numpy() == t)[counted].mean())}
    assert xn.evaluate(model, (x, t), loss=loss) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("rows", ["multi-hot", "half"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_probability_targets_that_do_not_sum_to_1_give_pytorchs_gradient(dev, rng, torch, rows, smoothing):
    """PyTorch takes any non-negative target rows (several labels of one example as a multi-hot row, half a
    target): the loss is -sum(t * log_softmax(y)), its gradient softmax(y) * sum(t) - t, not softmax(y) - t, which
    holds for rows of sum 1 only. Classes on axis 1 (dim=1), (N, C, L), and the book's (N, C)."""
    for shape in ((4, 3), (2, 3, 4)):
        y = rng.standard_normal(shape) * 3
        t = (rng.random(shape) < 0.5).astype(np.float64) if rows == "multi-hot" else rng.dirichlet(
            np.ones(3), (shape[0], *shape[2:])).swapaxes(1, -1) / 2
        loss = SoftmaxCrossEntropy(label_smoothing=smoothing, dim=1)
        _compare(loss, torch.nn.functional.cross_entropy, y, t, dev, label_smoothing=smoothing)
