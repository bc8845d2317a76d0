"""Edge cases of the checkpoint refusals that tutorials5's ports brought (an optimizer's own state after
``del model[i]``; a state loaded into an optimizer with several param groups or not yet given its model) and
PyTorch's Dataset and DataLoader given to ``xn.train``, each run next to torch in float64 where one is claimed."""

import copy

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn
import xpnet.optim as optim


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _pair(torch, seed=0):
    """The same Sequential(Linear, ReLU, Linear, ReLU, Linear), float64, in torch and xpnet."""
    torch.manual_seed(seed)
    tnn = torch.nn
    theirs = tnn.Sequential(tnn.Linear(3, 4), tnn.ReLU(), tnn.Linear(4, 4), tnn.ReLU(), tnn.Linear(4, 2)).double()
    ours = xn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    return ours, theirs


def _steps(model, optimizer, x, y, n=2, loss=None):
    """n steps PyTorch's way, the last one's output; ``model.backward`` and a criterion of either library."""
    for _ in range(n):
        optimizer.zero_grad()
        out = model(x)
        if hasattr(out, "backward") and not hasattr(model, "named_params"):
            loss(out, y).sum().backward()
        else:
            xn_loss = xn.losses.SoftmaxCrossEntropy()
            xn_loss(out, y)
            model.backward(xn_loss.backward())
            optimizer.step(model)
            continue
        optimizer.step()
    return out


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((6, 3)), rng.integers(0, 2, 6)


# --- del model[i] after training: the optimizer's own state round trip ------------------------------------------

def test_optimizers_own_state_round_trip_after_del_model_last_layer_as_pytorchs():
    """Trained, then shortened (``del model[-1]``, a head removed), the optimizer's own state (which still holds the
    removed layer's momentum, as torch's holds its parameters) loads back into it and into a new optimizer of the
    shortened model, and training goes on as torch's (where the loaded state was refused as another model's);
    ``del model[1]`` renames the layers after it ('2.W' becomes '1.W'), and a state whose names this model lacks,
    of the shape of parameters left without state, stays refused (PyTorch pairs by position, xpnet by name), until
    a step has given the state the new names."""
    torch = _torch()
    x, y = _data()
    ours, theirs = _pair(torch)
    opt = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    _steps(ours, opt, x, y)
    _steps(theirs, topt, tx, ty, loss=lambda out, t: torch.nn.functional.cross_entropy(out, t))
    del ours[-1], theirs[-1]
    opt.load_state_dict(opt.state_dict())
    topt.load_state_dict(topt.state_dict())
    fresh = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(opt.state_dict())
    assert set(fresh.state) == set(opt.state)
    got = _steps(ours, fresh, x, y % 2)  # 4 outputs now: classes 0 and 1 of a 4-way score
    want = _steps(theirs, topt, tx, ty % 2, loss=lambda out, t: torch.nn.functional.cross_entropy(out, t))
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    middle, _ = _pair(torch)
    mopt = optim.SGD(middle.parameters(), lr=0.1, momentum=0.9)
    _steps(middle, mopt, x, y)
    del middle[1]
    with pytest.raises(ValueError, match=r"^SGD\.load_state_dict: the state is of another model: it holds state for "
                                         r"\['2\.W', '2\.b', '4\.W', '4\.b'\], which this model has no parameter of "
                                         r"\(its \['1\.W', '1\.b', '3\.W', '3\.b'\] have none\)"):
        mopt.load_state_dict(mopt.state_dict())
    _steps(middle, mopt, x, y, n=1)  # a step: the state follows its parameters to their new names
    mopt.load_state_dict(mopt.state_dict())
    assert sorted(mopt.state) == ["0.W", "0.b", "1.W", "1.b", "3.W", "3.b"]


# --- the check where the names are known: several groups, an optimizer given its model at step ---------------------

def test_another_models_state_is_refused_with_param_groups_and_by_an_unbound_optimizer_at_its_first_step():
    """The state of a Sequential(Linear, ReLU, Linear)'s optimizer loaded into one of a Sequential(Linear, Linear):
    refused at load with two param groups too (it was taken, its '2.W' dropped by the step), and by the book's
    ``SGD(lr)``, given the model at ``step(model)``, at that first step, before any update; the model's own state
    loads into either and trains on as the optimizer it was saved from."""
    x, y = _data()

    def three():
        xn.init.seed(0)
        return xn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(dtype="float64")

    saved = three()
    grouped = lambda m: optim.SGD([{"params": m[0].parameters()}, {"params": m[-1].parameters(), "lr": 0.01}],
                                  lr=0.1, momentum=0.9)
    opt = grouped(saved)
    _steps(saved, opt, x, y)
    other = xn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).to(dtype="float64")
    bound = grouped(other)
    _steps(other, bound, x, y, n=1)  # its step(model) binds the model, whose names the state is held against
    with pytest.raises(ValueError, match=r"^SGD\.load_state_dict: the state is of another model: it holds state for "
                                         r"\['2\.W', '2\.b'\], which this model has no parameter of \(its "
                                         r"\['1\.W', '1\.b'\] have none\)"):
        bound.load_state_dict(opt.state_dict())
    unbound = grouped(other)
    unbound.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match=r"^SGD\.step: the state given to load_state_dict is of another model"):
        unbound.step(other)
    book = optim.SGD(0.1, momentum=0.9)
    book.load_state_dict({**opt.state_dict(), "param_groups": opt.state_dict()["param_groups"][:1]})
    before = other.state_dict()
    with pytest.raises(ValueError, match=r"^SGD\.step: the state given to load_state_dict is of another model: it "
                                         r"holds state for \['2\.W', '2\.b'\]"):
        book.step(other)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    for build in (grouped, lambda m: optim.SGD(0.1, momentum=0.9)):
        model, reference = three(), three()
        first, again = build(model), build(reference)
        _steps(model, first, x, y)
        _steps(reference, again, x, y)
        again.load_state_dict(copy.deepcopy(first.state_dict()))  # as from a file (loaded, torch's share buffers)
        for m, o in ((model, first), (reference, again)):
            o.zero_grad()
            loss = xn.losses.SoftmaxCrossEntropy()
            loss(m(x), y)
            m.backward(loss.backward())
            o.step(m)
        for k, v in model.state_dict().items():
            np.testing.assert_allclose(reference.state_dict()[k], v, rtol=1e-12, err_msg=k)


# --- data_loading_tutorial's Dataset and DataLoader given to xn.train --------------------------------------------

def test_a_pytorch_dataset_or_its_dataloader_is_refused_saying_stack_samples_which_trains_as_the_loader():
    """A Dataset of one's own (``__len__``, ``__getitem__`` giving ``(x, y)``, as data_loading_tutorial writes it) or
    a ``DataLoader`` over it, given to ``xn.train`` or ``xn.evaluate``: refused (not read sample by sample), saying
    ``xn.datasets.stack_samples`` and the loader's batch_size, shuffle and drop_last; so written, two epochs train
    as torch's loop over ``DataLoader(dataset, batch_size=4)`` (its batches, in its order, the last one short)."""
    torch = _torch()
    x, y = np.random.default_rng(1).standard_normal((10, 3)), np.arange(10) % 2

    class Samples(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, idx):
            return torch.from_numpy(x[idx]), int(y[idx])

    dataset = Samples()
    torch.manual_seed(0)
    theirs = torch.nn.Linear(3, 2).double()
    ours = xn.Sequential(nn.Linear(3, 2)).to(dtype="float64")
    xn.load_torch_state_dict(ours, {"0." + k: v for k, v in theirs.state_dict().items()})
    loss = xn.losses.SoftmaxCrossEntropy()
    kw = dict(loss=loss, optimizer=optim.SGD(0.1), epochs=2, progress=False)
    with pytest.raises(TypeError, match=r"got Samples, a dataset of 10 samples .*x, y = "
                                        r"xn\.datasets\.stack_samples\(data\)"):
        xn.train(ours, dataset, batch_size=4, **kw)
    for shuffle in (False, True):
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=shuffle)
        with pytest.raises(TypeError, match=r"stack_samples\(loader\.dataset\).*batch_size=4, shuffle="
                                            f"{shuffle}, drop_last=False\\)$"):
            xn.train(ours, loader, **kw)
    with pytest.raises(TypeError, match=r"stack_samples\(loader\.dataset\).* xn\.evaluate\(model, \(x, y\), \.\.\., "
                                        r"batch_size=4\)$"):
        xn.evaluate(ours, loader, loss=loss)
    stacked = xn.datasets.stack_samples(dataset)
    np.testing.assert_array_equal(stacked[0], x)
    np.testing.assert_array_equal(stacked[1], y)
    xn.train(ours, stacked, batch_size=4, shuffle=False, **kw)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    for _ in range(2):
        for xb, yb in torch.utils.data.DataLoader(dataset, batch_size=4):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(theirs(xb), yb).backward()
            topt.step()
    for name, array in xn.torch_state_dict(ours).items():
        np.testing.assert_allclose(array, theirs.state_dict()[name[2:]].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    faces = [{"image": x[i], "landmarks": y[i]} for i in range(3)]  # the tutorial's dict samples
    with pytest.raises(ValueError, match=r"sample 0 is a dict of keys \['image', 'landmarks'\]; pass keys="):
        xn.datasets.stack_samples(faces)
    np.testing.assert_array_equal(xn.datasets.stack_samples(faces, keys=("image", "landmarks"))[0], x[:3])


def test_a_dataset_as_the_pairs_x_or_y_is_refused_before_numpy_reads_it_forever():
    """A Dataset object put where x or y goes, ``xn.train(model, (dataset, y))``: refused naming it and
    stack_samples (NumPy read one whose ``__getitem__`` never raises IndexError item after item, forever)."""

    class Endless:  # as a Dataset of one's own often is: __getitem__ takes any index
        read = 0

        def __len__(self):
            return 4

        def __getitem__(self, i):
            Endless.read += 1
            if Endless.read > 1000:  # where NumPy would go on forever
                raise RuntimeError("read item after item past its length")
            return np.ones(3), i % 2

    model = xn.Sequential(nn.Linear(3, 2))
    for data, name in (((Endless(), np.arange(4) % 2), "x"), ((np.ones((4, 3)), Endless()), "y")):
        with pytest.raises(TypeError, match=f"train data: {name} is Endless, a dataset of 4 samples .*stack_samples"):
            xn.train(model, data, loss="cross_entropy", optimizer="sgd", epochs=1, progress=False)


# --- PyTorch's tensor methods in a leaf layer of one's own -----------------------------------------------------------

class _Flatten(nn.Layer):
    """PyTorch's flatten as a porter writes it first: x (N, ...) -> (N, D), with ``x.view``."""

    def forward(self, x, train=True):
        self.shape = x.shape
        return x.view(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


class _Rows(nn.Layer):
    """The same with ``x.size(0)``."""

    def forward(self, x, train=True):
        return x.reshape(x.size(0), -1)

    def backward(self, dy):
        return dy


def test_tensor_methods_in_a_leaf_layer_of_ones_own_say_numpys_spelling_alone_or_in_a_model():
    """``x.view(n, -1)`` and ``x.size(0)`` in the forward of a layer of one's own gave NumPy's bare "Cannot interpret
    '-1' as a data type" and "'int' object is not callable" (a model's own forward had the hint); now the layer,
    its line and what to write, called alone (``layer(x)``, ``layer.forward(x)``) or in a Sequential."""
    x = np.ones((2, 3, 4), dtype=np.float32)
    for layer, said in ((_Flatten(), r"_Flatten\.forward: .*\(line \d+: return x\.view\(x\.shape\[0\], -1\)\): "
                                     r"NumPy's x\.view\(\.\.\.\) takes a dtype.*write x\.reshape\(shape\)"),
                        (_Rows(), r"_Rows\.forward: 'int' object is not callable \(line \d+: return "
                                  r"x\.reshape\(x\.size\(0\), -1\)\): .*write x\.shape for x\.size\(\)")):
        for call in (layer, layer.forward, xn.Sequential(nn.Linear(4, 4), layer)):
            with pytest.raises((TypeError, ValueError), match=said):
                call(x)


def test_del_model_layers_before_others_keeps_each_parameters_momentum_as_pytorchs():
    """``del model[0:2]`` after training renumbers the layers after it, as PyTorch's ('2.W' becomes '0.W'): the
    optimizer's state by name went to the layer that took the name (the removed layer's momentum on another layer of
    its shape) or started afresh, silently, where PyTorch's optimizer, holding the parameters themselves, goes on
    with each one's own. The next steps equal torch's in float64."""
    torch = _torch()
    x, y = _data()
    x = np.concatenate([x, x[:, :1]], axis=1)  # 4 features
    torch.manual_seed(0)
    tnn = torch.nn
    theirs = tnn.Sequential(tnn.Linear(4, 4), tnn.ReLU(), tnn.Linear(4, 4), tnn.ReLU(), tnn.Linear(4, 2)).double()
    ours = xn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    opt = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    cross_entropy = torch.nn.functional.cross_entropy
    _steps(ours, opt, x, y)
    _steps(theirs, topt, tx, ty, loss=cross_entropy)
    del ours[0:2], theirs[0:2]
    got = _steps(ours, opt, x, y)
    want = _steps(theirs, topt, tx, ty, loss=cross_entropy)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, array in xn.torch_state_dict(ours).items():
        np.testing.assert_allclose(array, theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("where", ["torch:cpu", "strict", "param groups"])
def test_del_model_layers_keeps_each_parameters_momentum_without_a_step_plan(where):
    """As above where the step keeps no plan of the model (arrays not NumPy's: PyTorch's, array-api-strict's; several
    param groups): the state follows each parameter to its new name from what the last step found, as PyTorch's
    optimizer holds the parameters themselves. Before, it stayed under the old names, taken by the layers that took
    them. The next steps equal torch's in float64."""
    torch = _torch()
    from conftest import _strict_device, library_device
    x, y = _data()
    x = np.concatenate([x, x[:, :1]], axis=1)
    torch.manual_seed(0)
    tnn = torch.nn
    theirs = tnn.Sequential(tnn.Sequential(tnn.Linear(4, 4), tnn.ReLU(), tnn.Linear(4, 4), tnn.ReLU()),
                            tnn.Linear(4, 2)).double()
    ours = xn.Sequential(xn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU()),
                         nn.Linear(4, 2)).to(dtype="float64")
    xn.load_torch_state_dict(ours, theirs.state_dict())
    if where == "param groups":
        opt = optim.SGD([{"params": ours[0].parameters()}, {"params": ours[1].parameters(), "lr": 0.05}], lr=0.1,
                        momentum=0.9)
        topt = torch.optim.SGD([{"params": theirs[0].parameters()}, {"params": theirs[1].parameters(), "lr": 0.05}],
                               lr=0.1, momentum=0.9)
    else:
        dev = library_device(where) if where == "torch:cpu" else _strict_device("device1")
        ours.to(dev)
        x = xn.to_device(x, dev)
        opt = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
        topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    tx, ty = torch.from_numpy(xn.to_numpy(x)), torch.from_numpy(y)
    y = xn.to_device(y, xn.backend.device_of(x))
    cross_entropy = torch.nn.functional.cross_entropy
    _steps(ours, opt, x, y)
    _steps(theirs, topt, tx, ty, loss=cross_entropy)
    del ours[0][0:2], theirs[0][0:2]
    got = _steps(ours, opt, x, y)
    want = _steps(theirs, topt, tx, ty, loss=cross_entropy)
    np.testing.assert_allclose(xn.to_numpy(got), want.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, array in xn.torch_state_dict(ours).items():
        np.testing.assert_allclose(array, theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
