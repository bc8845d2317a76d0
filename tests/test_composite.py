"""xn.Model: layers found by attribute, dotted names, nesting with Sequential, modes, state dicts, files,
several inputs, gradcheck; training with every optimizer, checkpoints and the NaN guard."""

import copy

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import BatchNorm, Conv2d, Dropout, Linear, ReLU, Tanh
from xpnet.testing import assert_placed

from test_distributed import _assert_matches_reference, _load_script, _rank_results, assert_ok, launch, needs_mpi


class Block(xn.Model):
    """The book's way: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + x), backward written out."""

    def __init__(self, c, wrong_skip=False):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = Conv2d(c, c, 3, padding=1), BatchNorm(c), ReLU()
        self.conv2, self.bn2, self.relu2 = Conv2d(c, c, 3, padding=1), BatchNorm(c), ReLU()
        self.wrong_skip = wrong_skip

    def forward(self, x, train=True):
        h = self.relu1.forward(self.bn1.forward(self.conv1.forward(x, train), train), train)
        return self.relu2.forward(self.bn2.forward(self.conv2.forward(h, train), train) + x, train)

    def backward(self, dy):
        dh = self.relu2.backward(dy)
        dx = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(dh)))))
        return dx if self.wrong_skip else dx + dh  # the skip's gradient, added by hand


class Net(xn.Model):
    """Blocks in a list, a head in a dict, a Sequential inside: every way of holding layers."""

    def __init__(self, c=3, blocks=2, classes=4, dropout=0.0):
        super().__init__()
        self.stem = xn.Sequential(Conv2d(1, c, 3, padding=1), BatchNorm(c), ReLU())
        self.blocks = [Block(c) for _ in range(blocks)]
        self.head = {"pool": xn.layers.GlobalAvgPool(), "drop": Dropout(dropout), "fc": Linear(c, classes)}

    def forward(self, x, train=True):
        h = self.stem.forward(x, train)
        for b in self.blocks:
            h = b.forward(h, train)
        h = self.head["drop"].forward(self.head["pool"].forward(h, train), train)
        return self.head["fc"].forward(h, train)

    def backward(self, dy):
        dh = self.head["pool"].backward(self.head["drop"].backward(self.head["fc"].backward(dy)))
        for b in reversed(self.blocks):
            dh = b.backward(dh)
        return self.stem.backward(dh)


class TwoInputs(xn.Model):
    """scores = tanh(a(x1) + b(x2)): a model with two inputs."""

    def __init__(self, d1, d2, classes):
        super().__init__()
        self.a, self.b, self.act = Linear(d1, classes), Linear(d2, classes, bias=False), Tanh()

    def forward(self, x1, x2, train=True):
        return self.act.forward(self.a.forward(x1, train) + self.b.forward(x2, train), train)

    def backward(self, dy):
        dh = self.act.backward(dy)
        return self.a.backward(dh), self.b.backward(dh)


class ModeUser(xn.Model):
    """A forward that calls its layers as model(x) does, relying on their mode rather than on ``train``."""

    def __init__(self):
        super().__init__()
        self.lin, self.bn, self.drop = Linear(3, 4), BatchNorm(4), Dropout(0.5, seed=0)

    def forward(self, x, train=True):
        return self.drop(self.bn(self.lin(x)))

    def backward(self, dy):
        return self.lin.backward(self.bn.backward(self.drop.backward(dy)))


def images(rng, n=6, side=5):
    return rng.standard_normal((n, 1, side, side)).astype(np.float32)


def test_layers_are_found_in_assignment_order_with_dotted_names():
    xn.init.seed(0)
    net = Net(blocks=2)
    names = list(net.named_params())
    assert names[:4] == ["stem.0.W", "stem.0.b", "stem.1.gamma", "stem.1.beta"]
    assert names[4:8] == ["blocks.0.conv1.W", "blocks.0.conv1.b", "blocks.0.bn1.gamma", "blocks.0.bn1.beta"]
    assert names[-2:] == ["head.fc.W", "head.fc.b"]
    assert list(net.named_buffers())[:2] == ["stem.1.running_mean", "stem.1.running_var"]
    assert list(net.named_children()) == ["stem", "blocks.0", "blocks.1", "head.pool", "head.drop", "head.fc"]
    net.blocks.append(Block(3))  # a list appended to later is seen
    assert "blocks.2.conv2.W" in net.named_params()
    params = net.parameters()
    assert params.model is net and len(params) == len(net.named_params())
    assert all(a is b for a, b in zip(params, net.named_params().values()))


def test_sequential_and_model_nest_either_way(rng):
    xn.init.seed(0)
    inner = xn.Sequential(Linear(4, 4), Tanh())

    class Outer(xn.Model):
        def __init__(self):
            super().__init__()
            self.body, self.out = inner, Linear(4, 2)

        def forward(self, x, train=True):
            return self.out.forward(self.body.forward(x, train), train)

        def backward(self, dy):
            return self.body.backward(self.out.backward(dy))

    model = xn.Sequential(Outer(), ReLU(), Linear(2, 3))
    assert list(model.named_params()) == ["0.body.0.W", "0.body.0.b", "0.out.W", "0.out.b", "2.W", "2.b"]
    assert repr(model).startswith("Sequential(\n  (0): Outer(\n    (body): Sequential(\n      (0): Linear(")
    x = rng.standard_normal((5, 4))
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)
    assert [row.name for row in report.rows][:2] == ["0.body.0.W", "0.body.0.b"]


def test_a_layer_held_twice_is_one_layer():
    class Tied(xn.Model):
        def __init__(self):
            super().__init__()
            self.lin = Linear(2, 2)
            self.alias = [self.lin]

    assert list(Tied().named_params()) == ["lin.W", "lin.b"]


def test_mistakes_in_a_model_class_are_named():
    class Mixed(xn.Model):
        def __init__(self):
            super().__init__()
            self.parts = [Linear(2, 2), "relu"]

    with pytest.raises(TypeError, match=r"Mixed.parts holds layers and other objects"):
        Mixed().named_params()

    class NoSuper(xn.Model):
        def __init__(self):
            self.lin = Linear(2, 2)

    with pytest.raises(TypeError, match=r"NoSuper.__init__ must call super\(\).__init__\(\)"):
        NoSuper().named_params()
    with pytest.raises(NotImplementedError, match="Model.backward is not written"):
        xn.Model().backward(np.zeros(2))
    with pytest.raises(TypeError, match="mode must be True or False"):
        Net().train("yes")


class BookRelu(xn.layers.Layer):
    """The book's Relu verbatim: its __init__ does not call super().__init__()."""

    def __init__(self):
        self.mask = None

    def forward(self, x, train=True):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout = dout.copy()
        dout[self.mask] = 0
        return dout


class NoSuperNet(xn.Model):
    def __init__(self):
        self.fc = Linear(2, 3)

    def forward(self, x, train=True):
        return self.fc.forward(x, train)

    def backward(self, dy):
        return self.fc.backward(dy)


@pytest.mark.parametrize("build, cls", [
    (lambda: xn.Sequential(Linear(2, 8), BookRelu(), Linear(8, 3)), "BookRelu"),
    (NoSuperNet, "NoSuperNet"),
], ids=["layer", "model"])
@pytest.mark.parametrize("path", ["predict", "summary", "train", "save", "to", "named_params", "state_dict",
                                  "device", "gradcheck"])
def test_an_init_without_super_init_is_named_on_every_path(build, cls, path, tmp_path):
    """A layer or model whose __init__ forgets super().__init__() is named, with the fix, whatever is
    called first (predict and summary used to say "'Sequential' object has no attribute 'device'", train
    and save "'BookRelu' object has no attribute 'params'")."""
    x, y = xn.datasets.spiral(5, 3, seed=0)
    calls = {
        "predict": lambda m: m.predict(x),
        "summary": lambda m: m.summary(),
        "train": lambda m: xn.train(m, (x, y), loss="cross_entropy", optimizer="adam", epochs=1, batch_size=15,
                                    progress=False),
        "save": lambda m: m.save(tmp_path / "m.npz"),
        "to": lambda m: m.to("cpu"),
        "named_params": lambda m: m.named_params(),
        "state_dict": lambda m: m.state_dict(),
        "device": lambda m: m.device,
        "gradcheck": lambda m: xn.gradcheck(m, x),
    }
    with pytest.raises(TypeError, match=rf"^{cls}.__init__ must call super\(\).__init__\(\) before anything else"):
        calls[path](build())
    assert not (tmp_path / "m.npz").exists()


def test_a_layer_without_super_init_says_so_when_its_params_are_asked_for():
    with pytest.raises(AttributeError, match=r"BookRelu.__init__ must call super\(\).__init__\(\)"):
        BookRelu().params
    with pytest.raises(AttributeError, match="'BookRelu' object has no attribute 'weight'"):
        BookRelu().weight
    assert getattr(BookRelu(), "rng", None) is None


def test_to_predict_and_summary_on_every_device(case, rng):
    dev, dtype = case
    xn.init.seed(0)
    net = Net().to(dev, dtype=dtype)
    for name, v in net.state().items():
        assert_placed(v, dev, dtype)
    assert net.device == dev and net.dtype == net.named_params()["stem.0.W"].dtype
    x = images(rng, n=7)
    full = net.predict(x)
    assert_placed(full, dev, dtype)
    np.testing.assert_allclose(xn.to_numpy(net.predict(x, batch_size=3)), xn.to_numpy(full), rtol=1e-5, atol=1e-6)
    text = net.summary(input_shape=(1, 5, 5))
    assert "blocks.1.conv2  Conv2d" in text and "(N, 3, 5, 5)" in text and "head.fc         Linear" in text
    total = sum(int(np.prod(p.shape)) for p in net.named_params().values())
    assert f"parameters: {total:,} ({dtype}, on {dev.name})" in text


def test_eval_mode_is_what_model_x_uses(rng):
    xn.init.seed(0)
    model = xn.Sequential(Linear(3, 4), BatchNorm(4), Dropout(0.5, seed=1), Linear(4, 2))
    x = rng.standard_normal((6, 3)).astype(np.float32)
    model.forward(x)  # running statistics that are not the start's
    assert model.training and all(layer.training for layer in model)
    before = copy.deepcopy(model.named_buffers())
    assert model.eval() is model and not model.training and not any(layer.training for layer in model)
    np.testing.assert_array_equal(model(x), model.predict(x))
    for k, v in model.named_buffers().items():
        np.testing.assert_array_equal(v, before[k])  # inference changed no running statistic
    assert not np.array_equal(model(x, train=True), model.predict(x))  # train= still overrides the mode
    assert model.train() is model and model.training
    assert not np.array_equal(model(x), model.predict(x))


def test_predict_evaluate_and_train_leave_the_mode_and_buffers_as_found(rng):
    xn.init.seed(0)
    model = ModeUser()
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.integers(0, 4, 8)
    for mode in (True, False):
        model.train(mode)
        before = {k: v.copy() for k, v in model.named_buffers().items()}
        first = model.predict(x)
        np.testing.assert_array_equal(first, model.predict(x))  # no dropout, no batch statistics
        xn.evaluate(model, (x, y), loss="cross_entropy")
        for k, v in model.named_buffers().items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)
        assert model.training is mode and model.bn.training is mode
        seen = []

        class Probe(xn.callbacks.Callback):
            def on_epoch_begin(self, epoch):
                seen.append((model.training, model.drop.training))

        xn.train(model, (x, y), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=4, progress=False,
                 callbacks=[Probe()])
        assert seen == [(True, True)]  # trains in training mode ...
        assert model.training is mode and model.drop.training is mode  # ... and restores the mode it found
        assert not np.array_equal(model.named_buffers()["bn.running_mean"], before["bn.running_mean"])


def test_state_dict_round_trip_into_a_fresh_model_on_another_device(rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    xn.init.seed(0)
    net = Net()
    x = images(rng)
    net.forward(x)
    state = net.state_dict()
    assert list(state) == list(net.state()) and all(type(v) is np.ndarray for v in state.values())
    state["stem.0.W"][...] = 0.5  # a copy: the model keeps its weights
    assert not np.all(net.named_params()["stem.0.W"] == 0.5)
    state = net.state_dict()
    xn.init.seed(1)
    fresh = Net().to(dev1)
    assert fresh.load_state_dict(state) == ([], [])
    for v in fresh.state().values():
        assert_placed(v, dev1, "float32")
    np.testing.assert_array_equal(xn.to_numpy(fresh.predict(x)), xn.to_numpy(copy.deepcopy(net).to(dev1).predict(x)))
    state["stem.0.W"][...] = 0.0  # the model never shares memory with the dict it was given
    assert not np.all(xn.to_numpy(fresh.named_params()["stem.0.W"]) == 0.0)


def test_load_state_dict_names_every_bad_key_and_changes_nothing():
    xn.init.seed(0)
    net = Net()
    state = net.state_dict()
    del state["head.fc.b"]
    state["head.fc.W"] = np.zeros((2, 2), np.float32)
    state["blocks.9.conv1.W"] = np.zeros(3)
    before = net.state_dict()
    with pytest.raises(ValueError) as info:
        Net().load_state_dict(state)
    message = str(info.value)
    assert "missing keys ['head.fc.b']" in message and "unexpected keys ['blocks.9.conv1.W']" in message
    assert "'head.fc.W' has shape (2, 2) in the dict but (3, 4) in the model" in message
    with pytest.raises(ValueError, match="'head.fc.W' has shape"):  # a wrong shape fails also when not strict
        net.load_state_dict(state, strict=False)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    del state["head.fc.W"]
    assert net.load_state_dict(state, strict=False) == (["head.fc.W", "head.fc.b"], ["blocks.9.conv1.W"])
    with pytest.raises(TypeError, match="expected a dict of arrays by name"):
        net.load_state_dict([1, 2])


def test_save_and_load_rebuild_the_model_class_on_another_device(tmp_path, dev, rng):
    xn.init.seed(0)
    net = Net(c=2, blocks=3)
    x = images(rng)
    net.forward(x)
    xn.save(net, tmp_path / "net.npz")
    with np.load(tmp_path / "net.npz", allow_pickle=False) as f:  # JSON and arrays only: nothing to unpickle
        assert "blocks.2.bn2.running_var" in f.files
    loaded = xn.load(tmp_path / "net.npz", device=dev)
    assert type(loaded) is Net and len(loaded.blocks) == 3 and loaded.device == dev
    assert repr(loaded) == repr(net)
    np.testing.assert_array_equal(xn.to_numpy(loaded.predict(x)), xn.to_numpy(copy.deepcopy(net).to(dev).predict(x)))
    net.save(tmp_path / "same.npz")  # the method and the function write the same file
    assert (tmp_path / "same.npz").read_bytes() == (tmp_path / "net.npz").read_bytes()


def test_load_says_which_class_to_import(tmp_path, monkeypatch):
    from xpnet.layers import base  # noqa: PLC0415

    xn.init.seed(0)
    xn.save(TwoInputs(2, 3, 2), tmp_path / "m.npz")
    monkeypatch.delitem(base._CLASSES, (TwoInputs.__module__, "TwoInputs"))  # as in a program that never imported it
    with pytest.raises(xn.XpnetFileError, match=rf"uses class TwoInputs from module '{TwoInputs.__module__}'.*"
                                                rf"from {TwoInputs.__module__} import TwoInputs"):
        xn.load(tmp_path / "m.npz")
    with pytest.raises(TypeError, match=r"xn.save: expected an xn.Model or xn.Sequential, got Linear; wrap the layer"):
        xn.save(Linear(2, 2), tmp_path / "l.npz")


def test_a_constructor_argument_json_cannot_hold_is_named_at_save(tmp_path):
    class Scaled(xn.Model):
        def __init__(self, scale):
            super().__init__()
            self.lin, self.scale = Linear(2, 2), scale

    with pytest.raises(TypeError, match=r"Scaled: constructor argument 'scale' is an array; a model file keeps"):
        Scaled(np.ones(2)).save(tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()


def test_a_head_replaced_by_another_width_is_refused_at_save_not_at_load(tmp_path, rng):
    """model.head = Linear(...) with another width saved without a word, then xn.load said the file was "not an
    xpnet model file". Same width: the file loads; another: save names the arrays and writes nothing, and so does
    a ModelCheckpoint before training."""
    xn.init.seed(0)
    net = Net(c=2, blocks=1)
    net.head["fc"] = Linear(2, 4)
    net.save(tmp_path / "same.npz")
    assert xn.load(tmp_path / "same.npz").head["fc"].out_features == 4
    net.head["fc"] = Linear(2, 3)
    message = (r"Net built again from the arguments it was built with, as xn.load builds it, would not hold "
               r"this model's arrays: head.fc.W \(2, 3\) where they make \(2, 4\); head.fc.b \(3,\) where they make "
               r"\(4,\)\. A layer assigned after the model was built \(model.head = Linear\(...\)\)")
    with pytest.raises(ValueError, match=message):
        net.save(tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()
    with pytest.raises(ValueError, match="ModelCheckpoint: the model cannot be saved: " + message):
        xn.train(net, (images(rng, n=20), np.arange(20) % 3), loss="cross_entropy", optimizer=xn.optim.SGD(0.1),
                 epochs=1, batch_size=10, device="cpu", progress=False,
                 callbacks=[xn.callbacks.ModelCheckpoint(tmp_path / "ckpt.npz")])
    assert not (tmp_path / "ckpt.npz").exists()


class BookAffine(xn.layers.Layer):
    """A reader's own layer, as the book writes Affine but built from sizes: no config() of its own."""

    def __init__(self, n_in, n_out, *, scale=0.1):
        super().__init__()
        rng = np.random.default_rng(n_in * 100 + n_out)
        self.params = {"W": (scale * rng.standard_normal((n_in, n_out))).astype(np.float32),
                       "b": np.zeros(n_out, np.float32)}

    def forward(self, x, train=True):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy):
        self.grads = {"W": self.x.T @ dy, "b": dy.sum(axis=0)}
        return dy @ self.params["W"].T


class SquareLinear(Linear):
    """A subclass of xpnet's Linear with an __init__ of its own: Linear's config would not rebuild it."""

    def __init__(self, n):
        super().__init__(n, n)


def test_a_layer_of_the_users_own_is_saved_with_the_arguments_it_was_built_with(tmp_path):
    x, y = xn.datasets.spiral(20, 3, seed=0)
    model = xn.Sequential(BookAffine(2, 8, scale=0.5), ReLU(), SquareLinear(8), BookAffine(8, 3))
    assert repr(model[0]) == "BookAffine(n_in=2, n_out=8, scale=0.5)"
    xn.train(model, (x, y), loss="cross_entropy", optimizer="adam", epochs=2, batch_size=20, progress=False,
             callbacks=[xn.callbacks.ModelCheckpoint(str(tmp_path / "ck{epoch}.npz"))])
    model.save(tmp_path / "m.npz")
    for path in (tmp_path / "m.npz", tmp_path / "ck2.npz"):
        loaded = xn.load(path)
        assert [type(layer) for layer in loaded] == [BookAffine, ReLU, SquareLinear, BookAffine]
        assert loaded[0].params["W"].shape == (2, 8) and loaded[2].in_features == 8
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_layer_built_from_arrays_prints_them_by_shape():
    """The book's Affine(W, b) takes its arrays as constructor arguments: repr showed them by comparing each
    with its default, which an array cannot answer (repr and print(model) raised)."""
    class Affine(xn.layers.Layer):
        def __init__(self, W, b=None):
            super().__init__()
            self.params = {"W": W, "b": np.zeros(W.shape[1], W.dtype) if b is None else b}

    model = xn.Sequential(Affine(np.ones((2, 3), np.float32), np.zeros(3, np.float32)),
                          Affine(np.ones((3, 3), np.float64)))
    assert repr(model[0]) == "Affine(W=<array (2, 3) float32>, b=<array (3,) float32>)"
    assert repr(model[1]) == "Affine(W=<array (3, 3) float64>)"
    assert "Affine" in model.summary()


def test_a_saved_class_that_no_longer_takes_its_arguments_is_named_as_such(tmp_path, monkeypatch):
    from xpnet.layers import base  # noqa: PLC0415
    xn.Sequential(BookAffine(2, 3)).save(tmp_path / "m.npz")

    class Changed(xn.layers.Layer):  # the class as a later program defines it: other arguments
        def __init__(self, width):
            super().__init__()

    monkeypatch.setitem(base._CLASSES, (BookAffine.__module__, "BookAffine"), Changed)
    with pytest.raises(xn.XpnetFileError, match=r"is an xpnet model file, but its field layers\[0\] \(BookAffine\) "
                                                r"cannot be built from its saved arguments \['n_in', 'n_out'\]"):
        xn.load(tmp_path / "m.npz")


def test_a_model_a_checkpoint_could_not_record_is_refused_before_training(tmp_path):
    class ArrayArgs(xn.layers.Layer):  # the book's Affine(W, b): arrays as constructor arguments
        def __init__(self, W, b):
            super().__init__()
            self.params = {"W": W, "b": b}

        def forward(self, x, train=True):
            return x @ self.params["W"] + self.params["b"]

    x, y = xn.datasets.spiral(10, 3, seed=0)
    model = xn.Sequential(ArrayArgs(np.ones((2, 3), np.float32), np.zeros(3, np.float32)))
    epochs = []

    class Record(xn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            epochs.append(epoch)

    with pytest.raises(TypeError, match=r"ModelCheckpoint: the model cannot be saved: .*ArrayArgs: constructor "
                                        r"argument 'W' is an array"):
        xn.train(model, (x, y), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=10, progress=False,
                 callbacks=[Record(),
                            xn.callbacks.ModelCheckpoint(str(tmp_path / "ck.npz"))])
    assert epochs == [] and not (tmp_path / "ck.npz").exists()


def test_several_inputs_train_evaluate_and_predict_like_one_concatenated_input(rng):
    """TwoInputs(x1, x2) with a = W[:2], b = W[2:] computes what Linear on concat(x1, x2) does: trained on the
    same batches (cut from each input alike), both end with the same weights and figures."""
    x1, x2 = rng.standard_normal((40, 2)).astype(np.float32), rng.standard_normal((40, 3)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    xn.init.seed(0)
    two = TwoInputs(2, 3, 4)
    one = xn.Sequential(Linear(5, 4), Tanh())
    one[0].params["W"] = np.concatenate([two.a.params["W"], two.b.params["W"]])
    one[0].params["b"] = two.a.params["b"].copy()
    fit = dict(loss="cross_entropy", optimizer="adam", epochs=3, batch_size=7, progress=False)
    h2 = xn.train(two, ((x1, x2), y), validation=((x1[:9], x2[:9]), y[:9]), **fit)
    h1 = xn.train(one, (np.concatenate([x1, x2], axis=1), y), validation=(np.concatenate([x1, x2], 1)[:9], y[:9]),
                  **fit)
    for a, b in zip(h2.epochs, h1.epochs):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    np.testing.assert_allclose(np.concatenate([two.a.params["W"], two.b.params["W"]]), one[0].params["W"], rtol=1e-5)
    np.testing.assert_allclose(two.predict(x1, x2, batch_size=6), one.predict(np.concatenate([x1, x2], 1)), rtol=1e-5)
    got = xn.evaluate(two, ((x1, x2), y), loss="cross_entropy", batch_size=16)
    assert got["loss"] == pytest.approx(
        xn.evaluate(one, (np.concatenate([x1, x2], 1), y), loss="cross_entropy")["loss"], rel=1e-5)
    report = xn.gradcheck(two, (x1[:3].astype(np.float64), x2[:3].astype(np.float64)))
    assert report.ok and [row.name for row in report.rows][-2:] == ["input[0]", "input[1]"]
    with pytest.raises(ValueError, match=r"train data: x\[1\] has 39 samples but y has 40"):
        xn.train(two, ((x1, x2[:39]), y), **fit)
    with pytest.raises(ValueError, match=r"predict: the inputs hold \[40, 39\] samples"):
        two.predict(x1, x2[:39])


def test_gradcheck_passes_on_a_composite_model_and_fails_on_a_wrong_skip_gradient(rng):
    x, t = images(rng, n=4, side=4).astype(np.float64), np.array([0, 1, 2, 3])
    xn.init.seed(0)
    report = xn.gradcheck(Net(c=2), x, t, loss="cross_entropy", max_entries=6)
    assert report.ok, str(report)
    assert "blocks.1.conv2.W" in [row.name for row in report.rows]
    xn.init.seed(0)
    block = Block(2, wrong_skip=True)
    report = xn.gradcheck(block, rng.standard_normal((3, 2, 4, 4)), max_entries=6)
    assert not report.ok
    assert "input" in [row.name for row in report.failures]  # the skip's gradient is missing from dx only


def test_gradcheck_names_the_dotted_layer_that_writes_into_its_gradient(rng):
    class Clobber(xn.layers.Layer):
        def forward(self, x, train=True):
            return x

        def backward(self, dy):
            dy *= 2.0
            return dy

    xn.init.seed(0)
    model = TwoInputs(3, 3, 3)
    model.act = Clobber()
    report = xn.gradcheck(model, (rng.standard_normal((2, 3)), rng.standard_normal((2, 3))))
    assert "act (Clobber)" in [row.name for row in report.failures]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"])
def test_every_optimizer_trains_a_model_as_it_trains_the_same_sequential(optimizer, rng):
    class Wrapped(xn.Model):
        def __init__(self):
            super().__init__()
            self.body = xn.Sequential(Linear(4, 6), ReLU(), Linear(6, 3))

        def forward(self, x, train=True):
            return self.body.forward(x, train)

        def backward(self, dy):
            return self.body.backward(dy)

    x, y = rng.standard_normal((30, 4)).astype(np.float32), rng.integers(0, 3, 30)
    xn.init.seed(0)
    wrapped = Wrapped()
    xn.init.seed(0)
    flat = xn.Sequential(Linear(4, 6), ReLU(), Linear(6, 3))
    for model in (wrapped, flat):
        opt = xn.optim.get(optimizer)
        opt.weight_decay = 0.01
        xn.train(model, (x, y), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=8, progress=False)
    for k, v in flat.named_params().items():
        np.testing.assert_array_equal(wrapped.named_params()["body." + k], v)


def test_checkpoint_resume_and_early_stopping_on_a_composite_model(tmp_path, rng):
    x, y = images(rng, n=24, side=4), rng.integers(0, 4, 24)
    fit = dict(loss="cross_entropy", epochs=4, batch_size=6, progress=False, seed=3)

    def model():
        xn.init.seed(0)
        return Net(c=2, dropout=0.3)  # a Dropout generator the checkpoint keeps, by its dotted name

    straight = model()
    xn.train(straight, (x, y), optimizer=xn.optim.Adam(1e-2), **fit)
    first = model()
    xn.train(first, (x, y), optimizer=xn.optim.Adam(1e-2), callbacks=[xn.callbacks.ModelCheckpoint(
        tmp_path / "run.npz", full=True)], **{**fit, "epochs": 2})
    resumed = model()
    xn.train(resumed, (x, y), optimizer=xn.optim.Adam(1e-2), resume_from=tmp_path / "run.npz", **fit)
    for k, v in straight.state().items():
        np.testing.assert_array_equal(resumed.state()[k], v, err_msg=k)
    with pytest.raises(ValueError, match="written for another architecture"):
        xn.train(Net(c=2, blocks=1), (x, y), optimizer=xn.optim.Adam(1e-2), resume_from=tmp_path / "run.npz", **fit)
    stopper = xn.callbacks.EarlyStopping(monitor="train_loss", patience=1)
    xn.train(model(), (x, y), optimizer=xn.optim.Adam(1e-2), callbacks=[stopper], **fit)
    assert stopper.best_epoch is not None


def test_the_nan_guard_names_the_dotted_layer(rng):
    class Overflow(xn.layers.Layer):
        """Finite when probed before training (train=False), overflowing in training."""

        def forward(self, x, train=True):
            return x * 3e38 if train else x

        def backward(self, dy):
            return dy * 3e38

    x, y = images(rng, n=8, side=4), rng.integers(0, 4, 8)
    xn.init.seed(0)
    net = Net(c=2)
    net.blocks[1].relu1 = Overflow()
    with pytest.raises(xn.XpnetTrainingError, match=r"step 1 of 2; first non-finite value: the output of layer "
                                                    r"blocks.1.relu1 \(Overflow\)"):
        xn.train(net, (x, y), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=4, progress=False)


def test_backends_agree_on_a_composite_model(rng):
    pytest.importorskip("array_api_strict")
    import array_api_strict as strict  # noqa: PLC0415

    xn.init.seed(0)
    net = Net(c=2).to(dtype="float64")
    results = xn.testing.assert_backends_agree(lambda model, x: model.predict(x), net, images(rng).astype(np.float64),
                                               devices=("cpu", xn.Device(strict, strict.Device("device1"))))
    assert len(results) == 2
    assert net.device == xn.device("cpu")  # the model itself stays where it was


@needs_mpi
def test_data_parallel_training_of_a_two_input_model_equals_one_process(tmp_path):
    """mpiexec -n 2: 102 samples in batches of 10, two inputs cut alike on each rank; every rank ends with the
    one-process weights, history and evaluation."""
    script = _load_script("composite")
    assert_ok(launch(2, "composite.py", str(tmp_path)))
    _assert_matches_reference(_rank_results(tmp_path, "composite", 2), script.run(), "float64")


def test_a_sequential_subclass_is_saved_by_its_own_arguments(tmp_path, rng):
    class Stack(xn.Sequential):
        def __init__(self, depth, width=3):
            super().__init__(*[layer for _ in range(depth) for layer in (Linear(width, width), Tanh())])

    xn.init.seed(0)
    model = Stack(2, width=4)
    model.save(tmp_path / "s.npz")
    loaded = xn.load(tmp_path / "s.npz")
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert type(loaded) is Stack and len(loaded) == 4
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_forward_without_train_is_named_before_training(rng):
    class NoTrain(xn.Model):
        def __init__(self):
            super().__init__()
            self.lin = Linear(2, 2)

        def forward(self, x):
            return self.lin.forward(x)

    with pytest.raises(TypeError, match=r"train: NoTrain.forward must take train="):
        xn.train(NoTrain(), (np.zeros((4, 2), np.float32), np.zeros(4, int)), loss="cross_entropy",
                 optimizer="sgd", epochs=1, batch_size=2)
