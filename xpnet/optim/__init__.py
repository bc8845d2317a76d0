"""Optimizers: the book's (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam), and PyTorch's AdamW, NAdam, RAdam,
Adamax, Adadelta and LBFGS, with PyTorch's names for their arguments.

- ``base``: the protocol every optimizer shares (``step``, checkpoint state);
- ``binding``: building an optimizer with the model (PyTorch's ``SGD(model.parameters(), lr=0.1)``);
- ``param_groups``: ``optimizer.param_groups``, each group a live mapping of its hyperparameters by PyTorch's names;
- ``grouped``: several groups, each a layer with its own hyperparameters, and ``add_param_group``;
- ``group_keys``: a group's keys of the user's own (PyTorch's ``'name'``), kept; a misspelt hyperparameter refused;
- ``hyperparams``: the checks on hyperparameters (lr, momentum, betas, eps, choices);
- ``sgd``: ``SGD`` (PyTorch's, with momentum and Nesterov), the book's ``Momentum`` and ``Nesterov``;
- ``adaptive``: ``AdaGrad``, ``RMSprop``, ``Adam``, ``AdamW``;
- ``adam_variants``: ``NAdam``, ``RAdam``, ``Adamax`` (PyTorch's); ``adadelta``: ``Adadelta`` (PyTorch's);
- ``lbfgs``: ``LBFGS`` (PyTorch's, ``step(closure)``; not for ``xn.train``), its strong-Wolfe search in ``line_search``;
- ``clip``: ``clip_grad_norm`` (global-norm clipping, ``xn.train(..., clip_grad_norm=...)``) and ``clip_grad_value``
  (``xn.train(..., clip_grad_value=...)``);
- ``lr_scheduler``: PyTorch's learning-rate schedulers (StepLR, OneCycleLR, ReduceLROnPlateau, ...);
- ``swa_utils``: PyTorch's weight averaging (AveragedModel for SWA and EMA, update_bn, SWALR);
- ``torch_state``: torch.optim's state dicts into xpnet's optimizers (``xn.load_torch_optimizer_state_dict``);
  ``torch_export``: xpnet's optimizer state out as torch.optim's (``xn.torch_optimizer_state_dict``);
  ``torch_twins``: which torch optimizer is whose twin, and which one a torch state dict is of.

``weight_decay`` on every optimizer is the book's L2 (MultiLayerNet's ``weight_decay_lambda``):
``lambda * W`` is added to the gradient of each weight (``W`` of Linear, Conv2d and Embedding, ``Wx``
and ``Wh`` of the recurrent layers: every parameter whose name starts with ``W`` or ``weight``), never
to biases or BatchNorm's gamma/beta, unless ``weight_decay_on="all"`` (PyTorch's: every parameter the optimizer
updates). AdamW decays decoupled from the gradient instead, every parameter by default (0.01), as PyTorch's.
It imports only the backend (and ``xpnet._user``); ``swa_utils`` also the layers and models (an AveragedModel
is a model, update_bn finds BatchNorm), ``torch_state`` the models' table of PyTorch's names (``TORCH_NAMES``).
"""

from __future__ import annotations

from typing import Any

from .._user import did_you_mean, not_here
from .adadelta import Adadelta
from .adam_variants import Adamax, NAdam, RAdam
from .adaptive import AdaGrad, Adam, AdamW, RMSprop
from .base import Optimizer
from .clip import clip_grad_norm, clip_grad_value
from .lbfgs import LBFGS, NOT_IN_TRAIN
from . import lr_scheduler, swa_utils
from .sgd import SGD, Momentum, Nesterov
from .torch_export import torch_optimizer_state_dict
from .torch_state import load_torch_optimizer_state_dict

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW", "NAdam", "RAdam",
           "Adamax", "Adadelta", "LBFGS", "OPTIMIZERS", "get",
           "clip_grad_norm", "clip_grad_value", "lr_scheduler", "swa_utils", "load_torch_optimizer_state_dict",
           "torch_optimizer_state_dict"]

OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "nadam": NAdam, "radam": RAdam,
              "adamax": Adamax, "adadelta": Adadelta}


def get(optimizer: Any) -> Optimizer:
    """The optimizer ``xn.train`` steps, from an instance, a class or a name such as ``"adam"`` (with its default
    lr). LBFGS, which steps through a closure, is refused in every form, saying what to write instead."""
    named = isinstance(optimizer, str) and optimizer.lower() == "lbfgs"
    if named or optimizer is LBFGS or isinstance(optimizer, LBFGS):
        raise TypeError(NOT_IN_TRAIN)
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        return optimizer()
    if isinstance(optimizer, str):
        if optimizer.lower() in OPTIMIZERS:
            return OPTIMIZERS[optimizer.lower()]()
        raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {optimizer!r}"
                         f"{did_you_mean(optimizer, OPTIMIZERS)}")
    raise TypeError(f"optimizer: expected an xpnet optimizer (e.g. xn.optim.Adam(1e-3)) or its name, got "
                    f"{type(optimizer).__name__}")


# What a PyTorch user reaches for in torch.optim, and what xpnet has instead.
_PYTORCH_NAMES = {
    "Adagrad": "xpnet's is xn.optim.AdaGrad(lr=0.01), eps 1e-7, the book's spelling and eps; built as PyTorch's, "
               "xn.optim.AdaGrad(model.parameters(), lr=0.01), eps 1e-10, PyTorch's (eps= given is kept)",
    "clip_grad_norm_": "xpnet's is xn.optim.clip_grad_norm(model, max_norm) (no trailing underscore; it scales "
                       "the gradients in place and returns the norm, as PyTorch's), or xn.train(..., "
                       "clip_grad_norm=max_norm)",
    "clip_grad_value_": "xpnet's is xn.optim.clip_grad_value(model, clip_value) (no trailing underscore; it clamps "
                        "the gradients in place, as PyTorch's), or xn.train(..., clip_grad_value=clip_value)",
    "clip_grads": "the book's clip_grads(grads, max_norm) is xn.optim.clip_grad_norm(model, max_norm), or "
                  "xn.train(..., clip_grad_norm=max_grad)",
    "ASGD": "xpnet has no ASGD: for the average of the weights that PyTorch's ASGD keeps, train with SGD and "
            "average with xn.optim.swa_utils.AveragedModel (SWA, or EMA)",
    "MomentumSGD": "Chainer's MomentumSGD(lr, momentum) is xn.optim.Momentum(lr, momentum) (the book's name), "
                   "or xn.optim.SGD(lr, momentum=...) (PyTorch's)",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
