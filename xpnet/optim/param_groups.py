"""PyTorch's ``optimizer.param_groups``: each group a live mapping from PyTorch's names of the optimizer's
hyperparameters to their values, and ``"params"``, the parameter arrays the group updates.

A group covers a node of the model tree (the model, or a layer inside it, as ``sub.parameters()`` gives it)
and holds its own hyperparameters. The first group's are the optimizer's attributes themselves
(``optimizer.param_groups[0]["lr"]`` is ``optimizer.lr``), so an optimizer of one group, the common case,
steps exactly as before; another group keeps its own dict, put in effect on the optimizer while its
parameters update. Reading a key reads the value; writing checks it as the optimizer's constructor does
(``g["lr"] = -1`` raises what ``optimizer.lr = -1`` raises). PyTorch's keys that xpnet has no setting for
(``maximize``, ``foreach``, ``fused``...) read as PyTorch's default, and another value is refused;
``"initial_lr"`` appears once a scheduler set it. Those keys cannot be deleted (but ``initial_lr``). A key of
the user's own (``g["name"] = "head"``) is kept as given, as PyTorch keeps it, and deleted at will; the step
ignores it; one that looks like a misspelt hyperparameter, or another optimizer's, is refused
(:mod:`~xpnet.optim.group_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Iterator

from ..layers.tree import Parameters
from .group_keys import check_own_key
from .hyperparams import positive

__all__ = ["ParamGroup", "WHY_FIXED", "check_fixed"]

# Why a key PyTorch has keeps PyTorch's default here.
WHY_FIXED = {
    "maximize": "it minimizes the loss (negate the loss to maximize)",
    "foreach": "xpnet has one implementation of the step",
    "fused": "xpnet has one implementation of the step (fused where a kernel is registered)",
    "capturable": "xn.train(graph=True) captures the step as a CUDA graph instead",
    "differentiable": "xpnet has no autograd through the step",
    "decoupled_weight_decay": "xn.optim.AdamW decays decoupled, xn.optim.Adam adds L2 to the gradient",
    "lr_decay": "xpnet's AdaGrad has no lr_decay (a scheduler decays the lr)",
    "initial_accumulator_value": "xpnet's AdaGrad starts its sums at 0",
}


def check_fixed(fixed: Mapping[str, Any], key: str, value: Any, said: str) -> None:
    """Refuse ``value`` for ``key``, a torch.optim keyword xpnet keeps at PyTorch's default ``fixed[key]`` (an
    optimizer's ``PYTORCH_ONLY``), unless it is that default, saying why; ``said``: the call or assignment as the
    user wrote it, the message's start."""
    if value is not None if fixed[key] is None else value != fixed[key]:
        raise ValueError(f"{said}: only PyTorch's default {fixed[key]!r} is taken: "
                         f"{WHY_FIXED.get(key, f'xpnet has no {key}')}")


class ParamGroup(MutableMapping):
    """One of ``optimizer.param_groups``. ``node``: the sub-model it covers (None: the optimizer's bound
    model, the first group of an optimizer of one group); ``values``: its own hyperparameters by the
    optimizer's attribute names (None: the optimizer's attributes, live); ``own``: the keys of the user's own
    (``{"name": "head"}``), their values as given."""

    def __init__(self, optimizer: Any, node: Any = None, values: dict[str, Any] | None = None):
        self._optimizer = optimizer
        self.node = node
        self.values = values
        self.initial_lr: float | None = None
        self.own: dict[str, Any] = {}

    # -- what the group holds ------------------------------------------------------------

    def model(self) -> Any:
        """The sub-model this group updates (None: none bound yet)."""
        return self.node if self.node is not None else self._optimizer._bound()

    def hyperparams(self) -> dict[str, Any]:
        """This group's hyperparameters as ``optimizer.hyperparams()`` names them."""
        return self._optimizer.hyperparams() if self.values is None else dict(self.values)

    def _where(self) -> str:
        groups = self._optimizer.__dict__.get("_param_groups") or [self]
        index = next((i for i, g in enumerate(groups) if g is self), 0)
        return f"{self._optimizer.name}: param_groups[{index}]"

    # -- the mapping ---------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key == "params":
            model = self.model()
            arrays = [] if model is None else list(model.named_params().values())
            return Parameters(arrays, model)
        if key == "initial_lr" and self.initial_lr is not None:
            return self.initial_lr
        settings = self.hyperparams()
        if key in settings:
            return settings[key]
        fixed = self._optimizer.PYTORCH_ONLY
        if key in fixed:
            return fixed[key]
        if key in self.own:
            return self.own[key]
        raise KeyError(self._unknown(key))

    def __setitem__(self, key: str, value: Any) -> None:
        opt = self._optimizer
        if key == "params":
            raise TypeError(f"{self._where()}['params'] cannot be replaced: a group updates the layer it was built "
                            f"with; add another with optimizer.add_param_group({{'params': layer.parameters()}}), "
                            f"or build a new {opt.name}")
        if key == "initial_lr":
            self.initial_lr = positive("initial_lr", value, opt, allow_zero=True)
            return
        fixed = opt.PYTORCH_ONLY
        if key in fixed:
            check_fixed(fixed, key, value, f"{self._where()}[{key!r}] = {value!r}")
            return
        settings = self.hyperparams()
        if key not in settings:
            if key not in self.own:
                check_own_key(opt, key, self._where())
            self.own[key] = value
            return
        checked = self._checked(key, value, settings)
        if self.values is not None:
            self.values[key] = checked
        elif key == "lr":  # the first group of several: optimizer.lr's setter refuses, as ambiguous
            opt.__dict__["_lr"] = checked
        else:
            setattr(opt, key, checked)

    def put(self, key: str, value: Any) -> None:
        """Set the hyperparameter ``key`` to ``value`` checked already (OneCycleLR's momentum, in range by its
        own checks): no optimizer is built to check it, as a step's scheduler may do it at every batch."""
        if self.values is not None:
            self.values[key] = value
        elif key == "lr":
            self._optimizer.__dict__["_lr"] = value
        else:
            setattr(self._optimizer, key, value)

    def _checked(self, key: str, value: Any, settings: dict[str, Any]) -> Any:
        """``value`` for ``key`` as the constructor takes it (its checks, its type: a float, a tuple)."""
        opt = self._optimizer
        if key == "lr":  # the check of optimizer.lr = value, without building an optimizer each step
            return positive("lr", value, opt, allow_zero=True)
        try:
            built = type(opt)(**{**settings, key: value})
        except TypeError:  # an optimizer of one's own whose __init__ takes other arguments than hyperparams()
            return value
        return built.hyperparams()[key]

    def __delitem__(self, key: str) -> None:
        if key == "initial_lr" and self.initial_lr is not None:
            self.initial_lr = None
            return
        if key in self.own:
            del self.own[key]
            return
        raise TypeError(f"{self._where()}: the key {key!r} cannot be deleted: a group holds every hyperparameter "
                        f"of {self._optimizer.name} ({', '.join(map(repr, self))})")

    def _unknown(self, key: Any) -> str:
        return f"{self._where()} has no key {key!r}; its keys are {', '.join(map(repr, self))}"

    def __iter__(self) -> Iterator[str]:
        yield "params"
        yield from self.hyperparams()
        yield from self._optimizer.PYTORCH_ONLY
        if self.initial_lr is not None:
            yield "initial_lr"
        yield from self.own

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        shown = {k: (f"<{len(v)} arrays>" if k == "params" else v) for k, v in self.items()}
        return "{" + ", ".join(f"{k!r}: {v if k == 'params' else repr(v)}" for k, v in shown.items()) + "}"
