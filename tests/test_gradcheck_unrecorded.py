"""xn.gradcheck's later passes through a model of one's own run without the records a backward reads
(xpnet.layers.unrecorded), a Linear's and a ReLU's by their planned forward (xpnet.gradcheck_plan.planned_leaves):
the rows of passes with the records and every layer's forward, bit for bit, and the switch off wherever else."""

from __future__ import annotations

import importlib
import threading

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import RNN, BatchNorm, Dropout, Linear, ReLU, Tanh
from xpnet.losses import SoftmaxCrossEntropy

gradcheck_module = importlib.import_module("xpnet.gradcheck")  # xn.gradcheck is the function


class Skip(xn.Model):
    """y = fc2(tanh(fc1(x)) + x): a residual connection, its gradient added by hand."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = Linear(5, 5), Tanh(), Linear(5, 3)

    def forward(self, x, train=True):
        return self.fc2(self.act(self.fc1(x)) + x)

    def backward(self, dy):
        dh = self.fc2.backward(dy)
        return self.fc1.backward(self.act.backward(dh)) + dh


class TwiceCalled(xn.Model):
    """y = head(fc(tanh(fc(x)))): one Linear called twice, its backward calls taken back last first."""

    def __init__(self):
        super().__init__()
        self.fc, self.act, self.head = Linear(5, 5), Tanh(), Linear(5, 3)

    def forward(self, x, train=True):
        return self.head(self.fc(self.act(self.fc(x))))

    def backward(self, dy):
        return self.fc.backward(self.act.backward(self.fc.backward(self.head.backward(dy))))


class Dropped(xn.Model):
    """fc2(dropout(relu(fc1(x)))), the book's forward(x, train) style: the check's seeded mask at every pass."""

    def __init__(self):
        super().__init__()
        self.fc1, self.relu, self.drop, self.fc2 = Linear(5, 6), ReLU(), Dropout(0.5, seed=4), Linear(6, 3)

    def forward(self, x, train=True):
        return self.fc2.forward(self.drop.forward(self.relu.forward(self.fc1.forward(x, train), train), train), train)

    def backward(self, dy):
        return self.fc1.backward(self.relu.backward(self.drop.backward(self.fc2.backward(dy))))


class Normed(xn.Model):
    """fc2(tanh(bn(fc1(x)))): BatchNorm with the batch's statistics, its running ones updated at each pass."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.act, self.fc2 = Linear(5, 6), BatchNorm(6), Tanh(), Linear(6, 3)

    def forward(self, x, train=True):
        return self.fc2(self.act(self.bn(self.fc1(x))))

    def backward(self, dy):
        return self.fc1.backward(self.bn.backward(self.act.backward(self.fc2.backward(dy))))


class Recurrent(xn.Model):
    """head(rnn(x)) on (N, T, 5): the last step's hidden state read by hand."""

    def __init__(self, look=False):
        super().__init__()
        self.rnn, self.head, self.look = RNN(5, 4, stateful=look), Linear(4, 3), look

    def forward(self, x, train=True):
        hs = self.rnn(x)
        if self.look:  # two evaluation-mode looks after the use: the records put the use's state back after each
            hs = hs + self.rnn.forward(x, train=False) + self.rnn.forward(x, train=False)
        self._shape = hs.shape
        return self.head(hs[:, -1])

    def backward(self, dy):
        dhs = np.zeros(self._shape)
        dhs[:, -1] = self.head.backward(dy)
        return self.rnn.backward(dhs)


class Mlp(xn.Model):
    """fc2(relu(fc1(x))), PyTorch's way: every layer planned in the later passes."""

    def __init__(self):
        super().__init__()
        self.fc1, self.relu, self.fc2 = Linear(5, 6), ReLU(), Linear(6, 3)

    def forward(self, x, train=True):
        return self.fc2(self.relu(self.fc1(x)))

    def backward(self, dy):
        return self.fc1.backward(self.relu.backward(self.fc2.backward(dy)))


def _nested():
    xn.init.seed(0)
    return xn.Sequential(xn.Sequential(Linear(5, 6), Tanh()), Linear(6, 3))


MODELS = {"residual": Skip, "twice": TwiceCalled, "dropout": Dropped, "batchnorm": Normed, "rnn": Recurrent,
          "nested": _nested, "mlp": Mlp}
# how many layers ran their planned forward in the later passes (a Linear or ReLU called on one kind of input, as
# layer(x), or as the book's layer.forward(x, train) with train by position: Dropped's)
PLANNED = {"residual": 2, "twice": 2, "dropout": 3, "batchnorm": 2, "rnn": 1, "nested": 2, "mlp": 3}


def _input(name, n=4):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, 5) if name.startswith("rnn") else (n, 5)).astype("float32")
    return x, rng.integers(0, 3, size=n)


class _Off:
    """In unrecorded()'s place: the later passes with every record, as the first (and no layer planned)."""

    looked = False

    def __init__(self, plans=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _both(monkeypatch, model, x, labels):
    """The report with the later passes unrecorded (each switched pass's ``looked``), and with their records."""
    switched, planned = [], set()

    def counted(key, forward):
        def run(x):
            planned.add(key)
            return forward(x)
        return run

    class Seen(gradcheck_module.unrecorded):
        def __init__(self, plans=None):
            super().__init__({k: (*p[:3], counted(k, p[3])) for k, p in (plans or {}).items()})

        def __exit__(self, *exc):
            super().__exit__(*exc)
            switched.append(self.looked)

    monkeypatch.setattr(gradcheck_module, "unrecorded", Seen)
    unrecorded = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy())
    _both.planned = len(planned)
    monkeypatch.setattr(gradcheck_module, "unrecorded", _Off)
    recorded = xn.gradcheck(model, x, labels, SoftmaxCrossEntropy())
    return unrecorded, recorded, switched


@pytest.mark.parametrize("name", list(MODELS))
def test_unrecorded_passes_give_the_rows_of_passes_with_the_records(monkeypatch, name):
    xn.init.seed(0)
    model = MODELS[name]()
    x, labels = _input(name)
    unrecorded, recorded, switched = _both(monkeypatch, model, x, labels)
    assert unrecorded.ok, str(unrecorded)
    assert len(switched) == unrecorded.forward_passes - 1 and not any(switched)  # every later pass switched
    assert _both.planned == PLANNED[name]
    assert unrecorded.rows == recorded.rows and unrecorded.forward_passes == recorded.forward_passes


class Narrowing(xn.Model):
    """head(x) where x[0, 0] >= 0.5, else head(x[:, :4]), an input the Linear refuses."""

    def __init__(self):
        super().__init__()
        self.head = Linear(5, 3)

    def forward(self, x, train=True):
        return self.head(x if x[0, 0] >= 0.5 else x[:, :4])

    def backward(self, dy):
        return self.head.backward(dy)


def test_a_planned_layer_given_another_input_in_a_later_pass_runs_its_forward_and_checks():
    """The check starts at x[0, 0] = 0.5; its pass at x[0, 0] - eps hands the planned Linear a (4, 4) input: its
    forward refuses it, naming itself (the planned forward, made for (4, 5), would have run a product that fails
    with NumPy's words)."""
    xn.init.seed(0)
    x, labels = _input("narrowing")
    x[0, 0] = 0.5
    with pytest.raises(ValueError, match=r"^Linear: expected input of shape \(N, 5\).*got \(4, 4\)"):
        xn.gradcheck(Narrowing(), x, labels, SoftmaxCrossEntropy())


def test_an_evaluation_mode_call_within_a_pass_brings_the_records_back(monkeypatch):
    """A stateful RNN looked at twice in evaluation mode after its training use: the records put the use's state
    back after each look, so both looks start where the use ended; without them the second would start where the
    first ended. The first switched pass sees the look, runs again with the records, and so do the rest."""
    xn.init.seed(0)
    model = Recurrent(look=True)
    x, labels = _input("rnn")
    unrecorded, recorded, switched = _both(monkeypatch, model, x, labels)
    assert switched == [True]
    assert unrecorded.rows == recorded.rows and unrecorded.forward_passes == recorded.forward_passes


class AtPass(TwiceCalled):
    """Runs ``action(x)`` at the forward pass given, the first being 1 (``calls`` outlives the check's copy)."""

    def __init__(self, at, action):
        super().__init__()
        self.at, self.action, self.calls = at, action, []

    def forward(self, x, train=True):
        self.calls.append(1)
        if len(self.calls) == self.at:
            self.action(x)
        return super().forward(x, train)


def _planted(x):
    raise RuntimeError("planted")


def test_an_exception_within_an_unrecorded_pass_leaves_the_records_on():
    """After a check stopped by an error in a later pass, a model calling one layer twice is checked again
    right: its first pass's records (which that layer's backward reads) are made."""
    x, labels = _input("twice")
    xn.init.seed(0)
    with pytest.raises(RuntimeError, match="planted"):
        xn.gradcheck(AtPass(3, _planted), x, labels, SoftmaxCrossEntropy())
    xn.init.seed(0)
    report = xn.gradcheck(TwiceCalled(), x, labels, SoftmaxCrossEntropy())
    assert report.ok, str(report)


def _grads_of_a_twice_called_model(x, dy):
    xn.init.seed(1)
    model = TwiceCalled()
    model(x)
    model.backward(dy)
    return {k: np.asarray(v).copy() for k, v in model.named_grads().items()}


_THREADS: list[dict[str, np.ndarray]] = []  # what _step_in_a_thread's thread found


def _step_in_a_thread(x):
    """One forward and backward of another model calling a layer twice, in a thread of its own, waited for."""
    x32, dy = np.asarray(x, dtype="float32"), np.ones((x.shape[0], 3), dtype="float32")
    thread = threading.Thread(target=lambda: _THREADS.append(_grads_of_a_twice_called_model(x32, dy)))
    thread.start()
    thread.join()


def test_a_thread_other_than_the_checks_keeps_its_records():
    x, labels = _input("twice")
    xn.init.seed(0)
    _THREADS.clear()
    assert xn.gradcheck(AtPass(3, _step_in_a_thread), x, labels, SoftmaxCrossEntropy()).ok
    results = list(_THREADS)
    expected = _grads_of_a_twice_called_model(x, np.ones((x.shape[0], 3), dtype="float32"))
    assert len(results) == 1 and results[0].keys() == expected.keys()
    for name, grad in expected.items():
        np.testing.assert_array_equal(results[0][name], grad, err_msg=name)
