"""Bad input across the public API gives one clear error naming the function and the argument, never a
traceback from inside NumPy, zipfile or xpnet's internals, and never a silent wrong result.

Covers issue 27, "Tracebacks from internals (38) become clear errors" (all but `xn.train(comm=object())`,
which the distributed tests hold), and "Data and numerics": flags given as strings, seeds, dtypes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet.cli import main
from xpnet.layers import (AvgPool2d, BatchNorm, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU,
                          Sigmoid, Tanh)

x, t = xn.datasets.spiral(10, 3, seed=0)


def mlp():
    xn.init.seed(0)
    return xn.Sequential(Linear(2, 8), ReLU(), Linear(8, 3))


def fit(model=None, data=(x, t), **kw):
    args = {"loss": "cross_entropy", "optimizer": "sgd", "epochs": 1, "batch_size": 10, "progress": False}
    return xn.train(model or mlp(), data, **{**args, **kw})


# -- flags and seeds ------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda v: fit(shuffle=v), "train: shuffle"),
    (lambda v: fit(drop_last=v), "train: drop_last"),
    (lambda v: fit(progress=v), "train: progress"),
    (lambda v: fit(fallback=v), "train: fallback"),
    (lambda v: Linear(2, 3, bias=v), "Linear: bias"),
    (lambda v: Conv2d(1, 2, 3, bias=v), "Conv2d: bias"),
    (lambda v: xn.datasets.load_fashion_mnist(normalize=v), "load_fashion_mnist: normalize"),
    (lambda v: xn.datasets.load_mnist(one_hot=v), "load_mnist: one_hot"),
    (lambda v: xn.datasets.BatchIterator(x, batch_size=2, shuffle=v), "BatchIterator: shuffle"),
    (lambda v: xn.datasets.BatchIterator(x, batch_size=2, drop_last=v), "BatchIterator: drop_last"),
    (lambda v: xn.callbacks.ModelCheckpoint("m.npz", save_best_only=v), "ModelCheckpoint: save_best_only"),
    (lambda v: xn.callbacks.ModelCheckpoint("m.npz", full=v), "ModelCheckpoint: full"),
    (lambda v: xn.callbacks.EarlyStopping(restore_best=v), "EarlyStopping: restore_best"),
    (lambda v: xn.gradcheck(mlp(), x[:2], fast=v), "gradcheck: fast"),
    (lambda v: xn.backend.set_numba(v), "set_numba: enabled"),
])
@pytest.mark.parametrize("value", ["no", "False", 0, None])
def test_flags_must_be_true_or_false(call, message, value):
    """shuffle="no", drop_last="False", Linear(bias="no"), load_fashion_mnist(normalize="no") were all
    taken as True."""
    with pytest.raises(TypeError, match=f"{message} must be True or False, got {value!r}"):
        call(value)


@pytest.mark.parametrize("call, message", [
    (lambda s: Dropout(0.5, seed=s), "Dropout: seed"),
    (lambda s: xn.datasets.spiral(10, 3, seed=s), "spiral: seed"),
    (lambda s: xn.datasets.xor(8, seed=s), "xor: seed"),
    (lambda s: xn.datasets.blobs(9, seed=s), "blobs: seed"),
    (lambda s: xn.datasets.BatchIterator(x, batch_size=2, seed=s), "BatchIterator: seed"),
    (lambda s: xn.datasets.RandomShiftFlip(seed=s), "RandomShiftFlip: seed"),
    (lambda s: xn.init.seed(s), "xn.init.seed: s"),
    (lambda s: fit(seed=s), "train: seed"),
    (lambda s: xn.gradcheck(mlp(), x[:2], seed=s), "gradcheck: seed"),
    (lambda s: list(xn.datasets.BatchIterator(x, batch_size=5).epoch(s)), "BatchIterator.epoch: epoch"),
    (lambda s: xn.datasets.RandomShiftFlip()(np.zeros((1, 1, 4, 4), np.float32), s, 0), "RandomShiftFlip: epoch"),
])
@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_seeds_must_be_whole_numbers_from_zero(call, message, seed):
    """A negative or float seed failed inside NumPy's SeedSequence ("expected non-negative integer")."""
    with pytest.raises(ValueError, match=f"{message} must be an int >= 0.*got {seed!r}"):
        call(seed)


@pytest.mark.parametrize("call, message", [
    (lambda: Linear(2, 3, dtype=None), r"Linear: dtype must be a real floating type .*got None \(NumPy reads None "
                                       r"as float64, PyTorch as its default float32"),
    (lambda: BatchNorm(3, dtype="int32"), r"BatchNorm: dtype must be a real floating type .*got 'int32'"),
    (lambda: xn.datasets.spiral(5, 2, noise=float("nan")), r"spiral: noise must be a finite number >= 0, got nan"),
    (lambda: xn.datasets.spiral(5, 2, dtype="int32"), r"spiral: dtype must be a (real )?floating type .*got 'int32'"),
    (lambda: xn.datasets.xor(8, noise=-1.0), r"xor: noise must be a finite number >= 0"),
    (lambda: xn.datasets.blobs(9, std=float("inf")), r"blobs: std must be a finite number >= 0"),
    (lambda: xn.datasets.blobs(9, "a"), r"blobs: need ints centers >= 1"),
])
def test_dtypes_and_spreads_that_give_garbage_are_refused(call, message):
    """Linear(dtype=None) gave float64; spiral(noise=nan) NaN points, spiral(dtype="int32") zeros."""
    with pytest.raises(ValueError, match=message):
        call()


# -- layers ---------------------------------------------------------------------------------------

IMAGES = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("layer, x_in, expected", [
    (Linear(2, 3), x, (30, 3)), (ReLU(), x, (30, 2)), (Sigmoid(), x, (30, 2)), (Tanh(), x, (30, 2)),
    (Dropout(0.5), x, (30, 2)), (Flatten(), IMAGES, (2, 36)), (BatchNorm(2), x, (30, 2)),
    (Conv2d(1, 2, 3), IMAGES, (2, 2, 4, 4)), (GlobalAvgPool(), IMAGES, (2, 1)),
], ids=lambda v: type(v).__name__ if isinstance(v, xn.layers.base.Layer) else None)
def test_a_wrong_shaped_dy_is_named(layer, x_in, expected):
    """Linear's backward failed inside matmul; Sigmoid, Tanh and Dropout broadcast a (1, D) dy silently."""
    y = layer.forward(x_in)
    assert tuple(y.shape) == expected
    for wrong in (np.ones((1, *expected[1:]), np.float32), np.ones((expected[0] + 1, *expected[1:]), np.float32)):
        with pytest.raises(ValueError, match=rf"{layer.name}: expected dy of shape {expected}".replace("(", r"\(")
                           .replace(")", r"\)")):
            layer.backward(wrong)


def test_pooling_names_a_wrong_dy_too():
    for layer in (MaxPool2d(2), AvgPool2d(2)):
        layer.forward(IMAGES)
        with pytest.raises(ValueError, match=f"{layer.name}: dy of shape"):
            layer.backward(IMAGES[:, :, :2, :2])


def test_a_layer_given_a_list_or_a_scalar_says_what_it_needs():
    with pytest.raises(TypeError, match=r"Linear: expected an array, got a list; convert it with np.asarray"):
        Linear(2, 3).forward([[1.0, 2.0]])
    with pytest.raises(TypeError, match=r"Linear: input is a float32, not an array \(N, ...\)"):
        Linear(2, 3).forward(np.float32(1.0))


def test_a_file_naming_a_private_layer_class_is_refused_at_load(tmp_path):
    """A file naming _Pool2d (the pooling layers' private base) loaded, then raised NotImplementedError('')."""
    path = tmp_path / "m.npz"
    meta = {"format": 1, "layers": [{"type": "_Pool2d", "config": {"kernel_size": 2}}]}
    np.savez(path, __xpnet_model__=np.asarray(json.dumps(meta)))
    with pytest.raises(xn.XpnetFileError,
                       match=r"layers\[0\] \(_Pool2d\) cannot be built: unknown layer type '_Pool2d'"):
        xn.load(path)


# -- models ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["9.W", "0.X", "x.W", "0", "", 0])
def test_set_param_names_what_the_model_has(name):
    """set_param("9.W", ...) raised IndexError from the layer list."""
    with pytest.raises(KeyError,
                       match=r"set_param: the model has no parameter or buffer .*; it has 0.W, 0.b, 2.W, 2.b"):
        mlp().set_param(name, np.zeros((2, 8), np.float32))


def test_set_param_checks_the_shape_and_copies_a_read_only_array():
    """A read-only array from set_param failed in the optimizer ("output array is read-only")."""
    model = mlp()
    with pytest.raises(ValueError, match=r"set_param: '0.W' needs an array of shape \(2, 8\), got shape \(8, 2\)"):
        model.set_param("0.W", np.zeros((8, 2), np.float32))
    frozen = np.ones((2, 8), np.float32)
    frozen.flags.writeable = False
    model.set_param("0.W", frozen)
    fit(model)
    assert np.array_equal(frozen, np.ones((2, 8))) and not np.array_equal(model.state()["0.W"], frozen)


@pytest.mark.parametrize("call, error, message", [
    (lambda: mlp().predict(x, batch_size=2.5), ValueError, r"predict: batch_size must be None or an int >= 1, got 2.5"),
    (lambda: mlp().predict("abc"), TypeError, r"predict: x must hold real numbers, got dtype <U3"),
    (lambda: mlp().predict(np.float32(1.0)), ValueError,
     r"predict: x must have a sample axis \(N, ...\), got shape \(\)"),
    (lambda: mlp().summary(input_shape="a"), ValueError, r"summary: input_shape must be the shape of one sample"),
    (lambda: xn.optim.SGD(0.1).step(x), TypeError, r"SGD.step: expected the model to update .*got ndarray"),
    (lambda: xn.Device(5), TypeError, r"Device: expected an array-API namespace"),
    (lambda: xn.callbacks.ModelCheckpoint(None), TypeError,
     r"ModelCheckpoint: path must be a str, bytes or os.PathLike"),
    (lambda: xn.callbacks.cosine("0.1", 5), ValueError, r"cosine: lr must be a finite number >= 0, got '0.1'"),
    (lambda: xn.callbacks.step(0.1, 2, gamma=-1), ValueError, r"step: gamma must be a finite number > 0"),
    (lambda: xn.datasets.load_mnist(root=5), TypeError, r"mnist: root must be a folder path"),
    (lambda: xn.datasets.load_mnist(root=__file__), ValueError, r"mnist: root .* is not a folder"),
    # A typo in root loaded the system's copy (/usr/share/datasets) without a word.
    (lambda: xn.datasets.load_fashion_mnist(root="/no/such/data"), ValueError,
     r"fashion-mnist: root '/no/such/data' does not exist; give the folder that holds the fashion-mnist files"),
    (lambda: xn.datasets.load_ptb(root="/no/such/data"), ValueError, r"ptb: root '/no/such/data' does not exist"),
    (lambda: xn.datasets.BatchIterator([1, 2], batch_size=1), TypeError, r"BatchIterator: array 0 must be an array"),
    (lambda: xn.History().plot(5), TypeError, r"History.plot: path must be a str, bytes or os.PathLike"),
    (lambda: xn.evaluate(mlp(), (x, t), loss="cross_entropy", batch_size=0), ValueError, r"evaluate: batch_size must"),
])
def test_other_bad_arguments_found_by_trying_the_public_api(call, error, message):
    """Issue 27's "Among them": each of these escaped as an IndexError, AttributeError or a message
    from inside NumPy or pathlib, or said "train:" for evaluate."""
    with pytest.raises(error, match=message):
        call()


def test_a_loss_backward_takes_a_number():
    loss = xn.losses.MeanSquaredError()
    loss.forward(np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32))
    with pytest.raises(TypeError, match=r"MeanSquaredError: backward\(dout\): dout must be a number"):
        loss.backward("a")


# -- training -------------------------------------------------------------------------------------

def test_a_transform_must_return_an_array_like_its_batch():
    """A transform returning a list failed with AttributeError: 'list' object has no attribute 'shape'."""
    for transform, got in ((lambda xb, e, s: [1, 2], "a list"),
                           (lambda xb, e, s: xb[:1], r"an array of shape \(1, 2\)")):
        with pytest.raises(TypeError, match=rf"train: transform must return an array like the batch it gets \(10 rows "
                                            rf"on cpu\), it returned {got}.* for epoch 1, step 0"):
            fit(transform=transform)


# -- gradcheck ------------------------------------------------------------------------------------

@pytest.mark.parametrize("x_in, message", [
    (np.zeros((0, 2)), r"gradcheck: x has no samples \(shape \(0, 2\)\)"),
    (np.array([[np.nan, 1.0], [0.0, 1.0]]), r"gradcheck: x holds NaN or inf"),
    (np.array([[np.inf, 1.0]]), r"gradcheck: x holds NaN or inf"),
])
def test_gradcheck_needs_finite_samples(x_in, message):
    """An empty input reported every row ok; NaN input showed every row FAIL without saying NaN."""
    with pytest.raises(ValueError, match=message):
        xn.gradcheck(mlp(), x_in)


def test_gradcheck_names_a_non_finite_weight():
    model = mlp()
    model.set_param("0.b", np.full(8, np.nan, np.float32))
    with pytest.raises(ValueError, match=r"gradcheck: the loss is nan at the given x and weights"):
        xn.gradcheck(model, x[:2], t[:2], loss="cross_entropy")


# -- command line ---------------------------------------------------------------------------------

def test_cli_on_torch_writes_the_whole_record(tmp_path):
    """--device torch:cpu trained, then failed in run_config (int(v.size) on a tensor), leaving model.npz
    without history.json."""
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    assert main(["train", "--dataset", "spiral", "--device", "torch:cpu", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["config"]["parameters"] == 603 and record["config"]["device"] == "torch:cpu"


def test_cli_refuses_a_bad_xpnet_graph_before_loading_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XPNET_GRAPH", "2")
    assert main(["train", "--dataset", "spiral", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == ("xpnet: error: XPNET_GRAPH='2' in the environment: expected 0 (no CUDA-graph "
                                       "capture) or 1, or unset it\n")
    assert not (tmp_path / "run").exists()


def test_cli_a_failed_write_after_training_leaves_nothing(tmp_path, monkeypatch):
    """Any error while the outputs are written removes those already written (not only an OSError)."""
    monkeypatch.setattr("xpnet.cli.run_config", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["train", "--dataset", "spiral", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["train", "--dataset", "spiral", "--epochs", "1"], ["gradcheck"]])
def test_cli_with_stdout_on_dev_full_says_so_in_one_line(tmp_path, command):
    """Standard output on /dev/full gave an OSError traceback from the first print."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "xpnet", *command, "--device", "cpu"], cwd=tmp_path, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == "xpnet: error: cannot write to the standard output: No space left on device\n"
    assert not (tmp_path / "runs").exists()


def test_a_layer_holding_a_layer_with_parameters_warns_that_they_will_not_train():
    """An ``xn.layers.Layer`` subclass (not ``xn.Model``) holding a Linear as an attribute: its parameters are in
    no ``named_params()``, so no optimizer would ever update them; the optimizer says so when it binds the model,
    naming the layer and the attribute. A container holding the same, and xpnet's own layers that run a held layer
    (Conv1d, SpectralNorm), say nothing."""
    class Block(xn.layers.Layer):
        def __init__(self):
            super().__init__()
            self.lin = xn.layers.Linear(3, 3)

        def forward(self, x, train=True):
            return self.lin(x)

        def backward(self, dy):
            return self.lin.backward(dy)

    class Good(xn.Model, Block):
        pass

    with pytest.warns(UserWarning, match=r"^SGD: '0' \(Block\) holds the Linear 'lin' as an attribute.*'W', 'b' are "
                                         r"in no optimizer's reach and will not train; subclass xn.Model"):
        xn.optim.SGD(xn.Sequential(Block(), xn.layers.Linear(3, 2)).parameters(), lr=0.1)
    fine = [xn.Sequential(Good(), xn.layers.Linear(3, 2)),
            xn.Sequential(xn.layers.Conv1d(2, 3, 3), xn.layers.SpectralNorm(xn.layers.Linear(3, 3)))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for model in fine:
            xn.optim.SGD(model.parameters(), lr=0.1)
    assert "0.lin.W" in fine[0].named_params()


def test_a_layer_holding_layers_in_a_list_or_dict_warns_as_for_one_attribute():
    """PyTorch's ModuleList ported as a list (``self.blocks = [nn.Linear(3, 3), ...]``) in a leaf layer: its layers'
    parameters were left out of state_dict and the optimizer with no word (an attribute that is a layer warned)."""
    class Blocks(xn.layers.Layer):
        def __init__(self, held):
            super().__init__()
            self.blocks = held

        def forward(self, x, train=True):
            for block in self.blocks if isinstance(self.blocks, list) else self.blocks.values():
                x = block(x)
            return x

    for held, named in (([xn.layers.Linear(3, 3), xn.layers.ReLU()], r"'blocks\[0\]'"),
                        ({"a": xn.layers.ReLU(), "b": xn.layers.Linear(3, 3)}, r"\"blocks\['b'\]\"")):
        model = xn.Sequential(Blocks(held), xn.layers.Linear(3, 2))
        with pytest.warns(UserWarning, match=rf"'0' \(Blocks\) holds the Linear {named} in an attribute.*'W', 'b' "
                                             r"are not in the state dict"):
            model.state_dict()
        with pytest.warns(UserWarning, match=rf"^SGD: '0' \(Blocks\) holds the Linear {named} in an attribute"):
            xn.optim.SGD(model.parameters(), lr=0.1)


def test_a_layer_of_ones_own_without_backward_says_what_to_write_called_directly_or_by_a_sequential():
    class Scale(xn.layers.Layer):
        def forward(self, x, train=True):
            return 2 * x

    x = np.ones((2, 3), np.float32)
    layer = Scale()
    layer(x)
    with pytest.raises(NotImplementedError, match=r"^Scale.backward is not written: a layer of your own writes "
                                                  r"backward\(self, dy\)"):
        layer.backward(x)
    model = xn.Sequential(xn.layers.Linear(3, 3), Scale())
    model(x)
    with pytest.raises(NotImplementedError, match=r"^Scale.backward is not written"):
        model.backward(x)
