"""PyTorch's initialisation idiom: ``xn.init.<name>_`` filling a layer's ``m.weight``/``m.bias`` (PyTorch's layout)
in place with torch.nn.init's formulas, checked against torch's own run, and one seed giving the same weights."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L

TORCH = "torch is not installed (pip install -e '.[backends]')"


def pytorch_idiom(model):
    """The loop a PyTorch user ports (torchvision's ResNet), ``model.modules()`` as ``named_modules().values()``."""
    for m in model.named_modules().values():
        if isinstance(m, L.Conv2d):
            xn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                xn.init.zeros_(m.bias)
        elif isinstance(m, L.BatchNorm):
            xn.init.ones_(m.weight)
            xn.init.zeros_(m.bias)
        elif isinstance(m, L.Linear):
            xn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # fan_in: Linear's in_features
            xn.init.constant_(m.bias, 0)


def small_net():
    return xn.Sequential(L.Conv2d(3, 40, 3, bias=False), L.BatchNorm(40), L.ReLU(), L.Flatten(),
                         L.Linear(40 * 4 * 4, 3))


def test_calculate_gain_is_torchs():
    torch = pytest.importorskip("torch", reason=TORCH)
    for nonlinearity in ("linear", "conv2d", "conv_transpose1d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
        for param in (None, 0, 0.2, 3):
            assert xn.init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)
    with pytest.raises(ValueError, match="^xn.init.calculate_gain: unsupported nonlinearity 'gelu'"):
        xn.init.calculate_gain("gelu")


def _scale(draw, shape, uniform, seeded):
    """The std (normal) or bound (uniform) that ``draw`` used: its values over the same seed's standard draws."""
    w, base = draw(shape), seeded(shape)
    scale = w / (2 * base - 1) if uniform else w / base
    assert float(scale.max() - scale.min()) <= 1e-12 * float(scale.max())
    return float(scale.mean())


@pytest.mark.parametrize("name, kwargs", [
    ("kaiming_normal_", {}), ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_uniform_", {"a": math.sqrt(5)}), ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "tanh"}),
    ("xavier_normal_", {"gain": 2.0}), ("xavier_uniform_", {}),
])
def test_random_initialisers_use_torchs_std_and_bound(name, kwargs):
    torch = pytest.importorskip("torch", reason=TORCH)
    uniform = name.endswith("uniform_")
    for shape in ((7, 3), (6, 4, 3, 2)):
        theirs = _scale(lambda s: getattr(torch.nn.init, name)(torch.empty(s, dtype=torch.float64), **kwargs,
                                                               generator=torch.Generator().manual_seed(0)), shape,
                        uniform, lambda s: getattr(torch.empty(s, dtype=torch.float64), "uniform_" if uniform else
                                                   "normal_")(generator=torch.Generator().manual_seed(0)))
        ours = _scale(lambda s: getattr(xn.init, name)(np.empty(s), **kwargs, generator=np.random.default_rng(0)),
                      shape, uniform, lambda s: getattr(np.random.default_rng(0), "random" if uniform else
                                                        "standard_normal")(s))
        assert ours == pytest.approx(theirs, rel=1e-12)


def test_fixed_initialisers_equal_torchs():
    torch = pytest.importorskip("torch", reason=TORCH)
    ti = torch.nn.init
    for ours, theirs, shape in [(lambda w: xn.init.constant_(w, 0.3), lambda t: ti.constant_(t, 0.3), (2, 3)),
                                (xn.init.ones_, ti.ones_, (4,)), (xn.init.zeros_, ti.zeros_, (2, 2, 2)),
                                (xn.init.eye_, ti.eye_, (3, 5)), (xn.init.eye_, ti.eye_, (4, 2)),
                                (lambda w: xn.init.dirac_(w, 2), lambda t: ti.dirac_(t, 2), (6, 2, 3, 3)),
                                (xn.init.dirac_, ti.dirac_, (2, 3, 5))]:
        w = np.full(shape, 7.0, dtype=np.float32)
        assert ours(w) is w
        np.testing.assert_array_equal(w, theirs(torch.full(shape, 7.0)).numpy())


def test_orthogonal_and_truncated_normal():
    for shape in ((5, 8), (8, 5), (4, 3, 2)):
        w = xn.init.orthogonal_(np.empty(shape), gain=2.0)
        flat = w.reshape(shape[0], -1)
        small = flat @ flat.T if shape[0] <= flat.shape[1] else flat.T @ flat
        np.testing.assert_allclose(small, 4.0 * np.eye(min(flat.shape)), atol=1e-12)
    for mean, std, a, b in ((0.0, 1.0, -2.0, 2.0), (0.5, 1.0, -0.2, 0.3)):  # normal rejection; uniform proposals
        w = xn.init.trunc_normal_(np.empty(20000), mean, std, a, b)
        assert a <= w.min() and w.max() <= b
        z = np.linspace(a, b, 20001)
        density = np.exp(-0.5 * ((z - mean) / std) ** 2)
        assert w.mean() == pytest.approx(np.sum(z * density) / np.sum(density), abs=0.02)


def test_the_pytorch_idiom_initialises_a_sequential_in_place():
    model = small_net()
    w_ids = {k: id(v) for k, v in model.named_params().items()}
    model[1].params["gamma"][...] = 3.0
    model[4].params["b"][...] = 5.0
    xn.init.seed(0)
    pytorch_idiom(model)
    params = model.named_params()
    assert {k: id(v) for k, v in params.items()} == w_ids and model[0].bias is None
    assert params["0.W"].std() == pytest.approx(math.sqrt(2 / (40 * 9)), rel=0.05)  # fan_out = 40 * 3 * 3
    # Linear's W (640, 3) filled through weight (3, 640): fan_in 640, not 3
    assert params["4.W"].std() == pytest.approx(math.sqrt(2 / 640), rel=0.05)
    np.testing.assert_array_equal(params["1.gamma"], 1.0)
    np.testing.assert_array_equal(params["4.b"], 0.0)


class InitialisedInInit(xn.Model):
    """A PyTorch port that runs the idiom in ``__init__``, as torchvision's models do."""

    def __init__(self):
        super().__init__()
        self.net = small_net()
        pytorch_idiom(self.net)

    def forward(self, x, train=True):
        return self.net.forward(x, train)

    def backward(self, dy):
        return self.net.backward(dy)


def test_a_model_that_initialises_in_its_init_loads_from_its_file(tmp_path):
    model = InitialisedInInit()
    model.save(tmp_path / "m.npz")  # xn.load builds it without drawing (read-only placeholders), then fills it
    loaded = xn.load(tmp_path / "m.npz")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v, err_msg=k)


def test_one_seed_gives_the_same_weights_on_every_device(dev):
    reference = small_net()
    xn.init.seed(7)
    pytorch_idiom(reference)
    model = small_net().to(dev)
    xn.init.seed(7)
    if dev.name.startswith("jax"):
        with pytest.raises(TypeError, match="^xn.init.kaiming_normal_: arrays of jax.* cannot be written in place; "
                                            r"initialise the model before model.to\(device\)"):
            pytorch_idiom(model)
        return
    pytorch_idiom(model)
    for k, v in reference.named_params().items():
        np.testing.assert_allclose(xn.to_numpy(model.named_params()[k]), v, rtol=1e-6)


def test_clear_errors_for_what_is_not_a_layers_array():
    torch = pytest.importorskip("torch", reason=TORCH)
    for bad, said in ((True, "got a bool"), (None, "got None .*test `if m.bias is not None`"),
                      (L.Linear(2, 2), "got a Linear \\(pass its m.weight or m.bias\\)"),
                      # DCGAN's weights_init: nn.init.normal_(m.weight.data, 0.0, 0.02)
                      (L.Linear(2, 2).weight.data, "got a memoryview \\(NumPy's .data, the array's raw memory: "
                                                   "pass m.weight itself, without .data\\)")):
        with pytest.raises(TypeError, match=f"^xn.init.zeros_: tensor must be an array such as a layer's m.weight, "
                                            f"{said}"):
            xn.init.zeros_(bad)
    with pytest.raises(TypeError, match="^xn.init.normal_: generator must be a numpy.random.Generator"):
        xn.init.normal_(np.empty(3), generator=torch.Generator())
    with pytest.raises(ValueError, match="^xn.init.kaiming_uniform_: mode must be 'fan_in' or 'fan_out'"):
        xn.init.kaiming_uniform_(np.empty((2, 2)), mode="in")
