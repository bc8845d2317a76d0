"""Schedules of several phases or schedulers: PyTorch's OneCycleLR, SequentialLR and ChainedScheduler."""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any

from ..._user import flag
from .base import LRScheduler, check_optimizer, count, momentum_key, per_group, rate, set_momentum

__all__ = ["OneCycleLR", "SequentialLR", "ChainedScheduler"]


class OneCycleLR(LRScheduler):
    """Up from ``max_lr / div_factor`` to ``max_lr`` over ``pct_start`` of ``total_steps`` (or ``epochs *
    steps_per_epoch``), then down to ``initial_lr / final_div_factor``; stepped after every batch.
    ``cycle_momentum=True`` (PyTorch's default) moves the optimizer's ``momentum`` (SGD, Momentum, Nesterov,
    RMSprop), or Adam's and AdamW's beta1, the other way between ``max_momentum`` and ``base_momentum``.
    ``max_lr``, ``max_momentum`` and ``base_momentum`` take a list of one value per param group, as PyTorch's."""

    def __init__(self, optimizer: Any, max_lr: float, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1):
        who = "OneCycleLR"
        self.optimizer = optimizer = check_optimizer(who, optimizer)
        if total_steps is not None:
            self.total_steps = count(who, "total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = count(who, "epochs", epochs) * count(who, "steps_per_epoch", steps_per_epoch)
        else:
            raise ValueError(f"{who}: give total_steps, or epochs and steps_per_epoch (the batches of an epoch, "
                             "len(range(0, n, batch_size)))")
        pct = rate(who, "pct_start", pct_start, 0.0, 1.0)
        ends = [float(pct * self.total_steps) - 1, float(2 * pct * self.total_steps) - 2, self.total_steps - 1]
        self._schedule_phases = [
            {"end_step": ends[0], "start_lr": "initial_lr", "end_lr": "max_lr",
             "start_momentum": "max_momentum", "end_momentum": "base_momentum"},
            {"end_step": ends[1], "start_lr": "max_lr", "end_lr": "initial_lr",
             "start_momentum": "base_momentum", "end_momentum": "max_momentum"},
            {"end_step": ends[2], "start_lr": "initial_lr", "end_lr": "min_lr",
             "start_momentum": "max_momentum", "end_momentum": "max_momentum"},
        ] if flag(three_phase, who, "three_phase") else [
            {"end_step": ends[0], "start_lr": "initial_lr", "end_lr": "max_lr",
             "start_momentum": "max_momentum", "end_momentum": "base_momentum"},
            {"end_step": ends[2], "start_lr": "max_lr", "end_lr": "min_lr",
             "start_momentum": "base_momentum", "end_momentum": "max_momentum"},
        ]
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{who}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self._anneal_func_type = anneal_strategy
        max_lrs = per_group(who, "max_lr", max_lr, optimizer, lambda arg, v: rate(who, arg, v))
        div = rate(who, "div_factor", div_factor, open_lo=True)
        final = rate(who, "final_div_factor", final_div_factor, open_lo=True)
        # PyTorch keeps these in each param group; here they are the scheduler's (saved in its state_dict).
        self.groups = [{"initial_lr": m / div, "max_lr": m, "min_lr": m / div / final} for m in max_lrs]
        if last_epoch == -1:
            for group, values in zip(optimizer.param_groups, self.groups):
                group["initial_lr"] = values["initial_lr"]
        self.cycle_momentum = flag(cycle_momentum, who, "cycle_momentum")
        if self.cycle_momentum:
            self.use_beta1 = momentum_key(who, optimizer)
            for arg, value in (("max_momentum", max_momentum), ("base_momentum", base_momentum)):
                momenta = per_group(who, arg, value, optimizer, lambda a, v: rate(who, a, v, 0.0, 1.0, open_hi=True))
                for values, m in zip(self.groups, momenta):
                    values[arg] = m
            if last_epoch == -1:
                for i, values in enumerate(self.groups):
                    set_momentum(optimizer, i, values["max_momentum"], self.use_beta1)
        super().__init__(optimizer, last_epoch)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "group" in state_dict:  # saved before param groups: the values of the one group
            state_dict = {**{k: v for k, v in state_dict.items() if k != "group"}, "groups": [state_dict["group"]]}
        super().load_state_dict(state_dict)
        if self.cycle_momentum:  # PyTorch's optimizer state would hold it: here, the momentum of last_epoch
            self.get_lr()

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step_num} times, more than total_steps={self.total_steps} (over "
                             "epochs * steps_per_epoch: one step() per batch, for as many epochs as given)")
        lrs = []
        for g, group in enumerate(self.groups):
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step_num <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        set_momentum(self.optimizer, g, self._anneal(group[phase["start_momentum"]],
                                                                     group[phase["end_momentum"]], pct), self.use_beta1)
                    break
                start_step = phase["end_step"]
        return lrs


def _check_schedulers(who: str, optimizer: Any, schedulers: Any) -> list[LRScheduler]:
    from .plateau import ReduceLROnPlateau  # noqa: PLC0415 - plateau imports nothing from here, kept apart

    schedulers = list(schedulers) if isinstance(schedulers, (list, tuple)) else None
    if not schedulers:
        raise ValueError(f"{who}: schedulers must be a non-empty list of schedulers")
    for i, s in enumerate(schedulers):
        if isinstance(s, ReduceLROnPlateau) or not isinstance(s, LRScheduler):
            raise ValueError(f"{who}: schedulers[{i}] is a {type(s).__name__}; expected a scheduler of "
                             "xn.optim.lr_scheduler stepped by step() alone (not ReduceLROnPlateau)")
        if s.optimizer is not optimizer:
            raise ValueError(f"{who}: schedulers[{i}] ({type(s).__name__}) belongs to another optimizer; all must "
                             "schedule the same one")
    return schedulers


class SequentialLR(LRScheduler):
    """``schedulers[i]`` from step ``milestones[i - 1]`` on (each restarting from its step 0 there)."""

    def __init__(self, optimizer: Any, schedulers: list[LRScheduler], milestones: list[int], last_epoch: int = -1):
        optimizer = check_optimizer("SequentialLR", optimizer)
        self._schedulers = _check_schedulers("SequentialLR", optimizer, schedulers)
        if not isinstance(milestones, (list, tuple)) or len(milestones) != len(self._schedulers) - 1:
            raise ValueError(f"SequentialLR: milestones must be a list of {len(self._schedulers) - 1} step counts (one "
                             f"fewer than the schedulers), got {milestones!r}")
        self._milestones = [count("SequentialLR", f"milestones[{i}]", m) for i, m in enumerate(milestones)]
        if self._milestones != sorted(self._milestones):  # bisect over them would run the schedulers out of turn
            raise ValueError(f"SequentialLR: milestones must be in increasing order (the step at which each next "
                             f"scheduler takes over), got {milestones!r}")
        self.last_epoch = count("SequentialLR", "last_epoch", last_epoch, lo=-1) + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for s in self._schedulers:  # undo the step each made when built
            s.last_epoch -= 1
        self._schedulers[bisect_right(self._milestones, 0)]._initial_step()
        self._last_lr = self._schedulers[bisect_right(self._milestones, 0)].get_last_lr()

    def step(self) -> None:  # type: ignore[override]
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in super().state_dict().items() if k != "_schedulers"}
        return {**state, "_schedulers": [s.state_dict() for s in self._schedulers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("_schedulers")
        if not isinstance(saved, list) or len(saved) != len(self._schedulers):
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected the states of "
                             f"{len(self._schedulers)} schedulers, got {saved!r:.80}")
        for s, d in zip(self._schedulers, saved):
            s.load_state_dict(d)
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "_schedulers"})


class ChainedScheduler(SequentialLR):
    """Every one of ``schedulers`` stepped at each step, in order (their factors multiply)."""

    def __init__(self, schedulers: list[LRScheduler], optimizer: Any = None):  # noqa: D107 - PyTorch's order
        first = schedulers[0] if isinstance(schedulers, (list, tuple)) and schedulers else None
        if optimizer is None and not isinstance(first, LRScheduler):  # no optimizer to find: say what the list lacks
            _check_schedulers("ChainedScheduler", None, schedulers)
        optimizer = check_optimizer("ChainedScheduler", optimizer if optimizer is not None
                                    else getattr(first, "optimizer", None))
        self._schedulers = _check_schedulers("ChainedScheduler", optimizer, schedulers)
        self.optimizer = optimizer
        self.last_epoch = 0
        self._last_lr = self._lrs()

    def step(self) -> None:  # type: ignore[override]
        for s in self._schedulers:
            s.step()
        self.last_epoch += 1
        self._last_lr = self._lrs()
