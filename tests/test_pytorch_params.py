"""PyTorch's ``weight`` and ``bias`` attributes (its parameters in its layout over xpnet's params) and ``running_mean``
and ``running_var`` (over the buffers), checked against torch's modules through ``xn.load_torch_state_dict``; the
constructor's ``bias`` flag kept in config, repr, files."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L

TORCH = "torch is not installed (pip install -e '.[backends]')"


@pytest.mark.parametrize("make", [
    lambda nn: (L.Linear(5, 3), nn.Linear(5, 3)), lambda nn: (L.Linear(5, 3, bias=False), nn.Linear(5, 3, False)),
    lambda nn: (L.Conv2d(4, 6, 3, groups=2), nn.Conv2d(4, 6, 3, groups=2)),
    lambda nn: (L.Conv1d(2, 3, 3), nn.Conv1d(2, 3, 3)),
    lambda nn: (L.ConvTranspose2d(4, 6, 3, groups=2), nn.ConvTranspose2d(4, 6, 3, groups=2)),
    lambda nn: (L.ConvTranspose1d(2, 3, 3, bias=False), nn.ConvTranspose1d(2, 3, 3, bias=False)),
    lambda nn: (L.BatchNorm(3), nn.BatchNorm2d(3)),
    lambda nn: (L.BatchNorm(3, affine=False), nn.BatchNorm1d(3, affine=False)),
    lambda nn: (L.LayerNorm(4, bias=False), nn.LayerNorm(4, bias=False)),
    lambda nn: (L.BatchNorm(3, track_running_stats=False), nn.BatchNorm1d(3, track_running_stats=False)),
    lambda nn: (L.GroupNorm(2, 4), nn.GroupNorm(2, 4)), lambda nn: (L.InstanceNorm2d(3), nn.InstanceNorm2d(3)),
    lambda nn: (L.InstanceNorm1d(3, affine=True, track_running_stats=True),
                nn.InstanceNorm1d(3, affine=True, track_running_stats=True)),
    lambda nn: (L.RMSNorm(4), nn.RMSNorm(4)), lambda nn: (L.Embedding(5, 3), nn.Embedding(5, 3)),
    lambda nn: (L.PReLU(3), nn.PReLU(3)),
], ids=["Linear", "Linear-nobias", "Conv2d", "Conv1d", "ConvTranspose2d", "ConvTranspose1d-nobias", "BatchNorm",
        "BatchNorm-noaffine", "LayerNorm-nobias", "BatchNorm-nostats", "GroupNorm", "InstanceNorm2d",
        "InstanceNorm1d-stats", "RMSNorm", "Embedding", "PReLU"])
def test_weight_bias_and_running_statistics_are_pytorchs_values_in_its_layout(make):
    torch = pytest.importorskip("torch", reason=TORCH)
    ours, theirs = make(torch.nn)
    with torch.no_grad():
        for p in [*theirs.parameters(), *(b for b in theirs.buffers() if b.is_floating_point())]:
            p.uniform_(0.5, 1)
    xn.load_torch_state_dict(xn.Sequential(ours), torch.nn.Sequential(theirs).state_dict())
    for name in ("weight", "bias", "running_mean", "running_var"):
        if not hasattr(theirs, name):
            assert not hasattr(ours, name)
        elif getattr(theirs, name) is None:
            assert getattr(ours, name) is None
        else:
            np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name).detach().numpy())


def test_running_statistics_are_the_buffers_themselves_and_assigning_them_replaces_the_buffer():
    bn = L.BatchNorm(3)
    bn.running_mean[...] = 2.0  # an in-place write, as torch's bn.running_mean.fill_(2.0)
    np.testing.assert_array_equal(bn.buffers["running_mean"], np.full(3, 2.0, np.float32))
    bn.running_var = np.arange(3.0)  # float64 given: stored in the layer's dtype
    assert bn.buffers["running_var"].dtype == np.float32 and list(bn.buffers["running_var"]) == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match=r"^BatchNorm.running_var: expected shape \(3,\)"):
        bn.running_var = np.ones(4)
    with pytest.raises(ValueError, match=r"^BatchNorm.running_mean = \.\.\.: .*has none\); .*track_running_stats"):
        L.BatchNorm(3, track_running_stats=False).running_mean = np.zeros(3)
    frozen = L.FrozenBatchNorm2d(3)  # torchvision's four attributes, over its buffers
    frozen.weight[...], frozen.running_var = 3.0, np.full(3, 4.0)
    x = np.ones((1, 3, 1, 1), np.float32)
    np.testing.assert_allclose(frozen.forward(x, train=True), 3.0 / np.sqrt(4.0 + 1e-5) * x, rtol=1e-6)


def test_linears_weight_is_a_view_of_W_and_assigning_it_transposes_back():
    layer = L.Linear(3, 2)
    layer.weight[...] = np.arange(6.0).reshape(2, 3)  # (out, in), as nn.Linear's
    np.testing.assert_array_equal(layer.params["W"], np.arange(6.0).reshape(2, 3).T)
    layer.weight = np.ones((2, 3)) * np.arange(3)
    assert layer.params["W"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["W"], np.ones((3, 2)) * np.arange(3)[:, None])
    with pytest.raises(ValueError, match=r"^Linear.weight: expected shape \(2, 3\) \(PyTorch's layout, the "
                                         r"transpose of params\['W'\] \(3, 2\)\), got \(3, 2\)$"):
        layer.weight = np.zeros((3, 2))
    with pytest.raises(ValueError, match="^Linear.bias = None: .*build the layer with or without it"):
        layer.bias = None
    with pytest.raises(ValueError, match=r"Linear\(in_features=3, out_features=2, bias=False\) has none"):
        L.Linear(3, 2, bias=False).bias = np.zeros(2)


def test_assigning_another_layers_weight_is_refused_where_pytorch_would_tie_the_two():
    """word_language_model's ``decoder.weight = encoder.weight`` made the Linear's W a view of the Embedding's on
    NumPy: two parameters over one memory, each stepped by the optimizer with its own state, untied by a file."""
    encoder, decoder, conv = L.Embedding(6, 4), L.Linear(4, 6), L.Conv2d(2, 2, 3)
    before = decoder.params["W"]
    with pytest.raises(ValueError, match=r"^Linear.weight = Embedding.weight: PyTorch ties the two layers to one "
                                         r"parameter here; .*xn.layers.TiedLinear\(embedding\) in place of the Linear"):
        decoder.weight = encoder.weight
    with pytest.raises(ValueError, match=r"^Conv2d.weight = Conv2d.weight: .*xpnet ties only an Embedding"):
        L.Conv2d(2, 2, 3).weight = conv.weight
    assert decoder.params["W"] is before
    decoder.weight = np.asarray(encoder.weight, copy=True)  # a copy of the values is taken as before
    np.testing.assert_array_equal(decoder.params["W"], encoder.params["W"].T)
    assert not np.shares_memory(decoder.params["W"], encoder.params["W"])
    decoder.weight = decoder.weight * 2  # an array computed from a read, and the layer's own weight, are no tie
    decoder.bias = decoder.bias


def test_config_repr_and_files_keep_the_bias_flag(tmp_path):
    model = xn.Sequential(L.Linear(3, 4, bias=False), L.LayerNorm(4, bias=False), L.GroupNorm(2, 4, bias=False))
    assert repr(model[0]) == "Linear(in_features=3, out_features=4, bias=False)"
    assert [m.config()["bias"] for m in model] == [False, False, False]
    model.save(tmp_path / "m.npz")
    again = xn.load(tmp_path / "m.npz")
    assert [m.bias for m in again] == [None, None, None] and repr(again) == repr(model)


def test_a_layer_without_pytorchs_weight_names_its_params():
    assert not hasattr(L.ReLU(), "weight")
    with pytest.raises(AttributeError, match="'Embedding' object has no attribute 'bias': .*this one's params are 'W'"):
        L.Embedding(4, 2).bias  # noqa: B018


def _trained_after_pytorchs_idioms(dev):
    """A model on ``dev`` initialised through PyTorch's weight and bias (in place, and by assignment), then three
    Adam steps: its state on the host."""
    xn.init.seed(0)
    model = xn.Sequential(L.Linear(4, 5), L.Tanh(), L.Linear(5, 3)).to(dev, dtype="float64")
    xn.init.kaiming_uniform_(model[0].weight, a=0.5)  # into the transposed view of W (5, 4) -> W (4, 5)
    xn.init.orthogonal_(model[2].weight)
    xn.init.zeros_(model[0].bias)
    model[2].weight = np.arange(15.0).reshape(3, 5) / 10 - 0.7  # a host array, nn.Linear's (out, in)
    optimizer, loss = xn.optim.Adam(model, lr=0.01), xn.losses.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x, t = xn.to_device(rng.standard_normal((6, 4)), dev), xn.to_device(np.arange(6) % 3, dev)
    for _ in range(3):
        loss.forward(model.forward(x), t)
        model.backward(loss.backward())
        optimizer.step()
    for value in model.state().values():
        xn.testing.assert_placed(value, dev, "float64")
    return {k: xn.to_numpy(v) for k, v in model.state().items()}


@pytest.mark.parametrize("dev", ["strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)], indirect=True)
def test_weights_set_in_pytorchs_layout_on_a_device_train_as_on_numpy(dev):
    """xn.init's in-place initialisers write through Linear's weight (a view of W transposed) on the device, and
    an assigned weight leaves W a transposed array there that the products and the optimizer's (fused) update
    take: the same state as on NumPy."""
    expected = _trained_after_pytorchs_idioms(xn.device("cpu"))
    for k, v in _trained_after_pytorchs_idioms(dev).items():
        np.testing.assert_allclose(v, expected[k], rtol=1e-12, atol=1e-14, err_msg=k)
