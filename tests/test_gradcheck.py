"""The gradient checker: passes on correct layers on every device, catches planted bugs by name."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from xpnet.backend import device_of, namespace, set_rng_state, uniform
from xpnet.layers import Dropout, Flatten, Layer, Linear, ReLU, Sigmoid, Tanh
from xpnet.losses import MeanSquaredError, SoftmaxCrossEntropy
from xpnet.layers.pool import scatter_windows


# -- planted bugs, as in the seeds ------------------------------------------------------------

class WholeBatchBiasLinear(Linear):
    """Bug (1): db summed over the batch and every output, broadcast to b's shape."""

    def backward(self, dy):
        dx = super().backward(dy)
        xp = namespace(dy)
        self.grads["b"] = xp.zeros_like(self.params["b"]) + xp.sum(dy)
        return dx


class ParamSumBiasLinear(Linear):
    """Bug (1), the other spelling: db built from sum(b) instead of sum(dy, axis=0)."""

    def backward(self, dy):
        dx = super().backward(dy)
        xp = namespace(dy)
        self.grads["b"] = xp.zeros_like(self.params["b"]) + xp.sum(self.params["b"])
        return dx


class ScalarBiasLinear(Linear):
    """Bug (1) without a broadcast: db = sum(dy), a 0-d array."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["b"] = namespace(dy).sum(dy)
        return dx


class NoUpstreamSigmoid(Sigmoid):
    """Bug (2): forgets to multiply by dout."""

    def backward(self, dy):
        y = self._y
        return y * (1.0 - y)


class InPlaceReLU(ReLU):
    """Bug (3), the seeds' Relu: dout[mask] = 0 in place, then return dout."""

    def backward(self, dy):
        dy[~self._mask] = 0.0
        return dy


class BatchSoftmaxCrossEntropy(SoftmaxCrossEntropy):
    """Bug (4): softmax normalised over the whole batch instead of per row (one-hot targets)."""

    def forward(self, y, t, check=True):
        xp = namespace(y)
        z = y - xp.max(y)
        logp = z - xp.log(xp.sum(xp.exp(z)))
        self._p, self._t = xp.exp(logp), t
        return -xp.sum(t * logp) / y.shape[0]


class WrongKinkReLU(ReLU):
    """Gives -dy at x == 0: outside the one-sided slopes [0, dy], so a failure even at the kink."""

    def forward(self, x, train=True):
        self._x = x
        return super().forward(x, train)

    def backward(self, dy):
        xp = namespace(dy)
        return xp.where(self._x > 0, dy, xp.where(self._x == 0, -dy, 0.0))


class CountingIdentity(Layer):
    """y = x; records every forward input's device and dtype (on the class: the checker copies layers)."""

    seen: list = []

    def forward(self, x, train=True):
        CountingIdentity.seen.append((device_of(x), str(x.dtype).rsplit(".", 1)[-1]))
        return x

    def backward(self, dy):
        return dy


# -- helpers ----------------------------------------------------------------------------------

def _data(dev, n=4, d=5, c=3, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    x = xn.to_device(rng.standard_normal((n, d)).astype(dtype), dev)
    labels = rng.integers(0, c, size=n)
    return x, labels


def _mlp(dev, *middle, d=5, h=6, c=3, first=Linear, seed=0):
    xn.init.seed(seed)
    model = xn.Sequential(first(d, h), *middle, Linear(h, c))
    model.to(dev)
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:  # nonzero biases: a bias bug must show whatever b holds
        if "b" in layer.params:
            b = rng.standard_normal(tuple(layer.params["b"].shape)).astype("float32")
            layer.params["b"] = xn.to_device(b, dev)
    return model


def _snapshot(model):
    return {k: (xn.to_numpy(v).copy(), device_of(v), v.dtype) for k, v in model.named_params().items()}


def _failing(report):
    return sorted(row.name for row in report.failures)


# -- correct layers pass everywhere -----------------------------------------------------------

CORRECT = {
    "linear": lambda dev: (Linear(5, 3).to(dev), None, None),
    "relu": lambda dev: (ReLU(), None, None),
    "sigmoid": lambda dev: (Sigmoid(), None, None),
    "tanh": lambda dev: (Tanh(), None, None),
    "dropout": lambda dev: (Dropout(0.5, seed=3), None, None),
    "mlp-relu-ce-int": lambda dev: (_mlp(dev, ReLU()), "labels", SoftmaxCrossEntropy()),
    "mlp-sigmoid-ce-onehot": lambda dev: (_mlp(dev, Sigmoid()), "onehot", SoftmaxCrossEntropy()),
    "mlp-tanh-mse": lambda dev: (_mlp(dev, Tanh()), "onehot", MeanSquaredError()),
    "mlp-dropout-ce": lambda dev: (_mlp(dev, ReLU(), Dropout(0.5, seed=1)), "labels", "cross_entropy"),
    "mlp-no-loss": lambda dev: (_mlp(dev, Tanh(), Dropout(0.3, seed=2)), None, None),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_layers_pass(dev, name):
    target, targets, loss = CORRECT[name](dev)
    x, labels = _data(dev)
    t = {None: None, "labels": xn.to_device(labels, dev),
         "onehot": xn.to_device(np.eye(3, dtype="float32")[labels], dev)}[targets]
    report = xn.gradcheck(target, x, t, loss)
    assert report.ok, str(report)
    assert report.device == dev.name
    params = target.named_params() if isinstance(target, xn.Sequential) else target.params
    assert [row.name for row in report.rows] == [*params, "input"]
    assert all(row.checked == int(np.prod(row.shape)) for row in report.rows)


def test_flatten_in_front_of_a_linear_layer_passes(dev):
    x = xn.to_device(np.random.default_rng(0).standard_normal((2, 2, 3)), dev)
    model = xn.Sequential(Flatten(), Linear(6, 2)).to(dev)
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)
    assert report["input"].shape == (2, 2, 3)


@pytest.mark.parametrize("name", ["Conv2d", "MaxPool2d", "BatchNorm"])
def test_later_layers_pass(dev, name):
    layers = {"Conv2d": lambda: [xn.layers.Conv2d(2, 3, 3, padding=1), ReLU()],
              "MaxPool2d": lambda: [xn.layers.MaxPool2d(2)],
              "BatchNorm": lambda: [Flatten(), xn.layers.BatchNorm(18), Tanh()]}
    if not hasattr(xn.layers, name):
        pytest.skip(f"xn.layers.{name} is not written yet")
    xn.init.seed(0)
    model = xn.Sequential(*layers[name]()).to(dev)
    x = xn.to_device(np.random.default_rng(0).standard_normal((2, 2, 3, 3)).astype("float32"), dev)
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)


# -- planted bugs are caught, by name ---------------------------------------------------------

@pytest.mark.parametrize("buggy", [WholeBatchBiasLinear, ParamSumBiasLinear, ScalarBiasLinear])
def test_bias_gradient_bug_fails_on_the_bias_row(dev, buggy):
    x, labels = _data(dev)
    model = _mlp(dev, ReLU(), first=buggy)
    report = xn.gradcheck(model, x, xn.to_device(labels, dev), SoftmaxCrossEntropy())
    assert not report.ok
    assert _failing(report) == ["0.b"]
    assert report["0.W"].ok and report["input"].ok


def test_bias_gradient_bug_in_a_single_layer_names_b(dev):
    x, _ = _data(dev)
    layer = WholeBatchBiasLinear(5, 3).to(dev)
    report = xn.gradcheck(layer, x)
    assert _failing(report) == ["b"]


def test_sigmoid_that_forgets_dout_fails_upstream(dev):
    x, labels = _data(dev)
    model = _mlp(dev, NoUpstreamSigmoid())
    report = xn.gradcheck(model, x, xn.to_device(labels, dev), SoftmaxCrossEntropy())
    assert _failing(report) == ["0.W", "0.b", "input"]
    assert _failing(xn.gradcheck(NoUpstreamSigmoid(), x)) == ["input"]


class SkipBlock(xn.Model):
    """y = tanh(lin(x)) + x; with ``forget`` its backward leaves out the skip's + dy."""

    def __init__(self, d, forget=False, act=None):
        super().__init__()
        self.lin, self.act, self.forget = Linear(d, d), act or Tanh(), forget

    def forward(self, x, train=True):
        return self.act.forward(self.lin.forward(x, train), train) + x

    def backward(self, dy):
        dx = self.lin.backward(self.act.backward(dy))
        return dx if self.forget else dx + dy


class Twice(xn.Model):
    """One Tanh used twice in a row: no single input to check it on."""

    def __init__(self):
        super().__init__()
        self.act = Tanh()

    def forward(self, x, train=True):
        self._h = self.act.forward(x, train)
        return self.act.forward(self._h, train)

    def backward(self, dy):
        return dy  # wrong, and the report must not blame a layer it could not check


def _located(model, x, labels):
    report = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy())
    assert not report.ok and report.located and "\n".join(report.located) in str(report)
    return "\n".join(report.located)


def test_a_wrong_dx_is_blamed_on_the_layer_that_computes_it_not_on_the_rows_it_spoils():
    """The audit's models: a Sigmoid without (1 - out) fails 0.W, 0.b and input (its own row-less layer
    passes), yet the report names it; so too a block whose backward forgets the skip's + dy."""
    x, labels = _data(xn.device("cpu"))
    text = _located(_mlp(xn.device("cpu"), NoUpstreamSigmoid()), x, labels)
    assert text.startswith("the first layer whose own check fails (walking back from the output): "
                           "1 (NoUpstreamSigmoid): input gradient err/tol ")
    assert "the rows before it fail because its dx is wrong" in text and "could not" not in text
    text = _located(_mlp(xn.device("cpu"), SkipBlock(6, forget=True)), x, labels)
    assert text.startswith("the first layer whose own check fails (walking back from the output): 1 (SkipBlock): "
                           "input gradient")
    assert "its own layers pass their checks, so the fault is in SkipBlock.backward itself" in text


def test_the_search_goes_inside_a_failing_block_and_names_parameter_faults_as_such():
    x, labels = _data(xn.device("cpu"))
    text = _located(_mlp(xn.device("cpu"), SkipBlock(6, act=NoUpstreamSigmoid())), x, labels)
    assert ": 1.act (NoUpstreamSigmoid): input gradient" in text and "SkipBlock.backward" not in text
    xn.init.seed(0)
    text = _located(xn.Sequential(Linear(5, 6), Tanh(), WholeBatchBiasLinear(6, 3)), x, labels)
    assert ": 2 (WholeBatchBiasLinear): b err/tol" in text and "dx is wrong" not in text


def test_what_cannot_be_localised_is_said_and_a_passing_check_locates_nothing():
    x, labels = _data(xn.device("cpu"))
    xn.init.seed(0)
    text = _located(xn.Sequential(Linear(5, 3), Twice()), x, labels)
    assert "could not localise: 1.act (Tanh) was called 2 times in one forward" in text
    assert ": 1 (Twice): input gradient" in text and "its own layers pass" not in text
    assert "the fault is in Twice.backward itself or in a layer that could not be checked" in text
    report = xn.gradcheck(SkipBlock(5, forget=True), x)
    assert report.located[0].startswith("every layer of SkipBlock passes its own check: the fault is in how "
                                        "SkipBlock.backward combines them")
    assert xn.gradcheck(_mlp(xn.device("cpu"), Sigmoid()), x, labels, SoftmaxCrossEntropy()).located == ()
    assert xn.gradcheck(NoUpstreamSigmoid(), x).located == ()


def test_relu_that_writes_into_its_incoming_gradient_is_caught(dev):
    if xn.backend.update_rule(dev.xp) != "in place":
        pytest.skip(f"{dev.name}'s arrays are immutable: no layer can write into its incoming gradient")
    x, labels = _data(dev)
    model = _mlp(dev, InPlaceReLU())
    report = xn.gradcheck(model, x, xn.to_device(labels, dev), SoftmaxCrossEntropy())
    assert _failing(report) == ["1 (InPlaceReLU)"]
    row = report["1 (InPlaceReLU)"]
    assert "backward wrote into its incoming gradient" in row.status
    assert row.analytic == 0.0 and row.numerical != 0.0
    single = xn.gradcheck(InPlaceReLU(), x)
    assert _failing(single) == ["InPlaceReLU"]
    assert "backward wrote into its incoming gradient" in str(single)


def test_softmax_normalised_over_the_batch_fails(dev):
    x, labels = _data(dev)
    onehot = xn.to_device(np.eye(3, dtype="float32")[labels], dev)
    model = _mlp(dev, ReLU())
    assert xn.gradcheck(model, x, onehot, SoftmaxCrossEntropy()).ok
    report = xn.gradcheck(model, x, onehot, BatchSoftmaxCrossEntropy())
    assert {"2.W", "2.b", "input"} <= set(_failing(report))


def test_fast_mode_catches_the_bias_bug_and_passes_correct_models(dev):
    x, labels = _data(dev)
    t = xn.to_device(labels, dev)
    good = xn.gradcheck(_mlp(dev, ReLU()), x, t, SoftmaxCrossEntropy(), fast=True)
    assert good.ok, str(good)
    assert good.forward_passes == 1 + 3 * len(good.rows)  # +-eps, then f(p) again
    assert all(row.checked == 1 and row.worst_index is None for row in good.rows)
    bad = xn.gradcheck(_mlp(dev, ReLU(), first=WholeBatchBiasLinear), x, t, SoftmaxCrossEntropy(), fast=True)
    assert _failing(bad) == ["0.b"]


# -- kinks ------------------------------------------------------------------------------------

def test_relu_at_zero_is_a_kink_not_a_failure():
    x = np.zeros((2, 3))
    report = xn.gradcheck(ReLU(), x)
    assert report.ok
    assert report["input"].kinks == 6


def test_a_subgradient_outside_the_one_sided_slopes_still_fails():
    report = xn.gradcheck(WrongKinkReLU(), np.zeros((2, 3)))
    assert _failing(report) == ["input"]
    assert report["input"].kinks == 0


# -- the original model, the copy and the cost ------------------------------------------------

def test_original_model_input_and_rngs_are_untouched(case):
    dev, dtype = case
    x, labels = _data(dev, dtype=dtype)
    model = _mlp(dev, ReLU(), Dropout(0.5, seed=4)).to(dev, dtype=dtype)
    before = _snapshot(model)
    x_before = xn.to_numpy(x).copy()
    rng_state = model[2].rng.bit_generator.state
    report = xn.gradcheck(model, x, xn.to_device(labels, dev), SoftmaxCrossEntropy())
    assert report.ok, str(report)
    after = _snapshot(model)
    for name, (values, where, kind) in before.items():
        np.testing.assert_array_equal(after[name][0], values)
        assert after[name][1] == where and after[name][2] == kind
    np.testing.assert_array_equal(xn.to_numpy(x), x_before)
    assert x.dtype == model.dtype
    assert model[2].rng.bit_generator.state == rng_state


def test_the_check_runs_in_float64_on_the_models_device_once_per_entry(dev):
    x, _ = _data(dev)
    model = xn.Sequential(Linear(5, 2), CountingIdentity()).to(dev)
    CountingIdentity.seen.clear()
    report = xn.gradcheck(model, x)
    entries = sum(row.checked for row in report.rows)
    assert report.forward_passes == 1 + 2 * entries + len(report.rows) == len(CountingIdentity.seen)
    assert set(CountingIdentity.seen) == {(dev, "float64")}


def test_device_argument_moves_the_check(dev):
    x, _ = _data(xn.device("cpu"))
    model = _mlp(xn.device("cpu"), Tanh())
    CountingIdentity.seen.clear()
    report = xn.gradcheck(xn.Sequential(*model.layers, CountingIdentity()), x, device=dev)
    assert report.ok and report.device == dev.name
    assert set(CountingIdentity.seen) == {(dev, "float64")}
    assert device_of(model[0].params["W"]) == xn.device("cpu")


def test_a_device_without_float64_falls_back_to_the_cpu_with_a_warning():
    strict = pytest.importorskip("array_api_strict")
    no64 = xn.Device(strict, strict.Device("no_float64"))
    x, labels = _data(no64)
    model = _mlp(no64, ReLU())
    with pytest.warns(xn.XpnetDeviceWarning, match="no float64") as rec:
        report = xn.gradcheck(model, x, xn.to_device(labels, no64), SoftmaxCrossEntropy())
    assert rec[0].filename == __file__
    assert report.ok and report.device == "cpu"
    assert device_of(model[0].params["W"]) == no64


def test_values_come_to_the_host_once_per_tensor_not_per_entry(monkeypatch):
    gradcheck_module = importlib.import_module("xpnet.gradcheck")  # xn.gradcheck is the function
    calls = []
    real = gradcheck_module.to_numpy
    monkeypatch.setattr(gradcheck_module, "to_numpy", lambda a: calls.append(1) or real(a))
    x, labels = _data(xn.device("cpu"), n=6, d=8)
    model = _mlp(xn.device("cpu"), ReLU(), d=8)
    counts = []
    for k in (2, 5):
        calls.clear()
        xn.gradcheck(model, x, labels, SoftmaxCrossEntropy(), max_entries=k)
        counts.append(len(calls))
    assert counts[0] == counts[1]


def test_planned_passes_give_the_rows_of_passes_through_the_models_forward(monkeypatch):
    """After the first pass, a Sequential of leaf layers runs each layer's forward in turn, Linear's and ReLU's and
    the loss's planned calls on NumPy (xpnet.gradcheck_plan): the same rows, bit for bit, with Dropout's mask and
    BatchNorm's batch statistics and running ones."""
    gradcheck_module = importlib.import_module("xpnet.gradcheck")
    x, labels = _data(xn.device("cpu"), n=6)
    model = _mlp(xn.device("cpu"), xn.layers.BatchNorm(6), ReLU(), Dropout(0.5, seed=4))
    plans = []
    for name in ("planned_forward", "planned_loss"):
        real = getattr(gradcheck_module, name)
        monkeypatch.setattr(gradcheck_module, name, lambda *a, real=real: plans.append(real(*a)) or plans[-1])
    planned = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy())
    assert len(plans) == 2 and None not in plans
    for name in ("planned_forward", "planned_loss"):
        monkeypatch.setattr(gradcheck_module, name, lambda *a: None)
    ordinary = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy())
    assert planned.ok, str(planned)
    assert planned.rows == ordinary.rows and planned.forward_passes == ordinary.forward_passes


class DoubledLinear(Linear):
    """y = 2 (x W + b): a subclass of Linear with a forward of its own, and the backward that goes with it."""

    def forward(self, x, train=True):
        return 2.0 * super().forward(x, train)

    def backward(self, dy):
        return super().backward(2.0 * dy)


def test_a_subclass_with_a_forward_of_its_own_is_checked_through_it_at_every_pass():
    """The planned passes ran Linear's planned calls for a subclass of Linear whose forward doubles y: every row
    failed, "not repeatable" (f at the start was the subclass's, at the same point after the entries Linear's)."""
    x, labels = _data(xn.device("cpu"))
    model = _mlp(xn.device("cpu"), ReLU(), first=DoubledLinear)
    report = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy())
    assert report.ok, str(report)


@pytest.mark.parametrize("device", ["strict-device1", "torch", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_planned_passes_off_numpy_run_each_layers_forward_and_give_the_same_rows(monkeypatch, device):
    """Off NumPy (CuPy, array-api-strict's "device1", torch) the later passes are still each layer's own forward in
    turn, but the NumPy-only planned_calls() kernels are not taken (the loss's ordinary forward runs): the rows are
    those of passes through the model's forward, bit for bit, on the model's device."""
    gradcheck_module = importlib.import_module("xpnet.gradcheck")
    dev = DEVICE_MAKERS[device]()
    x, labels = _data(dev, n=6)

    def model():
        return _mlp(dev, xn.layers.BatchNorm(6), ReLU(), Dropout(0.5, seed=4))

    plans = []
    for name in ("planned_forward", "planned_loss"):
        real = getattr(gradcheck_module, name)
        monkeypatch.setattr(gradcheck_module, name, lambda *a, real=real: plans.append(real(*a)) or plans[-1])
    planned = xn.gradcheck(model(), x, xn.to_device(labels, dev), SoftmaxCrossEntropy(), fast=True)
    assert plans[0] is not None and plans[1] is None
    for name in ("planned_forward", "planned_loss"):
        monkeypatch.setattr(gradcheck_module, name, lambda *a: None)
    ordinary = xn.gradcheck(model(), x, xn.to_device(labels, dev), SoftmaxCrossEntropy(), fast=True)
    assert planned.ok, str(planned)
    assert planned.device == dev.name and planned.rows == ordinary.rows


def test_max_entries_checks_a_seeded_subset():
    x, labels = _data(xn.device("cpu"))
    model = _mlp(xn.device("cpu"), ReLU())
    report = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy(), max_entries=4)
    assert report.ok
    assert [row.checked for row in report.rows] == [4, 4, 4, 3, 4]  # 2.b has only 3 entries
    assert report.forward_passes == 1 + 2 * 19 + 5
    again = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy(), max_entries=4)
    other = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy(), max_entries=4, seed=1)
    assert [r.worst_index for r in again.rows] == [r.worst_index for r in report.rows]
    assert [r.worst_index for r in other.rows] != [r.worst_index for r in report.rows]
    buggy = _mlp(xn.device("cpu"), ReLU(), first=WholeBatchBiasLinear)
    assert _failing(xn.gradcheck(buggy, x, labels, SoftmaxCrossEntropy(), max_entries=2)) == ["0.b"]


def test_set_rng_state_makes_uniform_draw_the_same_numbers_again(dev):
    rng = np.random.default_rng(7)
    like = xn.to_device(np.zeros(2, dtype="float32"), dev)
    layer = Dropout(0.5)  # the owner of the device generator
    state = rng.bit_generator.state
    first = xn.to_numpy(uniform(rng, (5,), like, owner=layer))
    assert not np.array_equal(xn.to_numpy(uniform(rng, (5,), like, owner=layer)), first)
    set_rng_state(rng, state)
    np.testing.assert_array_equal(xn.to_numpy(uniform(rng, (5,), like, owner=layer)), first)


# -- the report and the assertion helper -----------------------------------------------------

def test_report_table_shows_settings_rows_and_failures():
    x, labels = _data(xn.device("cpu"))
    report = xn.gradcheck(_mlp(xn.device("cpu"), ReLU(), first=WholeBatchBiasLinear), x, labels,
                          SoftmaxCrossEntropy(), eps=1e-5, atol=2e-5, rtol=3e-4)
    text = str(report)
    for piece in ("eps=1e-05", "atol=2e-05", "rtol=0.0003", "abs err", "err/tol", "worst index",
                  "kinks", "0.W", "0.b", "2.W", "2.b", "input", "FAILED: 0.b"):
        assert piece in text
    row_line = next(line for line in text.splitlines() if line.startswith("0.b "))
    assert "FAIL" in row_line and f"{report['0.b'].analytic:.3e}" in row_line


def test_report_table_shows_the_figure_the_pass_rule_uses_at_the_worst_entry():
    # A first-layer weight row fed by an input ~1e-9 has gradients ~1e-10 whose relative error is ~1:
    # harmless under atol, and the table must not show an alarming figure beside "ok".
    xn.init.seed(0)
    model = xn.Sequential(Linear(4, 5), Tanh(), Linear(5, 3))
    x = np.random.default_rng(0).standard_normal((3, 4))
    x[:, 0] = 1e-9
    report = xn.gradcheck(model, x, np.array([0, 2, 1]), SoftmaxCrossEntropy())
    assert report.ok
    lines = str(report).splitlines()
    header = next(line for line in lines if line.startswith("name "))
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S+(?: \S+)*", header)]  # columns: split on 2+ spaces
    names = [header[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
    for row in report.rows:
        line = next(line for line in lines if line.startswith(row.name + " "))
        cells = {n: line[a:b].strip() for n, a, b in zip(names, starts, starts[1:] + [None])}
        numerical, analytic, ratio = float(cells["numerical"]), float(cells["analytic"]), float(cells["err/tol"])
        # The printed err/tol is the pass rule at the printed worst entry ...
        assert ratio == pytest.approx(abs(numerical - analytic) / (report.atol + report.rtol * abs(numerical)),
                                      rel=0.02, abs=1e-3)
        assert ratio <= 1.0 and cells["status"] == "ok"
        # ... and that entry is the one with the largest err/tol of the tensor.
        assert cells["worst index"] == str(row.worst_index)
    assert "rel err" not in str(report)


def test_assert_gradients_ok_raises_with_the_table():
    x, labels = _data(xn.device("cpu"))
    model = _mlp(xn.device("cpu"), NoUpstreamSigmoid())
    with pytest.raises(xn.GradcheckError) as info:
        xn.testing.assert_gradients_ok(model, x, labels, SoftmaxCrossEntropy())
    assert isinstance(info.value, AssertionError)
    assert str(info.value) == str(info.value.report)
    assert not info.value.report.ok and "0.W" in str(info.value)
    good = xn.testing.assert_gradients_ok(_mlp(xn.device("cpu"), Sigmoid()), x, labels, loss="cross_entropy")
    assert good.ok


@pytest.mark.parametrize("kwargs, error, match", [
    ({"loss": SoftmaxCrossEntropy()}, ValueError, "needs targets"),
    ({"t": np.zeros(4, dtype=np.int64)}, ValueError, "without a loss"),
    ({"eps": 0.0}, ValueError, "eps must be"),
    ({"atol": -1.0}, ValueError, "atol must be"),
    ({"max_entries": 0}, ValueError, "max_entries"),
    ({"max_entries": 3, "fast": True}, ValueError, "fast=True"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    x, _ = _data(xn.device("cpu"))
    with pytest.raises(error, match=match):
        xn.gradcheck(Linear(5, 3), x, **kwargs)


def test_numpy_scalars_are_numbers_like_any_other():
    x, _ = _data(xn.device("cpu"))
    report = xn.gradcheck(Linear(5, 3), x, eps=np.float32(1e-6), atol=np.float64(1e-5), rtol=np.float16(1e-4),
                          max_entries=np.int64(3))
    assert report.ok and report.max_entries == 3 and type(report.max_entries) is int
    assert report.eps == float(np.float32(1e-6)) and [row.checked for row in report.rows] == [3, 3, 3]
    with pytest.raises(ValueError, match="max_entries must be"):
        xn.gradcheck(Linear(5, 3), x, max_entries=np.float64(3.0))


class TwoHeads(xn.Model):
    def __init__(self):
        super().__init__()
        self.a, self.b = Linear(3, 2), Linear(3, 2)

    def forward(self, x, train=True):
        return self.a.forward(x), self.b.forward(x)

    def backward(self, dys):
        return self.a.backward(dys[0]) + self.b.backward(dys[1])


def test_a_model_with_several_outputs_is_refused_with_what_to_do():
    with pytest.raises(TypeError, match=r"one output array; TwoHeads.forward returned a tuple of 2\. Check one "
                                        r"output at a time"):
        xn.gradcheck(TwoHeads(), np.ones((2, 3)))


def test_bad_targets_are_named():
    with pytest.raises(TypeError, match="Sequential or an xpnet layer"):
        xn.gradcheck(lambda x: x, np.ones((2, 2)))
    with pytest.raises(TypeError, match="floating-point"):
        xn.gradcheck(ReLU(), np.ones((2, 2), dtype=np.int64))


# -- kinks on real images: a flat background makes ties and zeros --------------------------------

class FirstOffsetMaxPool(xn.layers.MaxPool2d):
    """Bug: routes each window's gradient to its top-left pixel, wherever the maximum is."""

    def backward(self, dy):
        return scatter_windows(namespace(dy), dy, lambda k: dy * (1.0 if k == 0 else 0.0), self._shape,
                               self.kernel_size, self.stride, self.padding)


class NoUpstreamReLU(ReLU):
    """Bug: passes the mask on instead of dy * mask."""

    def backward(self, dy):
        return namespace(dy).astype(self._mask, dy.dtype)


def _images(n=2, size=12, seed=0):
    """Image-like input: zero background with a bright, textured blob, as in Fashion-MNIST."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, size, size))
    top, left, side = size // 4, size // 3, size // 2
    x[:, :, top:top + side, left:left + side] = rng.uniform(0.2, 1.0, (n, 1, side, side))
    return x, rng.integers(0, 3, size=n)


def _conv_relu_pool(bias, pool=xn.layers.MaxPool2d, size=12):
    """conv - relu - maxpool - linear, conv biases set to ``bias`` (0: ReLU sits at 0 on the background;
    > 0: every background window is an exact tie)."""
    xn.init.seed(0)
    conv = xn.layers.Conv2d(1, 3, 3)
    conv.params["b"] = np.full(3, bias, dtype="float32")
    out = (size - 2) // 2
    return xn.Sequential(conv, ReLU(), pool(2), Linear(3 * out * out, 3))


@pytest.mark.parametrize("bias", [0.0, 0.1])
def test_flat_background_ties_and_zeros_are_kinks_not_failures(bias):
    """Issue 17: on images with a flat background the checker reported FAIL on correct gradients."""
    x, labels = _images()
    report = xn.gradcheck(_conv_relu_pool(bias), x, labels, SoftmaxCrossEntropy())
    assert report.ok, str(report)
    assert report["input"].kinks > 0
    # The blob's pixels are smooth points: checked, not excused.
    assert report["input"].kinks < report["input"].checked - 30


def test_kinks_are_found_on_the_models_device(dev):
    x, labels = _images()
    model = _conv_relu_pool(0.1).to(dev)
    report = xn.gradcheck(model, xn.to_device(x, dev), xn.to_device(labels, dev), SoftmaxCrossEntropy(),
                          max_entries=80)
    assert report.ok and report.device == dev.name and report["input"].kinks > 0, str(report)


@pytest.mark.parametrize("bias", [0.0, 0.1])
def test_a_wrong_maxpool_gradient_still_fails_on_image_like_input(bias):
    x, labels = _images()
    report = xn.gradcheck(_conv_relu_pool(bias, pool=FirstOffsetMaxPool), x, labels, SoftmaxCrossEntropy())
    assert "input" in _failing(report) and "0.W" in _failing(report)


def test_a_wrong_relu_gradient_still_fails_on_image_like_input():
    x, labels = _images()
    model = _conv_relu_pool(0.1)
    model.layers[1] = NoUpstreamReLU()
    assert "0.W" in _failing(xn.gradcheck(model, x, labels, SoftmaxCrossEntropy()))


def test_one_kink_crossed_still_needs_a_subgradient():
    """A ReLU at 0 crossed alone: the analytic value must lie between the one-sided slopes."""
    assert xn.gradcheck(ReLU(), np.zeros((2, 3)))["input"].kinks == 6
    assert _failing(xn.gradcheck(WrongKinkReLU(), np.zeros((2, 3)))) == ["input"]


@pytest.mark.data
def test_conv_relu_maxpool_on_real_fashion_mnist_passes():
    try:
        (x, labels), _ = xn.datasets.load_fashion_mnist(flatten=False)
    except xn.datasets.DatasetNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not found: {e}")
    x, labels = x[:2].astype("float64"), labels[:2]
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Conv2d(1, 3, 5), ReLU(), xn.layers.MaxPool2d(2), Linear(3 * 12 * 12, 10))
    model[0].params["b"] = np.array([0.05, 0.1, 0.2], dtype="float32")
    report = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy(), max_entries=150)
    assert report.ok, str(report)
    assert report["input"].kinks > 0


# -- every pass evaluates the same function: state, buffers and the input put back --------------

class DoubledWLinear(Linear):
    """Bug: dW doubled (dx right), as after a forgotten ``grads["W"] = ...`` followed by ``+=``."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["W"] = self.grads["W"] * 2.0
        return dx


class RunningMeanShift(Layer):
    """y = x - m with m a buffer updated by every training forward; backward ``dy * scale`` (right at
    scale=1 for a constant m: the buffer must read the same in every pass)."""

    def __init__(self, d, scale=1.0):
        super().__init__()
        self.buffers["mean"] = np.zeros(d)
        self.scale = scale

    def forward(self, x, train=True):
        xp = namespace(x)
        shift = self.buffers["mean"]
        if train:
            self.buffers["mean"] = 0.9 * shift + 0.1 * xp.mean(x, axis=0)
        return x - shift

    def backward(self, dy):
        return dy * self.scale


def test_a_stateful_layer_starts_every_pass_from_the_same_carried_state():
    xn.init.seed(0)
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype("float32")
    for bad, ok in ((DoubledWLinear, False), (Linear, True)):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.LSTM(3, 4, stateful=True), bad(4, 2))
        model.forward(x)  # a carried state, as in truncated backpropagation through time
        report = xn.gradcheck(model, x)
        assert report.ok is ok, str(report)
        assert sum(row.kinks for row in report.rows) == 0, str(report)
        if not ok:
            assert _failing(report)[0] == "1.W"


def test_a_buffer_updated_by_forward_reads_the_same_in_every_pass():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    labels = np.array([0, 1, 2, 0, 1, 2])
    for scale, ok in ((5.0, False), (1.0, True)):
        xn.init.seed(0)
        model = xn.Sequential(Linear(4, 4), RunningMeanShift(4, scale), Linear(4, 3))
        report = xn.gradcheck(model, x, labels, loss="cross_entropy")
        assert report.ok is ok, str(report)
        assert sum(row.kinks for row in report.rows) == 0, str(report)
        if not ok:
            assert {"0.W", "0.b", "input"} <= set(_failing(report))


class HalvesItsInput(xn.Model):
    """A model whose own forward writes into its input (only leaf layers are watched for that), with
    dx 3x too large as well."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = Linear(4, 5), Tanh(), Linear(5, 3)

    def forward(self, x, train=True):
        x *= 0.5
        return self.fc2.forward(self.act.forward(self.fc1.forward(x, train), train), train)

    def backward(self, dy):
        return 3.0 * self.fc1.backward(self.act.backward(self.fc2.backward(dy)))


class GlobalRandomDropout(Layer):
    """The book's Dropout: a mask from NumPy's global generator, which the checker cannot rewind."""

    def forward(self, x, train=True):
        self.mask = np.random.rand(*x.shape) > 0.5
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


class InPlaceCounter(Layer):
    """y = x + c with c an attribute (not a buffer) that forward adds to in place: a state that
    rebinding cannot put back."""

    def __init__(self):
        super().__init__()
        self.c = np.zeros(1)

    def forward(self, x, train=True):
        self.c += 1.0
        return x + self.c

    def backward(self, dy):
        return dy


def test_a_model_whose_forward_writes_into_its_input_fails():
    xn.init.seed(0)
    x = np.random.default_rng(0).standard_normal((6, 4))
    x_before = x.copy()
    report = xn.gradcheck(HalvesItsInput(), x)
    assert not report.ok
    row = report["HalvesItsInput"]
    assert row.status.startswith("FAIL: forward wrote into its input x: the forward is not repeatable")
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("layer", [GlobalRandomDropout, InPlaceCounter])
def test_a_forward_that_is_not_repeatable_fails_every_row_with_the_reason(layer):
    xn.init.seed(0)
    x, labels = _data(xn.device("cpu"), n=8)
    model = xn.Sequential(Linear(5, 6), layer(), Linear(6, 3))
    report = xn.gradcheck(model, x, labels, loss="cross_entropy")
    assert [row.name for row in report.failures] == ["0.W", "0.b", "2.W", "2.b", "input"]
    assert all("FAIL: the forward is not repeatable (state, buffers or input change between calls)" in row.status
               for row in report.failures)
    assert len(xn.gradcheck(model, x, labels, loss="cross_entropy", fast=True).failures) == 5


def test_a_repeatable_forward_costs_one_pass_more_per_tensor_not_per_entry():
    x, labels = _data(xn.device("cpu"))
    report = xn.gradcheck(_mlp(xn.device("cpu"), Tanh()), x, labels, loss="cross_entropy")
    assert report.ok
    assert report.forward_passes == 1 + 2 * sum(row.checked for row in report.rows) + len(report.rows)


# -- a kink that no layer reports: confirmed at eps / 10 ------------------------------------------

class PlainLinear(Layer):
    """y = x @ W without a bias; ``scale`` multiplies dW (a planted bug when not 1)."""

    def __init__(self, W, scale=1.0):
        super().__init__()
        self.params["W"] = W
        self.scale = scale

    def forward(self, x, train=True):
        self.x = x
        return x @ self.params["W"]

    def backward(self, dy):
        self.grads["W"] = (self.x.T @ dy) * self.scale
        return dy @ self.params["W"].T


class PlainReLU(Layer):
    """max(x, 0) that reports no pieces: its kinks are found by the one-sided slopes alone."""

    def forward(self, x, train=True):
        self.x = x
        return x * (x > 0)

    def backward(self, dy):
        return dy * (self.x > 0)


def test_strong_curvature_is_not_taken_for_a_kink():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 6)).astype("float64")  # raw pixels: the MSE is strongly curved in W
    W = rng.standard_normal((6, 2)) * 0.01
    t = x @ W + rng.standard_normal((8, 2)) * 1e-5  # nearly fitted: a small gradient
    assert xn.gradcheck(PlainLinear(W.copy()), x, t, loss="mse").ok
    report = xn.gradcheck(PlainLinear(W.copy(), scale=3.0), x, t, loss="mse")
    assert _failing(report) == ["W"]
    assert report["W"].kinks == 0


def test_an_unreported_kink_is_confirmed_at_a_smaller_eps_and_costs_passes_only_there():
    x = np.array([[0.0, 1.0, -1.0, 0.0], [3e-7, 0.5, 2.0, -3.0]])  # two at the kink, one 0.3 eps from it
    report = xn.gradcheck(PlainReLU(), x)
    assert report.ok, str(report)
    assert report["input"].kinks == 2
    assert report.forward_passes == 1 + 2 * 8 + 1 + 2 * 3  # the three candidates again at eps / 10
    plain = xn.gradcheck(PlainReLU(), np.array([[0.5, -1.0, 2.0]]))
    assert plain.forward_passes == 1 + 2 * 3 + 1


# -- arrays shared in the model stay shared in the float64 copy -----------------------------------

class TiedPair(xn.Model):
    """Weight tying by identity (PyTorch's ``dec.weight = enc.weight``): one array, two layers, and the
    gradient of each is the sum of both uses."""

    def __init__(self, dtype):
        super().__init__()
        W = np.random.default_rng(0).standard_normal((3, 3)).astype(dtype)
        self.enc, self.dec = PlainLinear(W), PlainLinear(W)

    def forward(self, x, train=True):
        self.h = np.tanh(self.enc.forward(x))
        return self.dec.forward(self.h)

    def backward(self, dy):
        dx = self.enc.backward(self.dec.backward(dy) * (1 - self.h ** 2))
        self.enc.grads["W"] = self.dec.grads["W"] = self.enc.grads["W"] + self.dec.grads["W"]
        return dx


class BookAffine(Layer):
    """The book's Affine: the weight kept as an attribute as well as in params; forward reads the attribute."""

    def __init__(self, W, b):
        super().__init__()
        self.W, self.b = W, b
        self.params["W"], self.params["b"] = W, b

    def forward(self, x, train=True):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.grads["W"], self.grads["b"] = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class CopiedAffine(BookAffine):
    """Bug: forward reads a copy of W made in __init__, so the parameter changes nothing."""

    def __init__(self, W, b):
        super().__init__(W, b)
        self.W = W.copy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tied_and_aliased_weights_get_the_same_verdict_in_every_dtype(dtype):
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(dtype)
    assert xn.gradcheck(TiedPair(dtype), x).ok
    rng = np.random.default_rng(0)
    report = xn.gradcheck(BookAffine(rng.standard_normal((3, 2)).astype(dtype), np.zeros(2, dtype)), x)
    assert report.ok, str(report)


def test_moving_a_model_keeps_shared_arrays_shared():
    model = TiedPair("float32")
    moved = model.to("cpu", dtype="float64")
    assert moved.enc.params["W"] is moved.dec.params["W"]
    assert moved.enc.params["W"].dtype == np.float64
    layer = BookAffine(np.ones((3, 2), "float32"), np.zeros(2, "float32")).to(dtype="float64")
    assert layer.W is layer.params["W"] and layer.b is layer.params["b"]



def test_a_parameter_that_changes_nothing_is_named_with_a_hint():
    rng = np.random.default_rng(0)
    report = xn.gradcheck(CopiedAffine(rng.standard_normal((3, 2)), np.zeros(2)), rng.standard_normal((4, 3)))
    assert report["W"].status == ("FAIL: perturbing it does not change the output: is the array also held "
                                  "outside params?")
    assert report["W"].numerical == 0.0 and report["b"].ok and report["input"].ok
