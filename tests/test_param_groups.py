"""optimizer.param_groups as PyTorch's: the keys, live reads and checked writes, steps equal to torch.optim's."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import optim

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

# The settings of xpnet's own that a group holds beside PyTorch's keys (docs/from-pytorch.md says so).
XPNET_ONLY = {"weight_decay_on", "convention"}
PAIRS = [(optim.SGD, "SGD"), (optim.Adam, "Adam"), (optim.AdamW, "AdamW"), (optim.RMSprop, "RMSprop"),
         (optim.AdaGrad, "Adagrad"), (optim.Adadelta, "Adadelta"), (optim.NAdam, "NAdam"), (optim.RAdam, "RAdam"),
         (optim.Adamax, "Adamax"), (optim.LBFGS, "LBFGS")]


def _mlp():
    return xn.Sequential(xn.layers.Linear(4, 5), xn.layers.ReLU(), xn.layers.Linear(5, 3)).to(dtype="float64")


def _data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 4)), rng.standard_normal((8, 3))


def _grads(model, x, t):
    """The model's gradients at its parameters (MSE on one batch), by name."""
    loss = xn.losses.MeanSquaredError()
    loss.forward(model.forward(x), t)
    model.backward(loss.backward())
    return model.named_grads()


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=[p[1] for p in PAIRS])
def test_every_optimizers_group_has_pytorchs_keys(ours, theirs):
    """The keys of torch's param_groups[0] (PyTorch's defaults dict and 'params'), plus xpnet's own settings."""
    group = ours(_mlp(), lr=0.1).param_groups[0]
    reference = getattr(torch.optim, theirs)([torch.nn.Parameter(torch.zeros(2))], lr=0.1).param_groups[0]
    assert set(group) - XPNET_ONLY == set(reference)
    for key in set(reference) - {"params"} - set(ours().hyperparams()):  # no setting here: PyTorch's default
        assert group[key] == reference[key], key


def test_a_group_reads_and_writes_the_optimizers_hyperparameters():
    model = _mlp()
    opt = optim.Adam(model, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)
    (group,) = opt.param_groups
    assert group["lr"] == 0.01 and group["betas"] == (0.8, 0.99) and group["weight_decay"] == 0.1
    assert [id(p) for p in group["params"]] == [id(p) for p in model.named_params().values()]
    group["lr"], group["betas"], group["eps"] = 0.5, [0.7, 0.9], 1e-6
    assert (opt.lr, opt.betas, opt.eps) == (0.5, (0.7, 0.9), 1e-6)
    opt.lr = 0.25
    assert group["lr"] == 0.25 and opt.param_groups[0] is group
    assert dict(group)["amsgrad"] is False and "initial_lr" not in group


def test_writes_are_checked_as_the_constructor_checks():
    opt = optim.SGD(_mlp(), lr=0.1, momentum=0.9, nesterov=True)
    group = opt.param_groups[0]
    with pytest.raises(ValueError) as direct:
        opt.lr = -1
    with pytest.raises(ValueError) as through_group:
        group["lr"] = -1
    assert str(direct.value) == str(through_group.value) == "SGD: lr must be a finite number >= 0, got -1"
    with pytest.raises(ValueError, match=r"^SGD: momentum must be in \[0, 1\), got 1.5$"):
        group["momentum"] = 1.5
    with pytest.raises(ValueError, match=r"^SGD: nesterov=True needs a momentum > 0 and dampening=0"):
        group["momentum"] = 0.0
    with pytest.raises(ValueError, match=r"^SGD: param_groups\[0\]\['maximize'\] = True: only PyTorch's default "
                                         r"False is taken: it minimizes the loss \(negate the loss to maximize\)$"):
        group["maximize"] = True
    group["foreach"] = None  # PyTorch's default: taken, changes nothing
    with pytest.raises(KeyError, match=r"SGD: param_groups\[0\] has no key 'name'; its keys are 'params', 'lr'"):
        group["name"] = "head"
    with pytest.raises(KeyError, match="has no key 'betas'"):
        group["betas"]
    with pytest.raises(TypeError, match=r"SGD: param_groups\[0\]: the key 'lr' cannot be deleted"):
        del group["lr"]
    with pytest.raises(TypeError, match=r"SGD: param_groups\[0\]\['params'\] cannot be replaced"):
        group["params"] = []
    assert (opt.lr, opt.momentum, opt.nesterov) == (0.1, 0.9, True)  # nothing refused was set


def test_an_optimizer_without_its_model_has_a_group_without_params():
    opt = optim.SGD(0.1)
    assert list(opt.param_groups[0]["params"]) == [] and opt.param_groups[0]["lr"] == 0.1
    model = _mlp()
    x, t = _data()
    _grads(model, x, t)
    opt.step(model)  # binds it
    assert len(opt.param_groups[0]["params"]) == 4


def test_a_scheduler_sets_initial_lr():
    opt = optim.SGD(_mlp(), lr=0.1)
    xn.optim.lr_scheduler.StepLR(opt, step_size=2)
    assert opt.param_groups[0]["initial_lr"] == 0.1 and "initial_lr" in list(opt.param_groups[0])


@pytest.mark.parametrize("ours, theirs, settings", [
    (optim.SGD, "SGD", {"momentum": 0.9, "weight_decay": 1e-2}),
    (optim.Adam, "Adam", {"betas": (0.8, 0.99), "weight_decay": 1e-2}),
    (optim.AdamW, "AdamW", {}),
    (optim.RMSprop, "RMSprop", {"momentum": 0.5})], ids=["SGD", "Adam", "AdamW", "RMSprop"])
def test_setting_each_groups_lr_every_epoch_steps_as_pytorch(ours, theirs, settings):
    """pytorch/examples' imagenet adjust_learning_rate: for g in optimizer.param_groups: g['lr'] = lr."""
    model = _mlp()
    ref = [torch.tensor(np.array(p), requires_grad=True) for p in model.named_params().values()]
    opt = ours(model, lr=0.1, weight_decay_on="all", **settings)
    topt = getattr(torch.optim, theirs)(ref, lr=0.1, **settings)
    x, t = _data()
    for epoch in range(6):
        for o in (opt, topt):
            for group in o.param_groups:
                group["lr"] = 0.1 * 0.5 ** (epoch // 2)
        for _ in range(2):
            grads = _grads(model, x, t)
            for w, g in zip(ref, grads.values()):
                w.grad = torch.tensor(np.array(g))
            opt.step()
            topt.step()
    for p, w in zip(model.named_params().values(), ref):
        np.testing.assert_allclose(p, w.detach().numpy(), rtol=1e-12, atol=1e-15)
    assert opt.param_groups[0]["lr"] == topt.param_groups[0]["lr"] == 0.025
