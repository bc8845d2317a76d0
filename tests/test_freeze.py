"""Frozen parameters: ``requires_grad_(False)`` (PyTorch), ``disable_update()`` (Chainer), ``trainable = False``
(Keras), for fine-tuning a part of a model."""

from __future__ import annotations

import json

import array_api_strict
import numpy as np
import pytest

import xpnet as xn


def _mlp(dtype="float64", seed=0):
    xn.init.seed(seed)
    model = xn.Sequential(xn.layers.Linear(6, 8, dtype=dtype), xn.layers.Tanh(), xn.layers.Linear(8, 3, dtype=dtype))
    model[0].params["b"] = np.linspace(-0.5, 0.5, 8).astype(dtype)  # biases off zero: their decay shows
    model[2].params["b"] = np.linspace(0.3, -0.3, 3).astype(dtype)
    return model


def _batches(n=5, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(10, 6)), rng.integers(0, 3, 10)) for _ in range(n)]


def _step(model, opt, x, t, max_norm=None):
    loss = xn.losses.SoftmaxCrossEntropy()
    loss.forward(model(x), t)
    model.backward(loss.backward(), input_grad=False)
    if max_norm is not None:
        xn.optim.clip_grad_norm(model, max_norm)
    opt.step(model)


OPTIMIZERS = {  # xpnet's, PyTorch's: the same update (weight decay on every parameter, as PyTorch)
    "sgd": (lambda: xn.optim.SGD(0.1, momentum=0.9, weight_decay=0.01, weight_decay_on="all"),
            lambda torch, ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
    "adam": (lambda: xn.optim.Adam(0.01, weight_decay=0.01, weight_decay_on="all"),
             lambda torch, ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01)),
    "adamw": (lambda: xn.optim.AdamW(0.01, weight_decay=0.1),
              lambda torch, ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fine_tuning_the_head_and_unfreezing_later_train_as_pytorch(name):
    """The frozen backbone stays bit-identical while the head trains as PyTorch's with
    ``requires_grad_(False)`` (clipped by the norm of the head's gradients only); unfrozen after three
    steps, the backbone trains from fresh state as PyTorch's (Adam's bias correction counts its own steps);
    frozen again for two steps, then unfrozen, it goes on from the state it had, as PyTorch's."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model = _mlp()
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    with torch.no_grad():
        for i in (0, 2):
            net[i].weight.copy_(torch.from_numpy(model[i].params["W"].T))
            net[i].bias.copy_(torch.from_numpy(model[i].params["b"]))
    make, make_torch = OPTIMIZERS[name]
    opt, torch_opt = make(), make_torch(torch, net.parameters())
    backbone = {k: v.copy() for k, v in model[0].params.items()}
    assert model[0].requires_grad_(False) is model[0]
    net[0].requires_grad_(False)
    for i, (x, t) in enumerate(_batches(8)):
        if i in (3, 5, 7):
            model[0].requires_grad_(i != 5)
            net[0].requires_grad_(i != 5)
        _step(model, opt, x, t, max_norm=0.5)
        torch_opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(t)).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        torch_opt.step()
        if i == 2:
            for k, v in backbone.items():
                np.testing.assert_array_equal(model[0].params[k], v, err_msg=k)
            assert not model[0].grads and "0.W" not in opt.state
        trained = {"0.W": net[0].weight.T, "0.b": net[0].bias, "2.W": net[2].weight.T, "2.b": net[2].bias}
        for k, v in trained.items():
            np.testing.assert_allclose(model.named_params()[k], v.detach().numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{k} after step {i}")
    assert not np.array_equal(model[0].params["W"], backbone["W"])


def test_a_frozen_layer_passes_dx_back_but_computes_no_weight_gradient_and_is_not_backpropagated_below():
    xn.init.seed(0)
    layers = [xn.layers.Conv2d(2, 3, 3, padding=1, dtype="float64"), xn.layers.ReLU(), xn.layers.Flatten(),
              xn.layers.Linear(48, 4, dtype="float64")]
    model, reference = xn.Sequential(*layers), None
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 4))
    dy = np.random.default_rng(1).normal(size=(2, 4))
    model(x)
    reference = model.backward(dy)
    model.requires_grad_(False)
    assert all(not node.grads for node in model.named_modules().values())  # no gradient is left to be read
    model[3].requires_grad_(True)
    model(x)
    np.testing.assert_allclose(model.backward(dy), reference, rtol=1e-12)  # dx still flows through the frozen conv
    assert not model[0].grads and set(model[3].grads) == {"W", "b"}
    model[0].backward = model[1].backward = model[2].backward = None  # nothing below the head may run
    model(x)
    model.backward_params(dy)
    assert model.named_grads().keys() == {"3.W", "3.b"}


_L = xn.layers
# name -> (the layer, in float64, the shapes of its inputs, train): every layer whose backward has a parameter
# gradient to skip when frozen; the Transformer layers through their attention, LayerNorms and Linears.
FROZEN_CASES = {
    "BatchNorm-train": (lambda: _L.BatchNorm(3, dtype="float64"), [(4, 3, 5, 5)], True),
    "BatchNorm-eval": (lambda: _L.BatchNorm(3, dtype="float64"), [(4, 3)], False),
    "LayerNorm": (lambda: _L.LayerNorm(6, dtype="float64"), [(2, 3, 6)], True),
    "GroupNorm": (lambda: _L.GroupNorm(2, 4, dtype="float64"), [(2, 4, 3, 3)], True),
    "InstanceNorm2d": (lambda: _L.InstanceNorm2d(4, affine=True, dtype="float64"), [(2, 4, 3, 3)], True),
    "RMSNorm": (lambda: _L.RMSNorm(6, dtype="float64"), [(2, 3, 6)], True),
    "PReLU": (lambda: _L.PReLU(4, dtype="float64"), [(2, 4, 3)], True),
    # Conv2d's dx paths: stride 1 over the batch (8*3*3 rows), one product per sample (few rows), other strides
    # (dcol in parts and col2im), groups, and depthwise (dW and dx from one pass).
    "Conv2d-stride1": (lambda: _L.Conv2d(8, 3, 3, padding=1, dtype="float64"), [(2, 8, 5, 5)], True),
    "Conv2d-per-sample": (lambda: _L.Conv2d(2, 3, 3, padding=1, dtype="float64"), [(2, 2, 5, 5)], True),
    "Conv2d-stride2-groups": (lambda: _L.Conv2d(16, 4, 3, stride=2, padding=1, groups=2, dtype="float64"),
                              [(2, 16, 5, 5)], True),
    "Conv2d-depthwise": (lambda: _L.Conv2d(3, 3, 3, padding=1, groups=3, dtype="float64"), [(2, 3, 5, 5)], True),
    "ConvTranspose2d": (lambda: _L.ConvTranspose2d(3, 2, 3, stride=2, dtype="float64"), [(2, 3, 4, 4)], True),
    "ConvTranspose1d": (lambda: _L.ConvTranspose1d(3, 2, 3, stride=2, dtype="float64"), [(2, 3, 5)], True),
    "MultiheadAttention-self": (lambda: _L.MultiheadAttention(8, 2, dtype="float64"), ["self", (2, 5, 8)], True),
    "MultiheadAttention-kdim": (lambda: _L.MultiheadAttention(8, 2, kdim=5, vdim=3, dtype="float64"),
                                [(2, 4, 8), (2, 6, 5), (2, 6, 3)], True),
    "Bilinear": (lambda: _L.Bilinear(3, 4, 2, dtype="float64"), [(5, 3), (5, 4)], True),
    "TransformerEncoderLayer": (lambda: _L.TransformerEncoderLayer(8, 2, 16, dropout=0.0, dtype="float64"),
                                [(2, 5, 8)], True),
    "TransformerDecoderLayer": (lambda: _L.TransformerDecoderLayer(8, 2, 16, dropout=0.0, norm_first=True,
                                                                   dtype="float64"), [(2, 4, 8), (2, 5, 8)], True),
}


def _forward_backward(layer, inputs, train):
    y = layer.forward(*inputs, train=train)
    y = y[0] if isinstance(y, tuple) else y  # MultiheadAttention's (output, weights)
    dx = layer.backward(np.random.default_rng(1).normal(size=y.shape))
    return dx if isinstance(dx, tuple) else (dx,)


@pytest.mark.parametrize("name", list(FROZEN_CASES))
def test_a_frozen_layer_gives_the_same_dx_and_computes_no_parameter_gradient(name):
    """As Linear's: ``requires_grad_(False)`` empties grads, and backward gives dx alone (no sum or product
    for a parameter's gradient is made, so none is stored), the same dx as before freezing."""
    make, shapes, train = FROZEN_CASES[name]
    xn.init.seed(0)
    layer = make()
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=s) for s in shapes if s != "self"]
    inputs = inputs * 3 if shapes[0] == "self" else inputs
    trained = _forward_backward(layer, inputs, train)
    assert any(node.grads for node in layer.named_modules().values())
    flat = getattr(layer, "_flat", None)  # the 2-d layer a 1-d one runs: its grads are not made again
    kept = dict(flat.grads) if flat is not None else {}
    layer.requires_grad_(False)
    frozen = _forward_backward(layer, inputs, train)
    assert [k for node in layer.named_modules().values() for k in node.grads] == []
    assert all(flat.grads[k] is g for k, g in kept.items())
    for a, b in zip(frozen, trained, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


def test_a_frozen_embedding_gathers_no_gradient_also_from_the_linear_tied_to_it():
    xn.init.seed(0)
    embedding = xn.layers.Embedding(7, 4, dtype="float64")
    model = xn.Sequential(embedding, xn.layers.TiedLinear(embedding))
    embedding.requires_grad_(False)
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    model(ids)
    model.backward(np.ones((2, 3, 7)))
    assert not embedding.grads and list(model.named_grads()) == ["1.b"]
    assert list(model.trainable_params()) == ["1.b"]
    model.requires_grad_(False)
    embedding.add_shared_grad = None  # the tied layer makes no product for a frozen W's gradient
    model(ids)
    model.backward(np.ones((2, 3, 7)))
    assert not model.named_grads()


def test_pytorchs_filter_of_trainable_parameters_says_to_pass_the_model():
    model = _mlp()
    with pytest.raises(TypeError, match=r"got a filter .*; to train a part only, freeze the rest "
                                        r"\(model.backbone.requires_grad_\(False\)\) and pass the model: Adam skips"):
        xn.optim.Adam(filter(lambda p: True, model.parameters()), lr=1e-3)


def test_requires_grad_reads_and_the_chainer_and_keras_names():
    model = _mlp()
    assert model.requires_grad and model.trainable and model.update_enabled
    model.trainable = False  # Keras: the whole model, as model.requires_grad_(False)
    assert not model.requires_grad and not model[2].requires_grad and model.trainable_params() == {}
    model[2].enable_update()
    assert model.requires_grad and not model[0].update_enabled and list(model.trainable_params()) == ["2.W", "2.b"]
    model.disable_update()
    assert not model.requires_grad
    with pytest.raises(TypeError, match="requires_grad"):
        model.requires_grad_("no")


def test_clip_grad_norm_counts_and_scales_only_the_gradients_that_train():
    model = _mlp()
    _step(model, xn.optim.SGD(0.0), *_batches(1)[0])
    model[0].requires_grad_(False)
    model[0].grads["W"] = np.full((6, 8), 1e3)  # a layer of one's own may still fill a frozen gradient
    head = np.sqrt(sum(float(np.sum(g ** 2)) for g in model[2].grads.values()))
    norm = xn.optim.clip_grad_norm(model, head / 2)
    assert float(norm) == pytest.approx(head)
    assert np.all(model[0].grads["W"] == 1e3)
    assert np.sqrt(sum(float(np.sum(g ** 2)) for g in model[2].grads.values())) == pytest.approx(head / 2, rel=1e-5)


def test_a_model_with_every_parameter_frozen_is_refused_by_train():
    model = _mlp().requires_grad_(False)
    x, t = _batches(1)[0]
    with pytest.raises(ValueError, match=r"^train: every parameter of the model is frozen .*nothing would train; "
                                         r"unfreeze what should: model\[2\]\.requires_grad_\(True\)$"):
        xn.train(model, (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, device="cpu", progress=False)


def test_batchnorm_frozen_still_moves_its_running_statistics_and_summary_counts_trainable(tmp_path):
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(6, 4), xn.layers.BatchNorm(4), xn.layers.ReLU(), xn.layers.Linear(4, 3))
    model[0].requires_grad_(False)
    model[1].requires_grad_(False)
    frozen = {k: v.copy() for k, v in model.named_params().items() if not k.startswith("3.")}
    x, t = _batches(1)[0]
    xn.train(model, (x.astype("float32"), t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1, momentum=0.9),
             epochs=2, batch_size=5, device="cpu", progress=False)
    for k, v in frozen.items():
        np.testing.assert_array_equal(model.named_params()[k], v, err_msg=k)
    assert not np.all(model[1].buffers["running_mean"] == 0)  # PyTorch's frozen BatchNorm moves them too
    assert model.summary().endswith("parameters: 51 (float32, on cpu); trainable: 15, frozen: 36")


def test_save_load_keep_the_frozen_layers_and_gradcheck_names_them(tmp_path):
    model = _mlp()
    model[0].requires_grad_(False)
    xn.save(model, tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz")
    assert list(loaded.trainable_params()) == ["2.W", "2.b"] and loaded[1].requires_grad
    x = np.random.default_rng(0).normal(size=(3, 6))
    report = xn.gradcheck(loaded, x, fast=True)
    assert report.ok and [row.name for row in report.rows] == ["2.W", "2.b", "input"]
    assert str(report).endswith("not checked, frozen (requires_grad_(False)): 0.W, 0.b")
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    record = json.loads(str(arrays["__xpnet_model__"]))
    assert record["frozen"] == ["0"]
    arrays["__xpnet_model__"] = np.asarray(json.dumps({**record, "frozen": ["9"]}))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(xn.XpnetFileError, match=r"field 'frozen' is \['9'\], expected a list of the dotted names"):
        xn.load(tmp_path / "bad.npz")


class _Unfreeze(xn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            self.state.model.requires_grad_(True)


def test_a_resumed_run_keeps_the_frozen_layers_and_adams_own_step_counts(tmp_path):
    """Frozen for epoch 1, unfrozen by a callback, checkpointed after epoch 2, resumed with the model as the
    script builds it (frozen): the checkpoint's frozen set (none) and the backbone's late start (Adam's
    bias correction) carry over, and the run ends as the straight one."""
    x, t = _batches(1)[0]
    fit = dict(loss="cross_entropy", batch_size=5, device="cpu", progress=False, seed=2)

    def model():
        m = _mlp()
        m[0].requires_grad_(False)
        return m

    straight = model()
    xn.train(straight, (x, t), optimizer=xn.optim.Adam(0.01), epochs=3, callbacks=[_Unfreeze()], **fit)
    first = model()
    xn.train(first, (x, t), optimizer=xn.optim.Adam(0.01), epochs=2, callbacks=[
        _Unfreeze(), xn.callbacks.ModelCheckpoint(tmp_path / "run.npz", full=True)], **fit)
    resumed = model()
    with pytest.warns(UserWarning, match=r"resume_from: the layers frozen in .* \(none\) replace those frozen in "
                                         r"the model \('0'\)"):
        xn.train(resumed, (x, t), optimizer=xn.optim.Adam(0.01), epochs=3, resume_from=tmp_path / "run.npz", **fit)
    assert resumed.requires_grad and resumed[0].requires_grad
    for k, v in straight.named_params().items():
        np.testing.assert_array_equal(resumed.named_params()[k], v, err_msg=k)


def test_fine_tuning_on_array_api_strict_device1_end_to_end():
    dev = xn.Device(array_api_strict, array_api_strict.Device("device1"))
    model = _mlp(dtype="float32").to(dev)
    model[0].requires_grad_(False)
    backbone = {k: xn.to_numpy(v) for k, v in model.named_params().items()}
    x, t = _batches(1)[0]
    xn.train(model, (x.astype("float32"), t), loss="cross_entropy", optimizer=xn.optim.AdamW(0.01), epochs=2,
             batch_size=5, device=dev, progress=False, clip_grad_norm=1.0)
    after = {k: xn.to_numpy(v) for k, v in model.named_params().items()}
    assert all(np.array_equal(after[k], backbone[k]) for k in ("0.W", "0.b"))
    assert not any(np.array_equal(after[k], backbone[k]) for k in ("2.W", "2.b"))
    assert model.device == dev


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_frozen_recurrent_stack_passes_dx_and_the_state_gradient_back_but_computes_no_weight_gradient(kind):
    xn.init.seed(0)
    layer = getattr(xn.layers, kind)(3, 4, num_layers=2, dtype="float64")
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 4))
    layer(x)
    reference, dh = layer.backward(dy), layer.dh
    layer.requires_grad_(False)
    before = {name: np.copy(p) for name, p in layer.named_params().items()}
    layer(x)
    np.testing.assert_array_equal(layer.backward(dy), reference)
    np.testing.assert_array_equal(layer.dh, dh)
    assert not any(node.grads for node in layer.named_modules().values())
    xn.optim.SGD(0.1).step(layer)
    assert all(np.array_equal(p, before[name]) for name, p in layer.named_params().items())
