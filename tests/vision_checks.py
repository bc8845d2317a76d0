"""The check shared by the torchvision model tests: an xpnet model given a torch reference's state dict computes
what the reference computes in float64 (evaluation; training: output, input and parameter gradients, running
statistics), and its state dict loads back into a fresh reference that then computes the same."""

import numpy as np

import xpnet as xn

NAMES = {"W": "weight", "gamma": "weight", "beta": "bias", "b": "bias"}


def close(actual, expected, name=""):
    """rtol 1e-8 against the array's scale: a BatchNorm over few values per channel in training (ResNet's layer4 at
    1x1 pixels: N = 2) turns float64's rounding into errors ~1e-10 of the largest entry in the small ones; 1e-12
    at least, for gradients that are zero but for rounding (a BatchNorm's beta where another BatchNorm follows)."""
    atol = max(1e-8 * np.max(np.abs(expected)), 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=1e-8, atol=atol, err_msg=name)


def torch_name(name):
    prefix, _, own = name.rpartition(".")
    return f"{prefix}.{NAMES[own]}"


def check_equals_torch(torch, model, ref, fresh, x, t, transposed=("fc.W",)):
    """``model`` (float64) loaded from ``ref`` (float64, random buffers) strictly; ``fresh`` another reference;
    ``transposed``: the Linear weights (xpnet's W is PyTorch's weight.T)."""
    xn.load_torch_state_dict(model, ref.state_dict(), strict=True)
    ref.eval()
    np.testing.assert_allclose(model.forward(x, train=False), ref(torch.from_numpy(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)

    ref.train()
    xt = torch.from_numpy(x).requires_grad_()
    y_ref = ref(xt)
    torch.nn.functional.cross_entropy(y_ref, torch.from_numpy(t)).backward()
    loss = xn.losses.SoftmaxCrossEntropy()
    y = model.forward(x, train=True)
    loss.forward(y, t)
    dx = model.backward(loss.backward())
    close(y, y_ref.detach().numpy())
    close(dx, xt.grad.numpy())
    ref_grads = {k: p.grad.numpy() for k, p in ref.named_parameters()}
    grads = model.named_grads()
    assert {torch_name(k) for k in grads} == set(ref_grads)
    for name, g in grads.items():
        expected = ref_grads[torch_name(name)]
        close(g, expected.T if name in transposed else expected, name)
    state = model.state_dict()
    for name, buf in ref.named_buffers():  # the running statistics after one training step
        if not name.endswith("num_batches_tracked"):
            close(state[name], buf.numpy(), name)

    fresh.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in xn.torch_state_dict(model).items()},
                          strict=True)
    np.testing.assert_allclose(fresh.eval()(torch.from_numpy(x)).detach().numpy(), model.forward(x, train=False),
                               rtol=1e-10, atol=1e-12)


def randomise_batch_norm(torch, ref):
    """``ref``'s BatchNorm parameters and running statistics drawn at random, as after training."""
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)
    return ref
