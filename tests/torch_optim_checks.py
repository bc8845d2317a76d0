"""torch.optim run as the reference of xpnet's optimizers: one float64 parameter stepped through given gradients."""

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
