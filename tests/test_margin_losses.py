"""PyTorch's SoftMarginLoss, HingeEmbeddingLoss, MultiLabelSoftMarginLoss and PoissonNLLLoss: loss and dy equal
to torch.nn's in float64 (at the hinge's kink too) on NumPy, array-api-strict and CuPy (gpu), and their refusals."""

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from xpnet.losses import HingeEmbeddingLoss, MultiLabelSoftMarginLoss, PoissonNLLLoss, SoftMarginLoss
from xpnet.testing import assert_placed

TORCH = "torch is not installed (pip install -e '.[backends]')"
DEVICES = ["numpy", "strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)]


def _signs(rng, shape):
    return np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)


def _inputs(kind, rng):
    """(y, t) as each loss takes them: scores and +-1; distances with the margin 1 among them; logits and 0/1;
    log-rates (or rates) and counts 0..5."""
    y = rng.standard_normal((4, 5)) * 2
    if kind == "signs":
        return y, _signs(rng, y.shape)
    if kind == "hinge":
        y = np.abs(y)
        y[0, :3] = 1.0  # the kink of max(0, 1 - y)
        t = _signs(rng, y.shape)
        t[0, :3] = -1.0
        return y, t
    if kind == "labels":
        return y, (rng.uniform(size=y.shape) < 0.5).astype(np.float64)
    counts = rng.integers(0, 6, y.shape).astype(np.float64)
    return (np.abs(y) + 0.1 if kind == "rates" else y), counts


CASES = [
    (lambda: SoftMarginLoss(), "SoftMarginLoss", {}, "signs"),
    (lambda: SoftMarginLoss("sum"), "SoftMarginLoss", {"reduction": "sum"}, "signs"),
    (lambda: HingeEmbeddingLoss(), "HingeEmbeddingLoss", {}, "hinge"),
    (lambda: HingeEmbeddingLoss(0.5, "sum"), "HingeEmbeddingLoss", {"margin": 0.5, "reduction": "sum"}, "hinge"),
    (lambda: MultiLabelSoftMarginLoss(), "MultiLabelSoftMarginLoss", {}, "labels"),
    (lambda: MultiLabelSoftMarginLoss(np.arange(1.0, 6.0), "sum"), "MultiLabelSoftMarginLoss",
     {"weight": np.arange(1.0, 6.0), "reduction": "sum"}, "labels"),
    (lambda: PoissonNLLLoss(), "PoissonNLLLoss", {}, "log-rates"),
    (lambda: PoissonNLLLoss(False, True, reduction="sum"), "PoissonNLLLoss",
     {"log_input": False, "full": True, "reduction": "sum"}, "rates"),
    (lambda: PoissonNLLLoss(True, True, eps=0.1), "PoissonNLLLoss", {"full": True, "eps": 0.1}, "log-rates"),
]
IDS = ["soft_margin", "soft_margin-sum", "hinge", "hinge-margin-sum", "multilabel", "multilabel-weight-sum",
       "poisson", "poisson-rates-full-sum", "poisson-full-eps"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("make, reference, settings, kind", CASES, ids=IDS)
def test_losses_equal_pytorch(device, make, reference, settings, kind):
    torch = pytest.importorskip("torch", reason=TORCH)
    dev, rng = DEVICE_MAKERS[device](), np.random.default_rng(7)
    y, t = _inputs(kind, rng)
    loss = make()
    value = loss.forward(xn.to_device(y, dev), xn.to_device(t, dev))
    dy = loss.backward(0.7)
    assert_placed(value, dev, "float64")
    assert_placed(dy, dev, "float64")
    ty = torch.tensor(y, requires_grad=True)
    kwargs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in settings.items()}
    ref = getattr(torch.nn, reference)(**kwargs)(ty, torch.tensor(t))
    (ref * 0.7).backward()
    np.testing.assert_allclose(float(xn.to_numpy(value)), ref.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xn.to_numpy(dy), ty.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_soft_margin_is_finite_for_huge_scores():
    loss = SoftMarginLoss()
    value = loss.forward(np.array([800.0, -800.0]), np.array([-1.0, -1.0]))
    np.testing.assert_allclose(float(value), 400.0)
    np.testing.assert_allclose(loss.backward(), [0.5, 0.0])


@pytest.mark.parametrize("make, message", [
    (lambda: PoissonNLLLoss(True, False, True), "takes from 1 to 3 positional arguments"),  # PyTorch's size_average
    (lambda: PoissonNLLLoss(log_input="no"), "PoissonNLLLoss: log_input must be True or False, got 'no'"),
    (lambda: PoissonNLLLoss(eps=-1), "PoissonNLLLoss: eps must be a finite number >= 0, got -1"),
    (lambda: HingeEmbeddingLoss(margin="1"), "HingeEmbeddingLoss: margin must be a finite number, got '1'"),
    (lambda: SoftMarginLoss("none"), "SoftMarginLoss: reduction='none' is not supported"),
    (lambda: MultiLabelSoftMarginLoss("sum"), "MultiLabelSoftMarginLoss: the first argument is weight"),
    (lambda: MultiLabelSoftMarginLoss().forward(np.zeros((2, 3)), np.array([[0.0, 2.0, 1.0], [1.0, 0.0, 0.0]])),
     r"targets must lie in \[0, 1\] .* each class's target is 0 or 1 \(several classes may be 1\)"),
    (lambda: MultiLabelSoftMarginLoss().forward(np.zeros((2, 3, 4)), np.zeros((2, 3, 4))),
     r"MultiLabelSoftMarginLoss: expected logits \(N, C\) or \(C,\), got shape \(2, 3, 4\)"),
])
def test_refusals_name_the_loss_and_the_argument(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_reprs_and_names():
    assert repr(PoissonNLLLoss(False, eps=0.1)) == "PoissonNLLLoss(log_input=False, eps=0.1)"
    assert repr(HingeEmbeddingLoss(2.0)) == "HingeEmbeddingLoss(margin=2.0)"
    assert xn.losses.SoftMarginLoss is SoftMarginLoss
