"""get_submodule, set_submodule, get_parameter and get_buffer (xpnet/layers/submodules.py) on a model holding layers
in attributes, a list, a dict, a Sequential and a nested model: the same successes and failures as PyTorch's on the
equivalent nn.Module tree (torch/nn/modules/module.py), the place replaced and no other, a replaced layer that
trains and round-trips its state dict; xpnet's errors."""

import numpy as np
import pytest

import xpnet as xn

L = xn.layers


class _Inner(xn.Model):
    def __init__(self):
        super().__init__()
        self.fc, self.bn = L.Linear(3, 3), L.BatchNorm(3)


class Net(xn.Model):
    def __init__(self):
        super().__init__()
        self.stem = xn.Sequential(L.Linear(2, 3), L.ReLU())
        self.blocks = [L.Linear(3, 3), L.Linear(3, 3)]
        self.heads = {"a": L.Linear(3, 1)}
        self.inner = _Inner()
        self.scale = 2.0


def _torch_net(torch):
    nn = torch.nn

    class _Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.bn = nn.Linear(3, 3), nn.BatchNorm1d(3)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
            self.blocks = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])
            self.heads = nn.ModuleDict({"a": nn.Linear(3, 1)})
            self.inner = _Inner()
            self.scale = 2.0

    return Net()


def _outcome(call, *args):
    """What a look-up gave: the class name or the shape, or the kind of its error ("missing": PyTorch's "has no
    attribute", "not": "is not an nn.Module / a parameter / a buffer")."""
    try:
        got = call(*args)
    except AttributeError as exc:
        return "not" if "` is not a" in str(exc) else "missing" if " has no " in str(exc) else str(exc)
    except ValueError:
        return "ValueError"
    if got is None:
        return None
    return tuple(got.shape) if hasattr(got, "shape") else {"BatchNorm1d": "BatchNorm"}.get(type(got).__name__,
                                                                                         type(got).__name__)


def test_look_ups_and_replacements_succeed_and_fail_as_pytorchs():
    """The same targets on the equivalent PyTorch tree (ModuleList and ModuleDict where xpnet has a list and a dict
    attribute) give the same layers, arrays and errors; PyTorch's names give PyTorch's arrays; after the same
    set_submodule calls, strict and not, both trees hold their Linear layers at the same names."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    ours, theirs = Net(), _torch_net(torch)
    xn.load_torch_state_dict(ours, theirs.state_dict())
    for target in ["", "stem", "stem.0", "stem.1", "stem.2", "stem.-1", "stem.0.x", "blocks.0", "blocks.1",
                   "blocks.2", "heads.a", "heads.b", "inner", "inner.fc", "inner.bn", "inner..fc", "scale", "forward",
                   "nope", "nope.fc"]:
        assert _outcome(ours.get_submodule, target) == _outcome(theirs.get_submodule, target), target
    for target in ["stem.0.weight", "blocks.1.bias", "inner.bn.weight", "inner.bn.running_mean", "stem.1.weight",
                   "stem.0.x", "scale", "nope.weight", "weight"]:
        for method in ("get_parameter", "get_buffer"):
            got, want = _outcome(getattr(ours, method), target), _outcome(getattr(theirs, method), target)
            assert got == want, (method, target)
    for target in ["blocks.1.weight", "inner.bn.bias", "inner.bn.running_var"]:
        want = (theirs.get_buffer if "running" in target else theirs.get_parameter)(target).detach().numpy()
        got = (ours.get_buffer if "running" in target else ours.get_parameter)(target)
        np.testing.assert_array_equal(got, want, err_msg=target)
    calls = [("stem.0", True), ("blocks.1", True), ("heads.a", False), ("heads.b", True), ("heads.b", False),
             ("extra", True), ("extra", False), ("inner.head", False), ("inner.fc", True), ("scale", False),
             ("forward", False), ("nope.fc", False), ("", False)]
    for target, strict in calls:
        mine, yours = L.Linear(3, 3), torch.nn.Linear(3, 3)
        done = [_outcome(ours.set_submodule, target, mine, strict), _outcome(theirs.set_submodule, target, yours,
                                                                             strict)]
        assert done[0] == done[1], (target, strict)
        if done[0] is None:
            assert ours.get_submodule(target) is mine and theirs.get_submodule(target) is yours
    assert _outcome(ours.set_submodule, "stem.0", "a module") == _outcome(theirs.set_submodule, "stem.0", "a module")
    linears = [name for name, m in theirs.named_modules() if isinstance(m, torch.nn.Linear)]
    assert [name for name, m in ours.named_modules().items() if isinstance(m, L.Linear)] == linears


def test_a_layer_held_twice_is_replaced_at_the_named_place_only():
    """PyTorch's set_submodule replaces the place named and leaves the layer where else it is; in a tuple too."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    shared, theirs_shared = L.Linear(2, 2), torch.nn.Linear(2, 2)
    ours = xn.Sequential(shared, L.ReLU(), shared)
    theirs = torch.nn.Sequential(theirs_shared, torch.nn.ReLU(), theirs_shared)
    new, theirs_new = L.Linear(2, 2), torch.nn.Linear(2, 2)
    ours.set_submodule("2", new)
    theirs.set_submodule("2", theirs_new)
    assert theirs[0] is theirs_shared and theirs[2] is theirs_new
    assert ours[0] is shared and ours[2] is new and list(ours.named_params()) == ["0.W", "0.b", "2.W", "2.b"]
    net = xn.Model()
    net.pair = (shared, shared)
    net.set_submodule("pair.1", new)
    assert net.pair == (shared, new) and net.get_submodule("pair.0") is shared


def test_a_replaced_layer_trains_and_its_state_dict_round_trips():
    """A layer put in place of a frozen one (an entry of a list attribute), in a model bound to an optimizer
    before, is the model's: its parameter by name, updated by the step (SGD's p - lr * g), saved and loaded into a
    model built alike."""
    x = np.random.default_rng(0).standard_normal((4, 2))
    model = _Chain().to(dtype="float64")
    optimizer = xn.optim.SGD(model, lr=0.1)
    model.head[0].requires_grad_(False)
    new = L.Linear(3, 2, dtype="float64")
    model.set_submodule("head.0", new)
    before = np.array(new.params["W"])
    assert model.get_parameter("head.0.W") is new.params["W"] and "head.0.W" in model.trainable_params()
    model.backward(np.ones((4, 2)) - model.forward(x))
    grad = np.array(model.named_grads()["head.0.W"])
    optimizer.step()
    np.testing.assert_allclose(new.params["W"], before - 0.1 * grad, rtol=1e-12)
    again = _Chain().to(dtype="float64")
    again.set_submodule("head.0", L.Linear(3, 2, dtype="float64"))
    again.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


class _Chain(xn.Model):
    def __init__(self):
        super().__init__()
        self.body = xn.Sequential(L.Linear(2, 3), L.ReLU())
        self.head = [L.Linear(3, 2)]

    def forward(self, x, train=True):
        return self.head[0].forward(self.body.forward(x, train), train)

    def backward(self, dy):
        return self.body.backward(self.head[0].backward(dy))


def test_clear_errors():
    net = Net()
    with pytest.raises(AttributeError, match=r"^`blocks` is a list of layers, not a layer \(xpnet has no ModuleList "
                                             r"or ModuleDict\): its layers are 'blocks.0', 'blocks.1'$"):
        net.get_submodule("blocks")
    with pytest.raises(AttributeError, match=r"^Sequential has no attribute `5` \('stem.5.x' reached 'stem', a "
                                             r"Sequential: its layers are 'stem.0', 'stem.1'\)$"):
        net.get_submodule("stem.5.x")
    with pytest.raises(AttributeError, match=r"^`blocks` \(a list of layers\) has no entry `2`"):
        net.get_submodule("blocks.2.W")
    with pytest.raises(AttributeError, match=r"^Linear has no attribute `V` \(its params are 'W', 'b' \(PyTorch's "
                                             r"names: 'weight', 'bias'\); model.named_params\(\) names them all\)$"):
        net.get_parameter("stem.0.V")
    with pytest.raises(AttributeError, match=r"^`running_mean` is not a parameter: it is a buffer "
                                             r"\(get_buffer\('inner.bn.running_mean'\)\)$"):
        net.get_parameter("inner.bn.running_mean")
    with pytest.raises(AttributeError, match=r"a Sequential names its layers by position: model.append\(layer\)"):
        net.set_submodule("stem.2", L.ReLU())
    with pytest.raises(AttributeError, match=r"a new layer goes into a model of one's own \(xn.Model\), not into a "
                                             r"Linear$"):
        net.set_submodule("stem.0.extra", L.ReLU())
    with pytest.raises(ValueError, match=r"^Net.set_submodule: module must be an xpnet layer or model, got a "
                                         r"numpy.ndarray$"):
        net.set_submodule("stem.0", np.zeros(2))
    with pytest.raises(ValueError, match=r"^Sequential: item 0, MultiheadAttention\(.*\), takes 3 inputs"):
        net.set_submodule("stem.0", L.MultiheadAttention(8, 2))
    with pytest.raises(TypeError, match=r"^Net.get_submodule: target must be a dotted name, a str such as "
                                        r"'layer1.0.conv1', got a int$"):
        net.get_submodule(0)
    with pytest.raises(TypeError, match=r"^Net.set_submodule: strict must be True or False, got 'yes'$"):
        net.set_submodule("stem.0", L.ReLU(), strict="yes")
    assert isinstance(net.stem[0], L.Linear) and "extra" not in vars(net.stem[0])
