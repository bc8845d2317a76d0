"""Residual and Concat, and the residual network of examples/fashion_mnist_resnet.py, against PyTorch in
float64: forward, every parameter gradient and the input gradient, on every device; gradcheck; files."""

import copy
import importlib.util
import pathlib

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import BatchNorm, Concat, Conv2d, GlobalAvgPool, Linear, MaxPool2d, ReLU, Residual, Tanh

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _example():
    spec = importlib.util.spec_from_file_location("fashion_mnist_resnet", EXAMPLES / "fashion_mnist_resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the PyTorch reference, built with torch.nn, our weights copied across ---------------------------


def to_torch(torch, layer, prefix=""):
    """(torch module computing what ``layer`` computes, [(our dotted name, torch parameter, transposed)])."""
    nn = torch.nn
    name = lambda k: f"{prefix}{k}"  # noqa: E731
    if isinstance(layer, Conv2d):
        m = nn.Conv2d(layer.in_ch, layer.out_ch, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                      bias=layer.bias is not None, dtype=torch.float64)
        pairs = [(name("W"), m.weight, False)] + ([(name("b"), m.bias, False)] if layer.bias is not None else [])
    elif isinstance(layer, BatchNorm):
        m = nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum, dtype=torch.float64)
        pairs = [(name("gamma"), m.weight, False), (name("beta"), m.bias, False)]
    elif isinstance(layer, Linear):
        m = nn.Linear(layer.in_features, layer.out_features, dtype=torch.float64)
        pairs = [(name("W"), m.weight, True), (name("b"), m.bias, False)]
    elif isinstance(layer, (ReLU, Tanh, GlobalAvgPool, MaxPool2d)):
        m = {ReLU: nn.ReLU, Tanh: nn.Tanh}.get(type(layer), lambda: None)() or (
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) if isinstance(layer, GlobalAvgPool)
            else nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding))
        pairs = []
    elif isinstance(layer, Residual):
        body, pairs = to_torch(torch, layer.body, f"{prefix}body.")
        shortcut, more = (nn.Identity(), []) if layer.shortcut is None else \
            to_torch(torch, layer.shortcut, f"{prefix}shortcut.")
        m, pairs = TorchSum(torch, body, shortcut), pairs + more
    elif isinstance(layer, Concat):
        branches = [to_torch(torch, b, f"{prefix}branches.{i}.") for i, b in enumerate(layer.branches)]
        m, pairs = TorchCat(torch, [b for b, _ in branches], layer.axis), [p for _, ps in branches for p in ps]
    else:  # a Sequential, or a model whose forward runs its children in order (the example's ResNet)
        parts = [to_torch(torch, child, f"{prefix}{k}.") for k, child in layer.named_children().items()]
        m, pairs = nn.Sequential(*(p for p, _ in parts)), [p for _, ps in parts for p in ps]
    with torch.no_grad():
        for ours, theirs, transposed in pairs:
            value = torch.tensor(xn.to_numpy(dict(_all_params(layer, prefix))[ours]))
            theirs.copy_(value.T if transposed else value)
    return m, pairs


def _all_params(layer, prefix):
    return {f"{prefix}{k}": v for k, v in layer.named_params().items()}.items()


def TorchSum(torch, body, shortcut):  # noqa: N802 - builds a module, as a class would
    class Sum(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + self.shortcut(x)
    return Sum()


def TorchCat(torch, branches, axis):  # noqa: N802
    class Cat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.branches = torch.nn.ModuleList(branches)

        def forward(self, x):
            return torch.cat([b(x) for b in self.branches], dim=axis)
    return Cat()


def assert_equals_pytorch(model, x, dev, rtol=1e-12):
    """Our forward, every parameter gradient and dx on ``dev`` against PyTorch's, float64, training mode."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    model = model.to("cpu", dtype="float64")
    theirs, pairs = to_torch(torch, model)
    assert {name for name, _, _ in pairs} == set(model.named_params())  # the reference covers every parameter
    dy = np.random.default_rng(1).standard_normal(model.forward(x).shape)
    model.to(dev)
    y = model.forward(xn.to_device(x, dev), train=True)
    dx = model.backward(xn.to_device(dy, dev))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs.train()(xt)
    yt.backward(torch.tensor(dy))
    ours = {"output": y, "input gradient": dx, **model.named_grads()}
    ref = {"output": yt, "input gradient": xt.grad, **{n: p.grad.T if t else p.grad for n, p, t in pairs}}
    assert set(ours) == set(ref)
    for key, value in ref.items():
        value = value.detach().numpy()
        got = xn.to_numpy(ours[key])
        # rtol on every entry; entries that cancel to ~0 are held to rtol of the array's scale.
        np.testing.assert_allclose(got, value, rtol=rtol, atol=rtol * np.abs(value).max(), err_msg=key)


def block(c_in, c_out, stride=1):
    """ResNet's block. A conv followed by BatchNorm has no bias (as in ResNet): its gradient would be 0 exactly,
    and both sides' rounding noise around it nothing to compare."""
    body = xn.Sequential(Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), BatchNorm(c_out), ReLU(),
                         Conv2d(c_out, c_out, 3, padding=1, bias=False), BatchNorm(c_out))
    shortcut = None if stride == 1 and c_in == c_out else \
        xn.Sequential(Conv2d(c_in, c_out, 1, stride=stride, bias=False), BatchNorm(c_out))
    return Residual(body, shortcut)


@pytest.mark.parametrize("c_in, c_out, stride", [(3, 3, 1), (3, 5, 2)], ids=["identity", "projection"])
def test_residual_block_equals_pytorch(dev, c_in, c_out, stride, rng):
    xn.init.seed(0)
    assert_equals_pytorch(block(c_in, c_out, stride), rng.standard_normal((4, c_in, 6, 6)), dev)


def test_concat_equals_pytorch(dev, rng):
    xn.init.seed(0)
    branches = Concat(xn.Sequential(Conv2d(2, 3, 1), ReLU()), Conv2d(2, 4, 3, padding=1),
                      xn.Sequential(Conv2d(2, 2, 3, padding=1, bias=False), BatchNorm(2), Tanh()))
    assert_equals_pytorch(branches, rng.standard_normal((3, 2, 5, 5)), dev)


def test_example_network_equals_pytorch(dev, rng):
    xn.init.seed(0)
    model = _example().ResNet(channels=(8, 16, 32))  # the example's blocks; its channels (36, 72, 144) cost JAX
    # compile and dispatch time and test nothing more
    assert_equals_pytorch(model, rng.standard_normal((2, 1, 12, 12)), dev)


def test_gradcheck_passes_on_residual_and_concat(rng):
    xn.init.seed(0)
    for layer, shape in [(block(2, 2), (3, 2, 4, 4)), (block(2, 3, 2), (3, 2, 5, 5)),
                         (Concat(Tanh(), xn.Sequential(Conv2d(2, 1, 3, padding=1), Tanh())), (2, 2, 3, 3)),
                         (Residual(Linear(4, 4), Linear(4, 4)), (3, 4))]:
        report = xn.gradcheck(layer, rng.standard_normal(shape), max_entries=8)
        assert report.ok, str(report)


def test_residual_says_what_shape_the_shortcut_must_give(rng):
    with pytest.raises(ValueError, match=r"body gives shape \(2, 5, 3, 3\) but the input \(2, 3, 6, 6\).*"
                                         r"pass a shortcut"):
        Residual(block(3, 5, 2).body).forward(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    with pytest.raises(TypeError, match="Residual: body must be an xpnet layer or model, got str"):
        Residual("conv")
    with pytest.raises(ValueError, match="Concat: axis must be an int other than 0"):
        Concat(ReLU(), axis=0)
    with pytest.raises(ValueError, match=r"Concat: the branches' outputs \[\(2, 3\), \(2, 4, 1\)\] differ"):
        Concat(Linear(4, 3), ReLU()).forward(rng.standard_normal((2, 4, 1)).astype(np.float32))


def test_nested_blocks_save_and_load_in_a_sequential(tmp_path, dev, rng):
    xn.init.seed(0)
    model = xn.Sequential(block(1, 2, 2), ReLU(), Concat(block(2, 2), MaxPool2d(1)), GlobalAvgPool(), Linear(4, 3))
    x = rng.standard_normal((5, 1, 6, 6)).astype(np.float32)
    model.forward(x)  # running statistics that differ from the start
    model.save(tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz", device=dev)
    assert repr(loaded) == repr(model) and loaded.device == dev
    np.testing.assert_array_equal(xn.to_numpy(loaded.predict(x)), xn.to_numpy(copy.deepcopy(model).to(dev).predict(x)))
    assert list(loaded.named_params()) == list(model.named_params())
    assert "0.body.0.W" in model.named_params() and "2.branches.0.shortcut.0.W" not in model.named_params()
