"""torch.optim run as the reference of xpnet's optimizers: one float64 parameter stepped through given gradients;
a model and its torch twin trained by their optimizers (the state-dict conversions' tests)."""

import numpy as np
import pytest

NO_TORCH = "torch is not installed (pip install -e '.[backends]')"


def torch_steps(name, p0, grads, *args, lr_at=None, frozen_at=(), schedule=None, **kwargs):
    """The parameter after ``torch.optim.<name>([w], *args, **kwargs)`` steps through ``grads`` (float64, under
    float64 as torch's default dtype, so that NAdam's running product is float64 too); ``lr_at``: {step: lr};
    the steps in ``frozen_at`` leave the gradient None (PyTorch skips the parameter); ``schedule(optimizer)``:
    a scheduler stepped after each step."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        w = torch.tensor(np.array(p0, dtype=np.float64), requires_grad=True)
        opt = getattr(torch.optim, name)([w], *args, **kwargs)
        sched = schedule(opt) if schedule else None
        for i, g in enumerate(grads):
            if lr_at and i in lr_at:
                opt.param_groups[0]["lr"] = lr_at[i]
            w.grad = None if i in frozen_at else torch.tensor(np.asarray(g, dtype=np.float64))
            opt.step()
            if sched:
                sched.step()
    finally:
        torch.set_default_dtype(default)
    return w.detach().numpy()


@pytest.fixture
def float64_default():
    """torch's default dtype float64 for the test: torch.optim makes its scalar state (a step count, NAdam's
    mu_product) in it, and the runs compared are float64. torch on one thread: its reductions' order then does not
    depend on the machine's cores (the tied transformer's in_proj_bias came out 1.8e-12 apart, past rtol 1e-12, on
    2 cores with torch's default threads, equal on one)."""
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    default, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(default)
    torch.set_num_threads(threads)


def torch_model_steps(torch, tmodel, topt, batches):
    """``topt`` steps ``tmodel`` through ``batches`` of (x, class labels) by cross-entropy."""
    criterion = torch.nn.CrossEntropyLoss()
    for x, y in batches:
        topt.zero_grad()
        out = tmodel(torch.from_numpy(x))
        criterion(out.reshape(-1, out.shape[-1]), torch.from_numpy(y).reshape(-1)).backward()
        topt.step()


def xpnet_model_steps(model, opt, batches, device=None):
    """xpnet's twin of :func:`torch_model_steps`: ``opt`` steps ``model`` through the same batches (sent to
    ``device``, the model's, where given)."""
    import xpnet as xn  # noqa: PLC0415 - the one-parameter checks above need no xpnet

    criterion = xn.losses.SoftmaxCrossEntropy(dim=-1)  # (N, T, C) as torch_model_steps reshapes them
    for x, y in batches:
        if device is not None:
            x, y = xn.to_device(x, device), xn.to_device(y, device)
        opt.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward())
        opt.step()


def torch_closure(torch, tmodel, topt, x, y):
    """torch.optim.LBFGS's closure: ``topt``'s gradients of ``tmodel``'s cross-entropy on (x, class labels), the loss
    returned."""
    criterion = torch.nn.CrossEntropyLoss()

    def closure():
        topt.zero_grad()
        loss = criterion(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        return loss
    return closure


def xpnet_closure(model, opt, x, y):
    """xpnet's twin of :func:`torch_closure` (``x``, ``y`` on the model's device)."""
    import xpnet as xn  # noqa: PLC0415

    criterion = xn.losses.SoftmaxCrossEntropy()

    def closure():
        opt.zero_grad()
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
        return loss
    return closure


def same_weights(ours, tmodel):
    """The xpnet model's weights equal its torch twin's to rtol 1e-12 (atol 1e-13: Adam's step, m / sqrt(v), is of
    the size of lr whatever the gradient's, so a gradient near 0 that rounds otherwise, as products summed in another
    order by another BLAS or thread count do, moves its weight by ~1e-14), by PyTorch's names
    (``num_batches_tracked`` left out: unused with a momentum, by PyTorch too; xpnet gives 0)."""
    import xpnet as xn  # noqa: PLC0415

    theirs = tmodel.state_dict()
    for name, array in xn.torch_state_dict(ours).items():
        if name.endswith("num_batches_tracked"):
            continue
        np.testing.assert_allclose(array, theirs[name].detach().numpy(), rtol=1e-12, atol=1e-13, err_msg=name)
