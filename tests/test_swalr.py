"""xn.optim.swa_utils.SWALR: PyTorch's recipe stepped by hand gives torch's lrs, and its arguments are checked
as torch checks them (torch's lrs on their own: test_lr_scheduler.py's CASES; in xn.train:
test_lr_scheduler_train.py)."""

from __future__ import annotations

import pytest

import xpnet as xn
from xpnet.optim import lr_scheduler as ls, swa_utils

TORCH_REASON = "torch is not installed (pip install -e '.[backends]')"
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning")


@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_pytorchs_recipe_by_hand_anneals_from_the_schedule_before_as_torch(strategy):
    """torch.optim.swa_utils' example: scheduler.step() until swa_start, then swa_scheduler.step(); SWALR
    anneals from the lr the cosine left (its formula reads the current lr), built before either stepped."""
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    swa_start, lrs = 6, {}
    for lib, swa, opt in ((torch.optim.lr_scheduler, torch.optim.swa_utils,
                           torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)),
                          (ls, swa_utils, xn.optim.SGD(0.1))):
        scheduler = lib.CosineAnnealingLR(opt, T_max=20)
        swa_scheduler = swa.SWALR(opt, swa_lr=0.01, anneal_epochs=5, anneal_strategy=strategy)
        lrs[lib] = []
        for epoch in range(30):
            if epoch > swa_start:
                swa_scheduler.step()
            else:
                scheduler.step()
            lrs[lib].append(swa_scheduler.get_last_lr()[0] if epoch > swa_start else scheduler.get_last_lr()[0])
    assert lrs[ls] == lrs[torch.optim.lr_scheduler]
    assert lrs[ls][-1] == 0.01 and len(set(lrs[ls][swa_start:])) > 5


def test_a_list_of_swa_lr_needs_one_per_param_group():
    """PyTorch takes a list of one swa_lr per param group (tests/test_lr_scheduler.py steps one against torch's)."""
    opt = xn.optim.SGD(0.1)
    with pytest.raises(ValueError, match=r"^SWALR: swa_lr has 2 values, one per param group, and the optimizer has "
                                         r"1 param group\(s\); pass 1 value\(s\) or one for all$"):
        swa_utils.SWALR(opt, swa_lr=[0.05, 0.01])
    assert opt.lr == 0.1


@pytest.mark.parametrize("kwargs,match,torch_refuses", [
    ({"anneal_strategy": "cosine"}, r"SWALR: anneal_strategy must be one of 'cos', 'linear', got 'cosine'", True),
    ({"anneal_epochs": -1}, r"SWALR: anneal_epochs must be an int >= 0, got -1", True),
    ({"anneal_epochs": 2.5}, r"SWALR: anneal_epochs must be an int >= 0, got 2.5", True),
    ({"swa_lr": -0.05}, r"SWALR: swa_lr must be a finite number in \[0, inf\], got -0.05", False),
], ids=["strategy", "epochs-negative", "epochs-float", "swa_lr-negative"])
def test_bad_arguments_fail_at_once_where_torch_refuses_them_too(kwargs, match, torch_refuses):
    """The values torch refuses are refused here too, in one line naming SWALR and the argument; a negative
    swa_lr, which torch takes (its SGD then ascends the loss), is refused when built."""
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    kwargs = {"swa_lr": 0.05, **kwargs}
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    if torch_refuses:
        with pytest.raises(ValueError):
            torch.optim.swa_utils.SWALR(topt, **kwargs)
    opt = xn.optim.SGD(0.1)
    with pytest.raises(ValueError, match=match):
        swa_utils.SWALR(opt, **kwargs)
    assert opt.lr == 0.1


def test_lr_scheduler_sends_to_swa_utils_where_pytorch_keeps_it():
    with pytest.raises(AttributeError, match=r"'xpnet.optim.lr_scheduler' has no attribute 'SWALR': it is in "
                                             r"xn.optim.swa_utils"):
        ls.SWALR  # noqa: B018
