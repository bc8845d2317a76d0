"""What a Chainer user writes first (docs/from-chainer.md): it works with Chainer's meaning where that fits
xpnet, or fails at once with one line saying what to write instead. The references for Chainer's arithmetic
are written from its source (chainer/optimizers/momentum_sgd.py, adam.py, functions/loss/
softmax_cross_entropy.py, utils/conv.py), as chainer is not installed."""

import inspect
import math
import os

import numpy as np
import pytest

import xpnet as xn
from xpnet import _chainer
from xpnet.layers import BatchNorm, Conv2d, Dropout, Linear, MaxPool2d


def _one_line_hint(info, name, hint):
    message = str(info.value)
    assert f" {name!r}: " in message and hint in message and "\n" not in message, message


@pytest.mark.parametrize("expression, hint", [
    ("xn.serializers", "model.save(path) is serializers.save_npz(path, model)"),
    ("xn.using_config", "model.eval() (or model.predict(x)"),
    ("xn.config", "model.training for chainer.config.train"),
    ("xn.links", "L.Convolution2D xn.layers.Conv2d"),
    ("xn.functions", "F.dropout(x, ratio) xn.layers.Dropout(p=ratio)"),
    ("xn.Chain", "a model of your own subclasses xn.Model"),
    ("xn.ChainList", "xn.Sequential(layer, ...)"),
    ("xn.get_device", "xn.device('cuda:0') is chainer.get_device('@cupy:0')"),
    ("xn.backends", "xn.backend.namespace(x) its get_array_module(x)"),
    ("xn.cuda", "to_cpu(x) xn.to_numpy(x)"),
    ("xn.optimizers", "MomentumSGD is xn.optim.Momentum(lr, momentum)"),
    ("xn.iterators", "xn.datasets.BatchIterator(x, t, batch_size=100, seed=0) is SerialIterator"),
    ("xn.backend.get_array_module", "xn.backend.namespace(x)"),
    ("xn.layers.Classifier", "xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy())"),
    ("xn.layers.LazyLinear", "xpnet has no lazy layers"),
    ("xn.layers.LazyConv2d", "xpnet has no lazy layers"),
    ("xn.datasets.get_mnist", "xn.datasets.load_mnist()"),
    ("xn.datasets.get_cifar10", "xpnet has no CIFAR loader"),
    ("xn.datasets.SerialIterator", "xn.datasets.BatchIterator"),
    ("xn.optim.SGD(0.1).update", "optimizer.step() is Chainer's optimizer.update()"),
    ("xn.optim.SGD(0.1).add_hook", "weight_decay=rate, weight_decay_on='all'"),
    ("xn.Sequential(xn.layers.ReLU()).xp", "model.device.xp"),
    ("xn.Sequential(xn.layers.ReLU()).count_params", "model.summary() ends with the parameter count"),
    ("xn.layers.Linear(2, 3).W", "layer.params['W'] is the weight array (Linear's is (in, out)"),
])
def test_chainers_names_say_what_to_write(expression, hint):
    with pytest.raises(AttributeError) as info:
        eval(expression, {"xn": xn})  # noqa: S307 - fixed expressions
    _one_line_hint(info, expression.rsplit(".", 1)[1], hint)


KEYWORDS = [
    (Linear, (784, 100), "nobias", True, "bias=False is Chainer's nobias=True"),
    (Linear, (784, 100), "initialW", None, "init='sigmoid' is Chainer's default LeCunNormal"),
    (Linear, (784, 100), "initial_bias", 0, "set layer.params['b']"),
    (Conv2d, (3, 8, 3), "pad", 1, "padding=..."),
    (Conv2d, (3, 8), "ksize", 3, "kernel_size=..."),
    (Conv2d, (3, 8, 3), "nobias", True, "bias=False"),
    (MaxPool2d, (), "ksize", 2, "kernel_size=..."),
    (MaxPool2d, (2,), "cover_all", True, "ceil_mode=True is Chainer's cover_all=True"),
    (xn.layers.AvgPool2d, (2,), "pad", 1, "padding=..."),
    (Dropout, (), "ratio", 0.3, "p=ratio"),
    (BatchNorm, (64,), "decay", 0.9, "momentum=1 - decay"),
    (xn.losses.SoftmaxCrossEntropy, (), "ignore_label", -1, "ignore_index=-1 is Chainer's ignore_label=-1"),
    (xn.losses.SoftmaxCrossEntropy, (), "class_weight", None, "where Chainer's divides by their number"),
    (xn.losses.SoftmaxCrossEntropy, (), "normalize", False, "reduction='sum' and divide by the batch size"),
    (xn.optim.Adam, (), "alpha", 1e-3, "Adam(lr=1e-3, convention='book', eps=1e-8)"),
    (xn.optim.Adam, (), "beta1", 0.9, "betas=(beta1, beta2)"),
    (xn.optim.AdamW, (), "weight_decay_rate", 1e-4, "weight_decay=weight_decay_rate / lr"),
]


@pytest.mark.parametrize("cls, args, keyword, value, hint", KEYWORDS, ids=lambda v: getattr(v, "__name__", None))
def test_chainers_keywords_say_what_to_write(cls, args, keyword, value, hint):
    with pytest.raises(TypeError, match=f"^{cls.__name__}\\(\\) got an unexpected keyword argument '{keyword}': ") \
            as info:
        cls(*args, **{keyword: value})
    _one_line_hint(info, keyword, hint)


@pytest.mark.parametrize("cls, table", [(Linear, _chainer.LINEAR), (Conv2d, _chainer.CONV2D),
                                        (MaxPool2d, _chainer.POOL), (xn.layers.AvgPool2d, _chainer.POOL),
                                        (Dropout, _chainer.DROPOUT), (BatchNorm, _chainer.BATCHNORM),
                                        (xn.losses.SoftmaxCrossEntropy, _chainer.SOFTMAX_CROSS_ENTROPY),
                                        (xn.optim.Adam, _chainer.ADAM), (xn.optim.AdamW, _chainer.ADAM)])
def test_a_hinted_keyword_is_none_that_xpnet_takes_and_the_signature_is_xpnets(cls, table):
    """A hint for a keyword the class takes would never show; help() keeps the real signature."""
    taken = set(inspect.signature(cls).parameters)
    assert not taken & set(table) and taken


@pytest.mark.parametrize("make, arg", [(lambda: Linear(None, 100), "in_features"),
                                       (lambda: Conv2d(None, 64, 3, padding=1, bias=False), "in_channels")])
def test_a_size_left_for_the_first_forward_is_refused_saying_how_to_find_it(make, arg):
    with pytest.raises(ValueError, match=f"^{arg.join(('.*: ', '=None'))}.*is not in xpnet: give {arg}; .*"
                                         r"model.summary\(input_shape=...\)"):
        make()


def test_the_size_summary_prints_is_the_one_linear_takes():
    """What the lazy-size refusal tells the user to do works: the summary of the layers before the Linear
    gives its in_features, and VGG's Linear(None, 512) becomes Linear(that, 512)."""
    body = xn.Sequential(Conv2d(3, 8, 3, padding=1), MaxPool2d(2, 2), xn.layers.Flatten())
    assert "(N, 512)" in body.summary(input_shape=(3, 16, 16)).splitlines()[-4]
    head = Linear(512, 10)
    x = np.zeros((2, 3, 16, 16), np.float32)
    assert head.forward(body.forward(x)).shape == (2, 10)
    assert head.forward(np.zeros((2, 8, 8, 8), np.float32)).shape == (2, 10)  # (N, C, H, W) flattened, as Chainer


def test_chainers_positional_nobias_is_refused_with_the_opposite_bias():
    with pytest.raises(TypeError, match=r"Chainer's third, nobias, is bias=False$"):
        Linear(784, 100, True)
    with pytest.raises(TypeError, match=r"^Conv2d: the sixth argument is PyTorch's dilation, got True; Chainer's "
                                        r"sixth, nobias, is bias=False here, by keyword$"):
        Conv2d(3, 8, 3, 1, 1, True)


def test_chainers_positional_decay_is_not_taken_for_eps():
    with pytest.raises(ValueError, match=r"for Chainer's \(decay second\) momentum=0.1 \(1 - decay\)$"):
        BatchNorm(64, 0.9)


def test_a_label_of_minus_one_names_chainers_ignore_label():
    loss = xn.losses.SoftmaxCrossEntropy()
    y = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"got values in \[-1, 1\]; Chainer's ignore_label=-1 is ignore_index=-1$"):
        loss.forward(y, np.array([0, 1, -1]))
    with pytest.raises(ValueError, match=r"got values in \[0, 5\]$"):
        loss.forward(y, np.array([0, 5, 1]))


def _chainer_softmax_cross_entropy(x, t, class_weight=None, ignore_label=-1, normalize=True):
    """F.softmax_cross_entropy(x, t, normalize, class_weight=...) as its CPU forward computes it: log_y *=
    class_weight; -sum(log_y[i, t[i]] over t[i] != ignore_label) / max(count of those or len(x), 1)."""
    log_y = x - x.max(axis=1, keepdims=True)
    log_y = log_y - np.log(np.exp(log_y).sum(axis=1, keepdims=True))
    if class_weight is not None:
        log_y = log_y * class_weight
    valid = t != ignore_label
    picked = log_y[np.arange(len(t))[valid], t[valid]]
    return -picked.sum() / max(valid.sum() if normalize else len(x), 1)


def test_ignore_index_minus_one_and_class_weights_as_the_hints_say():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((8, 5)), np.array([0, 4, -1, 2, 2, -1, 1, 3])
    w = rng.uniform(0.5, 2.0, 5)
    assert float(xn.losses.SoftmaxCrossEntropy(-1).forward(x, t)) == pytest.approx(
        _chainer_softmax_cross_entropy(x, t), rel=1e-12)
    counted = int((t != -1).sum())
    weighted_sum = float(xn.losses.SoftmaxCrossEntropy(-1, reduction="sum", weight=w).forward(x, t))
    assert weighted_sum / counted == pytest.approx(_chainer_softmax_cross_entropy(x, t, w), rel=1e-12)
    total = float(xn.losses.SoftmaxCrossEntropy(-1, reduction="sum").forward(x, t))
    assert total / len(t) == pytest.approx(_chainer_softmax_cross_entropy(x, t, normalize=False), rel=1e-12)
    assert float(xn.losses.SoftmaxCrossEntropy(-1, weight=w).forward(x, t)) != pytest.approx(
        _chainer_softmax_cross_entropy(x, t, w), rel=1e-3)  # the mean differs, as the class_weight hint says


def _linear_model(seed=0):
    xn.init.seed(seed)
    return xn.Sequential(Linear(4, 3, dtype="float64"))


def _grads():
    rng = np.random.default_rng(1)
    return [{"0.W": rng.standard_normal((4, 3)), "0.b": rng.standard_normal(3)} for _ in range(4)]


def _steps(model, opt):
    layer = model[0]
    for g in _grads():
        layer.grads = {"W": g["0.W"], "b": g["0.b"]}
        opt.step()
    return model.named_params()


def test_setup_binds_the_model_as_chainers_optimizer_setup():
    model = _linear_model()
    opt = xn.optim.Momentum(lr=0.01, momentum=0.9)
    assert opt.setup(model) is opt
    _steps(model, opt)  # step() with no model: setup bound it
    with pytest.raises(ValueError, match="bound to another model"):
        opt.setup(_linear_model())


def test_momentum_weight_decay_on_all_is_momentum_sgd_with_chainers_weight_decay_hook():
    """MomentumSGDRule.update_core_cpu: v *= momentum; v -= lr * grad; param += v, after the WeightDecay
    hook's grad += rate * param on every parameter."""
    lr, m, rate = 0.05, 0.9, 1e-2
    model = _linear_model()
    got = _steps(model, xn.optim.Momentum(lr=lr, momentum=m, weight_decay=rate, weight_decay_on="all").setup(model))
    p = {k: np.array(v) for k, v in _linear_model().named_params().items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    for g in _grads():
        for k in p:
            grad = g[k] + rate * p[k]
            v[k] = m * v[k] - lr * grad
            p[k] = p[k] + v[k]
    for k in p:
        np.testing.assert_allclose(got[k], p[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("weight_decay_rate", [0.0, 1e-2])
def test_adam_book_convention_with_eps_1e8_steps_as_chainers_adam(weight_decay_rate):
    """AdamRule.update_core_cpu: m += (1 - beta1) * (g - m); v += (1 - beta2) * (g * g - v);
    param = (1 - eta * weight_decay_rate) * param - eta * alpha_t * m / (sqrt(v) + eps), alpha_t =
    alpha * sqrt(1 - beta2**t) / (1 - beta1**t); its weight_decay_rate is AdamW's weight_decay * lr."""
    alpha, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    model = _linear_model()
    cls, decay = (xn.optim.AdamW, {"weight_decay": weight_decay_rate / alpha}) if weight_decay_rate else \
        (xn.optim.Adam, {})
    got = _steps(model, cls(lr=alpha, convention="book", eps=1e-8, **decay).setup(model))
    p = {k: np.array(a) for k, a in _linear_model().named_params().items()}
    m = {k: np.zeros_like(a) for k, a in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    for t, g in enumerate(_grads(), start=1):
        alpha_t = alpha * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        for k in p:
            m[k] += (1 - b1) * (g[k] - m[k])
            v[k] += (1 - b2) * (g[k] * g[k] - v[k])
            p[k] = (1 - weight_decay_rate) * p[k] - alpha_t * m[k] / (np.sqrt(v[k]) + eps)
    for k in p:
        np.testing.assert_allclose(got[k], p[k], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("spec, meant", [("@cupy:0", "cuda:0"), ("@cupy:1", "cuda:1"), ("@cupy", "cuda"),
                                         ("@numpy", "cpu")])
def test_chainers_device_specifiers_say_which_xpnet_string(spec, meant):
    with pytest.raises(ValueError, match=f"got '{spec}' \\(did you mean '{meant}'\\?\\)$"):
        xn.device(spec)


@pytest.mark.parametrize("spec", [0, -1, np.int64(1)])
def test_a_chainer_device_id_says_what_to_write(spec):
    with pytest.raises(TypeError, match=r"got .*: Chainer's GPU id; 'cuda:N' is GPU N, 'cpu' Chainer's -1\)$"):
        xn.Sequential(Linear(2, 2)).to(spec)


def test_init_scope_registers_the_layers_as_attributes_do():
    class MLP(xn.Model):
        def __init__(self, scoped):
            super().__init__()
            if scoped:
                with self.init_scope():
                    self.l1, self.l2 = Linear(4, 3), Linear(3, 2)
            else:
                self.l1, self.l2 = Linear(4, 3), Linear(3, 2)

    xn.init.seed(0)
    scoped = MLP(True).named_params()
    xn.init.seed(0)
    plain = MLP(False).named_params()
    assert list(scoped) == list(plain) == ["l1.W", "l1.b", "l2.W", "l2.b"]
    for k in scoped:
        np.testing.assert_array_equal(scoped[k], plain[k])


def _chainer_max_pooling_2d(x, k, s):
    """F.max_pooling_2d(x, k, s, pad=0, cover_all=True): windows every s pixels while one starts before
    utils.conv.get_conv_outsize's (size + p*2 - k + s - 1) // s + 1, the part past the input -inf."""
    n, c, h, w = x.shape
    oh, ow = (h - k + s - 1) // s + 1, (w - k + s - 1) // s + 1
    padded = np.full((n, c, (oh - 1) * s + k, (ow - 1) * s + k), -np.inf)
    padded[:, :, :h, :w] = x
    return np.array([[padded[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3)) for j in range(ow)]
                     for i in range(oh)]).transpose(2, 3, 0, 1)


@pytest.mark.parametrize("size, k, s", [(7, 2, 2), (5, 3, 2), (9, 3, 3), (8, 2, 2), (6, 3, 1)])
def test_ceil_mode_is_chainers_cover_all_at_padding_zero(size, k, s):
    x = np.random.default_rng(0).standard_normal((2, 3, size, size))
    np.testing.assert_array_equal(MaxPool2d(k, s, ceil_mode=True).forward(x), _chainer_max_pooling_2d(x, k, s))
    if (size - k) % s == 0:  # every window inside: ceil_mode=False, the default, is the same
        np.testing.assert_array_equal(MaxPool2d(k, s).forward(x), _chainer_max_pooling_2d(x, k, s))


def test_dropout_p_means_chainers_ratio():
    """F.dropout(x, ratio): each value dropped with probability ratio, the rest scaled by 1 / (1 - ratio)."""
    y = Dropout(0.3, seed=0).forward(np.ones((200, 500), np.float32))
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.7)}
    assert abs(float((y == 0).mean()) - 0.3) < 0.01


def test_chainers_initial_weights_go_in_params_transposed_for_linear():
    """F.linear(x, W, b) is x @ W.T + b with W (out_size, in_size); Conv2d's W is Chainer's as it is."""
    rng = np.random.default_rng(0)
    w, b, x = rng.standard_normal((2, 3)), rng.standard_normal(2), rng.standard_normal((4, 3))
    layer = Linear(3, 2, dtype="float64")
    layer.params["W"], layer.params["b"] = w.T, b
    np.testing.assert_allclose(layer.forward(x), x @ w.T + b, rtol=1e-12)


def test_gradient_clipping_is_chainers_up_to_its_1e6():
    """GradientClipping(threshold): every gradient times threshold / sqrt(sum of squares) when that is < 1."""
    model = _linear_model()
    g = _grads()[0]
    model[0].grads = {"W": g["0.W"].copy(), "b": g["0.b"].copy()}
    norm = math.sqrt(sum(float((a * a).sum()) for a in g.values()))
    xn.optim.clip_grad_norm(model, 0.5)
    for key, name in (("W", "0.W"), ("b", "0.b")):
        np.testing.assert_allclose(model[0].grads[key], g[name] * 0.5 / norm, rtol=1e-5)


def test_chainer_default_initialiser_lecun_normal_is_init_sigmoid():
    """LeCunNormal: N(0, 1 / fan_in), fan_in = in_size for Linear and in_channels * kh * kw for Conv2d."""
    xn.init.seed(0)
    w = Linear(1000, 400, init="sigmoid").params["W"]
    assert float(np.std(w)) == pytest.approx(math.sqrt(1 / 1000), rel=0.01)
    w = Conv2d(50, 200, 3, init="sigmoid").params["W"]
    assert float(np.std(w)) == pytest.approx(math.sqrt(1 / (50 * 9)), rel=0.01)


def _docs_code(i):
    """The i-th python block of docs/from-chainer.md."""
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "from-chainer.md")
    with open(path, encoding="utf-8") as f:
        return f.read().split("```python\n")[1 + i].split("```", 1)[0]


def test_the_ported_custom_loop_of_docs_from_chainer_learns(fashion_mnist, tmp_path, monkeypatch, capsys):
    """docs/from-chainer.md's port of train_mnist_custom_loop.py runs as printed (on small subsets)."""
    monkeypatch.chdir(tmp_path)
    code = _docs_code(0).replace("[:60000]", "[:2000]").replace("[:10000]", "[:500]")
    scope = {"__name__": "ported"}
    exec(compile(code, "from-chainer.md", "exec"), scope)  # noqa: S102 - the docs' own code
    out = capsys.readouterr().out
    assert float(out.rsplit("accuracy", 1)[1].strip(" :{}'\n")) > 0.6
    fresh = scope["MLP"](784, 100, 10)  # serializers.load_npz("mlp.npz", model) into a model built anew
    fresh.load_state_dict(xn.load(tmp_path / "mlp.npz").state_dict())
    for name, value in scope["model"].named_params().items():
        np.testing.assert_array_equal(xn.to_numpy(fresh.named_params()[name]), xn.to_numpy(value))


def test_the_ported_vgg_of_docs_from_chainer_trains_and_prints_its_size(capsys):
    exec(compile(_docs_code(1), "from-chainer.md", "exec"), {"__name__": "ported"})  # noqa: S102 - the docs' own
    out = capsys.readouterr().out
    assert "parameters: 139,312 (float32, on " in out and math.isfinite(float(out.strip().splitlines()[-1]))
