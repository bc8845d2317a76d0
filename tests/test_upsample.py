"""Upsample's interpolating modes ('bilinear', 'bicubic') and its nearest pixels at any size: equal to PyTorch's
F.interpolate in float64 (outputs and input gradients) on every device, its nearest pixels equal to PyTorch's in
float32 at every size, gradcheck, the matrices made once per input size, and save/load."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Upsample, _interp
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")

TOL = {"rtol": 1e-12, "atol": 1e-12}

# Each device runs the first three (JAX compiles every operation for every new shape, a second or two a case);
# NumPy runs them all.
CASES = [
    pytest.param({"scale_factor": 2, "mode": "bilinear"}, (3, 5), id="bilinear-x2"),
    pytest.param({"size": (7, 9), "mode": "bicubic", "align_corners": True}, (3, 4), id="bicubic-size-corners"),
    pytest.param({"size": (46, 7)}, (14, 3), id="nearest-14-to-46"),
]
MORE_CASES = [
    pytest.param({"scale_factor": (1.5, 2.7), "mode": "bilinear", "align_corners": True}, (4, 3), id="bilinear-frac"),
    pytest.param({"scale_factor": 2, "mode": "bilinear", "align_corners": True}, (3, 5), id="bilinear-x2-corners"),
    pytest.param({"size": (7, 3), "mode": "bilinear"}, (3, 5), id="bilinear-size-down-w"),
    pytest.param({"scale_factor": 0.6, "mode": "bilinear", "recompute_scale_factor": True}, (5, 4),
                 id="bilinear-recompute"),
    pytest.param({"scale_factor": (1.2, 1.3), "mode": "bilinear"}, (3, 4), id="bilinear-same-size"),
    pytest.param({"scale_factor": 2, "mode": "bicubic"}, (4, 5), id="bicubic-x2"),
    pytest.param({"scale_factor": 1.7}, (3, 5), id="nearest-frac"),
    pytest.param({"size": (5, 9), "mode": "nearest-exact"}, (3, 4), id="nearest-exact-size"),
]


def _assert_as_pytorch(kwargs, hw, dev):
    """Upsample(**kwargs) on dev gives F.interpolate(**kwargs)'s y and input gradient in float64."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *hw))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, **kwargs)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    layer = Upsample(**kwargs)
    y = layer.forward(xn.to_device(x, dev))
    dx = layer.backward(xn.to_device(dy, dev))
    assert_placed(y, dev, "float64")
    assert_placed(dx, dev, "float64")
    np.testing.assert_allclose(xn.to_numpy(y), ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(xn.to_numpy(dx), tx.grad.numpy(), **TOL)


@pytest.mark.parametrize("kwargs,hw", CASES)
def test_equal_to_pytorchs_interpolate(dev, kwargs, hw):
    _assert_as_pytorch(kwargs, hw, dev)


@pytest.mark.parametrize("kwargs,hw", CASES + MORE_CASES)
def test_equal_to_pytorchs_interpolate_on_numpy(kwargs, hw, resize_path):
    _assert_as_pytorch(kwargs, hw, xn.device("cpu"))


def test_nearest_pixels_are_pytorchs_float32_pixels_at_every_size():
    # PyTorch picks them in float32 arithmetic (on the CPU and in CUDA): floor(dst * float32(H / oh)) is not
    # floor(dst * H / oh) at some sizes (14 -> 46 rows), nor dst // 41 for scale_factor=41 on 2 rows.
    for h in (1, 2, 3, 7, 14):
        x = torch.arange(h * 2, dtype=torch.float32).reshape(1, 1, h, 2)
        for mode in ("nearest", "nearest-exact"):
            for kwargs in [{"size": (o, 2)} for o in range(1, 61)] + [{"scale_factor": (s, 1)} for s in (1.3, 2.5, 41)]:
                expected = torch.nn.functional.interpolate(x, mode=mode, **kwargs).numpy()
                y = Upsample(mode=mode, **kwargs).forward(x.numpy())
                assert y.dtype == np.float32
                np.testing.assert_array_equal(y, expected, err_msg=f"{h} rows, {mode}, {kwargs}")


@pytest.mark.parametrize("kwargs", [{"scale_factor": (1.5, 2.5), "mode": "bilinear"},
                                    {"size": (5, 3), "mode": "bicubic", "align_corners": True},
                                    {"scale_factor": 1.2, "mode": "bicubic"},
                                    {"size": (7, 2), "mode": "nearest"}])
def test_gradcheck(kwargs, rng):
    # scale_factor=1.2 on 3x4 keeps the size: PyTorch's bicubic backward then returns dy itself, which is not the
    # gradient of its forward (torch.autograd.gradcheck fails there); xpnet's is.
    assert xn.gradcheck(Upsample(**kwargs), rng.standard_normal((2, 2, 3, 4))).ok


def test_the_matrices_are_made_once_per_input_size(monkeypatch, rng):
    made = []
    matrix = _interp.matrix
    monkeypatch.setattr(_interp, "matrix", lambda *args: made.append(args[1]) or matrix(*args))
    layer = Upsample(scale_factor=1.5, mode="bilinear")
    for hw in ((4, 6), (4, 6), (2, 6), (2, 6)):
        x = rng.standard_normal((2, 3, *hw))
        layer.backward(layer.forward(x))
    assert made == [4, 6, 2, 6]


def test_save_load_and_repr(tmp_path, rng):
    L = xn.layers
    model = xn.Sequential(L.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
                          L.Upsample(size=(5, 7), mode="bicubic"),
                          L.Upsample(scale_factor=(0.5, 2), mode="nearest-exact", recompute_scale_factor=True))
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    model.save(tmp_path / "up.npz")
    loaded = xn.load(tmp_path / "up.npz")
    assert repr(loaded) == repr(model)
    assert repr(model[0]) == "Upsample(scale_factor=1.5, mode='bilinear', align_corners=True)"
    assert repr(model[2]) == "Upsample(scale_factor=(0.5, 2), mode='nearest-exact', recompute_scale_factor=True)"
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert model.forward(x).shape == (2, 1, 2, 14)
