"""Sequential: any depth, named params/grads, moving between devices, predict, atomic save/load."""

import os
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Dropout, Linear, ReLU, Sigmoid, Tanh
from xpnet.testing import assert_placed


def mlp(sizes=(4, 8, 8, 3), seed=0):
    xn.init.seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return xn.Sequential(*layers)


def test_named_params_and_grads_have_the_same_keys(rng):
    model = mlp()
    assert list(model.named_params()) == ["0.W", "0.b", "2.W", "2.b", "4.W", "4.b"]
    y = model.forward(rng.standard_normal((5, 4)).astype(np.float32))
    model.backward(np.ones_like(y))
    assert list(model.named_grads()) == list(model.named_params())


def test_backward_chains_the_layers(rng):
    model = mlp((3, 5, 2))
    x = rng.standard_normal((4, 3)).astype(np.float32)
    dy = rng.standard_normal((4, 2)).astype(np.float32)
    model.forward(x)
    dx = model.backward(dy)
    W0, W1 = model[0].params["W"], model[2].params["W"]
    h = x @ W0 + model[0].params["b"]
    np.testing.assert_allclose(dx, ((dy @ W1.T) * (h > 0)) @ W0.T, rtol=1e-5)


def test_to_moves_everything_and_predict_stays_on_the_device(case, rng):
    dev, dtype = case
    model = mlp().to(dev, dtype=dtype)
    for v in model.named_params().values():
        assert_placed(v, dev, dtype)
    assert model.device == dev
    x = rng.standard_normal((10, 4))
    full = model.predict(x)
    assert_placed(full, dev, dtype)
    batched = model.predict(x, batch_size=3)
    np.testing.assert_allclose(xn.to_numpy(batched), xn.to_numpy(full), rtol=1e-6, atol=1e-7)


def test_predict_scales_uint8_images_as_train_and_evaluate_do(rng):
    xn.init.seed(0)
    model = xn.Sequential(Linear(6, 3))
    images = rng.integers(0, 256, (5, 6)).astype(np.uint8)
    scaled = images.astype(np.float32) / np.float32(255.0)
    np.testing.assert_allclose(model.predict(images, batch_size=2), model.predict(scaled), rtol=1e-6)
    loss = xn.losses.SoftmaxCrossEntropy()
    t = np.array([0, 1, 2, 0, 1])
    expected = float(loss.forward(model.predict(images), t))
    assert xn.evaluate(model, (images, t), loss="cross_entropy")["loss"] == pytest.approx(expected, rel=1e-6)


def test_predict_casts_other_integers_as_train_does(rng):
    """Integer features that xn.train and xn.evaluate cast (not scaled: only uint8 is) are cast alike by
    predict, with train's warning where they look like raw 0..255 images."""
    xn.init.seed(0)
    model = xn.Sequential(Linear(6, 3))
    counts = rng.integers(0, 5, (5, 6))
    t = np.array([0, 1, 2, 0, 1])
    xn.train(model, (counts, t), loss="cross_entropy", optimizer=xn.optim.SGD(model, lr=0.1), epochs=1,
             batch_size=5, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model.predict(counts, batch_size=2)
    np.testing.assert_allclose(out, model.predict(counts.astype(np.float32)), rtol=1e-6)
    images = rng.integers(0, 256, (5, 6)).astype(np.int32)
    with pytest.warns(UserWarning, match="predict: x: the inputs look like unscaled images"):
        raw = model.predict(images)
    np.testing.assert_allclose(raw, model.predict(images.astype(np.float32)), rtol=1e-6)
    with pytest.raises(TypeError, match="predict: x must hold real numbers, got dtype complex"):
        model.predict(counts.astype(np.complex64))


def test_predict_is_in_evaluation_mode(rng):
    model = xn.Sequential(Linear(4, 4), Dropout(0.5))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))


def test_save_load_round_trip_onto_another_device(tmp_path, dev, rng):
    model = xn.Sequential(Linear(4, 6, init="xavier"), Tanh(), Linear(6, 5, bias=False), Sigmoid(),
                          Dropout(0.2, seed=3), Linear(5, 2)).to(dev)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = xn.load(path, device=dev)
    assert repr(loaded) == repr(model)
    assert loaded.device == dev
    for (k, a), (k2, b) in zip(model.named_params().items(), loaded.named_params().items()):
        assert k == k2
        np.testing.assert_array_equal(xn.to_numpy(a), xn.to_numpy(b))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(xn.to_numpy(model.predict(x)), xn.to_numpy(loaded.predict(x)))
    assert [f for f in os.listdir(tmp_path)] == ["model.npz"]  # no temporary file left behind


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    model = mlp()
    model.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        mlp(seed=1).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_load_rejects_a_file_that_is_not_a_model(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an xpnet model file"):
        xn.load(tmp_path / "x.npz")


def test_sequential_rejects_non_layers():
    with pytest.raises(TypeError, match="item 1 is a str, not an xpnet layer"):
        xn.Sequential(Linear(2, 2), "relu")


def test_float64_on_request(rng):
    model = mlp().to(dtype="float64")
    y = model.predict(rng.standard_normal((2, 4)))
    assert y.dtype == np.float64


def test_repr_reads_like_pytorch():
    model = xn.Sequential(xn.layers.Conv2d(1, 30, 5), ReLU(), xn.layers.MaxPool2d(2), xn.layers.Flatten(),
                          Linear(4320, 100), Dropout(0.3), Linear(100, 10, init="xavier", bias=False))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Conv2d(in_channels=1, out_channels=30, kernel_size=5, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): MaxPool2d(kernel_size=2, stride=2)\n"
        "  (3): Flatten()\n"
        "  (4): Linear(in_features=4320, out_features=100, bias=True)\n"
        "  (5): Dropout(p=0.3)\n"
        "  (6): Linear(in_features=100, out_features=10, init='xavier', bias=False)\n"
        ")")
    assert repr(xn.layers.AvgPool2d((2, 3), stride=1, padding=(1, 0))) == \
        "AvgPool2d(kernel_size=(2, 3), stride=1, padding=(1, 0))"
    assert repr(xn.losses.SoftmaxCrossEntropy()) == "SoftmaxCrossEntropy()"
    assert repr(xn.optim.Adam()).startswith("Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, ")
    assert repr(xn.optim.Momentum(0.1)).startswith("Momentum(lr=0.1, momentum=0.9, ")
    # Every setting is shown, each once: the repr rebuilds the optimizer.
    for opt in (xn.optim.Adam(0.01, weight_decay=0.1), xn.optim.SGD(0.5), xn.optim.RMSprop()):
        assert eval("xn.optim." + repr(opt)).hyperparams() == opt.hyperparams()


def test_summary_says_input_shape_is_one_sample_with_its_channel_axis():
    cnn = xn.Sequential(xn.layers.Conv2d(1, 4, 3, padding=1), xn.layers.Flatten(), xn.layers.Linear(4 * 28 * 28, 10))
    with pytest.raises(ValueError) as info:
        cnn.summary(input_shape=(28, 28))
    message = str(info.value)
    assert message.startswith("summary: input_shape (28, 28) is the shape of one sample, without N (the model got "
                              "(2, 28, 28)); an image keeps its channel axis: (1, 28, 28)")
    assert "Conv2d: expected a 4-d input" in message and "\n" not in message
    with pytest.raises(ValueError, match=r"input_shape \(4,\) is the shape of one sample.*\(2, 4\)\)\. The model"):
        xn.Sequential(xn.layers.Linear(5, 3)).summary(input_shape=(4,))


def test_summary_has_output_shapes_and_parameter_counts(rng):
    xn.init.seed(0)
    cnn = xn.Sequential(xn.layers.Conv2d(1, 30, 5), ReLU(), xn.layers.MaxPool2d(2), xn.layers.Flatten(),
                        Linear(4320, 100), ReLU(), Linear(100, 10))
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    y = cnn.forward(x)
    text = cnn.summary(input_shape=(1, 28, 28))
    lines = text.splitlines()
    rows = [line.split(None, 2) for line in lines[2:9]]
    assert [r[1] for r in rows] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]
    assert [r[2].rsplit(None, 1) for r in rows] == [
        ["(N, 30, 24, 24)", "780"], ["(N, 30, 24, 24)", "0"], ["(N, 30, 12, 12)", "0"], ["(N, 4320)", "0"],
        ["(N, 100)", "432,100"], ["(N, 100)", "0"], ["(N, 10)", "1,010"]]
    assert "input: (N, 1, 28, 28)" in text and "parameters: 433,890 (float32, on cpu)" in text
    # The summary's probe leaves the caches of the forward above: backward still works on it.
    assert cnn.backward(np.ones_like(y)).shape == x.shape
    # Without an input shape, a first Conv2d cannot tell the image size: counts only, and how to get shapes.
    assert "model.summary(input_shape=" in cnn.summary() and "(N, 30" not in cnn.summary()
    # A first Linear tells the input width.
    assert "input: (N, 4)" in mlp().summary() and "(N, 3)" in mlp().summary()
