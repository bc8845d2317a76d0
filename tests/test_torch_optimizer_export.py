"""An xpnet run continued in PyTorch with its optimizer state: xpnet trains k steps, the weights
(``xn.torch_state_dict``) and the optimizer state (``xn.torch_optimizer_state_dict``) go to the torch twins, and both
go on m steps: the weights stay xpnet's, in float64. A round trip back into xpnet, and what is refused."""

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


def _mlp(torch, lstm=False):
    """An xpnet model and its torch twin, with the same weights (torch's init, loaded into xpnet)."""
    torch.manual_seed(0)
    t = torch.nn
    if lstm:
        class Net(t.Module):
            def __init__(self):
                super().__init__()
                self.add_module("0", t.LSTM(4, 5, batch_first=True))
                self.add_module("1", t.Linear(5, 3))

            def forward(self, x):
                return self._modules["1"](self._modules["0"](x)[0])
        tmodel = Net().double()
        ours = xn.Sequential(nn.LSTM(4, 5), nn.Linear(5, 3)).to(dtype="float64")
    else:
        tmodel = t.Sequential(t.Linear(4, 6), t.Tanh(), t.Linear(6, 3)).double()
        ours = xn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype="float64")
    xn.load_torch_state_dict(ours, tmodel.state_dict())
    return ours, tmodel


def _batches(n, lstm=False):
    rng = np.random.default_rng(1)
    shape = (2, 3, 4) if lstm else (5, 4)
    return [(rng.standard_normal(shape), rng.integers(0, 3, shape[:-1])) for _ in range(n)]


# xpnet's optimizer, and its torch twin built with torch's defaults: the hyperparameters come from the dict
TWINS = {
    "sgd-momentum-dampening-decay": (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01,
                                                         weight_decay_on="all"), "SGD"),
    "sgd-nesterov": (lambda p: optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01,
                                         weight_decay_on="all"), "SGD"),
    "nesterov": (lambda p: optim.Nesterov(p, lr=0.1, momentum=0.8), "SGD"),
    "momentum-book-decay": (lambda p: optim.Momentum(p, lr=0.1, momentum=0.9, weight_decay=0.01,
                                                     weight_decay_on="all"), "SGD"),
    "nesterov-book": (lambda p: optim.Nesterov(p, lr=0.1, momentum=0.8, convention="book"), "SGD"),
    "adam-amsgrad-decay": (lambda p: optim.Adam(p, lr=0.05, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.01,
                                                weight_decay_on="all"), "Adam"),
    "adamw": (lambda p: optim.AdamW(p, lr=0.05, weight_decay=0.1), "AdamW"),
    "rmsprop-centered-momentum": (lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, centered=True,
                                                          weight_decay=0.01, weight_decay_on="all"), "RMSprop"),
    "adagrad-decay": (lambda p: optim.AdaGrad(p, lr=0.1, eps=1e-10, weight_decay=0.01, weight_decay_on="all"),
                      "Adagrad"),
    "nadam-decay": (lambda p: optim.NAdam(p, lr=0.05, momentum_decay=0.01, weight_decay=0.01, weight_decay_on="all"),
                    "NAdam"),
    "radam-decoupled": (lambda p: optim.RAdam(p, lr=0.05, decoupled_weight_decay=True, weight_decay=0.1,
                                              weight_decay_on="all"), "RAdam"),
    "adamax-decay": (lambda p: optim.Adamax(p, lr=0.05, weight_decay=0.01, weight_decay_on="all"), "Adamax"),
    "adadelta-decay": (lambda p: optim.Adadelta(p, lr=0.5, rho=0.8, weight_decay=0.01, weight_decay_on="all"),
                       "Adadelta"),
}


@pytest.mark.parametrize("name", list(TWINS))
def test_an_xpnet_run_goes_on_in_torch_with_each_optimizers_state(name):
    """k = 3 steps in xpnet, the first layer frozen for the first (its own step count is one less), m = 4 in both
    (RAdam's rectification starts at the 6th step: both branches)."""
    torch = _torch()
    make, twin = TWINS[name]
    ours, tmodel = _mlp(torch)
    batches = _batches(7)
    opt = make(ours.parameters())
    ours[0].requires_grad_(False)
    xpnet_model_steps(ours, opt, batches[:1])
    ours[0].requires_grad_(True)
    xpnet_model_steps(ours, opt, batches[1:3])
    tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    topt = getattr(torch.optim, twin)(tmodel.parameters())
    topt.load_state_dict(xn.torch_optimizer_state_dict(opt, ours, as_tensors=True))
    xpnet_model_steps(ours, opt, batches[3:])
    torch_model_steps(torch, tmodel, topt, batches[3:])
    same_weights(ours, tmodel)


def test_torchs_implementation_flags_set_in_the_dict_before_the_load_keep_a_fused_optimizer_fused():
    """The dict's groups carry torch's defaults for how it computes (``fused=None``, ``capturable=False``), which
    torch's ``load_state_dict`` puts in place of its optimizer's own: set them in the dict first, and torch's load
    then makes ``step`` what its fused (or capturable) step reads, a float32 tensor (on the parameters' device)."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    batches = _batches(4)
    opt = optim.Adam(ours.parameters(), lr=0.05, weight_decay_on="all")
    xpnet_model_steps(ours, opt, batches[:2])
    sd = xn.torch_optimizer_state_dict(opt, ours, as_tensors=True)
    assert sd["param_groups"][0]["fused"] is None
    for group in sd["param_groups"]:
        group["fused"] = True
    tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    topt = torch.optim.Adam(tmodel.parameters(), fused=True)
    topt.load_state_dict(sd)
    assert topt.param_groups[0]["fused"] is True and topt.state_dict()["state"][0]["step"].dtype == torch.float32
    xpnet_model_steps(ours, opt, batches[2:])
    torch_model_steps(torch, tmodel, topt, batches[2:])
    same_weights(ours, tmodel)


@pytest.mark.parametrize("twin", ["Adagrad", "Adam"])
def test_a_layer_that_has_not_stepped_yet_starts_in_torch_as_in_xpnet(twin):
    """No state for a layer frozen through xpnet's steps (torch's Adagrad: zeros and step 0, as its constructor
    makes them for every parameter); thawed in both, it starts afresh in both."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    batches = _batches(4)
    opt = getattr(optim, "AdaGrad" if twin == "Adagrad" else twin)(ours.parameters(), lr=0.1)
    ours[0].requires_grad_(False)
    xpnet_model_steps(ours, opt, batches[:2])
    sd = xn.torch_optimizer_state_dict(opt, ours, as_tensors=True)
    assert sorted(sd["state"]) == ([0, 1, 2, 3] if twin == "Adagrad" else [2, 3])
    ours[0].requires_grad_(True)
    tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    topt = getattr(torch.optim, twin)(tmodel.parameters())
    topt.load_state_dict(sd)
    xpnet_model_steps(ours, opt, batches[2:])
    torch_model_steps(torch, tmodel, topt, batches[2:])
    same_weights(ours, tmodel)


def test_a_fine_tuning_optimizer_of_the_trainable_parameters_only_goes_on():
    """``trainable_only=True``: torch's optimizer of PyTorch's fine-tuning idiom, ``Adam(p for p in
    model.parameters() if p.requires_grad)``, takes the state of the layers that train; the frozen one's is left out."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    batches = _batches(4)
    opt = optim.Adam(ours.parameters(), lr=0.05)
    xpnet_model_steps(ours, opt, batches[:1])
    ours[0].requires_grad_(False)
    xpnet_model_steps(ours, opt, batches[1:2])
    tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    tmodel[0].requires_grad_(False)
    topt = torch.optim.Adam(p for p in tmodel.parameters() if p.requires_grad)
    sd = xn.torch_optimizer_state_dict(opt, ours, as_tensors=True, trainable_only=True)
    assert sd["param_groups"][0]["params"] == [0, 1] and sd["state"][0]["exp_avg"].shape == (3, 6)
    topt.load_state_dict(sd)
    xpnet_model_steps(ours, opt, batches[2:])
    torch_model_steps(torch, tmodel, topt, batches[2:])
    same_weights(ours, tmodel)


def _tied_transformer_and_cnn(torch):
    """An Embedding, a TransformerEncoderLayer (MultiheadAttention's in_proj before its out_proj, LayerNorms) and an
    output layer tied to the embedding (torch counts the tied weight once); a Conv2d, BatchNorm (buffers are no
    parameters) and a Linear. Parameters whose gradient is 0 but for rounding, which Adam scales up to a step in
    either library, are left out or kept from 0: the Conv2d's bias before the BatchNorm, and the key bias in
    in_proj_bias (drawn, so that the weight decay outweighs the rounding)."""
    torch.manual_seed(0)
    t = torch.nn
    embedding, decoder = t.Embedding(7, 4), t.Linear(4, 7)
    decoder.weight = embedding.weight
    tied = t.Sequential(embedding, t.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True), decoder)
    with torch.no_grad():
        tied[1].self_attn.in_proj_bias.normal_()
    emb = nn.Embedding(7, 4)
    ours = xn.Sequential(emb, nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0), nn.TiedLinear(emb))
    cnn = t.Sequential(t.Conv2d(2, 3, 3, padding=1, bias=False), t.BatchNorm2d(3), t.ReLU(), t.Flatten(),
                       t.Linear(48, 3))
    mine = xn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(48, 3))
    rng = np.random.default_rng(2)
    pairs = []
    for x, tm, m in ((rng.integers(0, 7, (2, 5)), tied, ours), (rng.standard_normal((4, 2, 4, 4)), cnn, mine)):
        m = m.to(dtype="float64")
        xn.load_torch_state_dict(m, tm.double().state_dict())
        labels = rng.integers(0, 7 if tm is tied else 3, x.shape[:2] if tm is tied else x.shape[:1])
        pairs.append((m, tm, [(x, labels)] * 4))
    return pairs


def test_attention_a_tied_output_layer_and_a_cnn_with_batchnorm_go_on_in_torch():
    """torch's index order and layouts for the layers whose ``model.parameters()`` order is the least obvious, held
    by torch's run going on as xpnet's (a state given to another parameter of the same shape would not)."""
    torch = _torch()
    for ours, tmodel, batches in _tied_transformer_and_cnn(torch):
        opt = optim.Adam(ours.parameters(), lr=0.01, amsgrad=True, weight_decay=0.01)
        xpnet_model_steps(ours, opt, batches[:2])
        tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
        topt = torch.optim.Adam(tmodel.parameters())
        topt.load_state_dict(xn.torch_optimizer_state_dict(opt, ours, as_tensors=True))
        xpnet_model_steps(ours, opt, batches[2:])
        torch_model_steps(torch, tmodel, topt, batches[2:])
        same_weights(ours, tmodel)


@pytest.mark.parametrize("trainable_only", [False, True])
def test_lbfgs_goes_on_in_torch_with_its_history_in_torchs_flat_vector(trainable_only):
    """xpnet's flat vectors ((in, out) W, the trainable parameters only: the first layer frozen) reordered into
    torch's of every parameter ((out, in) weight, zeros for the frozen layer, as its zero gradient gives there), or
    with ``trainable_only=True`` of those that train."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    x, y = _batches(1)[0]
    ours[0].requires_grad_(False)
    opt = optim.LBFGS(ours.parameters(), lr=0.5, max_iter=3, history_size=4, line_search_fn="strong_wolfe")
    closure = xpnet_closure(ours, opt, x, y)
    opt.step(closure)
    tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    tmodel[0].requires_grad_(False)
    topt = torch.optim.LBFGS([p for p in tmodel.parameters() if p.requires_grad or not trainable_only])
    topt.load_state_dict(xn.torch_optimizer_state_dict(opt, ours, as_tensors=True, trainable_only=trainable_only))
    assert (topt.param_groups[0]["max_iter"], topt.param_groups[0]["line_search_fn"]) == (3, "strong_wolfe")
    tclosure = torch_closure(torch, tmodel, topt, x, y)
    for _ in range(2):
        opt.step(closure)
        topt.step(tclosure)
    same_weights(ours, tmodel)


def test_lbfgs_history_of_a_layer_frozen_since_is_refused_for_the_trainable_only_naming_it():
    """A layer frozen after L-BFGS stepped over it: its history's flat vectors hold that layer's part, which torch's
    optimizer of the trainable parameters has no place for. Refused naming the layer's parameters and what to do
    (it raised a bare KeyError '0.W'); every parameter's optimizer (trainable_only=False) takes the history."""
    torch = _torch()
    ours, _ = _mlp(torch)
    x, y = _batches(1)[0]
    opt = optim.LBFGS(ours.parameters(), lr=0.5, max_iter=3)
    opt.step(xpnet_closure(ours, opt, x, y))
    ours[0].requires_grad_(False)
    with pytest.raises(ValueError, match=r"LBFGS's history is of the flat vector of 0\.W, 0\.b, 2\.W, 2\.b, where "
                                         r"0\.W, 0\.b train no longer: .* trainable_only=False"):
        xn.torch_optimizer_state_dict(opt, ours, trainable_only=True)
    sd = xn.torch_optimizer_state_dict(opt, ours)
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3] and sd["state"][0]["d"].shape == (51,)


def test_a_round_trip_through_torchs_dict_gives_the_state_back():
    """Two groups (a scheduler's initial_lr, a key of the user's own), a layer frozen for the first step (its own
    step count), NAdam's mu_product: the NumPy dict loads back into a new xpnet NAdam equal, and it, the first and
    torch's NAdam of two groups go on alike."""
    torch = _torch()
    ours, tmodel = _mlp(torch)
    opt = optim.NAdam([{"params": ours[0].parameters(), "name": "body"}, {"params": ours[2].parameters(),
                                                                           "lr": 0.02}], lr=0.05, weight_decay=0.01,
                      weight_decay_on="all")
    xn.optim.lr_scheduler.StepLR(opt, step_size=2)
    batches = _batches(5)
    ours[0].requires_grad_(False)
    xpnet_model_steps(ours, opt, batches[:1])
    ours[0].requires_grad_(True)
    xpnet_model_steps(ours, opt, batches[1:3])
    sd = xn.torch_optimizer_state_dict(opt, ours)
    assert sd["param_groups"][0]["name"] == "body" and sd["param_groups"][1]["params"] == [2, 3]
    assert [float(sd["state"][i]["step"]) for i in range(4)] == [2, 2, 3, 3]
    back = optim.NAdam([{"params": ours[0].parameters()}, {"params": ours[2].parameters()}])
    xn.load_torch_optimizer_state_dict(back, ours, sd)
    assert [dict(g) for g in back.param_groups] == [dict(g) for g in opt.param_groups]
    assert (back.t, back.skipped) == (opt.t, opt.skipped) and len(opt.skipped) == 2
    for name, slots in opt.state.items():
        assert back.scalars[name] == opt.scalars[name]
        for key, value in slots.items():
            np.testing.assert_array_equal(back.state[name][key], value, err_msg=f"{name} {key}")
    again = xn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype="float64")
    again.load_state_dict(ours.state_dict())
    back = optim.NAdam([{"params": again[0].parameters()}, {"params": again[2].parameters()}])
    xn.load_torch_optimizer_state_dict(back, again, sd)
    tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    topt = torch.optim.NAdam([{"params": tmodel[0].parameters()}, {"params": tmodel[2].parameters()}])
    topt.load_state_dict(xn.torch_optimizer_state_dict(opt, ours, as_tensors=True))
    assert [(g["lr"], g.get("name"), g["initial_lr"]) for g in topt.param_groups] == [(0.05, "body", 0.05),
                                                                                       (0.02, None, 0.02)]
    xpnet_model_steps(ours, opt, batches[3:])
    xpnet_model_steps(again, back, batches[3:])
    torch_model_steps(torch, tmodel, topt, batches[3:])
    for name, p in ours.named_params().items():
        np.testing.assert_array_equal(again.named_params()[name], p, err_msg=name)
    same_weights(ours, tmodel)


def test_an_lstms_one_bias_goes_out_as_torchs_two_with_its_state_and_a_warning():
    torch = _torch()
    ours, tmodel = _mlp(torch, lstm=True)
    opt = optim.Adam(ours.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match="two biases summed into one"):  # torch's two loaded into the one b
        xpnet_model_steps(ours, opt, _batches(2, lstm=True))
    with pytest.warns(UserWarning, match=r"one bias goes to torch as its two biases \(0\.b as 0\.bias_ih_l0 = 0\.b, "
                                         r"0\.bias_hh_l0 = 0\), each with its state; torch steps each .* "
                                         r"convention='pytorch'"):
        sd = xn.torch_optimizer_state_dict(opt, ours)
    np.testing.assert_array_equal(sd["state"][2]["exp_avg"], opt.state["0.b"]["m"])
    np.testing.assert_array_equal(sd["state"][3]["exp_avg"], opt.state["0.b"]["m"])
    np.testing.assert_array_equal(sd["state"][0]["exp_avg_sq"], opt.state["0.Wx"]["v"].T)
    tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    topt = torch.optim.Adam(tmodel.parameters())
    with pytest.warns(UserWarning, match=r"0\.b as 0\.bias_ih_l0"):
        topt.load_state_dict(xn.torch_optimizer_state_dict(opt, ours, as_tensors=True))
    torch_model_steps(torch, tmodel, topt, _batches(1, lstm=True))  # torch's step reads every key it needs


def test_what_torch_cannot_go_on_with_is_refused_naming_it_and_why():
    torch = _torch()
    ours, _ = _mlp(torch)
    spared = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01, weight_decay_on="weights")
    xpnet_model_steps(ours, spared, _batches(1))
    with pytest.raises(ValueError, match=r"param_groups\[0\]: weight_decay=0\.01 with weight_decay_on='weights' "
                                         r"spares the biases .* build the xpnet optimizer with weight_decay_on='all'"):
        xn.torch_optimizer_state_dict(spared, ours)
    stopped = optim.Momentum(ours.parameters(), lr=0.1)  # the book's: v = -lr * torch's momentum_buffer
    xpnet_model_steps(ours, stopped, _batches(1))
    stopped.lr = 0.0
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr=0, where xn\.optim\.Momentum's v is -lr \* torch's "
                                         r"momentum_buffer: at lr 0 it holds nothing of the buffer"):
        xn.torch_optimizer_state_dict(stopped, ours)
    stopped.lr = 0.1
    xn.optim.lr_scheduler.StepLR(stopped, step_size=2)
    with pytest.warns(UserWarning, match=r"xn\.optim\.Momentum steps as torch\.optim\.SGD\(momentum\) only while lr "
                                         r"stays .* the next change of lr moves the two apart"):
        sd = xn.torch_optimizer_state_dict(stopped, ours)
    np.testing.assert_allclose(sd["state"][2]["momentum_buffer"], stopped.state["2.W"]["v"].T / -0.1, rtol=1e-15)
    with pytest.raises(ValueError, match=r"^xn\.torch_optimizer_state_dict: Adam\(convention='book'\) is the book's"):
        xn.torch_optimizer_state_dict(optim.Adam(ours.parameters(), convention="book"), ours)
    with pytest.raises(ValueError, match=r"Nesterov\(convention='book-2016'\) is the book's, which steps otherwise"):
        xn.torch_optimizer_state_dict(optim.Nesterov(ours.parameters(), convention="book-2016"), ours)

    loaded = optim.SGD(0.1)  # the book's way: no model bound, only the one given here to pair its state with
    loaded.load_state_dict(spared.state_dict())
    wider = xn.Sequential(nn.Linear(4, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype="float64")
    with pytest.raises(ValueError, match=r"the state v of 0\.W has shape \(4, 6\), the parameter \(4, 7\): the state "
                                         r"of another model"):
        xn.torch_optimizer_state_dict(loaded, wider)
    with pytest.raises(ValueError, match=r"the state of 2\.W, 2\.b is of no parameter of the model given"):
        xn.torch_optimizer_state_dict(loaded, xn.Sequential(nn.Linear(4, 6)).to(dtype="float64"))

    class Clipped(optim.SGD):  # a hyperparameter of one's own, which torch.optim.SGD would not read
        def __init__(self, lr=0.01, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                     weight_decay_on="weights", clip=1.0):
            super().__init__(lr, momentum, dampening, weight_decay, nesterov, weight_decay_on=weight_decay_on)
            self.clip = clip

        def hyperparams(self):
            return {**super().hyperparams(), "clip": self.clip}

    with pytest.raises(ValueError, match=r"param_groups\[0\]: clip: xpnet's own, which torch\.optim\.SGD has no "
                                         r"counterpart for"):
        xn.torch_optimizer_state_dict(Clipped(ours.parameters()), ours)
    lstm, _ = _mlp(torch, lstm=True)
    with pytest.raises(ValueError, match=r"xpnet's 0\.b = 0\.bias_ih_l0 \+ 0\.bias_hh_l0: one bias where "
                                         r"torch has two, .* convention='pytorch'"):
        xn.torch_optimizer_state_dict(optim.LBFGS(lstm.parameters()), lstm)
