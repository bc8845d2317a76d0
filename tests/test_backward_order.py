"""A layer called twice in one forward, taken back by a backward written in the forward's order (PyTorch's
autograd has none to get right): refused where the backward's names say which call each backward call is for
(xpnet.layers.backward_order); the reverse order gives each call its own dropout mask. The siamese network's
numbered names: tests/test_reused_layers.py."""

import numpy as np
import pytest

import xpnet as xn

E = 8


class Seq2Seq(xn.Model):
    """The translation tutorial's Seq2SeqTransformer around its one positional encoding, called for src then tgt."""

    def __init__(self):
        super().__init__()
        self.positional_encoding = xn.layers.PositionalEncoding(E, 0.5)

    def forward(self, src, tgt, train=True):
        src_emb = self.positional_encoding(src)
        tgt_emb = self.positional_encoding(tgt)
        self.seen = src_emb, tgt_emb
        return np.concatenate([src_emb, tgt_emb], axis=1)

    def backward(self, dy):  # the forward's order: refused
        dsrc_emb, dtgt_emb = dy[:, :dy.shape[1] // 2], dy[:, dy.shape[1] // 2:]
        dsrc = self.positional_encoding.backward(dsrc_emb)
        dtgt = self.positional_encoding.backward(dtgt_emb)
        return dsrc, dtgt


class Seq2SeqReversed(Seq2Seq):
    def backward(self, dy):
        dsrc_emb, dtgt_emb = dy[:, :dy.shape[1] // 2], dy[:, dy.shape[1] // 2:]
        dtgt = self.positional_encoding.backward(dtgt_emb)
        dsrc = self.positional_encoding.backward(dsrc_emb)
        return dsrc, dtgt


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 5, E)) + 3.0, rng.standard_normal((2, 5, E)) + 3.0  # no zero before the dropout


def test_a_backward_in_the_forwards_order_is_refused_naming_both_calls():
    xn.manual_seed(0)
    model = Seq2Seq()
    y = model(*_inputs())
    with pytest.raises(RuntimeError, match=r"backward call 1 of self\.positional_encoding \(PositionalEncoding\), "
                                           r"dsrc = .* call 1, src_emb = .*serves call 2, tgt_emb = .*dropout mask"):
        model.backward(np.ones_like(y))


def test_the_reverse_order_gives_each_call_its_own_dropout_mask():
    xn.manual_seed(0)
    model = Seq2SeqReversed()
    y = model(*_inputs())
    dsrc, dtgt = model.backward(np.ones_like(y))
    src_emb, tgt_emb = model.seen
    assert ((src_emb != 0) != (tgt_emb != 0)).any()  # two masks, so that a swap would show
    np.testing.assert_array_equal(dsrc != 0, src_emb != 0)
    np.testing.assert_array_equal(dtgt != 0, tgt_emb != 0)


class Chain(xn.Model):
    """One activation after two layers that feed each other: the names cross (h is call 1's output, call 2's
    input), and the backward in reverse is left alone."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.act = xn.layers.Linear(3, 3), xn.layers.Linear(3, 3), xn.layers.Tanh()

    def forward(self, x, train=True):
        h = self.act(self.l1(x))
        y = self.act(self.l2(h))
        return y

    def backward(self, dy):
        dh = self.l2.backward(self.act.backward(dy))
        dx = self.l1.backward(self.act.backward(dh))
        return dx


def test_a_backward_in_reverse_whose_names_cross_runs():
    xn.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((4, 3))
    assert xn.gradcheck(Chain(), x).ok


def _net():
    xn.manual_seed(0)
    return xn.Sequential(xn.layers.Linear(3, 2, dtype="float64"), xn.layers.Tanh())


def test_a_model_called_twice_then_given_one_backward_is_refused_naming_both_calls():
    """PyTorch's loss(model(x1), model(x2)).backward(): xpnet's one backward served model(x2) alone (xpnet.layers.
    one_backward)."""
    model, rng = _net(), np.random.default_rng(2)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    out1 = model(x1)
    out2 = model(x2)
    with pytest.raises(RuntimeError, match=r"^Sequential\.backward after model\(x1\), model\(x2\): .*serves "
                                           r"model\(x2\) alone.*xn\.no_grad"):
        model.backward(out1 - out2)


def test_two_calls_then_the_backward_of_the_loss_given_to_the_model_is_refused():
    """``model.backward(criterion.backward())``, the usual line, names two backward calls: the model's is the outer
    one. It was left alone (two receivers), so PyTorch's loss(model(x1) + model(x2)) ran with x2's caches alone."""
    model, rng = _net(), np.random.default_rng(3)
    criterion = xn.losses.MeanSquaredError()
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    out1 = model(x1)
    out2 = model(x2)
    criterion(out1 + out2, np.zeros((4, 2)))
    with pytest.raises(RuntimeError, match=r"^Sequential\.backward after model\(x1\), model\(x2\)"):
        model.backward(criterion.backward())

def test_two_calls_and_the_backward_on_one_line_are_refused():
    """Statements joined by ``;`` (the book's loops, xpnet's docs: ``loss.forward(...); model.backward(...)``): the
    backward's line holds several statements, and its own was not found, so the pair ran with x2's caches alone."""
    model, rng = _net(), np.random.default_rng(3)
    criterion = xn.losses.MeanSquaredError()
    x1, x2, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), np.zeros((4, 2))
    with pytest.raises(RuntimeError, match=r"^Sequential\.backward after model\(x1\), model\(x2\)"):
        a = model(x1); b = model(x2); criterion(a + b, t); model.backward(criterion.backward())  # noqa: E702


def test_calls_in_a_comprehension_joined_then_one_backward_are_refused():
    """PyTorch's ``sum(model(x) for x in xs).backward()``: the comprehension's one call in the source ran once per
    element, and the backward served the last element's alone; one element still runs."""
    model, rng = _net(), np.random.default_rng(4)
    xs = [rng.standard_normal((4, 3)) for _ in range(2)]
    total = sum(model(x) for x in xs)
    with pytest.raises(RuntimeError, match=r"^Sequential\.backward after `\(?model\(x\) for x in xs\)?` \(a call per "
                                           r"element\): .*serves the last element's model\(x\) alone"):
        model.backward(total)
    outs = np.stack([model(x) for x in xs])
    with pytest.raises(RuntimeError, match=r"^Sequential\.backward after `\[model\(x\) for x in xs\]` \(a call"):
        model.backward(outs[0])
    total = sum(model(x) for x in xs[:1])
    model.backward(total)


def test_calls_through_a_function_of_ones_own_then_one_backward_are_refused():
    """``a = run(x1); b = run(x2)`` with ``run`` calling the model, then one backward: it served ``run(x2)`` alone;
    the function's calls in a loop (sampling) before a direct training call still run."""
    model, rng = _net(), np.random.default_rng(5)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))

    def run(x):
        return model(x)

    a = run(x1)
    b = run(x2)
    with pytest.raises(RuntimeError, match=r"^Sequential\.backward after run\(x1\) \(calling model\), run\(x2\) "
                                           r"\(calling model\): .*serves run\(x2\) \(calling model\) alone"):
        model.backward(a + b)
    samples = []
    for x in (x1, x2):
        samples.append(run(x))
    out = model(x1)
    model.backward(out - samples[0])


def test_each_calls_backward_before_the_next_call_adds_up_to_pytorchs_one_backward():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model, rng = _net(), np.random.default_rng(2)
    x1, x2, g1, g2 = (rng.standard_normal((4, n)) for n in (3, 3, 2, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh()).double()
    xn.load_torch_state_dict(model, theirs.state_dict())
    loss = (theirs(torch.from_numpy(x1)) * torch.from_numpy(g1)).sum() + \
        (theirs(torch.from_numpy(x2)) * torch.from_numpy(g2)).sum()
    loss.backward()
    model.zero_grad()
    model(x1)
    model.backward(g1)
    model(x2)
    model.backward(g2)
    np.testing.assert_allclose(model[0].grads["W"], theirs[0].weight.grad.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(model[0].grads["b"], theirs[0].bias.grad.numpy(), rtol=1e-12)


def test_a_target_under_no_grad_a_look_by_predict_and_a_sampling_loop_before_a_backward_run():
    model, rng = _net(), np.random.default_rng(2)
    x, x_next = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    with xn.no_grad():
        target = model(x_next)
    y = model(x)
    model.backward(y - target)
    y = model(x)
    target = model.predict(x_next)
    model.backward(y - target)
    for row in x:
        model(row[None])
    y = model(x)
    model.backward(y)


def test_two_calls_on_one_input_are_refused_where_the_model_drops_and_run_where_it_cannot():
    """R-Drop's two passes of one batch through a model with dropout differ (and served one mask); two looks at
    one input through a model without randomness give one cache either way."""
    x = np.random.default_rng(2).standard_normal((4, 3))
    xn.manual_seed(0)
    model = xn.Sequential(xn.layers.Linear(3, 2, dtype="float64"), xn.layers.Dropout(0.5))
    a = model(x)
    b = model(x)
    with pytest.raises(RuntimeError, match=r"after model\(x\), model\(x\)"):
        model.backward(a - b)
    model = _net()
    y = model(x)
    y = model(x)
    model.backward(y)


class Outer(xn.Model):
    """The same model inside a model of one's own: its backward, written out, is read too."""

    def __init__(self):
        super().__init__()
        self.inner = Seq2Seq()

    def forward(self, src, tgt, train=True):
        return self.inner(src, tgt)

    def backward(self, dy):
        return self.inner.backward(dy)


def test_a_backward_in_the_forwards_order_is_refused_inside_another_model_too():
    xn.manual_seed(0)
    model = Outer()
    y = model(*_inputs())
    with pytest.raises(RuntimeError, match=r"Seq2Seq\.backward: its backward call 1 of self\.positional_encoding"):
        model.backward(np.ones_like(y))
