"""What a reader of Dive into Deep Learning (d2l.ai, its PyTorch tabs) writes first in xpnet: it works with
PyTorch's meaning, or fails at once saying what to write instead (docs/from-pytorch.md)."""

import numpy as np
import pytest

import xpnet as xn

TORCH_REASON = "torch is not installed (pip install -e '.[backends]')"


def test_parameter_groups_are_refused_naming_weight_decay_on_weights_only():
    """d2l's weight-decay chapter: SGD([{'params': net.weight, 'weight_decay': wd}, {'params': net.bias}])."""
    net = xn.Sequential(xn.layers.Linear(200, 1))
    with pytest.raises(TypeError, match=r"parameter groups .* SGD\(model, lr=\.\.\., weight_decay=wd\)"):
        xn.optim.SGD([{"params": net[0].weight, "weight_decay": 3}, {"params": net[0].bias}], lr=0.01)


def test_weight_decay_on_weights_only_is_d2ls_parameter_groups():
    """The line the refusal gives trains as d2l's two groups do in PyTorch (the weight decayed, the bias not)."""
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 20)), rng.standard_normal((5, 1))
    tnet = torch.nn.Sequential(torch.nn.Linear(20, 1)).double()
    opt = torch.optim.SGD([{"params": tnet[0].weight, "weight_decay": 3.0}, {"params": tnet[0].bias}], lr=0.01)
    model = xn.Sequential(xn.layers.Linear(20, 1)).to(dtype="float64")
    xn.load_torch_state_dict(model, tnet.state_dict())
    xopt = xn.optim.SGD(model, lr=0.01, weight_decay=3.0)
    loss = xn.losses.MeanSquaredError()
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(tnet(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
        loss.forward(model(x), y)
        model.backward(loss.backward())
        xopt.step()
    np.testing.assert_allclose(model[0].weight, tnet[0].weight.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(model[0].bias, tnet[0].bias.detach().numpy(), rtol=1e-12)
