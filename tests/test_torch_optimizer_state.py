"""A PyTorch run resumed in xpnet with its optimizer state: torch trains k steps, both state dicts are saved, the xpnet
twin loads the weights (``xn.load_torch_state_dict``) and the optimizer state (``xn.load_torch_optimizer_state_dict``),
and both go on m steps: the weights stay torch's, in float64. And what is refused, naming why."""

import io

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn
from xpnet import optim

from torch_optim_checks import (float64_default,  # noqa: F401 - a fixture
                               same_weights, torch_closure, torch_model_steps, xpnet_closure, xpnet_model_steps)

pytestmark = pytest.mark.usefixtures("float64_default")


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _mlp(torch):
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    return xn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype="float64"), tmodel


def _cnn(torch):
    """Conv2d, BatchNorm (running statistics are buffers, not parameters), pooling, a Linear. The Conv2d has no bias:
    before a BatchNorm its gradient is 0 but for rounding, which Adam scales up to a step in either library."""
    torch.manual_seed(0)
    t = torch.nn
    tmodel = t.Sequential(t.Conv2d(2, 3, 3, padding=1, bias=False), t.BatchNorm2d(3), t.ReLU(), t.MaxPool2d(2),
                          t.Flatten(), t.Linear(12, 3)).double()
    ours = xn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm(3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(12, 3)).to(dtype="float64")
    return ours, tmodel


def _lstm(torch, convention="pytorch"):
    """An LSTM and a Linear on each step: PyTorch's names '0.weight_ih_l0', ..., '1.weight' as xn.Sequential's."""
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("0", torch.nn.LSTM(3, 4, batch_first=True))
            self.add_module("1", torch.nn.Linear(4, 3))

        def forward(self, x):
            return self._modules["1"](self._modules["0"](x)[0])

    ours = xn.Sequential(nn.LSTM(3, 4, convention=convention), nn.Linear(4, 3)).to(dtype="float64")
    return ours, Net().double()


def _tied_transformer(torch):
    """An Embedding, a TransformerEncoderLayer (MultiheadAttention's in_proj before its out_proj, two Linears, two
    LayerNorms) and an output layer tied to the embedding: torch's indices count the tied weight once, at the
    embedding."""
    torch.manual_seed(0)
    t = torch.nn
    embedding, decoder = t.Embedding(7, 4), t.Linear(4, 7)
    decoder.weight = embedding.weight
    tmodel = t.Sequential(embedding, t.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True),
                          decoder).double()
    ours = nn.Embedding(7, 4)
    return xn.Sequential(ours, nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0), nn.TiedLinear(ours)).to(
        dtype="float64"), tmodel


def _bilstm(torch):
    """A stacked bidirectional LSTM with a projection (PyTorch's two biases): torch's indices per level and direction,
    weight_hr last of each."""
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("0", torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, batch_first=True))
            self.add_module("1", torch.nn.Linear(4, 3))

        def forward(self, x):
            return self._modules["1"](self._modules["0"](x)[0])

    ours = xn.Sequential(nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, convention="pytorch"),
                         nn.Linear(4, 3))
    return ours.to(dtype="float64"), Net().double()


def _batches(kind, n):
    rng = np.random.default_rng(1)
    shape = {"mlp": (5, 4), "cnn": (4, 2, 4, 4), "lstm": (2, 5, 3), "bilstm": (2, 5, 3), "tied": (2, 5)}[kind]
    labels = shape[:1] if kind in ("mlp", "cnn") else shape[:2]
    if kind == "tied":
        return [(rng.integers(0, 7, shape), rng.integers(0, 7, labels)) for _ in range(n)]
    return [(rng.standard_normal(shape), rng.integers(0, 3, labels)) for _ in range(n)]


def _saved(torch, tmodel, topt):
    """Both state dicts through a file of torch.save, as a checkpoint is read back: NumPy arrays, no tensors."""
    buffer = io.BytesIO()
    torch.save({"model_state_dict": tmodel.state_dict(), "optimizer_state_dict": topt.state_dict()}, buffer)
    buffer.seek(0)
    return xn.read_torch_file(buffer)


def _resume(torch, kind, make_topt, make_ours, k=3, m=4, after_first=None):
    """torch trains k steps (``after_first(topt)`` after the first); the xpnet twin loads the checkpoint and both go
    on m steps."""
    ours, tmodel = {"mlp": _mlp, "cnn": _cnn, "lstm": _lstm, "bilstm": _bilstm, "tied": _tied_transformer}[kind](torch)
    batches = _batches(kind, k + m)
    topt = make_topt(tmodel)
    torch_model_steps(torch, tmodel, topt, batches[:1])
    if after_first is not None:
        after_first(topt)
    torch_model_steps(torch, tmodel, topt, batches[1:k])
    checkpoint = _saved(torch, tmodel, topt)
    xn.load_torch_state_dict(ours, checkpoint["model_state_dict"])
    opt = make_ours(ours)
    xn.load_torch_optimizer_state_dict(opt, ours, checkpoint["optimizer_state_dict"])
    torch_model_steps(torch, tmodel, topt, batches[k:])
    xpnet_model_steps(ours, opt, batches[k:])
    same_weights(ours, tmodel)
    return ours, opt


# torch.optim's optimizer and its xpnet twin, built with xpnet's defaults: the hyperparameters come from the dict
TWINS = {
    "sgd-momentum-dampening-decay": (lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.2,
                                                              weight_decay=0.01), optim.SGD),
    "sgd-nesterov": (lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01), optim.SGD),
    "nesterov": (lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True), optim.Nesterov),
    "momentum-book-decay": (lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01), optim.Momentum),
    "nesterov-book": (lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True),
                      lambda p: optim.Nesterov(p, convention="book")),
    "adam-amsgrad-decay": (lambda t, p: t.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.01),
                           optim.Adam),
    "adamw": (lambda t, p: t.optim.AdamW(p, lr=0.05, weight_decay=0.1), optim.AdamW),
    "rmsprop-centered-momentum": (lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, centered=True,
                                                               weight_decay=0.01), optim.RMSprop),
    "adagrad-decay": (lambda t, p: t.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.1, eps=1e-10,
                                                   weight_decay=0.01), optim.AdaGrad),
    "nadam-decay": (lambda t, p: t.optim.NAdam(p, lr=0.05, momentum_decay=0.01, weight_decay=0.01), optim.NAdam),
    "radam": (lambda t, p: t.optim.RAdam(p, lr=0.05, decoupled_weight_decay=True, weight_decay=0.1), optim.RAdam),
    "adamax-decay": (lambda t, p: t.optim.Adamax(p, lr=0.05, weight_decay=0.01), optim.Adamax),
    "adadelta-decay": (lambda t, p: t.optim.Adadelta(p, lr=0.5, rho=0.8, weight_decay=0.01), optim.Adadelta),
}


@pytest.mark.parametrize("name", list(TWINS))
def test_an_mlp_resumes_with_each_torch_optimizers_state_as_torch_goes_on(name):
    torch = _torch()
    make_topt, cls = TWINS[name]
    ours, opt = _resume(torch, "mlp", lambda tm: make_topt(torch, tm.parameters()), lambda m: cls(m.parameters()))
    assert opt.param_groups[0]["weight_decay_on"] == "all"  # PyTorch's weight decay, on biases too


def test_hyperparameters_torch_holds_as_tensors_and_a_schedulers_keys_load():
    """torch.optim takes ``lr`` and Adam's ``betas`` as tensors (0-d: NumPy 0-d arrays once read from a file);
    OneCycleLR then keeps ``lr`` a tensor, sets ``betas[0]`` a float, and adds its keys (``initial_lr``, ``max_lr``...)
    to the group. The tensors load as the numbers they hold, the scheduler's keys as they are."""
    torch = _torch()

    def scheduled(tm):
        topt = torch.optim.Adam(tm.parameters(), lr=torch.tensor(0.05), betas=(torch.tensor(0.8), torch.tensor(0.99)))
        torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.1, total_steps=10)
        return topt

    _, opt = _resume(torch, "mlp", scheduled, lambda m: optim.Adam(m.parameters()))  # through a file: 0-d arrays
    group = opt.param_groups[0]
    assert {type(group[k]) for k in ("lr", "initial_lr", "max_lr", "base_momentum")} == {float}
    assert {type(b) for b in group["betas"]} == {float}
    ours, tmodel = _mlp(torch)
    topt = scheduled(tmodel)
    torch_model_steps(torch, tmodel, topt, _batches("mlp", 1))
    opt = optim.Adam(ours.parameters())
    xn.load_torch_optimizer_state_dict(opt, ours, topt.state_dict())  # torch tensors
    theirs, group = topt.param_groups[0], opt.param_groups[0]
    assert group["lr"] == float(theirs["lr"]) and group["betas"] == tuple(float(b) for b in theirs["betas"])
    assert (group["initial_lr"], group["max_lr"]) == (theirs["initial_lr"], theirs["max_lr"])


def test_a_dict_of_an_older_torch_without_decoupled_weight_decay_steps_as_torch_reads_it():
    """torch before 2.x saved RAdam's and NAdam's groups without ``decoupled_weight_decay``, which torch reads as False
    (their ``__setstate__``): so does the load, whatever the xpnet optimizer was built with."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    batches = _batches("mlp", 5)
    topt = torch.optim.RAdam(tmodel.parameters(), lr=0.05, weight_decay=0.1)
    torch_model_steps(torch, tmodel, topt, batches[:2])
    checkpoint = _saved(torch, tmodel, topt)
    del checkpoint["optimizer_state_dict"]["param_groups"][0]["decoupled_weight_decay"]
    xn.load_torch_state_dict(ours, checkpoint["model_state_dict"])
    opt = optim.RAdam(ours.parameters(), decoupled_weight_decay=True)
    xn.load_torch_optimizer_state_dict(opt, ours, checkpoint["optimizer_state_dict"])
    assert opt.param_groups[0]["decoupled_weight_decay"] is False
    torch_model_steps(torch, tmodel, topt, batches[2:])
    xpnet_model_steps(ours, opt, batches[2:])
    same_weights(ours, tmodel)


def test_a_dict_of_a_fused_capturable_or_differentiable_torch_optimizer_loads_as_any():
    """How torch computes, not what: under fused=True (and capturable=True, on the parameters' device) torch 2.13 keeps
    ``step`` a float32 0-d tensor, and under differentiable=True state may require grad; the dict loads, and the run
    goes on as torch's fused one. (CPU torch steps neither capturable nor differentiable: their flags are set in the
    fused run's dict, its state made to require grad.)"""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    batches = _batches("mlp", 5)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.05, fused=True)
    torch_model_steps(torch, tmodel, topt, batches[:2])
    sd = topt.state_dict()
    assert sd["state"][0]["step"].dtype == torch.float32
    sd["param_groups"][0].update(capturable=True, differentiable=True)
    sd["state"] = {i: {k: v.clone().requires_grad_(True) for k, v in s.items()} for i, s in sd["state"].items()}
    xn.load_torch_state_dict(ours, tmodel.state_dict())
    opt = optim.Adam(ours.parameters())
    xn.load_torch_optimizer_state_dict(opt, ours, sd)
    assert opt.t == 2
    torch_model_steps(torch, tmodel, topt, batches[2:])
    xpnet_model_steps(ours, opt, batches[2:])
    same_weights(ours, tmodel)


def test_nadams_mu_product_comes_with_the_state_where_beta1_moved():
    """NAdam's product of mu holds each step's beta1 (OneCycleLR's cycle_momentum moves it): not rebuilt from the
    current beta1, but taken from torch's state."""
    torch = _torch()

    def beta1_moved(topt):
        topt.param_groups[0]["betas"] = (0.6, 0.999)

    _resume(torch, "mlp", lambda tm: torch.optim.NAdam(tm.parameters(), lr=0.05, betas=(0.9, 0.999)),
            lambda m: optim.NAdam(m.parameters()), after_first=beta1_moved)


def test_a_layer_frozen_for_torchs_first_step_goes_on_with_its_own_step_count():
    """torch's step is per parameter: a layer frozen at the first step is a step behind in Adam's bias correction."""
    torch = _torch()

    def first_frozen(tm):
        tm[0].requires_grad_(False)
        return torch.optim.Adam(tm.parameters(), lr=0.05)

    def thawed(topt):
        for p in topt.param_groups[0]["params"]:
            p.requires_grad_(True)

    _, opt = _resume(torch, "mlp", first_frozen, lambda m: optim.Adam(m.parameters()), after_first=thawed)
    assert opt.t - opt.skipped.get("0.W", 0) == 6 and opt.t - opt.skipped.get("2.W", 0) == 7


@pytest.mark.parametrize("line_search_fn, fine_tuning", [(None, False), ("strong_wolfe", False), (None, True)])
def test_lbfgs_resumes_with_its_history_reordered_into_xpnets_flat_vector(line_search_fn, fine_tuning):
    """torch.optim.LBFGS's state is flat vectors of every parameter in torch's order and layouts (a Linear's (out, in)
    weight row by row): reordered into xpnet's flat vector ((in, out) W), the history goes on as torch's. Given only
    the trainable parameters (a frozen first layer), its vectors are of those only."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    x, y = _batches("mlp", 1)[0]
    if fine_tuning:
        tmodel[0].requires_grad_(False)
    topt = torch.optim.LBFGS([p for p in tmodel.parameters() if p.requires_grad], lr=0.5, max_iter=3, history_size=4,
                             line_search_fn=line_search_fn)
    tclosure = torch_closure(torch, tmodel, topt, x, y)
    for _ in range(2):
        topt.step(tclosure)
    checkpoint = _saved(torch, tmodel, topt)
    xn.load_torch_state_dict(ours, checkpoint["model_state_dict"])
    ours[0].requires_grad_(not fine_tuning)
    opt = optim.LBFGS(ours.parameters())
    xn.load_torch_optimizer_state_dict(opt, ours, checkpoint["optimizer_state_dict"])
    assert (opt.max_iter, opt.history_size, opt.line_search_fn) == (3, 4, line_search_fn)
    closure = xpnet_closure(ours, opt, x, y)
    for _ in range(2):
        topt.step(tclosure)
        opt.step(closure)
    same_weights(ours, tmodel)


def test_lbfgs_history_of_a_layer_that_trained_in_torch_and_is_frozen_here_is_refused_naming_it():
    """torch's LBFGS trained every layer; the xpnet model's first is frozen. xpnet's flat vector is of the parameters
    that train, so that layer's part of torch's history (nonzero: it stepped) was dropped silently, and the steps
    went on otherwise than torch's. Refused, naming the parameters; a layer frozen in torch as well (zeros there)
    loads, as the test above shows."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    x, y = _batches("mlp", 1)[0]
    topt = torch.optim.LBFGS(tmodel.parameters(), lr=0.5, max_iter=3)
    topt.step(torch_closure(torch, tmodel, topt, x, y))
    checkpoint = _saved(torch, tmodel, topt)
    xn.load_torch_state_dict(ours, checkpoint["model_state_dict"])
    ours[0].requires_grad_(False)
    opt = optim.LBFGS(ours.parameters())
    with pytest.raises(ValueError, match=r"torch\.optim\.LBFGS's history has nonzero parts for 0\.weight, 0\.bias "
                                         r"\(they stepped in torch\), where xpnet's 0\.W, 0\.b are frozen: .*"
                                         r"requires_grad_\(True\)"):
        xn.load_torch_optimizer_state_dict(opt, ours, checkpoint["optimizer_state_dict"])
    assert opt.state == {}


def test_a_cnn_with_batchnorm_resumes_sgd_and_adam_as_torchs():
    torch = _torch()
    _resume(torch, "cnn", lambda tm: torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01),
            lambda m: optim.SGD(m.parameters()))
    _resume(torch, "cnn", lambda tm: torch.optim.Adam(tm.parameters(), lr=0.01), lambda m: optim.Adam(m.parameters()),
            k=2, m=3)


def test_an_lstm_with_pytorchs_two_biases_resumes_as_torchs():
    torch = _torch()
    _resume(torch, "lstm", lambda tm: torch.optim.Adam(tm.parameters(), lr=0.01, weight_decay=0.01),
            lambda m: optim.Adam(m.parameters()))


@pytest.mark.parametrize("kind", ["tied", "bilstm"])
def test_attention_a_tied_output_layer_and_a_stacked_bidirectional_lstm_resume_as_torchs(kind):
    """The index order of torch.optim for the layers whose ``model.parameters()`` order is the least obvious, held by
    the run going on as torch's (a state paired with the wrong parameter of the same shape would not)."""
    torch = _torch()
    _resume(torch, kind, lambda tm: torch.optim.Adam(tm.parameters(), lr=0.01, amsgrad=True, weight_decay=0.01),
            lambda m: optim.Adam(m.parameters()))


def test_an_lstms_one_bias_takes_the_two_biases_state_where_equal_and_refuses_it_where_not():
    torch = _torch()
    ours, tmodel = _lstm(torch, convention="book")
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01)
    torch_model_steps(torch, tmodel, topt, _batches("lstm", 2))
    xn.load_torch_state_dict(ours, tmodel.state_dict())
    opt = optim.Adam(ours.parameters())
    xn.load_torch_optimizer_state_dict(opt, ours, topt.state_dict())
    state = topt.state_dict()["state"]
    np.testing.assert_allclose(opt.state["0.b"]["m"], state[2]["exp_avg"].numpy(), rtol=1e-14)  # bias_ih_l0's
    np.testing.assert_allclose(opt.state["0.b"]["m"], state[3]["exp_avg"].numpy(), rtol=1e-14)  # bias_hh_l0's
    assert opt.t == 2
    np.testing.assert_array_equal(opt.state["0.Wx"]["v"], state[0]["exp_avg_sq"].numpy().T)
    decayed = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    torch_model_steps(torch, tmodel, decayed, _batches("lstm", 2))
    sgd = optim.SGD(ours.parameters())
    with pytest.raises(ValueError, match=r"xpnet's 0\.b = 0\.bias_ih_l0 \+ 0\.bias_hh_l0, one bias, .* their "
                                         r"momentum_buffer differ .* convention='pytorch'"):
        xn.load_torch_optimizer_state_dict(sgd, ours, decayed.state_dict())
    assert sgd.state == {}  # nothing loaded


def test_xn_train_resumes_a_pytorch_run_given_the_loaded_optimizer():
    torch = _torch()
    ours, tmodel = _mlp(torch)
    batches = _batches("mlp", 5)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.05, weight_decay=0.01)
    torch_model_steps(torch, tmodel, topt, batches[:2])
    checkpoint = _saved(torch, tmodel, topt)
    xn.load_torch_state_dict(ours, checkpoint["model_state_dict"])
    opt = optim.Adam(1e-3)  # the book's way, given the model by xn.train; its weight decay would spare biases
    xn.load_torch_optimizer_state_dict(opt, ours, checkpoint["optimizer_state_dict"])
    assert (opt.lr, opt.weight_decay, opt.weight_decay_on) == (0.05, 0.01, "all")
    torch_model_steps(torch, tmodel, topt, batches[2:])
    x, y = np.concatenate([b[0] for b in batches[2:]]), np.concatenate([b[1] for b in batches[2:]])
    xn.train(ours, (x, y), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=opt, epochs=1, batch_size=5,
             shuffle=False, device="cpu", progress=False)
    same_weights(ours, tmodel)


def test_several_param_groups_resume_each_with_its_hyperparameters():
    torch = _torch()

    def theirs(tm):
        return torch.optim.SGD([{"params": tm[0].parameters(), "lr": 0.2, "name": "body"},
                                {"params": tm[2].parameters()}], lr=0.05, momentum=0.9)

    def mine(m):
        return optim.SGD([{"params": m[0].parameters()}, {"params": m[2].parameters()}], lr=0.01)

    ours, opt = _resume(torch, "mlp", theirs, mine)
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.05] and opt.param_groups[0]["name"] == "body"
    with pytest.raises(ValueError, match=r"the PyTorch optimizer has 2 param group\(s\), the xpnet SGD 1; build it "
                                         r"with as many, each of the same layers \(\{'params': model\.fc\."
                                         r"parameters\(\), 'lr': \.\.\.\}\)$"):
        xn.load_torch_optimizer_state_dict(optim.SGD(ours.parameters()), ours, theirs(_mlp(torch)[1]).state_dict())


def test_a_key_of_the_users_own_named_as_a_hyperparameter_torch_does_not_read_leaves_the_steps_torchs():
    """torch keeps any key of a group dict in the group and reads its own only: a key of the user's own named as
    another optimizer's hyperparameter (``'momentum'`` given to Adam) or as a setting of the xpnet optimizer's own
    (``'convention'``) is left out, with a warning naming it, where xpnet would refuse or read it; one xpnet's groups
    can hold (``'t0'``, ASGD's) is kept; the run goes on as torch's."""
    torch = _torch()

    def theirs(tm):
        return torch.optim.Adam([{"params": tm[0].parameters(), "momentum": 0.9, "t0": 5},
                                 {"params": tm[2].parameters(), "convention": "book"}], lr=0.05)

    with pytest.warns(UserWarning, match=r"left out of the xpnet Adam's param groups.* param_groups\[0\]\['momentum'\] "
                                         r"\(.*\); param_groups\[1\]\['convention'\] \(xn\.optim\.Adam's own setting "
                                         r"convention, which torch\.optim\.Adam has not"):
        _, opt = _resume(torch, "mlp", theirs, lambda m: optim.Adam([{"params": m[0].parameters()},
                                                                       {"params": m[2].parameters()}]))
    body, head = opt.param_groups
    assert (body["t0"], "momentum" in body, head["convention"]) == (5, False, "pytorch")


def test_the_index_order_is_torchs_model_parameters_order():
    """torch.optim's indices follow ``model.parameters()``: a module's own parameters before its submodules'
    (``out_proj``, a parametrization's ``original``), a stacked and bidirectional LSTM's per level and direction, a
    projection's last, a tied weight once, buffers never (BatchNorm's running statistics); a Transformer's encoder
    before its decoder, each layer's attention before its feed-forward and norms."""
    torch = _torch()
    from xpnet.optim.torch_state import torch_parameters
    t = torch.nn
    emb, temb = nn.Embedding(5, 4), t.Embedding(5, 4)
    tied = t.Linear(4, 5)
    tied.weight = temb.weight

    class Attention(xn.Model):
        def __init__(self):
            super().__init__()
            self.att, self.cross = nn.MultiheadAttention(4, 2), nn.MultiheadAttention(4, 2, kdim=3, vdim=5)

    class TorchAttention(t.Module):
        def __init__(self):
            super().__init__()
            self.att, self.cross = t.MultiheadAttention(4, 2), t.MultiheadAttention(4, 2, kdim=3, vdim=5)

    class Several(xn.Model):  # layers a Sequential cannot chain (Bilinear takes two inputs), as attributes
        def __init__(self, *layers):
            super().__init__()
            for i, layer in enumerate(layers):
                setattr(self, f"l{i}", layer)

    class TorchSeveral(t.Module):
        def __init__(self, *layers):
            super().__init__()
            for i, layer in enumerate(layers):
                setattr(self, f"l{i}", layer)

    pairs = [(xn.Sequential(nn.LSTM(3, 4, num_layers=2, bidirectional=True), nn.LSTM(8, 4, proj_size=2),
                            nn.GRU(2, 3)),
              t.Sequential(t.LSTM(3, 4, num_layers=2, bidirectional=True), t.LSTM(8, 4, proj_size=2), t.GRU(2, 3))),
             (Attention(), TorchAttention()),
             (xn.Sequential(nn.SpectralNorm(nn.Linear(3, 4)), nn.WeightNorm(nn.Conv2d(2, 3, 3)), nn.BatchNorm(3)),
              t.Sequential(t.utils.parametrizations.spectral_norm(t.Linear(3, 4)),
                           t.utils.parametrizations.weight_norm(t.Conv2d(2, 3, 3)), t.BatchNorm2d(3))),
             (xn.Sequential(emb, nn.TiedLinear(emb)), t.Sequential(temb, tied)),
             (Several(nn.Transformer(4, 2, 1, 1, 8), nn.GRU(4, 3, num_layers=2, bidirectional=True), nn.LSTMCell(4, 4),
                      nn.Bilinear(3, 4, 5), nn.EmbeddingBag(5, 4), nn.PReLU(4), nn.GroupNorm(2, 4),
                      nn.ConvTranspose1d(2, 3, 3)),
              TorchSeveral(t.Transformer(4, 2, 1, 1, 8, batch_first=True),
                           t.GRU(4, 3, num_layers=2, bidirectional=True), t.LSTMCell(4, 4), t.Bilinear(3, 4, 5),
                           t.EmbeddingBag(5, 4), t.PReLU(4), t.GroupNorm(2, 4), t.ConvTranspose1d(2, 3, 3)))]
    for ours, theirs in pairs:
        assert [entry[0] for entry in torch_parameters(ours)] == [name for name, _ in theirs.named_parameters()]


def test_a_fine_tuning_optimizer_of_the_trainable_parameters_only_resumes():
    """PyTorch's fine-tuning idiom, ``Adam(p for p in model.parameters() if p.requires_grad)``, holds the trainable
    parameters only: paired with those of the xpnet model frozen alike."""
    torch = _torch()

    def trainable_only(tm):
        tm[0].requires_grad_(False)
        return torch.optim.Adam((p for p in tm.parameters() if p.requires_grad), lr=0.05)

    def frozen_alike(m):
        m[0].requires_grad_(False)
        return optim.Adam(m.parameters())

    _, opt = _resume(torch, "mlp", trainable_only, frozen_alike)
    assert sorted(opt.state) == ["2.W", "2.b"]


def test_an_optimizer_of_one_layer_takes_its_state_by_that_layers_names():
    """torch.optim built with ``model[2].parameters()``: its indices are that layer's; the xpnet optimizer of the same
    layer keeps its state by the layer's own names (``W``, ``b``)."""
    torch = _torch()
    _, opt = _resume(torch, "mlp", lambda tm: torch.optim.SGD(tm[2].parameters(), lr=0.1, momentum=0.9),
                     lambda m: optim.SGD(m[2].parameters()))
    assert sorted(opt.state) == ["W", "b"]


def test_param_names_in_the_dict_are_held_against_the_models():
    torch = _torch()
    ours, tmodel = _mlp(torch)
    topt = torch.optim.SGD(tmodel.named_parameters(), lr=0.1, momentum=0.9)
    torch_model_steps(torch, tmodel, topt, _batches("mlp", 1))
    sd = topt.state_dict()
    assert sd["param_groups"][0]["param_names"][0] == "0.weight"
    xn.load_torch_optimizer_state_dict(optim.SGD(ours.parameters()), ours, sd)
    sd["param_groups"][0]["param_names"][:2] = ["0.bias", "0.weight"]
    with pytest.raises(ValueError, match=r"index 0 is PyTorch's '0\.bias', where the xpnet model's is '0\.weight'"):
        xn.load_torch_optimizer_state_dict(optim.SGD(ours.parameters()), ours, sd)

    # named_parameters() of the layer ('weight'), or of a wrapper (DistributedDataParallel's 'module.0.weight')
    wrapper = torch.nn.Module()
    wrapper.module = tmodel
    for named in ([{"params": tmodel[0].named_parameters()}, {"params": tmodel[2].named_parameters()}],
                  wrapper.named_parameters()):
        topt = torch.optim.SGD(named, lr=0.1, momentum=0.9)
        torch_model_steps(torch, tmodel, topt, _batches("mlp", 1))
        groups = [{"params": ours[0].parameters()}, {"params": ours[2].parameters()}] if isinstance(named, list) \
            else ours.parameters()
        opt = optim.SGD(groups)
        xn.load_torch_optimizer_state_dict(opt, ours, topt.state_dict())
        assert len(opt.state) == 4


def test_the_state_of_another_model_is_refused_naming_the_parameter():
    torch = _torch()
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01)
    torch_model_steps(torch, tmodel, topt, _batches("mlp", 1))
    ours, _ = _mlp(torch)  # Linear(4, 6): one hidden unit more
    opt = optim.Adam(ours.parameters())
    with pytest.raises(ValueError, match=r"PyTorch's '0\.weight' \(index 0\) has exp_avg of shape \(5, 4\), expected "
                                         r"\(6, 4\) for xpnet's 0\.W \(4, 6\): the state of another model"):
        xn.load_torch_optimizer_state_dict(opt, ours, topt.state_dict())
    smaller = xn.Sequential(nn.Linear(4, 3)).to(dtype="float64")
    with pytest.raises(ValueError, match=r"param_groups\[0\] holds 4 parameters, but the xpnet Sequential has 2"):
        xn.load_torch_optimizer_state_dict(optim.Adam(smaller.parameters()), smaller, topt.state_dict())
    assert opt.state == {} and opt.t == 0


def test_a_torch_optimizer_of_another_kind_or_one_xpnet_lacks_is_refused_naming_it():
    torch = _torch()
    ours, tmodel = _mlp(torch)
    nadam = torch.optim.NAdam(tmodel.parameters(), lr=0.01)
    torch_model_steps(torch, tmodel, nadam, _batches("mlp", 1))
    with pytest.raises(ValueError, match=r"the dict is torch\.optim\.NAdam's .* not torch\.optim\.Adam's, the twin of "
                                         r"xn\.optim\.Adam: build xn\.optim\.NAdam to load it"):
        xn.load_torch_optimizer_state_dict(optim.Adam(ours.parameters()), ours, nadam.state_dict())
    asgd = torch.optim.ASGD(tmodel.parameters(), lr=0.01)
    torch_model_steps(torch, tmodel, asgd, _batches("mlp", 1))
    with pytest.raises(ValueError, match=r"torch\.optim\.ASGD's .* xpnet has no ASGD: train with xn\.optim\.SGD and "
                                         r"average with xn\.optim\.swa_utils\.AveragedModel"):
        xn.load_torch_optimizer_state_dict(optim.SGD(ours.parameters()), ours, asgd.state_dict())
    with pytest.raises(ValueError, match=r"Adam\(convention='book'\) is the book's, .* convention='pytorch'"):
        xn.load_torch_optimizer_state_dict(optim.Adam(convention="book"), ours, nadam.state_dict())
    decaying = torch.optim.Adagrad(tmodel.parameters(), lr=0.01, lr_decay=0.1).state_dict()
    with pytest.raises(ValueError, match=r"lr_decay=0\.1, where xn\.optim\.AdaGrad steps as lr_decay=0 \(.*: set "
                                         r"lr_decay to 0 in the dict and .*LambdaLR"):
        xn.load_torch_optimizer_state_dict(optim.AdaGrad(), ours, decaying)
    maximizing = torch.optim.SGD(tmodel.parameters(), lr=0.01, maximize=True).state_dict()
    with pytest.raises(ValueError, match=r"param_groups\[0\]: maximize=True, where xn\.optim\.SGD steps as "
                                         r"maximize=False \(.*: set maximize to False in the dict and .*negated loss"):
        xn.load_torch_optimizer_state_dict(optim.SGD(ours.parameters()), ours, maximizing)
    decoupled = torch.optim.Adam(tmodel.parameters(), weight_decay=0.1, decoupled_weight_decay=True).state_dict()
    with pytest.raises(ValueError, match=r"torch\.optim\.AdamW's \(or torch\.optim\.Adam's with "
                                         r"decoupled_weight_decay=True\).* build xn\.optim\.AdamW to load it"):
        xn.load_torch_optimizer_state_dict(optim.Adam(ours.parameters()), ours, decoupled)


def test_the_books_momentum_takes_sgds_buffer_times_minus_lr_and_refuses_what_it_is_not():
    """The book's Momentum (v = m*v - lr*g, p += v) is torch.optim.SGD(momentum=m) (buf = m*buf + g, p -= lr*buf)
    with v = -lr * buf while lr stays: SGD's dicts with nesterov, dampening, or lr 0 (v would lose the buffer) are
    refused, naming why; one with an LR scheduler's keys loads with a warning that a change of lr moves them apart."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    for kwargs, message in [({"nesterov": True}, r"nesterov=True, where xn\.optim\.Momentum steps as nesterov=False"),
                            ({"dampening": 0.1}, r"dampening=0\.1, where xn\.optim\.Momentum steps as dampening=0"),
                            ({"lr": 0.0}, r"param_groups\[0\]: lr=0, where xn\.optim\.Momentum's v is -lr \* torch's "
                                          r"momentum_buffer, which it cannot hold at lr 0")]:
        topt = torch.optim.SGD(tmodel.parameters(), **{"lr": 0.1, "momentum": 0.9, **kwargs})
        torch_model_steps(torch, tmodel, topt, _batches("mlp", 1))
        with pytest.raises(ValueError, match=message):
            xn.load_torch_optimizer_state_dict(optim.Momentum(ours.parameters()), ours, topt.state_dict())
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    torch.optim.lr_scheduler.StepLR(topt, step_size=2)
    torch_model_steps(torch, tmodel, topt, _batches("mlp", 1))
    opt = optim.Momentum(ours.parameters())
    with pytest.warns(UserWarning, match=r"xn\.optim\.Momentum steps as torch\.optim\.SGD\(momentum\) only while lr "
                                         r"stays .*\(initial_lr 0\.1\) the next change of lr moves the two apart"):
        xn.load_torch_optimizer_state_dict(opt, ours, topt.state_dict())
    np.testing.assert_allclose(opt.state["2.W"]["v"], -0.1 * topt.state_dict()["state"][2]["momentum_buffer"].numpy().T,
                               rtol=1e-15)


def test_a_maximizing_or_lr_decaying_run_goes_on_as_torchs_the_way_the_refusal_says():
    """maximize=True is minimizing the negated loss; Adagrad's lr_decay a LambdaLR: the dict with them set to torch's
    defaults goes on as torch's run, as the errors of the two say."""
    torch = _torch()

    def maximized(tm):
        topt = torch.optim.Adam(tm.parameters(), lr=0.05, maximize=True)
        step = topt.step

        def ascend():  # the gradient is then of -loss, whose maximum is the loss's minimum
            for p in tm.parameters():
                p.grad.neg_()
            step()
        topt.step = ascend
        return topt

    ours, tmodel = _mlp(torch)
    batches = _batches("mlp", 5)
    topt = maximized(tmodel)
    torch_model_steps(torch, tmodel, topt, batches[:2])
    checkpoint = _saved(torch, tmodel, topt)
    checkpoint["optimizer_state_dict"]["param_groups"][0]["maximize"] = False
    xn.load_torch_state_dict(ours, checkpoint["model_state_dict"])
    opt = optim.Adam(ours.parameters())
    xn.load_torch_optimizer_state_dict(opt, ours, checkpoint["optimizer_state_dict"])
    torch_model_steps(torch, tmodel, topt, batches[2:])
    xpnet_model_steps(ours, opt, batches[2:])
    same_weights(ours, tmodel)

    ours, tmodel = _mlp(torch)
    topt = torch.optim.Adagrad(tmodel.parameters(), lr=0.1, lr_decay=0.3)
    torch_model_steps(torch, tmodel, topt, batches[:2])
    checkpoint = _saved(torch, tmodel, topt)
    checkpoint["optimizer_state_dict"]["param_groups"][0]["lr_decay"] = 0
    xn.load_torch_state_dict(ours, checkpoint["model_state_dict"])
    opt = optim.AdaGrad(ours.parameters())
    xn.load_torch_optimizer_state_dict(opt, ours, checkpoint["optimizer_state_dict"])
    t = opt.t
    scheduler = xn.optim.lr_scheduler.LambdaLR(opt, lambda n: 1 / (1 + (n + t) * 0.3))
    torch_model_steps(torch, tmodel, topt, batches[2:])
    for batch in batches[2:]:
        xpnet_model_steps(ours, opt, [batch])
        scheduler.step()
    same_weights(ours, tmodel)


def test_a_file_of_torch_save_loads_by_its_path_and_key(tmp_path):
    torch = _torch()
    ours, tmodel = _mlp(torch)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    torch_model_steps(torch, tmodel, topt, _batches("mlp", 1))
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "model_state_dict": tmodel.state_dict(), "optimizer_state_dict": topt.state_dict()}, path)
    opt = optim.SGD(ours.parameters())
    with pytest.raises(ValueError, match=r"its entry 'optimizer_state_dict' is one: pass key='optimizer_state_dict'"):
        xn.load_torch_optimizer_state_dict(opt, ours, path)
    xn.load_torch_optimizer_state_dict(opt, ours, path, key="optimizer_state_dict")
    np.testing.assert_array_equal(opt.state["2.W"]["v"], topt.state_dict()["state"][2]["momentum_buffer"].numpy().T)


def test_a_models_state_dict_or_no_dict_given_for_the_optimizers_says_what_it_got_and_what_loads_it():
    torch = _torch()
    ours, tmodel = _mlp(torch)
    opt = optim.SGD(ours.parameters())
    with pytest.raises(ValueError, match=r"expected torch\.optim's state_dict \(keys 'state' and 'param_groups'\), got "
                                         r"a model's state dict \(tensors by name: '0\.weight', '0\.bias', \.\.\.\), "
                                         r"which loads with xn\.load_torch_state_dict\(model, d\)$"):
        xn.load_torch_optimizer_state_dict(opt, ours, tmodel.state_dict())
    with pytest.raises(ValueError, match=r"expected torch\.optim's state_dict \(keys 'state' and 'param_groups'\), got "
                                         r"a list$"):
        xn.load_torch_optimizer_state_dict(opt, ours, [tmodel.state_dict()])


def test_optimizer_load_state_dict_given_torchs_names_the_function_to_call():
    torch = _torch()
    ours, tmodel = _mlp(torch)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"xn\.load_torch_optimizer_state_dict\(optimizer, model, "
                                         r"checkpoint\['optimizer_state_dict'\]\)"):
        optim.SGD(ours.parameters()).load_state_dict(topt.state_dict())
