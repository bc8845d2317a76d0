"""FrozenBatchNorm2d against torchvision's (its forward written from torchvision/ops/misc.py, run in PyTorch's
autograd) on every device, in training and evaluation; xn.freeze_batch_norm and xn.unfreeze_batch_norm on a small
CNN: predictions kept, training mode equal to evaluation, xn.train moving no statistic (an optimizer bound before
the conversion included), gradcheck, files, checkpoints and PyTorch's state dicts; clear errors."""

import json

import numpy as np
import pytest

import xpnet as xn
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
L = xn.layers
BUFFERS = ("weight", "bias", "running_mean", "running_var")


def _torchvision(x, w, b, rm, rv, eps):
    """torchvision.ops.FrozenBatchNorm2d.forward, as its source writes it."""
    w, b, rv, rm = (a.reshape(1, -1, 1, 1) for a in (w, b, rv, rm))
    scale = w * (rv + eps).rsqrt()
    return x * scale + (b - rm * scale)


def _random_buffers(layer, rng):
    c = layer.num_features
    layer.buffers.update(weight=rng.uniform(0.5, 2.0, c), bias=rng.standard_normal(c),
                         running_mean=rng.standard_normal(c), running_var=rng.uniform(0.1, 3.0, c))


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (6, 4)])
def test_equal_to_torchvision_in_training_and_evaluation(dev, rng, shape):
    """y and dx in float64 (rtol 1e-12), the same whatever train says; (N, C) features against F.batch_norm's
    evaluation with the same buffers (torchvision's reshape is 4-d only); no params, no grads."""
    ours = L.FrozenBatchNorm2d(4, eps=1e-3, dtype="float64")
    _random_buffers(ours, rng)
    w, b, rm, rv = (torch.from_numpy(ours.buffers[k]) for k in BUFFERS)
    ours.to(dev)
    x, dy = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = _torchvision(xt, w, b, rm, rv, 1e-3) if len(shape) == 4 else \
        torch.nn.functional.batch_norm(xt, rm, rv, w, b, training=False, eps=1e-3)
    yt.backward(torch.from_numpy(dy))
    for train in (True, False):
        y = ours.forward(xn.to_device(x, dev), train=train)
        dx = ours.backward(xn.to_device(dy, dev))
        for ours_value, theirs, what in ((y, yt, "y"), (dx, xt.grad, "dx")):
            assert_placed(ours_value, dev, "float64")
            np.testing.assert_allclose(xn.to_numpy(ours_value), theirs.detach().numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=f"{what} train={train}")
    assert ours.params == {} and ours.grads == {}
    np.testing.assert_array_equal(xn.to_numpy(ours.buffers["running_mean"]), rm.numpy())


def _cnn():
    return xn.Sequential(L.Conv2d(1, 4, 3, padding=1), L.BatchNorm(4), L.ReLU(), L.MaxPool2d(2),
                         L.Conv2d(4, 4, 3, padding=1, bias=False), L.BatchNorm(4, affine=False, momentum=None),
                         L.ReLU(), L.Flatten(), L.Linear(16, 3))


def _data(n=20):
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, 1, 4, 4)), np.arange(n) % 3


FIT = dict(loss="cross_entropy", batch_size=10, device="cpu", progress=False, seed=1)


def test_a_frozen_cnn_predicts_as_before_and_trains_as_it_evaluates():
    """After one epoch with BatchNorm: the conversion keeps predict() (evaluation), training-mode forward equals
    it, and xn.train with the optimizer bound before the conversion (its state for gamma and beta left out, as a
    frozen parameter's) trains the convolutions and the head but moves no statistic."""
    x, t = _data()
    xn.init.seed(0)
    model, opt = _cnn().to(dtype="float64"), xn.optim.Adam(0.01)
    xn.train(model, (x, t), optimizer=opt, epochs=1, **FIT)
    before = model.predict(x)
    assert xn.freeze_batch_norm(model) is model
    assert [type(model[i]).__name__ for i in (1, 5)] == ["FrozenBatchNorm2d"] * 2
    np.testing.assert_allclose(model.predict(x), before, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.forward(x, train=True), before, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(xn.to_numpy(model[5].buffers["weight"]), np.ones(4))
    buffers = {k: np.array(v) for k, v in model.named_buffers().items()}
    weights = {k: np.array(v) for k, v in model.named_params().items()}
    assert sorted(weights) == ["0.W", "0.b", "4.W", "8.W", "8.b"]
    xn.train(model, (x, t), optimizer=opt, epochs=1, **FIT)
    for k, v in model.named_buffers().items():
        np.testing.assert_array_equal(v, buffers[k], err_msg=k)
    assert all(np.any(model.named_params()[k] != v) for k, v in weights.items())
    assert xn.gradcheck(model, x[:4], t[:4], loss=xn.losses.SoftmaxCrossEntropy()).ok


class _Net(xn.Model):
    """BatchNorm made by the constructor, in a Sequential, alone and in a list."""

    def __init__(self, channels=4):
        super().__init__()
        self.stem = xn.Sequential(L.Conv2d(1, channels, 3, padding=1), L.BatchNorm(channels), L.ReLU())
        self.norms = [L.BatchNorm(channels)]
        self.head = xn.Sequential(L.Flatten(), L.Linear(16 * channels, 3))

    def forward(self, x, train=True):
        return self.head.forward(self.norms[0].forward(self.stem.forward(x, train), train), train)

    def backward(self, dy):
        return self.stem.backward(self.norms[0].backward(self.head.backward(dy)))


def test_files_checkpoints_and_unfreezing_keep_a_frozen_model_of_ones_own(tmp_path):
    """xn.save/xn.load rebuild the model's class (BatchNorm from its constructor) and freeze it again; a run
    checkpointed after epoch 1 and resumed equals the straight run; unfreeze_batch_norm gives BatchNorm layers
    that predict as before and train their statistics again."""
    x, t = _data()
    x = x.astype(np.float32)

    def frozen():
        xn.init.seed(0)
        return xn.freeze_batch_norm(_Net())

    straight = frozen()
    xn.train(straight, (x, t), optimizer=xn.optim.Adam(0.01), epochs=2, **FIT)
    first = frozen()
    xn.train(first, (x, t), optimizer=xn.optim.Adam(0.01), epochs=1, **FIT,
             callbacks=[xn.callbacks.ModelCheckpoint(tmp_path / "run.npz", full=True)])
    resumed = frozen()
    xn.train(resumed, (x, t), optimizer=xn.optim.Adam(0.01), epochs=2, resume_from=tmp_path / "run.npz", **FIT)
    for k, v in straight.state().items():
        np.testing.assert_array_equal(resumed.state()[k], v, err_msg=k)
    straight.save(tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(straight) and isinstance(loaded.norms[0], L.FrozenBatchNorm2d)
    np.testing.assert_array_equal(loaded.predict(x), straight.predict(x))
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    record = json.loads(str(arrays["__xpnet_model__"]))
    assert record["frozen_batch_norm"] == ["stem.1", "norms.0"]
    arrays["__xpnet_model__"] = np.asarray(json.dumps({**record, "frozen_batch_norm": ["head.1"]}))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(xn.XpnetFileError, match=r"field 'frozen_batch_norm' is \['head.1'\], expected a list of the "
                                                r"dotted names of its BatchNorm layers"):
        xn.load(tmp_path / "bad.npz")
    assert xn.unfreeze_batch_norm(loaded) is loaded and isinstance(loaded.stem[1], L.BatchNorm)
    np.testing.assert_allclose(loaded.predict(x), straight.predict(x), rtol=1e-6, atol=1e-6)
    assert sorted(loaded.stem[1].params) == ["beta", "gamma"]
    loaded.forward(x, train=True)
    assert np.any(loaded.stem[1].buffers["running_mean"] != straight.stem[1].buffers["running_mean"])


def test_pytorch_state_dicts_of_batchnorm2d_and_of_a_frozen_backbone_load():
    """nn.BatchNorm2d's keys (num_batches_tracked dropped, as torchvision's _load_from_state_dict does) and a
    FrozenBatchNorm2d backbone's (no such key) load by name; xn.torch_state_dict loads back into nn.BatchNorm2d."""
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    with torch.no_grad():
        theirs[1].running_mean.uniform_(-1, 1)
        theirs[1].weight.uniform_(0.5, 2)
    ours = xn.Sequential(L.Conv2d(1, 4, 3), L.FrozenBatchNorm2d(4))
    state = theirs.state_dict()
    xn.load_torch_state_dict(ours, state)
    np.testing.assert_array_equal(ours[1].buffers["weight"], theirs[1].weight.detach().numpy())
    xn.load_torch_state_dict(ours, {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")})
    theirs.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x), theirs.eval()(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_clear_errors():
    model = xn.Sequential(L.Linear(3, 4), L.BatchNorm(4, track_running_stats=False))
    with pytest.raises(ValueError, match=r"^xn.freeze_batch_norm: layer '1' is BatchNorm\(track_running_stats=False\)"):
        xn.freeze_batch_norm(model)
    assert isinstance(model[1], L.BatchNorm)
    with pytest.raises(ValueError, match=r"^FrozenBatchNorm2d: expected input \(N, 4\), \(N, 4, L\) or "
                                         r"\(N, 4, H, W\), got shape \(2, 3\)"):
        L.FrozenBatchNorm2d(4).forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="FrozenBatchNorm2d: eps must be a float >= 0, got -1"):
        L.FrozenBatchNorm2d(4, -1)
    with pytest.raises(AttributeError, match="FrozenBatchNorm2d.num_features. takes .N, D. features too"):
        _ = L.FrozenBatchNorm1d
    with pytest.raises(TypeError, match="xn.freeze_batch_norm: expected an xpnet model or layer, got dict"):
        xn.freeze_batch_norm({})
