"""torch.optim's state dicts and a model on another device than the host (CuPy, gpu; array-api-strict's "device1",
which refuses hidden host copies): the loaded state lands on the parameters' device, the exported dict holds host
arrays (CPU tensors with ``as_tensors=True``), and both runs go on as torch's, in float64."""

import numpy as np
import pytest

import xpnet as xn
from conftest import DEVICE_MAKERS
from xpnet import layers as nn
from xpnet import optim
from xpnet.backend import same_device

from torch_optim_checks import (float64_default,  # noqa: F401 - a fixture
                               same_weights, torch_closure, torch_model_steps, xpnet_closure, xpnet_model_steps)

pytestmark = pytest.mark.usefixtures("float64_default")
DEVICES = ["strict-device1", pytest.param("cupy", marks=pytest.mark.gpu)]


def _mlp(torch):
    """An xpnet MLP and its torch twin (CPU); six batches."""
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    ours = xn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype="float64")
    rng = np.random.default_rng(1)
    return ours, tmodel, [(rng.standard_normal((5, 4)), rng.integers(0, 3, 5)) for _ in range(6)]


def _on(dev, ours, tmodel):
    """``ours`` with the weights of ``tmodel``, on ``dev``."""
    xn.load_torch_state_dict(ours, tmodel.state_dict())
    return ours.to(dev)


def _on_their_device(opt, model):
    params = model.named_params()
    return all(same_device(a, params[name]) and a.dtype == params[name].dtype
               for name, slots in opt.state.items() for a in slots.values())


@pytest.mark.parametrize("device", DEVICES)
def test_adams_state_goes_in_onto_the_models_device_and_out_to_the_host_and_both_runs_go_on_as_torchs(device):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    dev = DEVICE_MAKERS[device]()
    ours, tmodel, batches = _mlp(torch)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.05, amsgrad=True, weight_decay=0.01)
    torch_model_steps(torch, tmodel, topt, batches[:2])
    ours = _on(dev, ours, tmodel)
    opt = optim.Adam(ours.parameters())
    xn.load_torch_optimizer_state_dict(opt, ours, topt.state_dict())
    assert sorted(opt.state) == ["0.W", "0.b", "2.W", "2.b"] and _on_their_device(opt, ours)
    xpnet_model_steps(ours, opt, batches[2:4], dev)
    torch_model_steps(torch, tmodel, topt, batches[2:4])
    same_weights(ours, tmodel)

    sd = xn.torch_optimizer_state_dict(opt, ours)
    assert {type(v) for s in sd["state"].values() for v in s.values()} == {np.ndarray}
    tensors = xn.torch_optimizer_state_dict(opt, ours, as_tensors=True)
    assert {v.device.type for s in tensors["state"].values() for v in s.values()} == {"cpu"}
    topt = torch.optim.Adam(tmodel.parameters())
    topt.load_state_dict(tensors)
    xpnet_model_steps(ours, opt, batches[4:], dev)
    torch_model_steps(torch, tmodel, topt, batches[4:])
    same_weights(ours, tmodel)


@pytest.mark.parametrize("device", DEVICES)
def test_lbfgs_history_goes_in_onto_the_models_device_and_out_to_the_host(device):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    dev = DEVICE_MAKERS[device]()
    ours, tmodel, batches = _mlp(torch)
    x, y = batches[0]
    topt = torch.optim.LBFGS(tmodel.parameters(), lr=0.5, max_iter=3, history_size=4)
    tclosure = torch_closure(torch, tmodel, topt, x, y)
    topt.step(tclosure)
    ours = _on(dev, ours, tmodel)
    opt = optim.LBFGS(ours.parameters())
    xn.load_torch_optimizer_state_dict(opt, ours, topt.state_dict())
    first = ours.named_params()["0.W"]
    held = [opt.state["d"], opt.state["prev_flat_grad"], *opt.state["old_dirs"], *opt.state["old_stps"]]
    assert all(same_device(a, first) and a.dtype == first.dtype for a in held)
    opt.step(xpnet_closure(ours, opt, xn.to_device(x, dev), xn.to_device(y, dev)))
    topt.step(tclosure)
    same_weights(ours, tmodel)
    sd = xn.torch_optimizer_state_dict(opt, ours)
    assert isinstance(sd["state"][0]["d"], np.ndarray) and {type(a) for a in sd["state"][0]["old_dirs"]} == {np.ndarray}


@pytest.mark.parametrize("device", DEVICES)
def test_adagrads_state_of_a_layer_that_has_not_stepped_goes_out_as_host_zeros(device):
    """torch's Adagrad makes its sums at construction, for every parameter: a frozen layer's go out as zeros, made
    on the host in the parameter's dtype."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    dev = DEVICE_MAKERS[device]()
    ours, tmodel, batches = _mlp(torch)
    ours = _on(dev, ours, tmodel)
    opt = optim.AdaGrad(ours.parameters(), lr=0.1, eps=1e-10, weight_decay_on="all")
    ours[0].requires_grad_(False)
    xpnet_model_steps(ours, opt, batches[:2], dev)
    sd = xn.torch_optimizer_state_dict(opt, ours, as_tensors=True)
    assert sd["state"][0]["sum"].dtype == torch.float64 and not sd["state"][0]["sum"].any()
    ours[0].requires_grad_(True)
    tmodel.load_state_dict(xn.torch_state_dict(ours, as_tensors=True))
    topt = torch.optim.Adagrad(tmodel.parameters())
    topt.load_state_dict(sd)
    xpnet_model_steps(ours, opt, batches[2:], dev)
    torch_model_steps(torch, tmodel, topt, batches[2:])
    same_weights(ours, tmodel)
