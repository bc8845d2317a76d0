"""xn.Sequential(OrderedDict([('fc1', ...), ...])): layers named by the keys, as PyTorch's nn.Sequential names
them (it was refused: "xpnet's Sequential names its layers by position"). Compared with torch 2.13's own."""

from collections import OrderedDict

import numpy as np
import pytest

import xpnet as xn

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _named(lib, dtype="float32"):
    """The same named MLP in xpnet or torch.nn."""
    if lib is torch:
        return torch.nn.Sequential(OrderedDict([("fc1", torch.nn.Linear(4, 8)), ("act", torch.nn.ReLU()),
                                                ("fc2", torch.nn.Linear(8, 2))])).double()
    return xn.Sequential(OrderedDict([("fc1", xn.layers.Linear(4, 8, dtype=dtype)), ("act", xn.layers.ReLU()),
                                      ("fc2", xn.layers.Linear(8, 2, dtype=dtype))]))


def test_named_layers_are_reached_and_listed_by_their_keys_as_pytorchs():
    model, twin = _named(xn), _named(torch)
    assert model.fc1 is model[0] and model.act is model[1] and model[-1] is model.fc2
    assert list(model.named_children()) == [name for name, _ in twin.named_children()]
    assert list(model.named_params()) == ["fc1.W", "fc1.b", "fc2.W", "fc2.b"]
    assert list(xn.torch_state_dict(model)) == list(twin.state_dict())
    assert repr(model).splitlines()[1:3] == ["  (fc1): Linear(in_features=4, out_features=8, bias=True)",
                                             "  (act): ReLU()"]
    assert model.get_submodule("fc2") is model[2]
    tail = model[1:]  # a slice keeps the names, as PyTorch's
    assert list(tail.named_children()) == [name for name, _ in twin[1:].named_children()] and tail.fc2 is model.fc2
    head = xn.layers.Linear(8, 3)
    model.fc2 = head  # replaced in its place, as PyTorch's setattr of a child
    assert model[2] is head and len(model) == 3 and model.predict(np.ones((5, 4), np.float32)).shape == (5, 3)
    y = model(np.ones((5, 4), np.float32))
    model.backward(np.ones_like(y))
    assert model.fc1.grads["W"].shape == (4, 8)


def test_append_and_del_name_layers_as_pytorchs_and_insert_is_refused():
    model, twin = _named(xn), _named(torch)
    model.append(xn.layers.ReLU())
    twin.append(torch.nn.ReLU())
    assert list(model.named_children()) == [name for name, _ in twin.named_children()] == ["fc1", "act", "fc2", "3"]
    del model[1]
    del twin[1]  # PyTorch renumbers every layer
    assert list(model.named_children()) == [name for name, _ in twin.named_children()] == ["0", "1", "2"]
    with pytest.raises(TypeError, match=r"^Sequential.insert: this Sequential names its layers \(fc1, act, fc2\), "
                                        r".* build it again from an OrderedDict"):
        _named(xn).insert(1, xn.layers.Tanh())
    clash = xn.Sequential(OrderedDict([("x", xn.layers.ReLU()), ("2", xn.layers.ReLU())]))
    with pytest.raises(KeyError, match=r"^Sequential.append: the new layer is named by its position, '2', which "
                                       r"names layer 1 already \(PyTorch's append would replace that one\)"):
        clash.append(xn.layers.ReLU())  # PyTorch's add_module('2', ...) puts it in place of the layer named '2'
    assert list(clash.named_children()) == ["x", "2"]


@pytest.mark.parametrize("key", ["", "a.b", "forward", "training", 1])
def test_a_key_pytorch_refuses_is_refused_with_its_error_type(key):
    with pytest.raises(Exception) as theirs:
        torch.nn.Sequential(OrderedDict([(key, torch.nn.ReLU())]))
    with pytest.raises(type(theirs.value), match=r"^Sequential: a layer's name "):
        xn.Sequential(OrderedDict([(key, xn.layers.ReLU())]))


def test_pytorchs_state_dict_loads_and_the_outputs_agree_in_float64():
    twin, model = _named(torch), _named(xn, "float64")
    xn.load_torch_state_dict(model, twin.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 4))
    np.testing.assert_allclose(model.predict(x), twin(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_a_named_sequential_is_saved_loaded_and_resumed_with_its_names(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((40, 4)).astype(np.float32), rng.integers(0, 2, 40))
    path = tmp_path / "run.npz"
    xn.manual_seed(0)
    model = _named(xn)
    xn.train(model, data, loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=1, batch_size=20,
             progress=False, callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)])
    xn.save(model, tmp_path / "model.npz")
    loaded = xn.load(tmp_path / "model.npz")
    assert type(loaded) is xn.Sequential and list(loaded.named_params()) == list(model.named_params())
    np.testing.assert_array_equal(loaded.fc1.params["W"], model.fc1.params["W"])
    xn.manual_seed(1)
    again = _named(xn)
    history = xn.train(again, data, loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=2, batch_size=20,
                       progress=False, resume_from=path)
    assert len(history.epochs) == 2 and list(again.state_dict()) == list(model.state_dict())
