"""``xn.optim.lr_scheduler``: PyTorch's learning-rate schedulers for an xpnet optimizer.

The same classes, arguments and lrs as ``torch.optim.lr_scheduler`` (PyTorch's own formulas, so that the
values match to the last bit), each of ``optimizer.param_groups`` scheduled from its own lr; PyTorch's lists
of one value per group are taken where it takes them. In your own loop, ``scheduler.step()`` after
``optimizer.step()``, per epoch or per batch; in ``xn.train``, ``scheduler=`` steps it after each epoch and
``xn.callbacks.LRScheduler(scheduler, interval="step")`` after each batch (ReduceLROnPlateau reads
``monitor``, ``val_loss`` by default).

- ``base``: ``LRScheduler`` (``step``, ``get_last_lr``, ``last_epoch``, ``state_dict``) and the checks;
- ``decay``: StepLR, MultiStepLR, ExponentialLR, LambdaLR, MultiplicativeLR, LinearLR, ConstantLR,
  PolynomialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts;
- ``combined``: OneCycleLR, SequentialLR, ChainedScheduler;
- ``cyclic``: CyclicLR;
- ``plateau``: ReduceLROnPlateau.
"""

from __future__ import annotations

from typing import Any

from ..._user import not_here
from .base import LRScheduler
from .combined import ChainedScheduler, OneCycleLR, SequentialLR
from .cyclic import CyclicLR
from .decay import (ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, ExponentialLR, LambdaLR, LinearLR,
                    MultiplicativeLR, MultiStepLR, PolynomialLR, StepLR)
from .plateau import ReduceLROnPlateau

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "LambdaLR", "MultiplicativeLR", "LinearLR",
           "ConstantLR", "PolynomialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "OneCycleLR",
           "CyclicLR", "SequentialLR", "ChainedScheduler", "ReduceLROnPlateau"]

_PYTORCH_NAMES = {
    "SWALR": "it is in xn.optim.swa_utils, as PyTorch's: xn.optim.swa_utils.SWALR(optimizer, swa_lr=0.05)",
    "_LRScheduler": "PyTorch's old name of the base class: xn.optim.lr_scheduler.LRScheduler",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
