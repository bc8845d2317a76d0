"""xpnet's own composite models with a frozen part: ``backward_params`` (what ``xn.train`` calls) backpropagates from
the output down to the earliest part that trains only, which gets no dx either, as PyTorch's autograd skips what
needs no gradient; every gradient that trains equals the full backward's, in float64."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers.container import Watcher, watch
from xpnet.models.vgg import make_layers

L = xn.layers


def _resnet(block="BasicBlock"):
    xn.init.seed(0)
    return xn.models.ResNet(block, [1, 1, 1, 1], num_classes=3).to(dtype="float64")


def _vgg():
    with xn.init.skip_init():
        model = xn.models.VGG(make_layers([8, "M", 16, "M"], batch_norm=True), num_classes=3, dropout=0.0)
    xn.init.seed(0)
    for i, (n_in, n_out) in zip((0, 3, 6), [(16 * 7 * 7, 12), (12, 12), (12, 3)]):
        model.classifier[i] = L.Linear(n_in, n_out)
    for conv in (model.features[0], model.features[4]):  # skip_init's placeholders: weights drawn here
        conv.params = {k: np.random.default_rng(0).normal(0, 0.3, v.shape) for k, v in conv.params.items()}
    return model.to(dtype="float64")


def _mobilenet():
    xn.init.seed(0)
    return xn.models.mobilenet_v2(num_classes=3, width_mult=0.1, dropout=0.0).to(dtype="float64")


IMAGES = (2, 3, 32, 32)
# name -> (the model, the prefixes frozen in a case each: dotted names of parts)
CASES = {
    "resnet": (_resnet, {"nothing": [], "conv1-layer1": ["conv1", "bn1", "layer1"],
                         "conv1-layer2.0.conv1": ["conv1", "bn1", "layer1", "layer2.0.conv1", "layer2.0.bn1"],
                         "all-but-fc": ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"],
                         "all-but-layer4-fc": ["conv1", "bn1", "layer1", "layer2", "layer3"],
                         "layer2-layer3-only": ["conv1", "bn1", "layer1", "layer4", "fc"]}),
    "resnet-bottleneck": (lambda: _resnet("Bottleneck"), {"conv1-layer1": ["conv1", "bn1", "layer1"]}),
    "vgg": (_vgg, {"nothing": [], "features.0-1": ["features.0", "features.1"], "all-but-classifier": ["features"],
                   "all-but-classifier.3-6": ["features", "classifier.0"]}),
    "mobilenet": (_mobilenet, {"nothing": [], "features.0-4": [f"features.{i}" for i in range(5)],
                               "all-but-classifier": ["features"],
                               "all-but-features.16-": [f"features.{i}" for i in range(16)]}),
}
PARAMS = [(model, case) for model, (_, cases) in CASES.items() for case in cases]


class _Backwards(Watcher):
    """The leaves whose backward ran, by dotted name: True where it gave dx, False for ``backward_params``."""

    def __init__(self):
        self.ran = {}

    def backward(self, name, layer, dy, dx):
        self.ran[name] = dx is not None


def _grads(model, x, dy, full):
    """The trainable gradients of one training forward and its backward (the full one, or ``backward_params``),
    from emptied stores, and the leaves each backward ran."""
    for node in model.named_modules().values():
        node.grads.clear()
    model.forward(x, train=True)
    with _watched(model) as seen:
        if full:
            assert model.backward(dy) is not None
        else:
            assert model.backward_params(dy) is None
    return model.params_and_grads(trainable=True)[1], seen.ran


class _watched:
    """``watch`` with a fresh recorder, as a context manager giving it."""

    def __init__(self, model):
        self.recorder, self.model = _Backwards(), model

    def __enter__(self):
        self.context = watch(self.model, self.recorder)
        self.context.__enter__()
        return self.recorder

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def _under(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("arch,case", PARAMS, ids=[f"{m}-{c}" for m, c in PARAMS])
def test_backward_params_gives_the_full_backwards_trainable_gradients_and_runs_nothing_frozen_below(arch, case):
    build, cases = CASES[arch]
    frozen = cases[case]
    model = build()
    modules = model.named_modules()
    for name in frozen:
        modules[name].requires_grad_(False)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal(IMAGES), rng.standard_normal((IMAGES[0], 3))
    full, full_ran = _grads(model, x, dy, full=True)
    short, short_ran = _grads(model, x, dy, full=False)
    assert short.keys() == full.keys() == model.trainable_params().keys()
    for key in full:
        np.testing.assert_allclose(short[key], full[key], rtol=1e-12, atol=1e-14, err_msg=key)
    # Nothing at or below the earliest frozen prefix that has nothing training below it runs: with the stem or a
    # backbone frozen, no leaf of it; the leaves that do run are those of the full backward above that point.
    order = list(modules)
    trainable = [name for name in order if modules[name].params and not modules[name]._frozen]
    earliest = order.index(trainable[0])
    skipped = {name for name in full_ran if order.index(name) < earliest}
    assert set(short_ran) == set(full_ran) - skipped
    assert all(not _under(name, [p for p in frozen if order.index(p) < earliest]) for name in short_ran)
    assert short_ran[trainable[0]] is False  # the earliest layer that trains gives no dx


def test_a_frozen_resnet_backbone_runs_the_heads_backward_alone():
    """PyTorch's fixed feature extractor: ``model.requires_grad_(False)``, then a new ``model.fc``."""
    model = _resnet()
    model.requires_grad_(False)
    model.fc = L.Linear(512, 3).to(dtype="float64")
    rng = np.random.default_rng(0)
    _, ran = _grads(model, rng.standard_normal(IMAGES), rng.standard_normal((IMAGES[0], 3)), full=False)
    assert ran == {"fc": False}


def test_a_model_of_ones_own_stops_at_its_earliest_part_that_trains_with_backward_chain():
    class Net(xn.Model):
        def __init__(self):
            super().__init__()
            self.backbone = xn.Sequential(L.Conv2d(3, 4, 3, padding=1), L.ReLU(), L.MaxPool2d(2))
            self.flatten, self.head = L.Flatten(), L.Linear(4 * 4 * 4, 3)

        def forward(self, x, train=True):
            return self.head.forward(self.flatten.forward(self.backbone.forward(x, train), train), train)

        def backward(self, dy, input_grad=True):
            return xn.models.backward_chain([self.backbone, self.flatten, self.head], dy, input_grad)

        def backward_params(self, dy):
            self.backward(dy, input_grad=False)

    xn.init.seed(0)
    model = Net().to(dtype="float64")
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((2, 3))
    full, _ = _grads(model, x, dy, full=True)
    model.backbone.requires_grad_(False)
    short, ran = _grads(model, x, dy, full=False)
    assert ran == {"head": False}
    assert short.keys() == {"head.W", "head.b"}
    for key in short:
        np.testing.assert_allclose(short[key], full[key], rtol=1e-12, err_msg=key)


def test_an_xn_train_epoch_is_the_same_with_and_without_stopping_at_the_earliest_part_that_trains():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((8, 3, 32, 32)), rng.integers(0, 3, 8)
    trained = []
    for shortcut in (True, False):
        model = _resnet()
        for name in ("conv1", "bn1", "layer1", "layer2"):
            model.get_submodule(name).requires_grad_(False)
        if not shortcut:
            model.backward_params = lambda dy, model=model: model.backward(dy)  # the full backward, dx discarded
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1, momentum=0.9), epochs=1,
                 batch_size=4, shuffle=False, progress=False)
        trained.append(model.state_dict())
    for key, value in trained[1].items():
        np.testing.assert_allclose(trained[0][key], value, rtol=1e-12, atol=1e-14, err_msg=key)


def test_backward_params_after_zero_grad_adds_up_the_trainable_gradients():
    model = _resnet()
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3"):
        model.get_submodule(name).requires_grad_(False)
    rng = np.random.default_rng(0)
    x, dys = rng.standard_normal(IMAGES), [rng.standard_normal((IMAGES[0], 3)) for _ in range(2)]
    full = [_grads(model, x, dy, full=True)[0] for dy in dys]
    model.zero_grad()
    for dy in dys:
        model.forward(x, train=True)
        model.backward_params(dy)
    added = model.params_and_grads(trainable=True)[1]
    assert added.keys() == full[0].keys()
    for key in added:
        np.testing.assert_allclose(added[key], full[0][key] + full[1][key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_a_layer_used_twice_in_a_sequential_with_a_frozen_layer_below_it():
    xn.init.seed(0)
    shared = L.Linear(4, 4)
    model = xn.Sequential(L.Linear(3, 4), L.Tanh(), shared, L.Tanh(), shared, L.Linear(4, 2)).to(dtype="float64")
    model[0].requires_grad_(False)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    for node in model.named_modules().values():
        node.grads.clear()
    model(x)
    model.backward(dy)
    full = dict(model.params_and_grads(trainable=True)[1])
    for node in model.named_modules().values():
        node.grads.clear()
    model(x)
    model.backward_params(dy)
    short = model.params_and_grads(trainable=True)[1]
    assert short.keys() == full.keys() == {"2.W", "2.b", "5.W", "5.b"}
    for key in full:
        np.testing.assert_allclose(short[key], full[key], rtol=1e-12, err_msg=key)


# name -> (the model, the parts frozen, the leaves whose backward does not run then)
SEQUENCE_MODELS = {
    "language-model": (lambda: xn.models.LanguageModel(7, 4, 5, num_layers=2, dtype="float64"),
                       ["layers.0", "layers.1"], {"layers.0", "layers.1"}),
    "language-model-tied": (lambda: xn.models.LanguageModel(7, 5, 5, num_layers=2, tie_weights=True,
                                                            dtype="float64"), ["layers.1"], set()),
    "seq2seq": (lambda: xn.models.Seq2seq(7, 4, 5, dtype="float64"), ["encoder"],
                {"encoder.embed", "encoder.lstm"}),
    "attention-seq2seq": (lambda: xn.models.AttentionSeq2seq(7, 4, 5, dtype="float64"), ["encoder.embed"],
                          {"encoder.embed"}),
}


@pytest.mark.parametrize("name", list(SEQUENCE_MODELS))
def test_the_books_sequence_models_skip_their_frozen_layers_with_the_same_gradients(name):
    build, frozen, not_run = SEQUENCE_MODELS[name]
    xn.init.seed(0)
    model = build()
    modules = model.named_modules()
    for part in frozen:
        modules[part].requires_grad_(False)
    rng = np.random.default_rng(0)
    ids = (rng.integers(0, 7, (3, 4)),) if "language" in name else (rng.integers(0, 7, (3, 4)),
                                                                    rng.integers(0, 7, (3, 5)))
    dy = rng.standard_normal((3, ids[-1].shape[1], 7))
    results = []
    for full in (True, False):
        for node in modules.values():
            node.grads.clear()
        if hasattr(model, "reset_state"):
            model.reset_state()
        model.forward(*ids, train=True)
        with _watched(model) as seen:
            model.backward(dy) if full else model.backward_params(dy)
        results.append((dict(model.params_and_grads(trainable=True)[1]), seen.ran))
    (full, full_ran), (short, short_ran) = results
    assert short.keys() == full.keys() == model.trainable_params().keys()
    for key in full:
        np.testing.assert_allclose(short[key], full[key], rtol=1e-12, atol=1e-14, err_msg=key)
    assert set(short_ran) == set(full_ran) - not_run and not_run <= set(full_ran)


def test_a_subclass_whose_backward_takes_no_input_grad_trains_through_its_own_backward():
    """A ResNet subclass of the user's with backward(self, dy), the signature every model had: xn.train's
    backward_params runs that backward in full (it got backward() got an unexpected keyword 'input_grad')."""
    calls = []

    class Mine(xn.models.ResNet):
        def backward(self, dy):
            calls.append(dy.shape)
            return super().backward(dy)

    xn.manual_seed(0)
    model = Mine("BasicBlock", [1, 1, 1, 1], num_classes=3)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((4, 3, 32, 32)).astype(np.float32), rng.integers(0, 3, 4)
    before = np.array(model.fc.params["W"])
    xn.train(model, (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=4, progress=False,
             device="cpu")
    assert calls == [(4, 3)] and not np.array_equal(before, model.fc.params["W"])
