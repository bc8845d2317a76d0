"""xn.optim.LBFGS against the installed torch.optim.LBFGS in float64: the weights, the losses ``step(closure)``
returns and the evaluation counts after each step, with fixed steps and with the strong-Wolfe line search (both
its phases), the history wrapping (history_size below the iterations); a frozen layer; state_dict; refusals."""

import inspect

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from xpnet.testing import assert_placed

NO_TORCH = "torch is not installed (pip install -e '.[backends]')"


def _data(kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "mlp":  # cross-entropy on a 4-8-3 tanh MLP
        return rng.normal(size=(16, 4)), rng.integers(0, 3, 16)
    return rng.normal(size=(16, 5)), rng.normal(size=(16, 2))  # least squares: one Linear, MSE


def _problem(kind, torch, seed=0):
    """An xpnet model, torch's with the same weights, and the closure factories for an optimizer of each."""
    xn.init.seed(seed)
    x, t = _data(kind, seed)
    if kind == "mlp":
        model = xn.Sequential(xn.layers.Linear(4, 8, dtype="float64"), xn.layers.Tanh(),
                              xn.layers.Linear(8, 3, dtype="float64"))
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
        criterion, torch_loss = xn.losses.SoftmaxCrossEntropy(), torch.nn.functional.cross_entropy
    else:
        model = xn.Sequential(xn.layers.Linear(5, 2, dtype="float64"))
        net = torch.nn.Sequential(torch.nn.Linear(5, 2)).double()
        criterion, torch_loss = xn.losses.MeanSquaredError(), torch.nn.functional.mse_loss
    with torch.no_grad():
        for i in range(0, len(net), 2):
            net[i].weight.copy_(torch.from_numpy(model[i].params["W"].T))
            net[i].bias.copy_(torch.from_numpy(model[i].params["b"]))

    def closure_of(opt):
        def closure():
            opt.zero_grad()
            loss = criterion(model(x), t)
            model.backward(criterion.backward())
            return loss
        return closure

    def torch_closure_of(opt):
        def closure():
            opt.zero_grad()
            loss = torch_loss(net(torch.from_numpy(x)), torch.from_numpy(t))
            loss.backward()
            return loss
        return closure
    return model, net, closure_of, torch_closure_of


def _assert_as_torch(model, net, opt, torch_opt, after):
    for i in range(0, len(net), 2):
        for k, v in (("W", net[i].weight.T), ("b", net[i].bias)):
            np.testing.assert_allclose(model[i].params[k], v.detach().numpy(), rtol=1e-10, atol=1e-13,
                                       err_msg=f"{i}.{k} after {after}")
    torch_state = torch_opt.state[next(iter(torch_opt.state))]
    assert (opt.state["func_evals"], opt.state["n_iter"]) == (torch_state["func_evals"], torch_state["n_iter"]), after


# The line search's branches, all run by the four MLP cases: extrapolating a step too short, bracketing one too
# long, the zoom's interpolations (also too near an end of its bracket, and an old high becoming the low) and the
# evaluations running out (max_eval).
@pytest.mark.parametrize("kind, seed, lr, max_iter, line_search_fn", [
    ("mlp", 0, 1, 4, None), ("lsq", 0, 1, 4, None), ("lsq", 0, 5, 5, "strong_wolfe"),
    ("mlp", 0, 5, 5, "strong_wolfe"), ("mlp", 3, 0.1, 5, "strong_wolfe"), ("mlp", 1, 100, 8, "strong_wolfe"),
    ("mlp", 1, 1000, 5, "strong_wolfe")])
def test_steps_equal_torch(kind, seed, lr, max_iter, line_search_fn):
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    model, net, closure_of, torch_closure_of = _problem(kind, torch, seed)
    settings = {"lr": lr, "max_iter": max_iter, "history_size": 2, "line_search_fn": line_search_fn}
    opt, torch_opt = xn.optim.LBFGS(model.parameters(), **settings), torch.optim.LBFGS(net.parameters(), **settings)
    closure, torch_closure = closure_of(opt), torch_closure_of(torch_opt)
    for step in range(4):
        loss = opt.step(closure)
        assert isinstance(loss, float)  # what the closure returned first: criterion's value
        np.testing.assert_allclose(loss, torch_opt.step(torch_closure).item(), rtol=1e-12, err_msg=f"step {step}")
        _assert_as_torch(model, net, opt, torch_opt, f"step {step}")
    assert len(opt.state["old_dirs"]) == 2 and opt.state["n_iter"] > 2  # the history wrapped


def test_a_frozen_layer_is_left_as_it_is_and_the_rest_trains_as_torch():
    """PyTorch's LBFGS takes a parameter without a gradient as a zero one, which leaves it where it is too."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    model, net, closure_of, torch_closure_of = _problem("mlp", torch)
    model[0].requires_grad_(False)
    net[0].requires_grad_(False)
    frozen = {k: v.copy() for k, v in model[0].params.items()}
    opt = xn.optim.LBFGS(model, max_iter=5, line_search_fn="strong_wolfe")
    torch_opt = torch.optim.LBFGS(net.parameters(), max_iter=5, line_search_fn="strong_wolfe")
    for step in range(3):
        opt.step(closure_of(opt))
        torch_opt.step(torch_closure_of(torch_opt))
        _assert_as_torch(model, net, opt, torch_opt, f"step {step}")
    for k, v in frozen.items():
        np.testing.assert_array_equal(model[0].params[k], v)
    assert opt.state["d"].shape == (8 * 3 + 3,)
    model[0].requires_grad_(True)
    with pytest.raises(RuntimeError, match=r"not those of its earlier steps .*build a new LBFGS"):
        opt.step(closure_of(opt))


def test_a_parameter_the_backward_does_not_reach_has_a_zero_gradient_as_in_torch():
    """PyTorch's LBFGS gathers a gradient of None as zeros; xpnet's, a parameter without one after the closure."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    model, net, closure_of, torch_closure_of = _problem("lsq", torch)

    class WithSpare(xn.Model):  # a head not used yet
        def __init__(self):
            super().__init__()
            self.fc, self.spare = model[0], xn.layers.Linear(5, 2, dtype="float64")

        def forward(self, x, train=True):
            return self.fc.forward(x, train)

        def backward(self, dy):
            return self.fc.backward(dy)
    spare_model, spare_net = WithSpare(), torch.nn.Linear(5, 2).double()
    spare = {k: v.copy() for k, v in spare_model.spare.params.items()}
    opt = xn.optim.LBFGS(spare_model, max_iter=4, history_size=2, line_search_fn="strong_wolfe")
    torch_opt = torch.optim.LBFGS([*net.parameters(), *spare_net.parameters()], max_iter=4, history_size=2,
                                  line_search_fn="strong_wolfe")
    for step in range(2):
        opt.step(closure_of(opt))
        torch_opt.step(torch_closure_of(torch_opt))
        _assert_as_torch(model, net, opt, torch_opt, f"step {step}")
    for k, v in spare.items():
        np.testing.assert_array_equal(spare_model.spare.params[k], v)


def _frozen_mlp_steps(dev):
    """The 4-8-3 MLP, its first layer frozen, after two line-searched steps on ``dev``: (params, losses, opt)."""
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(4, 8, dtype="float64"), xn.layers.Tanh(),
                          xn.layers.Linear(8, 3, dtype="float64")).to(dev)
    model[0].requires_grad_(False)
    x, t = (xn.to_device(a, dev) for a in _data("mlp", 0))
    opt, criterion = xn.optim.LBFGS(model, lr=5, max_iter=5, history_size=2, line_search_fn="strong_wolfe"), \
        xn.losses.SoftmaxCrossEntropy()

    def closure():
        opt.zero_grad()
        loss = criterion(model(x), t)
        model.backward(criterion.backward())
        return loss
    losses = [opt.step(closure) for _ in range(2)]
    return {k: xn.to_numpy(v) for k, v in model.named_params().items()}, losses, opt


# JAX (immutable arrays, stored back with model.set_param) steps alike, but compiles each new op for seconds cold.
@pytest.mark.parametrize("device", ["strict-device1", "torch", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_steps_on_the_parameters_namespace_and_device_as_on_numpy(device):
    """array-api-strict on its second device catches a hidden host copy or an operation outside the standard."""
    dev = DEVICE_MAKERS[device]()
    expected, expected_losses, _ = _frozen_mlp_steps(xn.device("cpu"))
    params, losses, opt = _frozen_mlp_steps(dev)
    for k, v in expected.items():
        np.testing.assert_allclose(params[k], v, rtol=1e-10, atol=1e-13, err_msg=k)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-12)
    for a in (opt.state["d"], opt.state["prev_flat_grad"], *opt.state["old_dirs"], *opt.state["old_stps"]):
        assert_placed(a, dev, "float64")


def test_state_dict_round_trip_goes_on_as_the_uninterrupted_run():
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    model, net, closure_of, torch_closure_of = _problem("mlp", torch)
    opt = xn.optim.LBFGS(model, lr=0.5, max_iter=3, history_size=2)
    torch_opt = torch.optim.LBFGS(net.parameters(), lr=0.5, max_iter=3, history_size=2)
    for _ in range(2):
        opt.step(closure_of(opt))
        torch_opt.step(torch_closure_of(torch_opt))
    saved, weights = opt.state_dict(), {k: v.copy() for k, v in model.named_params().items()}
    opt.step(closure_of(opt))  # the uninterrupted run; the saved state stays as it was
    torch_opt.step(torch_closure_of(torch_opt))
    _assert_as_torch(model, net, opt, torch_opt, "the third step")

    resumed, _, resumed_closure_of, _ = _problem("mlp", torch)
    for k, v in weights.items():
        resumed.set_param(k, v)
    again = xn.optim.LBFGS(resumed)  # its hyperparameters come from the saved state
    again.load_state_dict(saved)
    assert repr(again) == repr(opt) == ("LBFGS(lr=0.5, max_iter=3, max_eval=3, tolerance_grad=1e-07, "
                                        "tolerance_change=1e-09, history_size=2, line_search_fn=None)")
    again.step(resumed_closure_of(again))
    for k, v in model.named_params().items():
        np.testing.assert_array_equal(resumed.named_params()[k], v, err_msg=k)
    assert again.state["func_evals"] == opt.state["func_evals"] and again.t == opt.t == 3


def test_pytorchs_signature_and_what_is_refused():
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    ours, theirs = inspect.signature(xn.optim.LBFGS).parameters, inspect.signature(torch.optim.LBFGS).parameters
    assert [(k, p.default) for k, p in ours.items()] == [(k, p.default) for k, p in theirs.items() if k != "params"]
    assert xn.optim.LBFGS(max_iter=8).max_eval == 10
    for bad, message in [({"history_size": 0}, "history_size must be an int >= 1, got 0"),
                         ({"line_search_fn": "armijo"}, "line_search_fn must be one of None, 'strong_wolfe'"),
                         ({"max_iter": 2.5}, "max_iter must be an int >= 1, got 2.5")]:
        with pytest.raises(ValueError, match=message):
            xn.optim.LBFGS(**bad)

    model, _, closure_of, _ = _problem("mlp", torch)
    opt = xn.optim.LBFGS(model.parameters())
    with pytest.raises(TypeError, match=r"LBFGS.step\(closure\): .*def closure\(\): opt.zero_grad\(\)"):
        opt.step()
    with pytest.raises(TypeError, match="takes the closure that evaluates the loss, not the model"):
        opt.step(model)
    with pytest.raises(TypeError, match="the closure returned NoneType, expected the loss"):
        opt.step(lambda: None)
    with pytest.raises(RuntimeError, match="the closure left no gradient"):
        opt.step(lambda: 1.0)
    with pytest.raises(RuntimeError, match=r"no model to update .*LBFGS\(model.parameters\(\), lr=1.0\)"):
        xn.optim.LBFGS().step(closure_of(opt))
    x, t = _data("mlp", 0)
    for optimizer in (opt, "lbfgs"):
        with pytest.raises(TypeError, match=r"xn.train cannot step an LBFGS: .*write the loop"):
            xn.train(model, (x, t), loss="cross_entropy", optimizer=optimizer, epochs=1, batch_size=16,
                     progress=False)


class _LooseScale(xn.Model):
    """PyTorch's self.scale = nn.Parameter(...) ported as a plain attribute, its gradient put in self.grads."""

    def __init__(self):
        super().__init__()
        self.fc = xn.layers.Linear(3, 2, dtype="float64")
        self.scale = np.ones(2)

    def forward(self, x, train=True):
        self.y = self.fc(x)
        return self.y * self.scale

    def backward(self, dy):
        self.grads["scale"] = (dy * self.y).sum(axis=0)
        return self.fc.backward(dy * self.scale)


def test_a_gradient_under_a_name_that_holds_no_parameter_is_refused_before_any_step():
    """L-BFGS stepped fc and never applied the attribute's gradient, silently (SGD and the others refused it)."""
    model, criterion = _LooseScale(), xn.losses.MeanSquaredError()
    x, t = _data("least_squares", 0)
    opt = xn.optim.LBFGS(model.parameters())
    before = {k: v.copy() for k, v in model.named_params().items()}

    def closure():
        opt.zero_grad()
        loss = criterion(model(x[:, :3]), t)
        model.backward(criterion.backward())
        return loss
    with pytest.raises(ValueError, match=r"^_LooseScale: the gradient 'scale' was filled but there is no parameter of "
                                         r"that name \(_LooseScale.scale is an array attribute"
                                         r".*self.params\['scale'\]"):
        opt.step(closure)
    for k, v in model.named_params().items():
        np.testing.assert_array_equal(v, before[k])


def test_a_closure_without_zero_grad_is_refused_unless_armed_before_and_then_equals_torchs():
    """PyTorch's closure calls opt.zero_grad() first; one that does not adds each evaluation's gradient to the last's
    there, where xpnet's model, never given zero_grad(), overwrites: refused at its first evaluation, before any
    change. Given zero_grad() once before the loop, xpnet adds up as PyTorch does: the steps equal torch's."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    for armed in (False, True):
        model, net, _, _ = _problem("lsq", torch)
        x, t = _data("lsq", 0)
        settings = {"lr": 0.1, "max_iter": 3, "history_size": 2}
        opt, torch_opt = xn.optim.LBFGS(model.parameters(), **settings), torch.optim.LBFGS(net.parameters(), **settings)
        criterion = xn.losses.MeanSquaredError()

        def closure():
            loss = criterion(model(x), t)
            model.backward(criterion.backward())
            return loss

        def torch_closure():
            loss = torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(t))
            loss.backward()
            return loss
        if not armed:
            before = {k: v.copy() for k, v in model.named_params().items()}
            with pytest.raises(RuntimeError, match=r"LBFGS.step: the closure's backward ran without zero_grad\(\).*"
                                                   r"PyTorch adds each evaluation's gradient.*opt.zero_grad\(\)"):
                opt.step(closure)
            for k, v in model.named_params().items():
                np.testing.assert_array_equal(v, before[k], err_msg=k)
            continue
        opt.zero_grad()
        for step in range(2):
            np.testing.assert_allclose(opt.step(closure), torch_opt.step(torch_closure).item(), rtol=1e-12)
            _assert_as_torch(model, net, opt, torch_opt, f"step {step}")


class _SharedTwice(xn.Model):
    """One Linear called on two inputs; ``forgets``: the backward of the second call is left out."""

    def __init__(self, forgets):
        super().__init__()
        self.fc, self.forgets = xn.layers.Linear(5, 2, dtype="float64"), forgets

    def forward(self, x, train=True):
        return self.fc(x) + self.fc(2 * x)

    def backward(self, dy):
        if not self.forgets:
            self.fc.backward(dy)
        self.fc.backward(dy)


def test_a_closure_leaving_out_a_calls_backward_or_reusing_a_forward_from_before_the_step_is_refused():
    """Inside step(closure), as at any optimizer's step: a layer called twice given one backward (its gradient taken
    with the wrong call's cache, silently) is refused; so is a closure that backpropagates an output computed
    before the step (the gradient at the old weights: torch raises at the second evaluation too, computed live)."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    x, t = _data("lsq", 0)
    criterion = xn.losses.MeanSquaredError()
    for forgets in (True, False):
        model = _SharedTwice(forgets)
        opt = xn.optim.LBFGS(model, lr=0.1, max_iter=3)

        def closure():
            opt.zero_grad()
            loss = criterion(model(x), t)
            model.backward(criterion.backward())
            return loss
        if forgets:
            with pytest.raises(RuntimeError, match=r"LBFGS.step\(\): _SharedTwice's forward called 'fc' \(Linear\) 2 "
                                                   r"times, but only 1 of its backward calls ran"):
                opt.step(closure)
        else:
            opt.step(closure)
    model, net, _, _ = _problem("lsq", torch)
    opt, torch_opt = xn.optim.LBFGS(model, lr=0.1, max_iter=3), torch.optim.LBFGS(net.parameters(), lr=0.1, max_iter=3)
    out, torch_out = model(x), net(torch.from_numpy(x))

    def closure():
        opt.zero_grad()
        loss = criterion(out, t)
        model.backward(criterion.backward())
        return loss

    def torch_closure():
        torch_opt.zero_grad()
        loss = torch.nn.functional.mse_loss(torch_out, torch.from_numpy(t))
        loss.backward()
        return loss
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch_opt.step(torch_closure)
    with pytest.raises(RuntimeError, match=r"LBFGS.step\(closure\)"):
        opt.step(closure)
