"""PyTorch's zero_grad: after ``optimizer.zero_grad()`` (or ``model.zero_grad()``, Chainer's ``cleargrads()``) each
``model.backward`` adds its gradients to those already there until the next ``zero_grad()``, as autograd does, so
DCGAN's two backwards before one step and gradient accumulation run as written; compared with torch in float64."""

import numpy as np
import pytest

import xpnet as xn

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _pair():
    """An xpnet MLP and torch's with the same float64 weights."""
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.Tanh(), xn.layers.Linear(8, 3)).to(dtype="float64")
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    xn.load_torch_state_dict(model, theirs.state_dict())
    return model, theirs


def _batches(n=3, size=5):
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((size, 4)), rng.integers(0, 3, size)) for _ in range(n)]


def _assert_same(model, theirs):
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(xn.torch_state_dict(model)[key], value.numpy(), rtol=1e-12, atol=1e-14,
                                   err_msg=key)


def _torch_backward(theirs, x, t, scale=1.0):
    loss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(t)) * scale
    loss.backward()


@pytest.mark.parametrize("zero", ["optimizer", "model", "cleargrads"])
def test_two_backwards_after_zero_grad_add_their_gradients_as_pytorchs(zero):
    """DCGAN's discriminator: zero_grad, backward on real images, backward on fakes, one step."""
    model, theirs = _pair()
    opt, topt = xn.optim.SGD(model, lr=0.1, momentum=0.9), torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    criterion = xn.losses.SoftmaxCrossEntropy()
    batches = _batches()
    for _ in range(2):
        {"optimizer": opt.zero_grad, "model": model.zero_grad, "cleargrads": model.cleargrads}[zero]()
        topt.zero_grad()
        for x, t in batches[:2]:
            criterion(model(x), t)
            model.backward(criterion.backward())
            _torch_backward(theirs, x, t)
        opt.step()
        topt.step()
        _assert_same(model, theirs)


def test_gradient_accumulation_equals_pytorchs_and_one_backward_on_the_joined_batch():
    model, theirs = _pair()
    joined, _ = _pair()
    opt, topt = xn.optim.Adam(model, lr=0.01), torch.optim.Adam(theirs.parameters(), lr=0.01)
    jopt, criterion = xn.optim.Adam(joined, lr=0.01), xn.losses.SoftmaxCrossEntropy()
    batches = _batches(6)
    opt.zero_grad()
    for i, (x, t) in enumerate(batches):
        criterion(model(x), t)
        model.backward(criterion.backward() / 3)
        _torch_backward(theirs, x, t, scale=1 / 3)
        if (i + 1) % 3 == 0:
            opt.step()
            topt.step()
            opt.zero_grad()
            topt.zero_grad()
    _assert_same(model, theirs)
    for group in (batches[:3], batches[3:]):  # equal batches: the mean of their mean losses is the joined mean
        criterion(joined(np.concatenate([x for x, _ in group])), np.concatenate([t for _, t in group]))
        joined.backward(criterion.backward())
        jopt.step()
    for key, value in joined.named_params().items():
        np.testing.assert_allclose(model.named_params()[key], value, rtol=1e-10, err_msg=key)


class _TwoHeads(xn.Model):
    def __init__(self):
        super().__init__()
        self.body, self.relu = xn.layers.Linear(4, 6), xn.layers.ReLU()
        self.a, self.b = xn.layers.Linear(6, 3), xn.layers.Linear(6, 3)

    def forward(self, x, head="a", train=True):
        self._head = getattr(self, head)
        return self._head(self.relu(self.body(x)))

    def backward(self, dy):
        return self.body.backward(self.relu.backward(self._head.backward(dy)))


def _two_heads_and_torchs():
    """A float64 _TwoHeads and PyTorch's twin (a ModuleDict of its three Linears) from the same weights."""
    xn.init.seed(0)
    model = _TwoHeads().to(dtype="float64")
    theirs = torch.nn.ModuleDict({k: torch.nn.Linear(4 if k == "body" else 6, 3 if k != "body" else 6)
                                  for k in ("body", "a", "b")}).double()
    for k in ("body", "a", "b"):
        theirs[k].weight.data = torch.from_numpy(np.array(getattr(model, k).weight))
        theirs[k].bias.data = torch.from_numpy(np.array(getattr(model, k).bias))
    return model, theirs


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_parameter_no_backward_reached_since_zero_grad_steps_as_pytorchs(set_to_none):
    """set_to_none=True: left out of the step, its momentum too (PyTorch's grad None); False: a zero gradient."""
    model, theirs = _two_heads_and_torchs()
    opt = xn.optim.SGD(model, lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    criterion = xn.losses.SoftmaxCrossEntropy()
    for (x, t), head in zip(_batches(3), ["a", "b", "a"]):
        opt.zero_grad(set_to_none=set_to_none)
        topt.zero_grad(set_to_none=set_to_none)
        criterion(model(x, head=head), t)
        model.backward(criterion.backward())
        out = theirs[head](torch.relu(theirs["body"](torch.from_numpy(x))))
        torch.nn.functional.cross_entropy(out, torch.from_numpy(t)).backward()
        opt.step()
        topt.step()
        for k in ("body", "a", "b"):
            np.testing.assert_allclose(getattr(model, k).weight, theirs[k].weight.detach().numpy(), rtol=1e-12,
                                       err_msg=f"{k} after head {head}")


def test_without_zero_grad_each_backward_overwrites_and_xn_train_ignores_a_loops_zero_grad():
    """The book's loop keeps its rule; xn.train after a loop of one's own steps as a fresh run."""
    model, _ = _pair()
    criterion, batches = xn.losses.SoftmaxCrossEntropy(), _batches()
    for x, t in batches[:2]:
        criterion(model(x), t)
        model.backward(criterion.backward())
    last, _ = _pair()
    criterion(last(batches[1][0]), batches[1][1])
    last.backward(criterion.backward())
    for key, g in last.named_grads().items():
        np.testing.assert_array_equal(model.named_grads()[key], g, err_msg=key)

    x = np.concatenate([x for x, _ in batches])
    t = np.concatenate([t for _, t in batches])
    trained, fresh = _pair()[0], _pair()[0]
    xn.optim.SGD(trained, lr=0.1).zero_grad()
    for m in (trained, fresh):
        xn.train(m, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(lr=0.1), epochs=1, batch_size=5,
                 device="cpu", progress=False)
    for key, value in fresh.named_params().items():
        np.testing.assert_array_equal(trained.named_params()[key], value, err_msg=key)


@pytest.mark.parametrize("groups", [False, True], ids=["one group", "two groups"])
def test_step_after_zero_grad_without_a_backward_changes_nothing_as_pytorchs(groups):
    """PyTorch skips every parameter whose .grad is None: a step with no backward since zero_grad() leaves the
    weights and Adam's state (its step count too) as they were; the next backward's step updates as before."""
    model, theirs = _two_heads_and_torchs()
    if groups:
        opt = xn.optim.Adam([{"params": model.body}, {"params": model.a, "lr": 0.02}, {"params": model.b}], lr=0.01)
        topt = torch.optim.Adam([{"params": theirs[k].parameters(), **({"lr": 0.02} if k == "a" else {})}
                                 for k in ("body", "a", "b")], lr=0.01)
    else:
        opt, topt = xn.optim.Adam(model, lr=0.01), torch.optim.Adam(theirs.parameters(), lr=0.01)
    criterion = xn.losses.SoftmaxCrossEntropy()
    for (x, t), head in zip(_batches(6), ["a", None, None, "b", None, "a"]):
        opt.zero_grad()
        topt.zero_grad()
        if head is not None:
            criterion(model(x, head=head), t)
            model.backward(criterion.backward())
            out = theirs[head](torch.relu(theirs["body"](torch.from_numpy(x))))
            torch.nn.functional.cross_entropy(out, torch.from_numpy(t)).backward()
        before = {k: np.copy(v) for k, v in model.named_params().items()}
        opt.step(model)  # the state named in the model, as by one group's
        topt.step()
        if head is None:
            assert all(np.array_equal(v, before[k]) for k, v in model.named_params().items())
        for k in ("body", "a", "b"):
            for name, p in (("W", theirs[k].weight), ("b", theirs[k].bias)):
                np.testing.assert_allclose(getattr(model, k).params[name].T if name == "W" else
                                           getattr(model, k).params[name], p.detach().numpy(), rtol=1e-12,
                                           err_msg=f"{k}.{name}")
                steps = int(topt.state[p]["step"]) if p in topt.state else 0
                key = f"{k}.{name}"
                assert (opt.t - opt.skipped.get(key, 0) if key in opt.state else 0) == steps, key


class _InPlace(xn.layers.Linear):
    def backward(self, dy):
        self.grads["W"][...] = self._x.T @ dy  # writes into last backward's array
        self.grads["b"] = dy.sum(axis=0)
        return dy @ self.params["W"].T


def test_a_layer_writing_its_gradient_in_place_fails_at_the_second_backward_naming_it():
    xn.init.seed(0)
    model = xn.Sequential(_InPlace(4, 3))
    opt, criterion = xn.optim.SGD(model, lr=0.1), xn.losses.SoftmaxCrossEntropy()
    opt.zero_grad()
    model[0].grads["W"] = np.zeros((4, 3), np.float32)  # as a layer that made its buffer in __init__
    (x, t), (x2, t2) = _batches(2)
    criterion(model(x.astype(np.float32)), t)
    model.backward(criterion.backward())
    criterion(model(x2.astype(np.float32)), t2)
    with pytest.raises(RuntimeError, match=r"Sequential.backward ran again since zero_grad\(\).*'0' \(_InPlace\) "
                                           r"read its gradient 'W'.*self.grads\['W'\] = \.\.\."):
        model.backward(criterion.backward())


def test_xn_train_ignores_a_zero_grad_called_on_a_part_of_the_model():
    """A head fine-tuned by a loop of one's own (its own optimizer's zero_grad) before xn.train trains the model:
    the head's backward must overwrite its gradients at every step of the run, not add them up."""
    x = np.concatenate([x for x, _ in _batches(4)])
    t = np.concatenate([t for _, t in _batches(4)])
    trained = []
    for arm_head in (False, True):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.Sequential(xn.layers.Linear(8, 3)))
        if arm_head:
            xn.optim.SGD(model[2], lr=0.1).zero_grad()
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(lr=0.1), epochs=2, batch_size=5,
                 device="cpu", progress=False)
        trained.append(model.named_params())
    for key, value in trained[0].items():
        np.testing.assert_array_equal(trained[1][key], value, err_msg=key)



def test_a_backward_written_out_layer_by_layer_after_zero_grad_adds_as_pytorchs():
    """The book's ``gradient()`` backward, ``for layer in reversed(layers): dout = layer.backward(dout)``, in
    PyTorch's accumulation loop: after ``optimizer.zero_grad()`` each layer's backward adds, as ``model.backward``
    does (each overwrote: the step took the last micro-batch's gradient alone, silently)."""
    model, theirs = _pair()
    opt, topt = xn.optim.SGD(model, lr=0.1), torch.optim.SGD(theirs.parameters(), lr=0.1)
    criterion = xn.losses.SoftmaxCrossEntropy()
    for _ in range(2):
        opt.zero_grad()
        topt.zero_grad()
        for x, t in _batches(2):
            criterion(model(x), t)
            dout = criterion.backward() / 2
            for layer in reversed(model.layers):
                dout = layer.backward(dout)
            _torch_backward(theirs, x, t, 0.5)
        opt.step()
        topt.step()
        _assert_same(model, theirs)


def test_a_lone_layer_adds_as_pytorchs_and_the_books_optimizer_keeps_overwriting():
    """PyTorch's nn.Linear regression: the model is one layer. An optimizer given its model only at step(model),
    the book's SGD(lr), has no model at its first zero_grad(): it clears nothing, before that step and after, so
    the second backward overwrites the first's gradients; its step on them, which would take the last backward's
    alone where PyTorch adds both, is refused, saying to build it with the model."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    torch.manual_seed(0)
    theirs = torch.nn.Linear(3, 2).double()
    topt, loss = torch.optim.SGD(theirs.parameters(), lr=0.1), xn.losses.MeanSquaredError()
    ours, book = xn.layers.Linear(3, 2, dtype="float64"), xn.layers.Linear(3, 2, dtype="float64")
    for layer in (ours, book):
        xn.load_torch_state_dict(layer, theirs.state_dict())
    opt, book_opt = xn.optim.SGD(ours, lr=0.1), xn.optim.SGD(lr=0.1)
    for _ in range(2):
        topt.zero_grad()
        for _ in range(2):
            torch.nn.functional.mse_loss(theirs(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.zero_grad()
        book_opt.zero_grad()
        for i, layer in enumerate((ours, book, ours, book)):
            loss.forward(layer(x), y)
            layer.backward(loss.backward())
            if i == 1:
                first = dict(book.grads)
        np.testing.assert_allclose(ours.grads["W"].T, theirs.weight.grad.numpy(), rtol=1e-12)
        for key, g in first.items():  # the second backward overwrote the first's equal gradient
            np.testing.assert_array_equal(book.grads[key], g, err_msg=key)
        topt.step()
        opt.step()
        with pytest.raises(RuntimeError, match=r"Linear's backward ran more than once since the last step .* build "
                                               r"the optimizer with the model, SGD\(model, lr=0.1\)"):
            book_opt.step(book)


def test_accumulation_without_a_zero_grad_before_the_loop_is_refused_and_with_one_equals_pytorch():
    """PyTorch's gradient accumulation often calls zero_grad() only after each step: the first window starts from
    None gradients and adds up. xpnet's model, never given zero_grad(), overwrites (the book's rule): the first
    step would take the last batch's gradient alone, silently (weights 0.006 off torch's here). That step is
    refused, saying to call zero_grad() once before the loop; with it, the weights equal torch's."""
    for first_zero_grad in (False, True):
        model, theirs = _pair()
        opt, topt = xn.optim.SGD(model, lr=0.1), torch.optim.SGD(theirs.parameters(), lr=0.1)
        criterion = xn.losses.SoftmaxCrossEntropy()
        if first_zero_grad:
            opt.zero_grad()
        for i, (x, t) in enumerate(_batches(4)):
            criterion(model(x), t)
            model.backward(criterion.backward() / 2)
            _torch_backward(theirs, x, t, 0.5)
            if i % 2 == 1:
                if not first_zero_grad:
                    with pytest.raises(RuntimeError, match=r"^SGD.step\(\): Sequential's backward ran more than once "
                                                           r"since the last step .* call SGD.zero_grad\(\) once "
                                                           r"before the loop"):
                        opt.step()
                    break
                opt.step()
                opt.zero_grad()
                topt.step()
                topt.zero_grad()
        if first_zero_grad:
            _assert_same(model, theirs)


def test_two_losses_backpropagated_before_one_step_without_zero_grad_are_refused():
    """A GAN's discriminator (real, then fake) or PyTorch's retain_graph=True: two backward calls, one step. Never
    given zero_grad(), the second overwrote the first: refused. One backward per step, a loop that reads and sums
    each backward's gradients itself (named_grads()), and xn.train's own accumulation run as before."""
    model, _ = _pair()
    opt, criterion = xn.optim.Adam(model, lr=0.01), xn.losses.SoftmaxCrossEntropy()
    (x1, t1), (x2, t2) = _batches(2)
    criterion(model(x1), t1)
    model.backward(criterion.backward())
    opt.step()  # one backward: the book's loop
    criterion(model(x1), t1)
    model.backward(criterion.backward())
    model.backward(criterion.backward())  # the same forward twice (retain_graph)
    with pytest.raises(RuntimeError, match=r"Adam.step\(\): Sequential's backward ran more than once"):
        opt.step()
    criterion(model(x1), t1)
    model.backward(criterion.backward())
    summed = model.named_grads()  # read: what a loop summing by hand does
    criterion(model(x2), t2)
    model.backward(criterion.backward())
    for name, g in model.named_grads().items():
        g += summed[name]
    opt.step()
    xn.train(model, (np.concatenate([x1, x2]), np.concatenate([t1, t2])), loss="cross_entropy", optimizer=opt,
             epochs=1, batch_size=2, accumulate_grad_batches=2, progress=False)
    criterion(model(x1), t1)
    model.backward(criterion.backward())
    opt.step()  # after xn.train, its backward calls count for nothing


def test_with_param_groups_two_backward_calls_before_a_step_are_refused_and_zero_grad_adds_them():
    """The same with PyTorch's per-layer groups (its zero_grad() arms each group's layer): refused without a
    zero_grad(); with one before the two backward calls, the step equals torch's in float64."""
    for zero in (False, True):
        model, theirs = _pair()
        opt = xn.optim.SGD([{"params": model.layers[0].parameters()},
                            {"params": model.layers[2].parameters(), "lr": 0.05}], lr=0.1)
        topt = torch.optim.SGD([{"params": theirs[0].parameters()}, {"params": theirs[2].parameters(), "lr": 0.05}],
                               lr=0.1)
        criterion = xn.losses.SoftmaxCrossEntropy()
        if zero:
            opt.zero_grad()
        for x, t in _batches(2):
            criterion(model(x), t)
            model.backward(criterion.backward())
            _torch_backward(theirs, x, t)
        if not zero:
            with pytest.raises(RuntimeError, match=r"SGD.step\(\): Sequential's backward ran more than once"):
                opt.step(model)
            continue
        opt.step(model)
        topt.step()
        _assert_same(model, theirs)


@pytest.mark.parametrize("read", ["layer.grads", "model.layers[i].grads", "grads.get", "grads.items"])
def test_a_loop_summing_each_backwards_layer_grads_by_hand_steps_as_torchs_accumulation(read):
    """The book's style of a sum by hand, never a zero_grad(): after each backward, read every layer's ``grads``
    and add them up, then put the sums back and step. Reading ``layer.grads[key]`` (``.get(key)``, ``.items()``)
    counts as reading (as ``named_grads()`` does): the step is let through and equals torch's two backward calls
    then one step, in float64. Without a read between the two backward calls (a print after the last alone) the
    step is refused."""
    model, theirs = _pair()
    opt, topt = xn.optim.SGD(model, lr=0.1), torch.optim.SGD(theirs.parameters(), lr=0.1)
    criterion = xn.losses.SoftmaxCrossEntropy()
    sums = {}
    for x, t in _batches(2):
        criterion(model(x), t)
        model.backward(criterion.backward())
        _torch_backward(theirs, x, t)
        for i, layer in enumerate(model.layers):
            seen = dict(layer.grads.items()) if read == "grads.items" else {}
            for key in layer.params:
                g = seen[key] if seen else layer.grads.get(key) if read == "grads.get" else \
                    layer.grads[key] if read == "layer.grads" else model.layers[i].grads[key]
                sums[i, key] = sums.get((i, key), 0) + g
    for (i, key), g in sums.items():
        model.layers[i].grads[key] = g
    opt.step()
    topt.step()
    _assert_same(model, theirs)
    for x, t in _batches(2):  # no read in between: the step would take the second backward's alone
        criterion(model(x), t)
        model.backward(criterion.backward())
    print(model.layers[0].grads.get("W").sum())  # a read after the last backward alone saw only the last's
    with pytest.raises(RuntimeError, match=r"SGD.step\(\): Sequential's backward ran more than once"):
        opt.step()


class _BufferedScale(xn.layers.Layer):
    """The book's sequel's way: a gradient buffer made once, written in place by backward (a read of its own)."""

    by_get = False

    def __init__(self):
        super().__init__()
        self.params["W"], self.grads["W"] = np.ones(3), np.zeros(3)

    def forward(self, x, train=True):
        self.x = x
        return x * self.params["W"]

    def backward(self, dy):
        buffer = self.grads.get("W") if self.by_get else self.grads["W"]
        buffer[...] = (dy * self.x).sum(axis=0)
        return dy * self.params["W"]


@pytest.mark.parametrize("by_get", [False, True], ids=["grads[key]", "grads.get"])
def test_a_layers_backward_reading_its_own_grads_is_no_read_of_the_loop(by_get):
    """A backward writing into its gradient buffer overwrites: two backward calls then a step still refused."""
    buffered = _BufferedScale()
    buffered.by_get = by_get
    model = xn.Sequential(xn.layers.Linear(4, 3, dtype="float64"), buffered)
    opt, (x, _) = xn.optim.SGD(model, lr=0.1), _batches(1)[0]
    for _ in range(2):
        model.backward(np.ones_like(model(x)))
    with pytest.raises(RuntimeError, match=r"SGD.step\(\): Sequential's backward ran more than once"):
        opt.step()
