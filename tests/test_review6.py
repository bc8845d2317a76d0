"""Review of the optimizer binding, xn.init's refusals and their messages as a PyTorch user and a book reader meet
them (review6)."""

import numpy as np
import pytest

import xpnet as xn


def test_xn_inits_array_makers_take_a_numpy_integer_size():
    """``xn.init.zeros(n)`` (or ``ones``) with ``n = t.max() + 1`` (a NumPy integer, as ``np.zeros(n)`` takes)
    was refused as "an array of shape ()" to fill in place: a NumPy integer has a shape and a dtype, as an array
    has."""
    n = np.arange(4).max()  # np.int64(3)
    assert xn.init.zeros(n).shape == xn.init.ones(n).shape == (3,)
    with pytest.raises(TypeError, match=r"got an array of shape \(\): .* write xn.init.zeros_\(w\)$"):
        xn.init.zeros(np.zeros(()))


def _mlp():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Linear(8, 3))


def test_a_subclass_of_sgd_or_adagrad_built_from_parameters_has_torchs_defaults_as_its_base():
    """A subclass of one's own (a step that logs) built as PyTorch's, ``LoggedSGD(model.parameters())``, took the
    book's lr 0.01 where SGD itself takes torch's 1e-3 (AdaGrad's eps: 1e-7 where AdaGrad's is 1e-10), silently:
    ``TORCH_DEFAULTS`` was read off the class itself only. A default the subclass writes itself stays its own."""
    class LoggedSGD(xn.optim.SGD):
        pass

    class LoggedAdaGrad(xn.optim.AdaGrad):
        pass

    class OwnLr(xn.optim.SGD):
        def __init__(self, lr=0.05, momentum=0.9, **kwargs):
            super().__init__(lr, momentum, **kwargs)

    class FixedLr(xn.optim.SGD):  # no lr argument at all: nothing of torch's to fill in
        def __init__(self, momentum=0.9):
            super().__init__(0.2, momentum)

    assert LoggedSGD(_mlp().parameters()).lr == xn.optim.SGD(_mlp().parameters()).lr == 1e-3
    assert LoggedSGD(_mlp()).lr == LoggedSGD().lr == 0.01  # the book's way: the book's
    assert LoggedAdaGrad([{"params": _mlp().parameters()}]).eps == xn.optim.AdaGrad(_mlp().parameters()).eps == 1e-10
    assert OwnLr(_mlp().parameters()).lr == 0.05
    assert FixedLr(_mlp().parameters()).lr == 0.2


def test_xn_optim_adagrad_says_which_eps_each_way_of_building_adagrad_takes():
    """``xn.optim.Adagrad`` (torch's spelling) said AdaGrad's eps is the book's 1e-7 and to pass eps=1e-10 for
    PyTorch's, while ``AdaGrad(model.parameters(), lr=0.01)``, a PyTorch script's line, has 1e-10 already: each
    way of building it is named with the eps it takes."""
    with pytest.raises(AttributeError) as raised:
        xn.optim.Adagrad  # noqa: B018
    said = str(raised.value)
    for built, eps in (("xn.optim.AdaGrad(model.parameters(), lr=0.01)", "1e-10"),
                       ("xn.optim.AdaGrad(lr=0.01)", "1e-7")):
        assert f"{built}, eps {eps}" in said, said
        model = _mlp()  # noqa: F841 - read by the line eval builds
        assert eval(built).eps == float(eps)


def test_a_subclass_passing_its_arguments_on_is_built_from_parameters_as_its_base():
    """``def __init__(self, *args, **kwargs): super().__init__(*args, **kwargs)`` (a subclass that adds a counter)
    built as PyTorch's took the book's weight decay, on weights only, and lr 0.01, silently (its signature names
    no ``weight_decay_on`` nor ``lr``), and ``MyAdaGrad(model.parameters(), 0.01)`` was refused as "the argument
    after params is args here ... (args=0.01 for xpnet's)". The arguments are read as the base reads them."""
    class MySGD(xn.optim.SGD):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.logged = 0

    class MyAdaGrad(xn.optim.AdaGrad):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    ours, base = MySGD(_mlp().parameters(), weight_decay=1e-4), xn.optim.SGD(_mlp().parameters(), weight_decay=1e-4)
    assert ours.hyperparams() == base.hyperparams() and (ours.lr, ours.weight_decay_on) == (1e-3, "all")
    assert MySGD(0.1, 0.9).hyperparams() == xn.optim.SGD(0.1, 0.9).hyperparams()  # the book's way: the book's
    assert MySGD(_mlp().parameters(), 0.1, weight_decay_on="weights").weight_decay_on == "weights"
    built = MyAdaGrad(_mlp().parameters(), 0.05)
    assert (built.lr, built.eps) == (0.05, 1e-10)
    with pytest.raises(TypeError, match=r"the argument after lr is eps here, where torch.optim's is lr_decay"):
        MyAdaGrad(_mlp().parameters(), 0.05, 1e-4)


def test_a_subclass_passing_its_arguments_on_takes_the_keywords_its_base_takes():
    """``Adamax(params, foreach=True)`` is taken (its constructor has torch's ``foreach``, one implementation here);
    a subclass passing ``**kwargs`` on refused it as a keyword xpnet keeps at PyTorch's default."""
    class MyAdamax(xn.optim.Adamax):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    assert MyAdamax(_mlp().parameters(), foreach=True).hyperparams() == \
        xn.optim.Adamax(_mlp().parameters(), foreach=True).hyperparams()
    with pytest.raises(ValueError, match="maximize=True: only PyTorch.s default False"):
        MyAdamax(_mlp().parameters(), maximize=True)


def test_every_hint_of_a_models_table_is_what_the_model_says():
    """Each entry of the table of PyTorch's model attributes (``layers.container``) is the AttributeError of
    ``model.<name>``: an entry for a name the model has (``buffers``, its dict of buffers, which says itself what
    to write when called) is never read."""
    from xpnet.layers import container

    class Net(xn.Model):
        def __init__(self):
            super().__init__()
            self.fc = xn.layers.Linear(2, 2)

    for name, hint in container._PYTORCH_NAMES.items():
        with pytest.raises(AttributeError) as raised:
            getattr(Net(), name)
        assert hint in str(raised.value), name


def test_a_sequential_given_pytorchs_layer_class_names_its_library():
    """``xn.Sequential(xn.layers.Linear(2, 2), nn.ReLU)`` (PyTorch's class, not called) said "item 1 is the class
    ReLU, not an xpnet layer", which reads as xpnet's ReLU refused; the class is named with its module, as a
    PyTorch module object is, with what to write."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    with pytest.raises(TypeError, match=r"^Sequential: item 1 is the class torch\.nn\.modules\.activation\.ReLU, not "
                                        r"an xpnet layer: a PyTorch module; build the model from xpnet's layers "
                                        r"\(xn\.layers\.ReLU\)$"):
        xn.Sequential(xn.layers.Linear(2, 2), torch.nn.ReLU)
    with pytest.raises(TypeError, match=r"^Sequential\.append: expected an xpnet layer, got the class ReLU: call it, "
                                        r"ReLU\(\.\.\.\)$"):
        xn.Sequential().append(xn.layers.ReLU)
