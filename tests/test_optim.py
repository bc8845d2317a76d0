"""Optimizers against reference formulas; state on the parameter's device; nothing half-updated."""

import math
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet import optim
from xpnet.testing import assert_placed, tolerance

from conftest import require_cuda
from torch_optim_checks import torch_steps


class _Params:
    """A one-parameter 'model' with a fixed gradient sequence."""

    def __init__(self, p, dev):
        self.p = xn.to_device(p, dev)
        self.g = None

    def named_params(self):
        return {"w": self.p}

    def named_grads(self):
        return {"w": self.g}

    def set_param(self, name, value):  # immutable arrays (JAX): the step stores a new array here
        self.p = value


def _reference(name, p, grads, lr):
    if name in ("nadam", "radam", "adamax", "adadelta"):  # PyTorch's own, run
        return torch_steps(optim.OPTIMIZERS[name].__name__, p, grads, lr=lr)
    p = p.copy()
    v = np.zeros_like(p)
    h = np.zeros_like(p)
    m = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if name == "sgd":
            p -= lr * g
        elif name == "momentum":
            v = 0.9 * v - lr * g
            p += v
        elif name == "nesterov":
            v = 0.9 * v + g
            p -= lr * (g + 0.9 * v)
        elif name == "adagrad":
            h += g * g
            p -= lr * g / (np.sqrt(h) + 1e-7)
        elif name == "rmsprop":
            h = 0.99 * h + 0.01 * g * g
            p -= lr * g / (np.sqrt(h) + 1e-8)
        elif name in ("adam", "adamw"):
            if name == "adamw":
                p *= 1 - lr * 0.01
            m = 0.9 * m + 0.1 * g
            h = 0.999 * h + 0.001 * g * g
            mh, vh = m / (1 - 0.9 ** t), h / (1 - 0.999 ** t)
            p -= lr * mh / (np.sqrt(vh) + 1e-8)
    return p


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_updates_match_reference_and_stay_on_device(case, rng, name):
    dev, dtype = case
    p0 = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    opt = optim.OPTIMIZERS[name](lr=0.05)
    model = _Params(p0.astype(dtype), dev)
    p_before = model.p
    for g in grads:
        model.g = xn.to_device(g.astype(dtype), dev)
        opt.step(model)
    if xn.backend.update_rule(dev.xp) == "in place":
        assert model.p is p_before  # updated in place
    else:  # immutable arrays (JAX): each step stores a new array through model.set_param
        assert model.p is not p_before
    assert_placed(model.p, dev, dtype)
    for slots in opt.state.values():
        for s in slots.values():
            assert_placed(s, dev, dtype)
    ref = _reference(name, p0.astype(dtype).astype(np.float64), grads, 0.05)
    t = tolerance(dtype)
    np.testing.assert_allclose(xn.to_numpy(model.p), ref, rtol=max(t["rtol"], 1e-9) * 10, atol=t["atol"] * 10)


def test_bad_gradient_leaves_every_parameter_untouched():
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(3, 2), xn.layers.Linear(2, 2))
    model.forward(np.ones((1, 3), np.float32))
    model.backward(np.ones((1, 2), np.float32))
    model[1].grads["W"] = np.ones((5, 5), np.float32)
    before = {k: v.copy() for k, v in model.named_params().items()}
    with pytest.raises(ValueError, match="gradient of '1.W' does not match"):
        optim.SGD(0.1).step(model)
    for k, v in model.named_params().items():
        np.testing.assert_array_equal(v, before[k])


def test_step_before_backward():
    model = xn.Sequential(xn.layers.Linear(3, 2))
    with pytest.raises(RuntimeError, match="no gradient for '0.W'"):
        optim.Adam().step(model)


class _BookAffine(xn.layers.Layer):
    """A layer of the user's own, the book's Affine; ``dtype`` for its parameters, ``forget`` a gradient
    its backward leaves out."""

    def __init__(self, n_in, n_out, dtype="float32", forget=None):
        super().__init__()
        rng = np.random.default_rng(0)
        self.params = {"W": (0.1 * rng.standard_normal((n_in, n_out))).astype(dtype), "b": np.zeros(n_out, dtype)}
        self.forget = forget

    def forward(self, x, train=True):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy):
        self.grads = {"W": self.x.T @ dy, "b": dy.sum(axis=0)}
        self.grads.pop(self.forget, None)
        return dy @ self.params["W"].T


def _stepped(model, opt):
    x = np.ones((4, 2), np.float32)
    y = model.forward(x)
    model.backward(np.ones_like(y))
    opt.step(model)


def test_a_gradient_a_backward_left_out_names_the_layer_not_a_missing_backward():
    model = xn.Sequential(_BookAffine(2, 3, forget="b"), xn.layers.ReLU(), xn.layers.Linear(3, 2))
    with pytest.raises(RuntimeError, match=r"^Adam: layer 0 \(_BookAffine\)'s backward left no gradient for 'b' "
                                           r"\('0.b'\), although backward ran"):
        _stepped(model, optim.Adam())


def test_a_gradient_of_another_dtype_names_the_layers_of_that_dtype_and_the_fix():
    """A float64 layer after a float32 Linear passes float64 dy back: the Linear's gradient is the first the
    check meets, but the float64 layer is what to change."""
    model = xn.Sequential(xn.layers.Linear(2, 3), xn.layers.ReLU(), _BookAffine(3, 2, dtype="float64"))
    with pytest.raises(ValueError, match=r"^Adam: the gradient of '0.W' \(layer 0 \(Linear\)\) came back float64, "
                                         r"its parameter is float32, because a later layer passes float64 dy back: "
                                         r"the model mixes dtypes, '2.W' \(layer 2 \(_BookAffine\)\), '2.b' .* are "
                                         r"float64; cast the model to one, model.to\(dtype='float32'\)"):
        _stepped(model, optim.Adam())


def test_train_refuses_parameters_of_mixed_dtypes_before_the_first_step():
    model = xn.Sequential(xn.layers.Linear(2, 3), xn.layers.ReLU(), _BookAffine(3, 2, dtype="float64"))
    x, y = xn.datasets.spiral(10, 2, seed=0)
    with pytest.raises(TypeError, match=r"^train: the parameters mix dtypes: '2.W', '2.b' \(layer 2 \(_BookAffine\)\) "
                                        r"are float64, the others float32; .* model.to\(dtype='float32'\)"):
        xn.train(model, (x, y), loss="cross_entropy", optimizer="adam", epochs=1, batch_size=10,
                 progress=False)
    history = xn.train(model.to(dtype="float32"), (x, y), loss="cross_entropy", optimizer="adam", epochs=1,
                       batch_size=10, progress=False)
    assert len(history.epochs) == 1


def test_optimizer_bound_to_another_model():
    a, b = xn.Sequential(xn.layers.Linear(2, 2)), xn.Sequential(xn.layers.Linear(2, 2))
    for m in (a, b):
        m.forward(np.ones((1, 2), np.float32))
        m.backward(np.ones((1, 2), np.float32))
    opt = optim.SGD(0.1)
    opt.step(a)
    with pytest.raises(ValueError, match="bound to another model"):
        opt.step(b)


@pytest.mark.parametrize("make", [lambda: optim.SGD(-1), lambda: optim.Adam(lr=math.nan), lambda: optim.SGD(math.inf),
                                  lambda: optim.Momentum(0.1, momentum=1.0), lambda: optim.Adam(betas=(0.9,)),
                                  lambda: optim.RMSprop(alpha=-0.1), lambda: optim.AdamW(weight_decay=-1),
                                  lambda: optim.RMSprop(momentum=1.5)])
def test_hyperparameters_are_validated(make):
    with pytest.raises(ValueError, match="must be"):
        make()


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_lr_0_is_allowed_at_every_entry_point_and_a_negative_or_non_finite_one_nowhere(name, rng):
    """PyTorch allows lr >= 0: built with lr=0, or set to 0, an optimizer leaves the parameters (AdamW's
    decoupled decay, scaled by lr, too); a negative or non-finite lr fails in the constructor and the setter."""
    cls = optim.OPTIMIZERS[name]
    p0 = rng.standard_normal(3)
    for opt in (cls(lr=0), cls(0.0)):
        assert opt.lr == 0.0
        np.testing.assert_array_equal(_run(opt, p0, [rng.standard_normal(3) for _ in range(2)]), p0)
    opt = cls(lr=0.1)
    opt.lr = 0
    assert opt.lr == 0.0
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match=f"{cls.__name__}: lr must be a finite number >= 0"):
            cls(lr=bad)
        with pytest.raises(ValueError, match=f"{cls.__name__}: lr must be a finite number >= 0"):
            opt.lr = bad


def test_state_dict_round_trip(rng):
    model = _Params(rng.standard_normal(3), xn.device("cpu"))
    opt = optim.Adam(0.01)
    for _ in range(3):
        model.g = rng.standard_normal(3)
        opt.step(model)
    other = optim.Adam(0.5)
    other.load_state_dict(opt.state_dict())
    assert other.lr == 0.01 and other.t == 3
    np.testing.assert_array_equal(other.state["w"]["m"], opt.state["w"]["m"])
    with pytest.raises(ValueError, match="^SGD.load_state_dict: cannot load the state of an Adam optimizer into an "
                                         "SGD; build an Adam to load it$"):
        optim.SGD(0.1).load_state_dict(opt.state_dict())


# -- the book's conventions (issue 17) and NumPy scalars (issue 15) ----------------------------

def _book_adam(p, grads, lr=0.001, beta1=0.9, beta2=0.999):
    """The book's common/optimizer.py Adam, written from its formulas: eps on the raw sqrt(v)."""
    p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for it, g in enumerate(grads, start=1):
        lr_t = lr * np.sqrt(1.0 - beta2 ** it) / (1.0 - beta1 ** it)
        m += (1 - beta1) * (g - m)
        v += (1 - beta2) * (g ** 2 - v)
        p -= lr_t * m / (np.sqrt(v) + 1e-7)
    return p


def _run(opt, p0, grads):
    model = _Params(p0.copy(), xn.device("cpu"))
    for g in grads:
        model.g = g
        opt.step(model)
    return model.p


def test_adam_with_the_books_convention_matches_the_books_adam(rng):
    # Tiny gradients: where v is small, eps on sqrt(v) and on sqrt(v_hat) differ by far more than rounding.
    p0, grads = rng.standard_normal((4, 3)), [1e-6 * rng.standard_normal((4, 3)) for _ in range(5)]
    book = _book_adam(p0, grads, lr=0.01)
    np.testing.assert_allclose(_run(optim.Adam(0.01, convention="book"), p0, grads), book, rtol=1e-12, atol=1e-15)
    assert optim.Adam(convention="book").eps == 1e-7 and optim.Adam().eps == 1e-8
    assert not np.allclose(_run(optim.Adam(0.01, eps=1e-7), p0, grads), book, rtol=1e-3, atol=0)


class _Net:
    """Named params like a Sequential's: a Linear (W, b) and a BatchNorm (gamma, beta)."""

    def __init__(self, params, grads):
        self.params, self.grads = params, grads

    def named_params(self):
        return self.params

    def named_grads(self):
        return self.grads


@pytest.mark.parametrize("name", sorted(set(optim.OPTIMIZERS) - {"adamw"}))
def test_weight_decay_is_the_books_l2_on_weights_only(rng, name):
    """The book's MultiLayerNet: grads["W"] += lambda * W for every weight; biases, gamma, beta untouched."""
    lam = 0.1
    start = {k: rng.standard_normal(s) for k, s in (("0.W", (3, 2)), ("0.b", (2,)), ("1.gamma", (2,)),
                                                   ("1.beta", (2,)), ("2.W", (2, 2, 3, 3)))}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(3)]

    def run(opt, add_l2):
        params = {k: v.copy() for k, v in start.items()}
        net = _Net(params, None)
        for g in grads:
            net.grads = {k: g[k] + lam * params[k] if add_l2 and k.endswith(".W") else g[k] for k in g}
            opt.step(net)
        return params

    cls = optim.OPTIMIZERS[name]
    ours, book = run(cls(0.01, weight_decay=lam), False), run(cls(0.01), True)
    for k in start:
        np.testing.assert_allclose(ours[k], book[k], rtol=1e-12, atol=1e-15, err_msg=k)
    every = run(cls(0.01, weight_decay=lam, weight_decay_on="all"), False)
    assert not np.allclose(every["0.b"], book["0.b"], rtol=1e-9, atol=0)  # Adadelta at lr 0.01 moves by ~1e-6


def _every_layers_params():
    """Ones shaped as the parameters of every layer with weights, named as in a model: the models' layers
    (LanguageModel, seq2seq with attention, TiedLinear) are these same layers."""
    xn.init.seed(0)
    emb = xn.layers.Embedding(5, 3, dtype="float64")
    layers = [xn.layers.Linear(3, 2, dtype="float64"), xn.layers.Conv2d(1, 2, 3, dtype="float64"),
              xn.layers.BatchNorm(2, dtype="float64"), emb, xn.layers.TiedLinear(emb),
              xn.layers.LSTM(3, 2, dtype="float64"), xn.layers.GRU(3, 2, dtype="float64"),
              xn.layers.RNN(3, 2, dtype="float64")]
    return {f"{i}.{k}": np.ones_like(v) for i, layer in enumerate(layers) for k, v in layer.params.items()}


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_weight_decay_on_weights_reaches_every_layers_weights_and_no_bias(name):
    """Wx and Wh of LSTM, GRU and RNN are weights too: the rule once read only names equal to "W"."""
    start = _every_layers_params()
    weights = {"0.W", "1.W", "3.W", "5.Wx", "5.Wh", "6.Wx", "6.Wh", "7.Wx", "7.Wh"}
    assert weights < set(start) and {"0.b", "2.gamma", "2.beta", "4.b", "5.b", "6.bx", "6.bh"} < set(start)
    for on, expected in (("weights", weights), ("all", set(start))):
        params = {k: v.copy() for k, v in start.items()}
        optim.OPTIMIZERS[name](0.1, weight_decay=0.5, weight_decay_on=on).step(
            _Net(params, {k: np.zeros_like(v) for k, v in params.items()}))
        moved = {k for k in start if not np.array_equal(params[k], start[k])}
        assert moved == expected, on


def test_the_books_weight_decay_warns_once_naming_a_parameter_it_cannot_tell_from_a_weight():
    """A layer of one's own naming its weight ``kernel`` (pytorch/examples' gcn) got no decay, silently, where
    PyTorch's weight_decay decays it: a warning naming it, once; xpnet's own names (W..., b..., gamma, beta) and
    weight_decay_on="all" warn of nothing."""
    start = {"0.kernel": np.ones((3, 2)), "0.b": np.ones(2), "1.W": np.ones((2, 2)), "2.gamma": np.ones(2)}
    zero = {k: np.zeros_like(v) for k, v in start.items()}
    params = {k: v.copy() for k, v in start.items()}
    opt, net = optim.SGD(0.1, weight_decay=0.5), _Net(params, zero)
    with pytest.warns(UserWarning, match=r"leaves out '0.kernel'; pass weight_decay_on='all'") as caught:
        opt.step(net)
    assert len(caught) == 1 and np.array_equal(params["0.kernel"], start["0.kernel"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(net)  # once per parameter
        params = {k: v.copy() for k, v in start.items()}
        optim.SGD(0.1, weight_decay=0.5, weight_decay_on="all").step(_Net(params, zero))
        np.testing.assert_allclose(params["0.kernel"], 0.95 * start["0.kernel"])
        optim.SGD(0.1, weight_decay=0.5).step(_Net(_every_layers_params(), {k: np.zeros_like(v) for k, v in
                                                                            _every_layers_params().items()}))


def test_adamw_decays_every_parameter_by_default_and_weights_only_on_request(rng):
    start = {"0.W": rng.standard_normal((3, 2)), "0.b": rng.standard_normal(2)}
    zero = {k: np.zeros_like(v) for k, v in start.items()}
    for on, expected_b in (("all", start["0.b"] * (1 - 0.1 * 0.5)), ("weights", start["0.b"])):
        params = {k: v.copy() for k, v in start.items()}
        optim.AdamW(0.1, weight_decay=0.5, weight_decay_on=on).step(_Net(params, zero))
        np.testing.assert_allclose(params["0.W"], start["0.W"] * (1 - 0.1 * 0.5))
        np.testing.assert_allclose(params["0.b"], expected_b)


@pytest.mark.gpu
@pytest.mark.parametrize("scalars", [False, True], ids=["eager", "device-scalars"])
@pytest.mark.parametrize("cls,on", [("Adam", "weights"), ("AdamW", "weights"), ("AdamW", "all")])
def test_amsgrad_and_weight_decay_on_step_on_cupy_as_on_numpy(rng, cls, on, scalars):
    """AMSGrad's running maximum of v (not the fused Adam kernel) and the decay of weights only or of every
    parameter, on CuPy in float64 with gradients that shrink (so that the maximum is not v): NumPy's steps, with the
    step's numbers as Python floats or read from device arrays as a captured step reads them."""
    from xpnet.optim.device_scalars import DeviceScalars
    dev = require_cuda()
    start = {"0.W": rng.standard_normal((3, 2)), "0.b": rng.standard_normal(2)}
    grads = [{k: scale * rng.standard_normal(v.shape) for k, v in start.items()} for scale in (1.0, 0.3, 0.1, 0.03)]

    def run(where):
        opt = getattr(optim, cls)(0.1, weight_decay=0.1, weight_decay_on=on, amsgrad=True)
        if scalars and where is not None:
            opt.device_scalars = DeviceScalars(dev.xp, dev.native)
            opt.device_scalars.set(opt.lr, opt.t)
        send = (lambda a: a.copy()) if where is None else (lambda a: xn.to_device(a, where))
        net = _Net({k: send(v) for k, v in start.items()}, None)
        for g in grads:
            net.grads = {k: send(v) for k, v in g.items()}
            opt.step(net)
        return net.params, opt.state

    (expected, _), (got, state) = run(None), run(dev)
    for k in start:
        assert_placed(got[k], dev, "float64")
        assert_placed(state[k]["v_max"], dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(got[k]), expected[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_numpy_scalar_hyperparameters_are_accepted():
    opts = [optim.SGD(np.float32(0.1)), optim.Momentum(np.float64(0.1), momentum=np.float32(0.5)),
            optim.Adam(np.float32(1e-3), betas=(np.float32(0.9), np.float64(0.999)), eps=np.float32(1e-8)),
            optim.RMSprop(np.int64(1), alpha=np.float16(0.5)), optim.SGD(0.1, weight_decay=np.float32(1e-4))]
    assert all(type(v) in (float, str, tuple, bool) for o in opts for v in o.hyperparams().values())
    assert opts[0].lr == pytest.approx(0.1) and opts[2].betas[0] == pytest.approx(0.9)
    for bad in (lambda: optim.SGD(np.bool_(True)), lambda: optim.SGD(np.float32("nan")),
                lambda: optim.Adam(convention="keras"), lambda: optim.SGD(0.1, weight_decay_on="biases")):
        with pytest.raises(ValueError):
            bad()


def _book_nesterov(p, grads, lr, momentum, since_2021=True):
    """The book's common/optimizer.py Nesterov.update, statement for statement (github.com/oreilly-japan/
    deep-learning-from-scratch): as of commit 89eadd0 (2021-01-18, "Fix Nesterov update function"), and
    before it (since_2021=False: the velocity first)."""
    params, v = {"w": p.copy()}, {"w": np.zeros_like(p)}
    for g in grads:
        grads_ = {"w": g}
        for key in params.keys():
            if not since_2021:
                v[key] *= momentum
                v[key] -= lr * grads_[key]
            params[key] += momentum * momentum * v[key]
            params[key] -= (1 + momentum) * lr * grads_[key]
            if since_2021:
                v[key] *= momentum
                v[key] -= lr * grads_[key]
    return params["w"]


@pytest.mark.parametrize("convention,since_2021", [("book", True), ("book-2016", False)])
def test_nesterov_with_the_books_convention_repeats_the_books_arithmetic(rng, convention, since_2021):
    p0, grads = rng.standard_normal((3, 2)), [rng.standard_normal((3, 2)) for _ in range(5)]
    ours = _run(optim.Nesterov(0.13, momentum=0.9, convention=convention), p0, grads)
    np.testing.assert_array_equal(ours, _book_nesterov(p0, grads, 0.13, 0.9, since_2021))


def test_nesterov_conventions_the_book_now_and_pytorch_agree_and_the_2016_file_does_not(rng):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    p0, grads = rng.standard_normal((3, 2)), [rng.standard_normal((3, 2)) for _ in range(5)]
    w = torch.tensor(p0.copy(), requires_grad=True)
    reference = torch.optim.SGD([w], lr=0.13, momentum=0.9, nesterov=True)
    for g in grads:
        w.grad = torch.tensor(g)
        reference.step()
    pytorch = _run(optim.Nesterov(0.13, momentum=0.9), p0, grads)
    np.testing.assert_allclose(pytorch, w.detach().numpy(), rtol=1e-12, atol=1e-14)
    book = _run(optim.Nesterov(0.13, momentum=0.9, convention="book"), p0, grads)
    np.testing.assert_allclose(book, pytorch, rtol=1e-12, atol=1e-14)
    # The file before 2021 weighs each new gradient (1 + m + m^2) lr instead of (1 + m) lr.
    book_2016 = _run(optim.Nesterov(0.13, momentum=0.9, convention="book-2016"), p0, grads)
    assert np.abs(book_2016 - book).max() > 0.01


@pytest.mark.parametrize("settings", [{"momentum": 0.9}, {"momentum": 0.5, "dampening": 0.3},
                                      {"momentum": 0.9, "nesterov": True}, {"momentum": 0.8, "weight_decay": 0.1}])
def test_sgd_with_momentum_takes_pytorchs_steps(rng, settings):
    """Checked against torch.optim.SGD itself, with the learning rate changed halfway (where PyTorch's
    buffer and the book's velocity, lr * v, part ways)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    p0, grads = rng.standard_normal((3, 2)), [rng.standard_normal((3, 2)) for _ in range(6)]
    w = torch.tensor(p0.copy(), requires_grad=True)
    reference = torch.optim.SGD([w], lr=0.1, **settings)
    ours = optim.SGD(0.1, weight_decay_on="all", **settings)
    model = _Params(p0.copy(), xn.device("cpu"))
    for i, g in enumerate(grads):
        if i == 3:
            ours.lr = reference.param_groups[0]["lr"] = 0.02
        w.grad = torch.tensor(g)
        reference.step()
        model.g = g
        ours.step(model)
    np.testing.assert_allclose(model.p, w.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("settings", [{"momentum": 0.9}, {"centered": True}, {"momentum": 0.5, "centered": True},
                                      {"momentum": 0.9, "weight_decay": 0.1}])
def test_rmsprop_takes_pytorchs_momentum_and_centered(dev, rng, settings):
    """RMSprop(momentum=0.9) or centered=True, torch.optim.RMSprop's options, were a TypeError; checked against
    torch.optim.RMSprop itself, with the learning rate changed halfway, on every device."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    p0, grads = rng.standard_normal((3, 2)), [rng.standard_normal((3, 2)) for _ in range(6)]
    w = torch.tensor(p0.copy(), requires_grad=True)
    reference = torch.optim.RMSprop([w], lr=0.01, alpha=0.9, **settings)
    ours = optim.RMSprop(0.01, alpha=0.9, weight_decay_on="all", **settings)
    model = _Params(p0.copy(), dev)
    for i, g in enumerate(grads):
        if i == 3:
            ours.lr = reference.param_groups[0]["lr"] = 0.002
        w.grad = torch.tensor(g)
        reference.step()
        model.g = xn.to_device(g, dev)
        ours.step(model)
    assert_placed(model.p, dev, "float64")
    np.testing.assert_allclose(xn.to_numpy(model.p), w.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert repr(ours).startswith("RMSprop(") and ours.hyperparams()["centered"] == settings.get("centered", False)
    with pytest.raises(TypeError, match="RMSprop: centered must be True or False, got 'yes'"):
        optim.RMSprop(centered="yes")


def test_sgd_without_momentum_is_the_books_and_refuses_nesterov_without_momentum(rng):
    p0, grads = rng.standard_normal(4), [rng.standard_normal(4) for _ in range(3)]
    expected = p0 - 0.1 * grads[0] - 0.1 * grads[1] - 0.1 * grads[2]
    np.testing.assert_array_equal(_run(optim.SGD(lr=0.1), p0, grads), expected)
    for bad in ({"nesterov": True}, {"momentum": 0.9, "dampening": 0.1, "nesterov": True}):
        with pytest.raises(ValueError, match="SGD: nesterov"):
            optim.SGD(0.1, **bad)
    with pytest.raises(TypeError, match="SGD: nesterov must be True or False, got 1"):  # as the other flags
        optim.SGD(0.1, 0.9, nesterov=1)
    # API.md's order (lr, momentum, nesterov) differs from PyTorch's (lr, momentum, dampening) at the third:
    # a bool there is no dampening, and says so.
    with pytest.raises(ValueError, match=r"SGD: dampening must be in \[0, 1\), got True: the third positional "
                                         r"argument is dampening, in PyTorch's order; pass nesterov=True by keyword$"):
        optim.SGD(0.1, 0.9, True)


def test_an_optimizer_stays_bound_after_its_model_is_freed(monkeypatch):
    # A model made right after the bound one was freed can get the freed one's id() (CPython reuses the
    # memory; seen in CI). It is still another model: the moments the optimizer holds are not its own.
    # id() is made to return one number for every object, which is what reuse looks like to an id check.
    monkeypatch.setattr(optim, "id", lambda obj: 1, raising=False)
    opt = xn.optim.Adam(1e-3)
    first = xn.Sequential(xn.layers.Linear(3, 2), xn.layers.ReLU())
    opt.bind(first)
    opt.bind(first)  # the same model again is fine
    del first
    with pytest.raises(ValueError, match="bound to another model"):
        opt.bind(xn.Sequential(xn.layers.Linear(3, 2), xn.layers.ReLU()))


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_a_model_without_parameters_steps_as_a_no_op(name, rng):
    """A loop of the user's own over a model of ReLUs only: step updates nothing (it once asked the
    namespace of a first parameter that is not there)."""
    model = xn.Sequential(xn.layers.ReLU(), xn.layers.ReLU())
    x = rng.standard_normal((4, 3)).astype(np.float32)
    model.backward(model.forward(x))
    opt = optim.OPTIMIZERS[name]()
    opt.step(model)
    assert opt.t == 1 and model.named_params() == {}


def test_a_bad_gradient_leaves_the_optimizer_state_where_it_was(rng):
    """step checks every gradient before it touches anything: the state of a parameter checked before the
    bad one is not moved to a new dtype either."""
    model = xn.Sequential(xn.layers.Linear(3, 2), xn.layers.Linear(2, 2))
    opt = optim.Adam()
    x = rng.standard_normal((4, 3)).astype(np.float32)
    model.backward(model.forward(x))
    opt.step(model)
    kept = {k: {s: v for s, v in slots.items()} for k, slots in opt.state.items()}
    model.to(dtype="float64")
    model.backward(model.forward(x.astype(np.float64)))
    model[1].grads["W"] = model[1].grads["W"].astype(np.float32)
    with pytest.raises(ValueError, match=r"Adam: .*'1.W'"):
        opt.step(model)
    for k, slots in kept.items():
        for s, v in slots.items():
            assert opt.state[k][s] is v


def test_built_pytorchs_way_weight_decay_is_pytorchs_on_every_parameter():
    """imagenet/main.py's SGD(model.parameters(), lr, momentum=0.9, weight_decay=1e-4) decayed the weights only, the
    book's rule, where PyTorch decays biases and BatchNorm's gamma and beta too (the loss off by 7e-6 after two
    steps): built from model.parameters() or param groups, an optimizer defaults to weight_decay_on="all", equal to
    torch.optim.SGD; from the lr (the book's SGD(0.1)) or the model itself it keeps the book's rule, and an explicit
    weight_decay_on is kept either way."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).double()
    ours = xn.Sequential(xn.layers.Linear(3, 2, dtype="float64"), xn.layers.BatchNorm(2, dtype="float64"))
    xn.load_torch_state_dict(ours, theirs.state_dict())
    start = {k: np.array(v) for k, v in ours.named_params().items()}
    for p in theirs.parameters():
        p.grad = torch.zeros_like(p)
    torch.optim.SGD(theirs.parameters(), 0.1, momentum=0.9, weight_decay=0.5).step()
    opt = optim.SGD(ours.parameters(), 0.1, momentum=0.9, weight_decay=0.5)
    assert opt.weight_decay_on == "all"
    for layer in ours.named_modules().values():
        layer.grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    opt.step()
    got = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    np.testing.assert_allclose(ours.named_params()["0.W"], got["0.weight"].T, rtol=1e-12)
    np.testing.assert_allclose(ours.named_params()["0.b"], got["0.bias"], rtol=1e-12)
    np.testing.assert_allclose(ours.named_params()["1.gamma"], got["1.weight"], rtol=1e-12)
    assert not np.array_equal(ours.named_params()["0.b"], start["0.b"])
    assert optim.SGD(0.1, weight_decay=0.5).weight_decay_on == "weights"
    assert optim.SGD(ours, lr=0.1, weight_decay=0.5).weight_decay_on == "weights"
    assert optim.SGD(ours.parameters(), 0.1, weight_decay=0.5, weight_decay_on="weights").weight_decay_on == "weights"
    assert optim.SGD([{"params": ours[0]}, {"params": ours[1], "lr": 0.01}], lr=0.1).weight_decay_on == "all"
