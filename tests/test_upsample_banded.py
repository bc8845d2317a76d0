"""Upsample's and AdaptiveAvgPool2d's taps (``_interp.taps``, and Numba's kernel on NumPy) give the two products'
y and dx in float64 for every mode, up and down, at odd sizes and on array-api-strict; NumPy images from
``BANDED_FROM`` pixels a side take the taps where Numba is installed."""

import importlib.util

import numpy as np
import pytest
from conftest import DEVICE_MAKERS

import xpnet as xn
from xpnet import backend
from xpnet.layers import AdaptiveAvgPool2d, Upsample, _interp
from xpnet.testing import assert_placed

TOL = {"rtol": 1e-12, "atol": 1e-13}
NUMBA = [False, True] if importlib.util.find_spec("numba") else [False]
CASES = [
    pytest.param({"size": (11, 4)}, (7, 9), id="nearest-up-down"),
    pytest.param({"size": (5, 13), "mode": "nearest-exact"}, (9, 6), id="nearest-exact-down-up"),
    pytest.param({"scale_factor": (2.5, 0.6), "mode": "bilinear"}, (7, 9), id="bilinear-up-down"),
    pytest.param({"size": (4, 15), "mode": "bilinear", "align_corners": True}, (9, 7), id="bilinear-corners"),
    pytest.param({"scale_factor": (0.45, 1.7), "mode": "bicubic"}, (11, 5), id="bicubic-down-up"),
    pytest.param({"size": (13, 3), "mode": "bicubic", "align_corners": True}, (5, 8), id="bicubic-corners"),
    pytest.param({"size": (3, 11), "mode": "area"}, (10, 7), id="area-down-up"),
]


def resized(layer, x, dy, taps, monkeypatch):
    """y and dx of layer on x, dy, by its taps or its products."""
    monkeypatch.setattr(_interp, "banded", lambda v: taps)
    y = layer.forward(x)
    return y, layer.backward(dy)


def draws(kwargs, hw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *hw))
    out = Upsample(**kwargs).forward(x).shape
    return x, rng.standard_normal(out)


@pytest.mark.parametrize("kwargs,hw", CASES)
def test_taps_equal_the_products(kwargs, hw, monkeypatch):
    x, dy = draws(kwargs, hw)
    expected = resized(Upsample(**kwargs), x, dy, False, monkeypatch)
    for numba in NUMBA:  # the portable gathers, then Numba's kernel
        previous = backend.set_numba(numba)
        try:
            got = resized(Upsample(**kwargs), x, dy, True, monkeypatch)
        finally:
            backend.set_numba(previous)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, **TOL, err_msg=f"numba={numba}")


def test_adaptive_avg_pool_taps_equal_its_products(monkeypatch):
    x, dy = draws({"size": (4, 3), "mode": "area"}, (9, 11))
    expected = resized(AdaptiveAvgPool2d((4, 3)), x, dy, False, monkeypatch)
    for a, b in zip(resized(AdaptiveAvgPool2d((4, 3)), x, dy, True, monkeypatch), expected):
        np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("kwargs,hw", [CASES[3], CASES[4], CASES[6]])
def test_taps_on_array_api_strict(kwargs, hw, monkeypatch):
    dev = DEVICE_MAKERS["strict-device1"]()
    x, dy = draws(kwargs, hw)
    expected = resized(Upsample(**kwargs), x, dy, False, monkeypatch)
    got = resized(Upsample(**kwargs), xn.to_device(x, dev), xn.to_device(dy, dev), True, monkeypatch)
    for a, b in zip(got, expected):
        assert_placed(a, dev, "float64")
        np.testing.assert_allclose(xn.to_numpy(a), b, **TOL)


def test_numpy_images_from_banded_from_pixels_a_side_take_numbas_taps(monkeypatch):
    pytest.importorskip("numba", reason="Numba is not installed (pip install -e '.[numba]')")
    made = []
    matrix = _interp.matrix
    monkeypatch.setattr(_interp, "matrix", lambda *args: made.append(args[1]) or matrix(*args))
    rng = np.random.default_rng(0)
    side = _interp.BANDED_FROM
    for hw in ((side - 1, side + 5), (side, side + 5)):
        x = rng.standard_normal((2, 3, *hw)).astype(np.float32)
        layer = Upsample(scale_factor=1.5, mode="bilinear")
        y = layer.forward(x)
        dx = layer.backward(np.ones_like(y))
        assert y.dtype == dx.dtype == np.float32
    assert made == [side - 1, side + 5]  # the larger image made no matrix
    expected = resized(Upsample(scale_factor=1.5, mode="bilinear"), x, np.ones_like(y), False, monkeypatch)
    for a, b in zip((y, dx), expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
