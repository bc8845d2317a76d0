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
        group["name"]
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


# -- several groups -------------------------------------------------------------------------------------------


class Net(xn.Model):
    """pytorch's fine-tuning example: a base and a classifier (and a middle no group may cover)."""

    def __init__(self):
        super().__init__()
        self.base = xn.Sequential(xn.layers.Linear(4, 6), xn.layers.ReLU())
        self.middle = xn.layers.Linear(6, 5)
        self.classifier = xn.layers.Linear(5, 3)

    def forward(self, x, train=True):
        return self.classifier(self.middle(self.base(x)))

    def backward(self, dy):
        return self.base.backward(self.middle.backward(self.classifier.backward(dy)))


def _net():
    xn.init.seed(0)
    return Net().to(dtype="float64")


def _leaves(node):
    return [torch.tensor(np.array(p), requires_grad=True) for p in node.named_params().values()]


def _torch_grads(model, leaves, x, t):
    """xpnet's gradients at the model's parameters, given to torch's copies (by named_params order)."""
    grads = _grads(model, x, t)
    for name, w in leaves.items():
        w.grad = torch.tensor(np.array(grads[name]))


@pytest.mark.parametrize("root", [True, False], ids=["step(model)", "step()"])
@pytest.mark.parametrize("ours, theirs, settings", [
    (optim.SGD, "SGD", {"momentum": 0.9}),
    (optim.Adam, "Adam", {"betas": (0.8, 0.99)}),
    (optim.AdamW, "AdamW", {})], ids=["SGD", "Adam", "AdamW"])
def test_two_groups_of_other_lr_and_weight_decay_step_as_pytorch(ours, theirs, settings, root):
    """PyTorch's docs example, with the groups' weight decay differing; the middle layer is in no group."""
    model = _net()
    middle = {k: np.array(v) for k, v in model.middle.named_params().items()}
    base, head = _leaves(model.base), _leaves(model.classifier)
    opt = ours([{"params": model.base.parameters()},
                {"params": model.classifier.parameters(), "lr": 1e-3, "weight_decay": 0.05}],
               lr=1e-2, weight_decay=0.01, weight_decay_on="all", **settings)
    topt = getattr(torch.optim, theirs)([{"params": base}, {"params": head, "lr": 1e-3, "weight_decay": 0.05}],
                                        lr=1e-2, weight_decay=0.01, **settings)
    leaves = {**{"base." + k: w for k, w in zip(model.base.named_params(), base)},
              **{"classifier." + k: w for k, w in zip(model.classifier.named_params(), head)}}
    x, t = _data()
    for _ in range(5):
        _torch_grads(model, leaves, x, t)
        opt.step(model) if root else opt.step()
        topt.step()
    for name, w in leaves.items():
        np.testing.assert_allclose(model.named_params()[name], w.detach().numpy(), rtol=1e-12, atol=1e-15)
    for k, v in model.middle.named_params().items():
        np.testing.assert_array_equal(v, middle[k])  # in no group: not updated, as PyTorch
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups] == [1e-2, 1e-3]
    assert opt.lr == 1e-2  # the first group's
    names = sorted(opt.state)
    assert names == (sorted(leaves) if root else sorted(f"param_groups.{0 if k.startswith('base') else 1}."
                                                        f"{k.split('.', 1)[1]}" for k in leaves))
    opt.step(model)  # binding a root renames the state to the model's names, and it goes on as PyTorch
    topt.step()
    assert sorted(opt.state) == sorted(leaves)
    for name, w in leaves.items():
        np.testing.assert_allclose(model.named_params()[name], w.detach().numpy(), rtol=1e-12, atol=1e-15)


def test_groups_are_checked_as_the_constructor_checks():
    model = _net()
    with pytest.raises(ValueError, match="^SGD: lr must be a finite number >= 0, got -1$"):
        optim.SGD([{"params": model.base.parameters()}, {"params": model.classifier, "lr": -1}], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD: param group 1: maximize=True: only PyTorch's default False"):
        optim.SGD([{"params": model.base}, {"params": model.classifier, "maximize": True}], lr=0.1)
    with pytest.raises(KeyError, match=r"SGD: param group 1 has the key 'betas', not one of SGD's"):
        optim.SGD([{"params": model.base}, {"params": model.classifier, "betas": (0.9, 0.99)}], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD: some parameters appear in more than one parameter group \(groups "
                                         r"0 and 1"):
        optim.SGD([{"params": model.parameters()}, {"params": model.classifier.parameters()}], lr=0.1)
    with pytest.raises(TypeError, match=r"SGD: param group 1 must be a dict with a 'params' key"):
        optim.SGD([{"params": model.base}, model.classifier], lr=0.1)
    with pytest.raises(TypeError, match=r"param group 0's 'params' is a ndarray; .* SGD\(model, lr=\.\.\., "
                                        r"weight_decay=wd\)"):
        optim.SGD([{"params": model.classifier.params["W"]}, {"params": model.base}], lr=0.1)
    with pytest.raises(ValueError, match=r"^LBFGS: LBFGS doesn't support per-parameter options"):
        optim.LBFGS([{"params": model.base}, {"params": model.classifier}])
    opt = optim.SGD([{"params": model.base}, {"params": model.classifier, "lr": 0.5}], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD has 2 param groups, each with its own lr: set them through "
                                         r"optimizer.param_groups"):
        opt.lr = 0.2
    opt.param_groups[0]["lr"] = 0.2
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.5] and opt.defaults["lr"] == 0.1
    with pytest.raises(ValueError, match=r"param_groups\[0\] updates a Sequential that is not inside the Sequential"):
        opt.step(xn.Sequential(xn.layers.Linear(2, 2)))


def test_one_group_is_the_optimizer_of_that_layer():
    model = _net()
    opt = optim.Adam([{"params": model.classifier.parameters(), "lr": 0.5}], lr=0.1)
    assert opt.lr == 0.5 and len(opt.param_groups) == 1 and opt.param_groups[0]["params"].model is model.classifier


def test_add_param_group_as_pytorch():
    """Fine-tuning that unfreezes a part later: SGD(base), then add_param_group(classifier) with its own lr."""
    model = _net()
    base, head = _leaves(model.base), _leaves(model.classifier)
    leaves = {**{"base." + k: w for k, w in zip(model.base.named_params(), base)},
              **{"classifier." + k: w for k, w in zip(model.classifier.named_params(), head)}}
    opt = optim.SGD(model.base.parameters(), lr=0.1, momentum=0.9, weight_decay_on="all")
    topt = torch.optim.SGD(base, lr=0.1, momentum=0.9)
    x, t = _data()
    for i in range(4):
        if i == 2:
            opt.add_param_group({"params": model.classifier.parameters(), "lr": 0.01})
            topt.add_param_group({"params": head, "lr": 0.01})
        _torch_grads(model, leaves, x, t)
        for w in head if i < 2 else ():
            w.grad = None
        opt.step()
        topt.step()
    for name, w in leaves.items():
        np.testing.assert_allclose(model.named_params()[name], w.detach().numpy(), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": model.classifier})
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        optim.LBFGS(model.base).add_param_group({"params": model.classifier})


def test_zero_grad_adds_the_backwards_of_every_group_and_state_dict_keeps_the_groups():
    model, twin = _net(), _net()
    x, t = _data()
    opts = [optim.Adam([{"params": m.base}, {"params": m.classifier, "lr": 0.5, "betas": (0.5, 0.9)}], lr=0.01)
            for m in (model, twin)]
    opts[0].zero_grad()
    _grads(model, x, t)
    _grads(model, x, t)  # added: twice the gradient
    once = _grads(twin, x, t)
    for k, g in model.named_grads().items():
        if not k.startswith("middle"):
            np.testing.assert_allclose(g, 2 * once[k], rtol=1e-12)
    opts[0].step()
    opts[1].step()
    saved = opts[0].state_dict()
    assert [g["lr"] for g in saved["param_groups"]] == [0.01, 0.5] and saved["param_groups"][1]["betas"] == (0.5, 0.9)
    fresh = optim.Adam([{"params": model.base}, {"params": model.classifier}], lr=0.3)
    fresh.load_state_dict(saved)
    assert [(g["lr"], g["betas"]) for g in fresh.param_groups] == [(0.01, (0.9, 0.999)), (0.5, (0.5, 0.9))]
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: the state is of 2 param group\(s\), this optimizer "
                                         r"has 1"):
        optim.Adam(model, lr=0.3).load_state_dict(saved)


def test_a_captured_step_is_refused_with_several_groups():
    from xpnet.training import graph
    model = _net()
    opt = optim.SGD([{"params": model.base}, {"params": model.classifier, "lr": 0.5}], lr=0.1)
    why = graph.obstacle(model, xn.losses.MeanSquaredError(), opt, None, None)
    assert why.startswith("the optimizer has 2 param groups, and a captured step reads one learning rate")


class _HalveEachGroupsLr(xn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs):
        for group in self.state.optimizer.param_groups:
            group["lr"] *= 0.5


def test_train_steps_the_groups_and_a_resumed_run_keeps_their_lrs(tmp_path):
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((32, 4)), rng.standard_normal((32, 3))
    fit = dict(loss=xn.losses.MeanSquaredError(), batch_size=8, seed=3, progress=False)

    def run(epochs, **kwargs):
        model = _net()
        middle = {k: np.array(v) for k, v in model.middle.named_params().items()}
        opt = optim.Adam([{"params": model.base.parameters()}, {"params": model.classifier.parameters(), "lr": 0.02}],
                         lr=0.01)
        xn.train(model, (x, t), optimizer=opt, epochs=epochs, **fit, **kwargs)
        for k, v in model.middle.named_params().items():
            np.testing.assert_array_equal(v, middle[k])  # in no group
        return model, opt

    straight, straight_opt = run(4, callbacks=[_HalveEachGroupsLr()])
    assert [g["lr"] for g in straight_opt.param_groups] == [0.01 / 16, 0.02 / 16]
    path = tmp_path / "run.npz"
    run(2, callbacks=[_HalveEachGroupsLr(), xn.callbacks.ModelCheckpoint(path, full=True)])
    with pytest.warns(UserWarning, match=r"the optimizer hyperparameters saved in .* \(lr 0.01 -> 0.0025, "
                                         r"param_groups\[1\] lr 0.02 -> 0.005\)"):
        resumed, resumed_opt = run(4, callbacks=[_HalveEachGroupsLr()], resume_from=path)
    assert [g["lr"] for g in resumed_opt.param_groups] == [0.01 / 16, 0.02 / 16]
    for k, v in straight.state().items():
        np.testing.assert_array_equal(resumed.state()[k], v, err_msg=k)
    model = _net()
    with pytest.raises(ValueError, match=r"holds the state of an optimizer of 2 param group\(s\), the Adam passed to "
                                         r"train has 1"):
        xn.train(model, (x, t), optimizer=optim.Adam(model, lr=0.01), epochs=4, resume_from=path, **fit)


def test_learning_rate_schedule_sets_each_group_as_pytorchs_lambda_lr_and_history_logs_each(tmp_path):
    """schedule(i) is the first group's lr, the others keep their ratio to it: PyTorch's LambdaLR with the factor
    schedule(i) / the first group's initial lr, stepped per epoch. Each epoch's log has ``lrs`` beside ``lr``, and
    a resumed run (the initial lrs kept by the checkpoint) goes on with the uninterrupted run's lrs."""
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((16, 4)), rng.standard_normal((16, 3))
    schedule = xn.callbacks.cosine(0.1, 4, min_lr=0.001)

    def run(epochs, *callbacks, **kwargs):
        model = _net()
        opt = optim.Adam([{"params": model.base}, {"params": model.classifier, "lr": 0.02}], lr=0.01)
        return xn.train(model, (x, t), loss=xn.losses.MeanSquaredError(), optimizer=opt, epochs=epochs, batch_size=8,
                        progress=False, callbacks=[xn.callbacks.LearningRateSchedule(schedule), *callbacks], **kwargs)

    history = run(4)
    params = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in range(2)]
    topt = torch.optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.01)
    tsched = torch.optim.lr_scheduler.LambdaLR(topt, lambda i: schedule(i) / 0.01)
    theirs = []
    for _ in range(4):
        theirs.append([g["lr"] for g in topt.param_groups])
        topt.step()
        tsched.step()
    np.testing.assert_allclose([e["lrs"] for e in history.epochs], theirs, rtol=1e-14, atol=0)
    assert [e["lr"] for e in history.epochs] == [e["lrs"][0] for e in history.epochs] == [schedule(i) for i in range(4)]
    path = tmp_path / "run.npz"
    run(2, xn.callbacks.ModelCheckpoint(path, full=True))
    resumed = run(4, resume_from=path)
    assert [e["lrs"] for e in resumed.epochs] == [e["lrs"] for e in history.epochs]
    model = _net()
    opt = optim.SGD([{"params": model.base, "lr": 0.0}, {"params": model.classifier}], lr=0.1)
    with pytest.raises(ValueError, match=r"LearningRateSchedule: the first of the 2 param groups has an initial lr "
                                         r"of 0.*LambdaLR\(optimizer, \[f0, f1, ...\]\)"):
        xn.train(model, (x, t), loss=xn.losses.MeanSquaredError(), optimizer=opt, epochs=1, batch_size=8,
                 progress=False, callbacks=[xn.callbacks.LearningRateSchedule(schedule)])


def test_the_ranks_compare_every_groups_hyperparameters():
    """What xn.train(comm=...) compares across ranks (tests/mpi_scripts/agree.py runs it): the groups' count and
    each group's settings, not only the first's."""
    from xpnet.distributed._checks import describe_settings, differences

    def described(head_lr, **more):
        model = _net()
        groups = [{"params": model.base}, {"params": model.classifier, "lr": head_lr, **more}]
        return describe_settings(optim.SGD(groups, lr=0.1, momentum=0.9))

    assert differences("o", [described(0.02), described(0.02)]) == []
    assert differences("o", [described(0.02), described(0.05, momentum=0.5)]) == \
        ["o across ranks: param_groups[1] lr rank 0: 0.02, rank 1: 0.05; param_groups[1] momentum rank 0: 0.9, "
         "rank 1: 0.5"]
    one = optim.SGD(_net(), lr=0.1, momentum=0.9, weight_decay_on="all")  # as groups, PyTorch's form, default to
    assert differences("o", [described(0.1), describe_settings(one)])[0] \
        .startswith("o across ranks: param groups rank 0: 2, rank 1: 1")


def test_the_nan_guard_names_each_groups_lr():
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((16, 4)), rng.standard_normal((16, 3))
    xn.init.seed(0)
    model = Net()  # float32: 1e300 * a gradient overflows
    opt = optim.SGD([{"params": model.base}, {"params": model.classifier, "lr": 1e300}], lr=0.01)
    with pytest.raises(xn.XpnetTrainingError, match=r"made parameter 'classifier.[Wb]' non-finite.*\(SGD, "
                                                    r"lrs=\[0.01, 1e\+300\]\)"):
        xn.train(model, (x, t), loss=xn.losses.MeanSquaredError(), optimizer=opt, epochs=1, batch_size=16,
                 progress=False)  # one step: the end of the epoch finds the weights it made


# -- keys of one's own ------------------------------------------------------------------------------------------

_OWN = ("name", "tags", "warmup_epochs")


def _own(group):
    return {k: group[k] for k in _OWN if k in group}


def test_keys_of_ones_own_are_kept_read_set_and_saved_as_pytorchs():
    """Hugging Face style groups, {'params': ..., 'name': ...}: the keys are read, set, added, deleted, and carried
    by state_dict() and load_state_dict() as torch.optim keeps them (the saved groups replace the loaded one's)."""
    model = _net()
    base, middle, head = _leaves(model.base), _leaves(model.middle), _leaves(model.classifier)
    opt = optim.SGD([{"params": model.base.parameters(), "name": "encoder"},
                     {"params": model.classifier.parameters(), "lr": 1e-2, "name": "head", "tags": ["new"]}], lr=1e-3)
    topt = torch.optim.SGD([{"params": base, "name": "encoder"},
                            {"params": head, "lr": 1e-2, "name": "head", "tags": ["new"]}], lr=1e-3)
    assert [_own(g) for g in opt.param_groups] == [_own(g) for g in topt.param_groups]
    for o, params in ((opt, model.middle.parameters()), (topt, middle)):
        o.param_groups[1]["name"] = "classifier"
        o.param_groups[0]["warmup_epochs"] = 2
        o.add_param_group({"params": params, "name": "middle"})
        del o.param_groups[1]["tags"]
    assert [_own(g) for g in opt.param_groups] == [_own(g) for g in topt.param_groups] == \
        [{"name": "encoder", "warmup_epochs": 2}, {"name": "classifier"}, {"name": "middle"}]
    assert opt.param_groups[1]["lr"] == 1e-2 and "tags" not in opt.param_groups[1]
    saved, tsaved = opt.state_dict(), topt.state_dict()
    assert [_own(g) for g in saved["param_groups"]] == [_own(g) for g in tsaved["param_groups"]]

    fresh = optim.SGD([{"params": model.base, "name": "old"}, {"params": model.classifier, "tags": ["x"]},
                       {"params": model.middle}], lr=0.5)
    tfresh = torch.optim.SGD([{"params": base, "name": "old"}, {"params": head, "tags": ["x"]}, {"params": middle}],
                             lr=0.5)
    fresh.load_state_dict(saved)
    tfresh.load_state_dict(tsaved)
    saved["param_groups"][0]["name"] = "changed after"
    tsaved["param_groups"][0]["name"] = "changed after"
    assert [_own(g) for g in fresh.param_groups] == [_own(g) for g in tfresh.param_groups] == \
        [{"name": "encoder", "warmup_epochs": 2}, {"name": "classifier"}, {"name": "middle"}]
    assert [g["lr"] for g in fresh.param_groups] == [1e-3, 1e-2, 1e-3]

    one = optim.Adam([{"params": model, "name": "all"}], lr=0.1)  # one group: its state_dict carries the key too
    again = optim.Adam(model, lr=0.1)
    again.load_state_dict(one.state_dict())
    assert again.param_groups[0]["name"] == "all"
    again.load_state_dict(optim.Adam(model, lr=0.1).state_dict())
    assert "name" not in again.param_groups[0]
    lbfgs = optim.LBFGS(model)
    lbfgs.load_state_dict(optim.LBFGS([{"params": model, "name": "all"}]).state_dict())
    assert lbfgs.param_groups[0]["name"] == "all"


@pytest.mark.parametrize("ours", [optim.SGD, optim.Adam])
@pytest.mark.parametrize("groups", [1, 2])
def test_keys_of_ones_own_leave_the_steps_as_they_are(ours, groups):
    """timm's 'lr_scale' is read by its own scheduler: the optimizer's step ignores it, as torch.optim's."""
    x, t = _data()
    states = []
    for own in ({}, {"name": "block", "lr_scale": 10.0, "tags": ["a", "b"]}):
        model = _net()
        parts = [{"params": model, **own}] if groups == 1 else \
            [{"params": model.base, **own}, {"params": model.classifier, "lr": 0.05, **own}]
        opt = ours(parts, lr=0.01, momentum=0.9) if ours is optim.SGD else ours(parts, lr=0.01)
        for _ in range(3):
            _grads(model, x, t)
            opt.step(model)
        states.append(model.state())
    for k, v in states[0].items():
        np.testing.assert_array_equal(states[1][k], v, err_msg=k)


def test_a_misspelt_hyperparameter_or_another_optimizers_is_refused():
    """PyTorch keeps {'weight_decy': 0.1} and trains without the decay; xpnet refuses it, naming the key meant."""
    model = _net()
    with pytest.raises(KeyError, match=r"SGD: param group 1 has the key 'weight_decy', not one of SGD's; did you mean "
                                       r"'weight_decay'\? \(keys of your own, as PyTorch's 'name', are kept as given"):
        optim.SGD([{"params": model.base}, {"params": model.classifier, "weight_decy": 0.1}], lr=0.1)
    for key, meant in [("learning_rate", "lr"), ("LR", "lr"), ("momentun", "momentum"), ("nesterove", "nesterov"),
                       ("inital_lr", "initial_lr"), ("maximise", "maximize")]:
        with pytest.raises(KeyError, match=f"has the key '{key}', not one of SGD's; did you mean '{meant}'"):
            optim.SGD([{"params": model, key: 0.5}], lr=0.1)
    opt = optim.Adam(model.base, lr=0.1)
    with pytest.raises(KeyError, match=r"Adam: param group 1 has the key 'beta', not one of Adam's; did you mean "
                                       r"'betas'\?"):
        opt.add_param_group({"params": model.classifier, "beta": (0.5, 0.9)})
    with pytest.raises(KeyError, match=r"Adam: param_groups\[0\] has the key 'epsilon', not one of Adam's; did you "
                                       r"mean 'eps'\?"):
        opt.param_groups[0]["epsilon"] = 1e-6
    with pytest.raises(KeyError, match=r"Adam: param_groups\[0\] has the key 'momentum', not one of Adam's \('lr', "
                                       r"'weight_decay', 'weight_decay_on', 'betas', 'eps', 'convention', "
                                       r"'amsgrad'\); it is a "
                                       r"hyperparameter of SGD, Momentum, Nesterov, RMSprop: build that optimizer"):
        opt.param_groups[0]["momentum"] = 0.9
    with pytest.raises(KeyError, match=r"SGD: param group 0 has the key 'amsgrad', not one of SGD's .*; it is a "
                                       r"hyperparameter of Adam, AdamW: build"):
        optim.SGD([{"params": model, "amsgrad": False}], lr=0.1)
    with pytest.raises(TypeError, match=r"SGD: param group 0 has the key 0 of type int; the keys of a group are "
                                        r"strings"):
        optim.SGD([{"params": model, 0: "x"}], lr=0.1)
    assert set(opt.param_groups[0]) == set(optim.Adam(model, lr=0.1).param_groups[0])  # nothing refused was kept
    kept = optim.SGD([{"params": model, "weight_decay_mult": 0.0, "base_lr": 0.1, "param_names": ["W"]}], lr=0.1)
    assert _own(kept.param_groups[0]) == {} and kept.param_groups[0]["base_lr"] == 0.1


@pytest.mark.parametrize("groups", [1, 2])
def test_a_resumed_run_gets_the_groups_own_keys_back(tmp_path, groups):
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((16, 4)), rng.standard_normal((16, 3))
    fit = dict(loss=xn.losses.MeanSquaredError(), batch_size=8, seed=3, progress=False)
    own = [{"name": "encoder", "tags": ["frozen", "sweep"]}, {"name": "head", "warmup_epochs": 3}][:groups]

    def build(model, keys):
        parts = [{"params": model}] if groups == 1 else [{"params": model.base}, {"params": model.classifier}]
        return optim.Adam([{**part, **more} for part, more in zip(parts, keys)], lr=0.01)

    path = tmp_path / "run.npz"
    model = _net()
    xn.train(model, (x, t), optimizer=build(model, own), epochs=1, callbacks=[
        xn.callbacks.ModelCheckpoint(path, full=True)], **fit)
    model = _net()
    opt = build(model, [{"name": "other"}, {}][:groups])
    xn.train(model, (x, t), optimizer=opt, epochs=2, resume_from=path, **fit)
    assert [_own(g) for g in opt.param_groups] == own

    model = _net()
    bad = tmp_path / "bad.npz"
    opt = build(model, [{}] * (groups - 1) + [{"tag": {"logger": object()}}])
    with pytest.raises(TypeError, match=rf"ModelCheckpoint\(full=True\): optimizer.param_groups\[{groups - 1}\].tag."
                                        r"logger is a object; a full checkpoint keeps .* the keys of your own in the "
                                        r"optimizer's param groups as JSON"):
        xn.train(model, (x, t), optimizer=opt, epochs=1, callbacks=[xn.callbacks.ModelCheckpoint(bad, full=True)],
                 **fit)
    assert not bad.exists()


def test_the_ranks_agree_whatever_the_groups_own_keys():
    """A rank-varying 'name' is no hazard: what xn.train(comm=...) compares leaves the own keys out."""
    from xpnet.distributed._checks import describe_settings, differences

    def described(rank):
        model = _net()
        groups = [{"params": model.base, "name": f"rank {rank}"}, {"params": model.classifier, "lr": 0.02}]
        return describe_settings(optim.SGD(groups, lr=0.1))

    assert differences("o", [described(0), described(1)]) == []
