"""The book's networks and params.pkl files: predictions equal a NumPy re-implementation of the book's
forward pass, written here from the book's layer formulas; pickles that hold code are refused."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import xpnet as xn

# -- the book's forward pass (common/layers.py), in NumPy ----------------------------------------


def _conv(x, W, b, stride=1, pad=0):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(xp, W.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,fcij->nfhw", windows, W) + b[:, None, None]


def _pool(x):
    n, c, h, w = x.shape
    return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _affine(x, W, b):
    return x.reshape(x.shape[0], -1) @ W + b


def _relu(x):
    return np.maximum(x, 0)


def _book_simple_convnet(p, x):
    y = _pool(_relu(_conv(x, p["W1"], p["b1"])))
    return _affine(_relu(_affine(y, p["W2"], p["b2"])), p["W3"], p["b3"])


def _book_deep_convnet(p, x):
    """ch08/deep_convnet.py predict(train_flg=False): Dropout multiplies by 1 - 0.5 at test."""
    pads = (1, 1, 1, 2, 1, 1)
    for i in range(6):
        x = _relu(_conv(x, p[f"W{i + 1}"], p[f"b{i + 1}"], pad=pads[i]))
        if i % 2 == 1:
            x = _pool(x)
    x = _relu(_affine(x, p["W7"], p["b7"])) * 0.5
    return _affine(x, p["W8"], p["b8"]) * 0.5


def _book_multi_layer_net_extend(p, x, layers):
    """Evaluation: BatchNormalization with running statistics still at 0 (as after load_params), Dropout x 0.5."""
    for i in range(1, layers):
        x = _affine(x, p[f"W{i}"], p[f"b{i}"])
        x = p[f"gamma{i}"] * x / np.sqrt(0.0 + 10e-7) + p[f"beta{i}"]
        x = _relu(x) * 0.5
    return _affine(x, p[f"W{layers}"], p[f"b{layers}"])


def _save(path, params, container=dict):
    """The book's save_params: pickle.dump of a dict of float64 arrays."""
    with open(path, "wb") as f:
        pickle.dump(container(params), f)
    return path


def _random(rng, shapes):
    return {k: rng.standard_normal(s) * (0.1 if k.startswith("W") else 0.5) for k, s in shapes.items()}


# -- loading ------------------------------------------------------------------------------------

def test_simple_convnet_params_give_the_books_predictions(tmp_path, rng):
    p = _random(rng, {"W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,), "W3": (100, 10),
                      "b3": (10,)})
    model = xn.load_book_params(_save(tmp_path / "params.pkl", p, OrderedDict), "SimpleConvNet")
    x = rng.uniform(0, 1, (3, 1, 28, 28))
    y = xn.to_numpy(model.predict(x))
    assert model.dtype == np.float64
    np.testing.assert_allclose(y, _book_simple_convnet(p, x), rtol=1e-12, atol=1e-12)


def test_deep_convnet_params_give_the_books_predictions(tmp_path, rng):
    shapes = {"W1": (16, 1, 3, 3), "W2": (16, 16, 3, 3), "W3": (32, 16, 3, 3), "W4": (32, 32, 3, 3),
              "W5": (64, 32, 3, 3), "W6": (64, 64, 3, 3), "W7": (1024, 50), "W8": (50, 10)}
    shapes.update({f"b{i}": (s[0] if len(s) == 4 else s[1],) for i, s in enumerate(shapes.values(), start=1)})
    p = _random(rng, shapes)
    model = xn.load_book_params(_save(tmp_path / "deep.pkl", p), "DeepConvNet")
    x = rng.uniform(0, 1, (2, 1, 28, 28))
    np.testing.assert_allclose(xn.to_numpy(model.predict(x)), _book_deep_convnet(p, x), rtol=1e-11, atol=1e-12)


def test_multi_layer_net_extend_with_batchnorm_and_dropout(tmp_path, rng):
    p = _random(rng, {"W1": (6, 5), "b1": (5,), "gamma1": (5,), "beta1": (5,), "W2": (5, 4), "b2": (4,),
                      "gamma2": (4,), "beta2": (4,), "W3": (4, 3), "b3": (3,)})
    model = xn.load_book_params(_save(tmp_path / "mlp.pkl", p), "MultiLayerNetExtend", input_size=6,
                                hidden_size_list=[5, 4], output_size=3, use_batchnorm=True, use_dropout=True)
    x = rng.standard_normal((4, 6))
    np.testing.assert_allclose(xn.to_numpy(model.predict(x)), _book_multi_layer_net_extend(p, x, 3), rtol=1e-12)


def test_a_batchnorm_without_gamma_and_beta_takes_no_book_number(tmp_path, rng):
    p = _random(rng, {"W1": (6, 5), "b1": (5,), "gamma1": (4,), "beta1": (4,), "W2": (5, 4), "b2": (4,)})
    mine = xn.Sequential(xn.layers.Linear(6, 5), xn.layers.BatchNorm(5, affine=False), xn.layers.Linear(5, 4),
                         xn.layers.BatchNorm(4))
    model = xn.load_book_params(_save(tmp_path / "mlp.pkl", p), mine, dtype="float64")
    np.testing.assert_array_equal(model[3].params["gamma"], p["gamma1"])
    assert model[1].params == {}


def test_two_layer_net_into_a_given_sequential_on_another_device(tmp_path, rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    p = _random(rng, {"W1": (4, 3), "b1": (3,), "W2": (3, 2), "b2": (2,)})
    mine = xn.Sequential(xn.layers.Linear(4, 3), xn.layers.ReLU(), xn.layers.Linear(3, 2))
    model = xn.load_book_params(_save(tmp_path / "two.pkl", p), mine, device=dev1, dtype="float32")
    assert model.device == dev1 and model.dtype == strict.float32
    x = rng.standard_normal((5, 4))
    expected = _affine(_relu(_affine(x, p["W1"], p["b1"])), p["W2"], p["b2"])
    np.testing.assert_allclose(xn.to_numpy(model.predict(xn.to_device(x, dev1))), expected, rtol=1e-5, atol=1e-6)


def test_loading_leaves_the_global_generator_alone(tmp_path, rng):
    path = _save(tmp_path / "two.pkl", _random(rng, {"W1": (4, 3), "b1": (3,), "W2": (3, 2), "b2": (2,)}))
    xn.init.seed(5)
    before = xn.init.generator().bit_generator.state
    xn.load_book_params(path, "TwoLayerNet", input_size=4, hidden_size=3, output_size=2)
    assert xn.init.generator().bit_generator.state == before


def test_missing_extra_and_misshapen_arrays_are_named(tmp_path, rng):
    good = {"W1": (4, 3), "b1": (3,), "W2": (3, 2), "b2": (2,)}
    args = {"input_size": 4, "hidden_size": 3, "output_size": 2}
    extra = _save(tmp_path / "extra.pkl", _random(rng, {**good, "W3": (2, 2)}))
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['W3'\]"):
        xn.load_book_params(extra, "TwoLayerNet", **args)
    wrong = _save(tmp_path / "wrong.pkl", _random(rng, {**good, "W2": (3, 5)}))
    with pytest.raises(ValueError, match=r"W2 .* has shape \(3, 5\), the model's Linear.W has \(3, 2\)"):
        xn.load_book_params(wrong, "TwoLayerNet", **args)
    with pytest.raises(ValueError, match="unknown book model 'LeNet'"):
        xn.load_book_params(extra, "LeNet")


# -- never running code from a file -------------------------------------------------------------

class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Custom:
    pass


@pytest.mark.parametrize("payload,match", [
    (lambda m: {"W1": _Exploit(m)}, r"refused to load (posix|os|nt)\.system"),
    (lambda m: _Exploit(m), r"refused to load (posix|os|nt)\.system"),
    (lambda m: {"W1": _Custom()}, r"refused to load test_book\._Custom|refused to load .*_Custom"),
    (lambda m: {"W1": np.array([_Custom()], dtype=object)}, "refused dtype object"),
    (lambda m: {"W1": np.array(["a"], dtype=object)}, "refused dtype object"),
    (lambda m: [np.zeros(3)], "holds a list"),
    (lambda m: {"W1": "text"}, "entry 'W1' is str"),
])
def test_a_pickle_holding_anything_but_arrays_is_refused(tmp_path, payload, match):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump(payload(marker), f)
    with pytest.raises(ValueError, match=match):
        xn.load_book_params(path, "TwoLayerNet", input_size=4, hidden_size=3, output_size=2)
    assert not marker.exists()


def test_a_truncated_pickle_is_named(tmp_path):
    path = _save(tmp_path / "p.pkl", {"W1": np.zeros((4, 3))})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="is not a readable params pickle"):
        xn.book.read_book_params(path)
