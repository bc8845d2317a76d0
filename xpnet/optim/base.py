"""The optimizer protocol: one shared ``step`` around a small per-optimizer ``_update``, and the
checkpoint state (the binding to a model is ``binding``'s, the checks on hyperparameters ``hyperparams``').

Parameters are updated on their device under xpnet's one update rule
(:func:`xpnet.backend.update_rule`): ``_update`` writes ``p -= u`` (in place on NumPy, CuPy and
PyTorch; a new array on JAX, whose arrays are immutable) and returns ``p``, which ``step`` stores
back in the model; updated state goes back with ``_store``. State (velocities, moments) is made
lazily with ``zeros_like(param)``, so it lives on the parameter's device and dtype, as in PyTorch, and
follows the parameter when ``model.to`` moves it between steps (``step`` moves it); an
``eps`` below the smallest normal number of that dtype (1e-8 in float16) is refused at the first step,
before any update: pass ``eps=1e-4`` for a float16 model. Where the namespace
can write into ``out=`` (NumPy, CuPy) the multi-pass updates reuse one work buffer instead of
making a temporary per operation (:func:`xpnet.backend.into`); the arithmetic is the same.

An optimizer is built the book's way, ``Adam(1e-3)``, and given the model at each ``step(model)``;
or PyTorch's way, ``Adam(model, lr=1e-3)`` or ``Adam(model.parameters(), lr=1e-3)``, bound to that
model from the start, and then ``step()`` needs no argument. ``lr`` is checked whenever it is set, not
only by the constructor: a finite number >= 0, as PyTorch's (0 included, a warm-up's start).

A step captured as a CUDA graph (``xpnet.training.graph``) replays its kernels without running this
Python again, so the numbers that change from step to step cannot be Python floats there: with
``device_scalars`` set (a :class:`DeviceScalars`), ``t`` and ``lr`` live in device arrays that the
captured kernels read and advance, and every update reads its step-dependent numbers through
``_per_step``.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .. import _chainer
from .._user import a_or_an, flag, not_here, warn
from ._blame import missing_gradient, not_an_array, other_dtype
from ..layers import two_biases
from ..layers.hidden_layers import warn_unlisted
from ..layers.left_out import OPEN as _LEFT_OUT, refuse as refuse_left_out
from ..layers.stale import stepped
from ..layers.zero_grad import BEFORE as BEFORE_TICK, STEPPED, TICKS, arm, armed, overwritten
from .binding import TakesAModelFirst
from .device_scalars import DeviceScalars
from .grouped import GroupedSteps
from .hyperparams import choice, positive
from .param_groups import ParamGroup
from .step_plan import MISSED, Seen, StepPlan
from ..backend import (device_of, into, namespace, no_autograd, same_device, to_device, update_rule,
                       writes_out)


# What a PyTorch user reaches for on an optimizer, and what xpnet has instead.
_PYTORCH_NAMES = {
    "update": "the book's optimizer.update(model.params, model.grads) is optimizer.step(model): the gradients are "
              "the model's own, from model.backward(dy)",
}
# The book's update(params, grads) and Chainer's update() are one name.
_UPDATE = f"{_chainer.OPTIMIZER['update']}; {_PYTORCH_NAMES['update']}"


def unfused(*args: Any) -> Any:
    """What ``fast_path(op, xp, unfused)`` gives where no fused update of ``op`` takes these arrays (another
    library, a dtype or layout its kernel is not built for): NotImplemented, and the optimizer runs its
    portable update. A fused update (``fast_cupy``, ``numba_kernels``) updates in place and returns None."""
    return NotImplemented


class Optimizer(GroupedSteps, metaclass=TakesAModelFirst):
    """Base class of the optimizers: ``step(model)`` checks every gradient (and that the arrays can be updated)
    first, then updates every parameter, so a bad gradient leaves the model untouched; a missing gradient or one of
    another dtype is blamed on the layer behind it (a backward that left it out, a later layer of another dtype).
    ``weight_decay`` (default 0) is the book's L2 on weights only: the parameters whose name (its last part) starts
    with ``W`` or ``weight`` (``W`` of Linear, Conv2d and Embedding, ``Wx`` and ``Wh`` of LSTM, GRU and RNN, a layer
    of your own's ``W1`` or ``weight``), never biases (``b``, ``bx``, ``bh``) nor BatchNorm's ``gamma`` and
    ``beta``; a parameter named neither way (a layer of one's own's ``kernel``) gets a warning that it is left out.
    ``weight_decay_on="all"`` decays every parameter, as PyTorch does, and is the default of an optimizer built
    PyTorch's way, from ``model.parameters()`` or param groups (:mod:`~xpnet.optim.binding`).

    The first argument is the learning rate, or the model to update (a model, or what
    ``model.parameters()`` returns), as PyTorch's ``Adam(model.parameters(), lr=1e-3)``: the optimizer is
    then bound to that model and ``step()`` takes no argument; or PyTorch's list of param groups, each a
    layer with its own hyperparameters (:mod:`~xpnet.optim.grouped`), read and set in ``param_groups``.
    """

    eps: float | None = None  # the adaptive optimizers' denominator guard (None: this one divides by nothing)
    # PyTorch's param-group keys of this optimizer that xpnet has no setting for, at PyTorch's default value.
    PYTORCH_ONLY: dict[str, Any] = {}
    _built_with_model = False  # given the model when built (or by setup): its zero_grad() arms it
    _zeroed = 0  # the tick of its last zero_grad() (layers.zero_grad.TICKS)
    _plan: StepPlan | None = None  # what the last step found in the model (step_plan)
    _unchecked = False  # a state loaded with no model bound, to be held against the model that binds it

    def __init__(self, lr: float, weight_decay: float = 0.0, weight_decay_on: str = "weights"):
        self._lr = positive("lr", lr, self, allow_zero=True)
        self.weight_decay = positive("weight_decay", weight_decay, self, allow_zero=True)
        self.weight_decay_on = choice("weight_decay_on", weight_decay_on, ("weights", "all"), self)
        self.state: dict[str, dict[str, Any]] = {}
        self.t = 0
        # The steps a parameter did not take (before its first update, or frozen since): its own count,
        # t - skipped[name], is what Adam's bias correction reads, as PyTorch's per-parameter step.
        self.skipped: dict[str, int] = {}
        # Numbers of one parameter kept on the host (NAdam's mu_product): {name: {key: float or int}}.
        self.scalars: dict[str, dict[str, Any]] = {}
        self._left_out: list[str] = []  # the parameters with state that the last step left out (frozen)
        self._model: Any = None  # a weak reference to the bound model (or the model, if it takes none)
        self._work_buffers: dict[Any, Any] = {}
        self._eps_ok: set[Any] = set()  # (parameter dtype, eps) checked not to round to 0
        self.device_scalars: DeviceScalars | None = None  # lr and t on the device, for a captured step
        self._param_groups: list[ParamGroup] | None = None  # made when first asked for

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def lr(self) -> float:
        """The learning rate; setting it (a schedule, a callback, ``opt.lr = 0.01``) checks it as the
        constructor does: a finite number >= 0, as PyTorch's (0, a warm-up's start, leaves the parameters;
        a negative lr would ascend)."""
        return self._lr

    @lr.setter
    def lr(self, value: Any) -> None:
        if self._several_groups:
            raise ValueError(f"{self.name} has {len(self.param_groups)} param groups, each with its own lr: set "
                             "them through optimizer.param_groups (for g in optimizer.param_groups: g['lr'] = ...) "
                             "or with a scheduler of xn.optim.lr_scheduler; optimizer.lr reads the first group's")
        self._lr = positive("lr", value, self, allow_zero=True)

    @property
    def param_groups(self) -> list[ParamGroup]:
        """PyTorch's ``optimizer.param_groups``: one group (:class:`~xpnet.optim.param_groups.ParamGroup`) per
        part of the model with its own hyperparameters, live: ``g["lr"] = 0.01`` sets the lr it steps with.
        An optimizer built with one model has one group, whose values are the optimizer's attributes."""
        if self._param_groups is None:
            self._param_groups = [ParamGroup(self)]
        return list(self._param_groups)

    def hyperparams(self) -> dict[str, Any]:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "weight_decay_on": self.weight_decay_on}

    def __repr__(self) -> str:
        """``Adam(lr=0.001, betas=(0.9, 0.999), ..., weight_decay=0.0, ...)``: lr, then the optimizer's own
        settings, then those every optimizer has."""
        settings = self.hyperparams()
        shared = Optimizer.hyperparams(self)
        order = ["lr", *(k for k in settings if k not in shared), *(k for k in shared if k != "lr")]
        return f"{self.name}({', '.join(f'{k}={settings[k]!r}' for k in order)})"

    def bind(self, model: Any) -> None:
        """Tie this optimizer to ``model`` (done when it is built with the model, else by the first
        ``step``); another model then raises, also one made after the bound one was freed (a new object
        can reuse a freed one's ``id``)."""
        if self._model is not None:
            if self._bound() is not model:
                raise ValueError(f"{self.name}: this optimizer is bound to another model; make one optimizer per model")
            return
        if self._several_groups:
            self._bind_root(model)
        if self._unchecked:  # a state loaded before any model was bound: checked against the first one
            self._check_loaded(self.state, model, f"{self.name}.step: the state given to load_state_dict")
        if hasattr(model, "named_modules"):
            warn_unlisted(model, self.name, "are in no optimizer's reach and will not train")
        try:
            self._model = weakref.ref(model)
        except TypeError:  # a model class with __slots__ and no __weakref__
            self._model = model

    def setup(self, model: Any) -> "Optimizer":
        """Chainer's ``optimizer.setup(model)``: :meth:`bind`, then the optimizer (``step()`` needs no model)."""
        self.bind(model)
        self._built_with_model = True
        return self

    def _bound(self) -> Any:
        """The bound model, or None (none yet, or freed)."""
        return self._model() if isinstance(self._model, weakref.ref) else self._model

    def step(self, model: Any = None) -> Any:
        """Update every parameter of ``model`` that trains from the gradients its last ``backward`` left (the
        sum of its backward calls since ``zero_grad()``, where that was called).
        ``model`` may be left out when the optimizer was built with it (``SGD(model, lr=0.1)``). A frozen
        parameter (``requires_grad_(False)``) is left exactly as it is, its state too (no weight decay, no
        momentum or moment advanced), as PyTorch skips a parameter without a gradient; so is one that no
        backward reached since ``zero_grad()`` (PyTorch's ``.grad`` None), and a step with none reached changes
        nothing, not even the step count (Adam's bias correction), as PyTorch's.

        PyTorch's ``step(closure)``: a function that is no model (it runs the forward and the backward, and
        returns the loss) is called first, then the step runs on the bound model; the closure's loss is
        returned. Otherwise the step returns None."""
        if callable(model) and not hasattr(model, "named_params"):
            if not self._several_groups and self._bound() is None:
                self.step()  # raises "no model to update" before the closure runs a forward and backward for nothing
            loss = model()
            self.step()
            return loss
        if self._several_groups:
            self._step_groups(model)
            return
        if model is None:
            model = self._bound()
            if model is None:
                why = "the model it was built with no longer exists" if self._model is not None else \
                    "it was built without one"
                raise RuntimeError(f"{self.name}.step(): no model to update ({why}); pass it, "
                                   f"optimizer.step(model), or build the optimizer with it: "
                                   f"{self.name}(model, lr={self.lr})")
        if not hasattr(model, "named_params"):
            raise TypeError(f"{self.name}.step: expected the model to update (an xn.Sequential), got "
                            f"{type(model).__name__}")
        bound = self._model
        if bound is None or (bound() if type(bound) is weakref.ref else bound) is not model:  # bind's test, inline
            self.bind(model)
        own = model.__dict__
        try:
            work = self._planned(model, armed(model))
            if work is None:  # zero_grad() and no backward since: every .grad None in PyTorch, which skips them all
                return
            # two backward calls since the last step, the first's gradients lost (no call here)
            before = own[BEFORE_TICK] if BEFORE_TICK in own else 0
            if before > self._zeroed and before > (own[STEPPED] if STEPPED in own else 0) \
                    and work and overwritten(model, self._zeroed):
                raise RuntimeError(self._overwritten(model))
        except BaseException:  # a step refused ends the backward calls before it too (a loop that goes on)
            own[STEPPED] = TICKS[0]
            raise
        self._advance(work)
        self._apply(work)
        own[STEPPED] = TICKS[0]

    @contextlib.contextmanager
    def own_backward_calls(self) -> Iterator[None]:
        """Within, the backward calls are those of a loop that steps as it means to (``xn.train``'s: each batch's
        backward overwrites, accumulated batches summed by the loop itself): its steps skip the check of two
        backward calls overwriting each other; after, the backward calls before count as cleared."""
        self._zeroed = math.inf
        try:
            yield
        finally:
            self._zeroed = TICKS[0]

    def _overwritten(self, model: Any) -> str:
        """Why a step after two backward calls of ``model`` that the second overwrote is refused."""
        how = (f"call {self.name}.zero_grad() once before the loop (and after each step), which makes its backward "
               f"calls add up as PyTorch's" if self._built_with_model else
               f"build the optimizer with the model, {self.name}(model, lr={self.lr}), and call its zero_grad() "
               f"once before the loop (and after each step): then its backward calls add up as PyTorch's (an "
               f"optimizer given the model only at step(model) has none to clear)")
        return (f"{self.name}.step(): {model.name}'s backward ran more than once since the last step (or the start) "
                f"with no zero_grad(): each backward overwrote the gradients (the book's rule, until zero_grad() is "
                f"first called), so this step would take the last backward's gradient alone, where PyTorch's "
                f"autograd adds up every backward's until zero_grad() clears them (gradient accumulation without a "
                f"zero_grad() before the loop, a GAN's two losses, retain_graph=True). To add them, {how}; to keep "
                f"the last alone, step after each backward; a loop that sums them itself reads each backward's "
                f"gradients before the next backward (model.named_grads() or layer.grads[key])")

    @staticmethod
    def _trained_and_grads(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The parameters of ``model`` that train and its gradients, by dotted name; an xpnet model's refuses a
        gradient under a name that holds no parameter (an array attribute's), which no step would apply."""
        both = getattr(model, "params_and_grads", None)  # one walk of an xpnet model's tree; frozen ones left out
        return both(trainable=True) if both is not None else (model.named_params(), model.named_grads())

    def _planned(self, model: Any, adding: bool) -> list[tuple[Any, ...]] | None:
        """``_collect(model, "", adding)``, from the plan of the last step where the model still matches it
        (:mod:`~xpnet.optim.step_plan`), else from the full walk, which makes the plan of the next step."""
        plan = self._plan
        if plan is not None:
            work = plan.collect(model, adding, self._check_eps if self.eps is not None else None)
            if work is not MISSED:
                return work
            self._plan = None
        found: list[dict[str, Any]] = []
        work = self._collect(model, "", adding, found)
        seen = self.__dict__.pop("_seen", None)
        before = plan.arrays() if plan is not None else None if seen is None else seen.arrays
        if before is not None and self.state:
            self._follow_renamed(before, found[0])
        self._plan = StepPlan.of(model, found[0])
        if self._plan is None:  # no plan to read them from at the next step
            self._seen = Seen.of(found[0])
        return work

    def _follow_renamed(self, before: dict[str, Any], now: dict[str, Any]) -> None:
        """The state of each parameter found under another name than at the last step goes with it, as PyTorch's
        optimizer holds the parameter itself: ``del model[0]`` renumbers the layers after it ('2.W' is now '1.W'),
        whose state would otherwise start afresh, or go to the layer that took its old name. The state left under
        a name that another parameter has taken (a removed layer's) goes. Read where the last step's plan
        (:mod:`~xpnet.optim.step_plan`) holds the arrays, when the model no longer matches it (not per step); for a
        model without a plan (CuPy's or PyTorch's arrays, several param groups) from the ``Seen`` of its last step,
        at every step."""
        where: dict[int, str | None] = {}
        for name, p in before.items():
            where[id(p)] = None if id(p) in where else name  # an array under two names (tied): left as it is
        moved = {new: old for new, p in now.items() if (old := where.get(id(p))) is not None and old != new}
        if not moved:
            return
        for store in (self.state, self.skipped, self.scalars):
            taken = {new: store[old] for new, old in moved.items() if old in store}
            for name in (*moved.values(), *moved):
                store.pop(name, None)
            store.update(taken)

    def _collect(self, model: Any, prefix: str, adding: bool,
                 found: list[dict[str, Any]] | None = None) -> list[tuple[Any, ...]] | None:
        """The parameters of ``model`` that train, each checked with its gradient, as ``(prefix + name, model,
        name, p, g, xp)``; ``adding`` (zero_grad() armed it): those a backward reached since, None if none
        was reached. ``found`` gets the parameters that train, by name, as the walk found them."""
        params, grads = self._trained_and_grads(model)
        if two_biases.PENDING:  # a layer given PyTorch's two biases summed into one: said as it first trains
            two_biases.warn_trained(self.name, model)
        if found is not None:
            found.append(params)
        if not params and not model.named_params() and callable(getattr(model, "parameters", None)):
            model.parameters()  # raises where the model's arrays are attributes, not parameters (nn.Parameter)
        if adding and params:  # zero_grad() cleared the gradients: one no backward reached since is left out
            params = {name: p for name, p in params.items() if name in grads}
            if not params:
                return None
        work = []
        eps = self.eps
        for name, p in params.items():
            g = grads.get(name)
            if g is None:
                raise RuntimeError(f"{self.name}: {missing_gradient(model, name, grads)}")
            # two NumPy arrays of one shape and dtype, every step: what _check_gradient and update_rule would answer
            fast = type(p) is np.ndarray and type(g) is np.ndarray and g.shape == p.shape and g.dtype == p.dtype
            if not fast and (not hasattr(p, "shape") or isinstance(p, np.generic)):
                raise TypeError(f"{self.name}: {not_an_array(name, p)}")
            xp = namespace(p)
            if not fast:
                self._check_gradient(model, name, p, g, params)
                update_rule(xp)
            if eps is not None:
                self._check_eps(p)
            work.append((prefix + name, model, name, p, g, xp))
        return work

    def _advance(self, work: list[tuple[Any, ...]]) -> None:
        """Once every gradient is checked, before any update: the state follows its parameter, and the step
        is counted (for those with state that ``work`` leaves out too)."""
        if _LEFT_OUT:  # a layer's backward calls fewer than its calls in the last forward (layers.left_out)
            refuse_left_out(self, work)
        state = self.state
        if state:  # none at all (SGD without momentum): nothing to follow, nothing left out
            for name, _, _, p, _, _ in work:
                slots = state.get(name)
                if not slots:
                    continue
                first = next(iter(slots.values()))
                # NumPy state of p's shape and dtype (every step of a model left where it is): _follow has nothing
                # to do, and its call and device test are spared
                if type(first) is not np.ndarray or type(p) is not np.ndarray or first.shape != p.shape \
                        or first.dtype != p.dtype:
                    self._follow(name, p)
            updated = {item[0] for item in work}
            self._left_out = [name for name in state if name not in updated]
        else:
            self._left_out = []
        self.count_steps(1)
        if self.device_scalars is not None:
            self.device_scalars.advance()

    def _apply(self, work: list[tuple[Any, ...]]) -> None:
        """Update each parameter of ``work`` with the hyperparameters in effect."""
        # A gradient that autograd tracks (backward given a tensor that requires grad) must not make the
        # parameters non-leaf tensors with a graph that grows step after step.
        if not work:  # a model without parameters (only ReLUs, say): nothing to update
            return
        stepped(self, work)  # a backward of a forward from before this step is refused (layers.stale)
        if self.weight_decay and self.weight_decay_on == "weights":
            self._note_undecayed(work)
        if self._updated_at_once(work):
            return
        with no_autograd(work[0][5]):
            for name, model, local, p, g, xp in work:
                new = p
                if self.weight_decay and self._decays(name):
                    new, g = self._decay(new, g)
                new = self._update(name, new, g, xp)
                if new is not p:  # an immutable namespace (JAX) made a new array: store it in the model
                    model.set_param(local, new)

    def _updated_at_once(self, work: list[tuple[Any, ...]]) -> bool:
        """Whether one fused call updated every parameter of ``work`` as :meth:`_update` would have, one by one (a
        backend's kernel for the whole step); False, nothing touched, where none takes them all."""
        return False

    def _check_gradient(self, model: Any, name: str, p: Any, g: Any, params: dict[str, Any]) -> None:
        """Raise unless the gradient ``g`` of parameter ``name`` (``p``) has its device, shape and dtype."""
        if isinstance(g, np.generic):  # np.sum(dy) of a 0-d parameter's gradient: NumPy gives a scalar, no array
            raise ValueError(f"{self.name}: gradient of {name!r} is a NumPy scalar ({type(g).__name__}), not an "
                             f"array like its parameter; assign self.grads[{name!r}] = np.asarray(...) in backward")
        if not same_device(p, g) or tuple(g.shape) != tuple(p.shape):
            raise ValueError(f"{self.name}: gradient of {name!r} does not match its parameter "
                             f"(shape {tuple(g.shape)} vs {tuple(p.shape)}, dtype {g.dtype} vs {p.dtype})")
        if g.dtype != p.dtype:
            raise ValueError(f"{self.name}: {other_dtype(model, name, g, params)}")

    def count_steps(self, n: int) -> None:
        """Count ``n`` steps like the last one (a CUDA graph's launches replay it without this Python; -1 undoes
        the count of a captured step that ran no kernel): ``t``, and the steps each parameter with state that
        it left out (frozen) did not take."""
        self.t += n
        for name in self._left_out:
            self.skipped[name] = self.skipped.get(name, 0) + n

    def _follow(self, name: str, p: Any) -> None:
        """Move the state of parameter ``name`` to ``p``'s device and dtype where it is elsewhere (the model
        was moved with ``model.to`` after earlier steps): state from another library would make the update
        fail inside it, or silently turn ``p`` into that library's array. State of another shape belonged to a
        layer since replaced (``model[-1] = Linear(8, 3)``): ``p`` starts afresh, as a parameter new to the
        optimizer."""
        slots = self.state.get(name)
        if not slots:
            return
        first = next(iter(slots.values()))
        if tuple(first.shape) != tuple(p.shape):  # another layer took the name (model[-1] = Linear(8, 3)): new state
            del self.state[name]
            self.skipped.pop(name, None)
            self.scalars.pop(name, None)
            return
        if same_device(first, p) and first.dtype == p.dtype:
            return
        dev = device_of(p)
        self.state[name] = {k: to_device(v, dev, dtype=p.dtype, copy=True) for k, v in slots.items()}

    def _check_eps(self, p: Any) -> None:
        """Refuse an ``eps`` below the parameters' smallest normal number: 1e-8 rounds to 0 in float16,
        and a zero gradient then divides 0 by 0. PyTorch's optimizers keep state in the parameters'
        dtype too, and half-precision users pass a larger eps; xpnet says so before the first update."""
        eps = self.eps
        if eps is None or (p.dtype, eps) in self._eps_ok:
            return
        tiny = float(namespace(p).finfo(p.dtype).smallest_normal)
        if eps < tiny:
            raise ValueError(f"{self.name}: eps={eps:g} is below the smallest normal {p.dtype} number ({tiny:.3g}): "
                             f"there it rounds to 0 (or keeps a few bits), and an update where a gradient is 0 divides "
                             f"by zero; pass eps=1e-4 or larger for a {p.dtype} model (as in PyTorch at half "
                             "precision), or train in float32")
        self._eps_ok.add((p.dtype, eps))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """PyTorch's: clear the bound model's gradients (``set_to_none=False``: set them to zeros), and from
        now on add the gradients of each of its ``backward`` calls to those already there, until the next
        ``zero_grad()``: two backwards then one step (DCGAN's discriminator), or gradient accumulation
        (``model.backward(dy / k)`` over k batches, then ``step()``), as PyTorch's autograd. ``step`` then
        leaves out a parameter that no backward reached since (no gradient, as PyTorch's None). Without
        ``zero_grad()`` each backward overwrites every gradient (the book's loop, ``xn.train``), and so it does
        for an optimizer built without its model and given it by ``step(model)`` (the book's ``SGD(lr)``),
        whose zero_grad() clears nothing: build it with the model, ``SGD(model, lr)``, for PyTorch's adding. There a
        step after two backward calls of the model (since its last step, this zero_grad() and the last read of its
        ``named_grads()``) is refused: PyTorch would add them up, this one would take the last alone."""
        set_to_none = flag(set_to_none, f"{self.name}.zero_grad", "set_to_none")
        self._zeroed = TICKS[0]  # the backward calls before it are cleared, also where it arms nothing
        if self._several_groups:
            for group in self.param_groups:
                arm(group.node, set_to_none=set_to_none)
            return
        model = self._bound()
        if model is not None and self._built_with_model:
            arm(model, set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        raise not_here(self.name, name, {**_PYTORCH_NAMES, **_chainer.OPTIMIZER, "update": _UPDATE}, kind="object")

    def _note_undecayed(self, work: list[tuple[Any, ...]]) -> None:
        """Warn, once per parameter, where the book's weight decay leaves out a parameter that xpnet cannot tell
        from a weight by its name (a layer of one's own's ``kernel`` or ``w``: PyTorch's weight_decay decays it);
        biases (``b...``), ``gamma``, ``beta`` and WeightNorm's ``g``, ``v`` are left out as documented."""
        checked = self.__dict__.setdefault("_decay_checked", set())
        new = [item[0] for item in work if item[0] not in checked]
        if not new:
            return
        checked.update(new)
        unknown = [name for name in new if not is_weight(name) and not _named_as_no_weight(name)]
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            warn(f"{self.name}: weight_decay={self.weight_decay:g} is the book's L2 on weights only "
                 f"(weight_decay_on='weights', the default), which tells a weight by its name (W..., weight...), "
                 f"and leaves out {shown}; pass weight_decay_on='all' to decay every parameter, as PyTorch's "
                 "weight_decay does, or name a weight W... in its layer")

    def _decays(self, name: str) -> bool:
        """Whether ``weight_decay`` applies to the parameter ``name`` ("0.W", "1.Wh", "3.b", ...)."""
        return self.weight_decay_on == "all" or is_weight(name)

    def _decay(self, p: Any, g: Any) -> tuple[Any, Any]:
        """(p, g) after weight decay. L2: the gradient of 0.5 * weight_decay * sum(p**2) added to ``g``
        (a new array); AdamW shrinks ``p`` instead."""
        return p, g + self.weight_decay * p

    def _per_step(self, key: str, p: Any, compute: Any) -> Any:
        """``compute(lr, t)``: a number of this step (the learning rate, Adam's bias-corrected step size) as
        the update of ``p`` reads it: a Python float, or with ``device_scalars`` a 0-d array of ``p``'s
        dtype, computed on the device in float64 from the device lr and t once per step and dtype (a
        Python float is rounded to ``p``'s dtype by the kernels alike)."""
        ds = self.device_scalars
        if ds is None:
            return compute(self.lr, self.t)
        return ds.once((key, p.dtype), lambda: ds.xp.astype(compute(ds.lr, ds.t), p.dtype))

    def _step_lr(self, p: Any) -> Any:
        """The learning rate of this step for ``p`` (see :meth:`_per_step`)."""
        if self.device_scalars is None:  # _per_step's answer, without its closure: asked for every parameter
            return self._lr
        return self._per_step("lr", p, lambda lr, t: lr)

    def _slot(self, name: str, key: str, p: Any, xp: Any) -> Any:
        if name not in self.state and self.t > 1:
            self.skipped[name] = self.t - 1
        slots = self.state.setdefault(name, {})
        if key not in slots:
            slots[key] = xp.zeros_like(p)
        return slots[key]

    def _work(self, p: Any, xp: Any) -> Any:
        """A scratch array shaped like ``p``, a view of one flat buffer per dtype and device shared by
        all parameters (only one update runs at a time), or None where ``xp`` has no ``out=``.
        Never checkpointed."""
        if not writes_out(xp):
            return None
        # str: CuPy's device object compares by id but cannot be hashed (it defines __eq__, no __hash__).
        key = (type(p), p.dtype, str(getattr(p, "device", None)))
        buf = self._work_buffers.get(key)
        if buf is None or buf.shape[0] < p.size:
            buf = self._work_buffers[key] = xp.empty_like(xp.reshape(p, (-1,)))
        return xp.reshape(buf[:p.size], p.shape)

    def _store(self, name: str, **slots: Any) -> None:
        """Keep the updated state of parameter ``name`` (the same arrays, where updated in place)."""
        self.state[name].update(slots)

    def _update(self, name: str, p: Any, g: Any, xp: Any) -> Any:
        """The updated ``p`` (``p`` itself where the namespace updates in place)."""
        raise NotImplementedError

    @staticmethod
    def _divide_step(p: Any, num: Any, den: Any, lr: float, eps: float, work: Any, xp: Any) -> Any:
        """p -= lr * num / (sqrt(den) + eps), through ``work`` (None: temporaries); returns p."""
        w = into(work, xp.sqrt, den)
        w += eps
        w = into(work, xp.divide, num, w)
        w *= lr
        p -= w
        return p

    # -- checkpointing ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step count and per-parameter state (arrays stay on their device; ``scalars``,
        numbers kept on the host, such as NAdam's ``mu_product``); and ``param_groups``, as PyTorch's (its
        ``checkpoint['optimizer_state_dict']['param_groups'][0]['lr']``): each group's hyperparameters
        (``hyperparams`` are the first's) and own keys, their values themselves (not copies)."""
        return {"type": self.name, "hyperparams": self.hyperparams(), "t": self.t, "skipped": dict(self.skipped),
                "scalars": {n: dict(s) for n, s in self.scalars.items()},
                "state": {n: dict(s) for n, s in self.state.items()}, "param_groups": self.groups_state()}

    def load_state_dict(self, sd: dict[str, Any], device: Any = None) -> None:
        check_state_dict(self.name, sd)
        if self._several_groups or "param_groups" in sd:  # the groups first: another count names the state apart
            self.check_group_count(sd.get("param_groups", [sd["hyperparams"]]))
        model = self._bound()
        if model is not None:  # a step would take state of another shape for a replaced layer's and drop it
            self._check_loaded(sd["state"], model)
        groups = sd.get("param_groups")
        if isinstance(groups, list) and groups and isinstance(groups[0], Mapping):  # two copies of the first group's
            apart = [k for k, v in sd["hyperparams"].items() if k in groups[0] and hyperparam_differs(v, groups[0][k])]
            if apart:
                raise ValueError(f"{self.name}.load_state_dict: the state's 'hyperparams' and 'param_groups'[0] differ "
                                 f"in {apart}; the groups are loaded, as PyTorch's: change param_groups[0], and "
                                 "hyperparams alike")
        if self._several_groups or "param_groups" in sd:
            self.load_groups(sd.get("param_groups", [sd["hyperparams"]]))
        else:
            for k, v in sd["hyperparams"].items():
                setattr(self, k, tuple(v) if isinstance(v, list) else v)
            self.param_groups[0].own = {}  # saved without own keys: PyTorch's saved group replaces the group
        self.t = int(sd["t"])
        self.skipped = {n: int(t) for n, t in sd.get("skipped", {}).items()}
        self.scalars = {n: dict(s) for n, s in sd.get("scalars", {}).items()}  # none in states saved before them
        self._work_buffers = {}
        self.state = {n: {k: (to_device(v, device) if device is not None else v) for k, v in s.items()}
                      for n, s in sd["state"].items()}
        # no model to hold it against yet (the book's SGD(lr), given the model at step): the first step checks it
        self._unchecked = model is None and bool(self.state)
        if model is not None and self._several_groups:  # saved before a root was bound: the root's names
            self._bind_root(model)

    def _check_loaded(self, state: dict[str, Any], model: Any, who: str = "") -> None:
        """Raise where ``state`` (by parameter name) is of another model than ``model`` (see
        :func:`check_state_shapes`); with several param groups, by the names the groups' state takes in
        ``model`` (None: no root, each group's ``param_groups.<i>.`` names)."""
        if self._several_groups:
            state, params = self._group_state_names(state, model)
        else:
            params = model.named_params()
        check_state_shapes(self.name, state, params, who)
        self._unchecked = False

    def to(self, device: Any) -> "Optimizer":
        """Move the optimizer state to ``device`` (with the model). ``step`` also moves the state of each
        parameter that it finds on another device or dtype than the parameter, so a model moved with
        ``model.to`` between steps keeps training with its state."""
        self._work_buffers = {}
        self.state = {n: {k: to_device(v, device) for k, v in s.items()} for n, s in self.state.items()}
        return self


def hyperparam_differs(a: Any, b: Any) -> bool:
    """Whether two saved hyperparameter values differ (a tuple saved comes back a list)."""
    return (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b)


def check_state_dict(name: str, sd: Any) -> None:
    """Raise unless ``sd`` is the ``state_dict()`` of an optimizer ``name``, saying which entry of a checkpoint
    dict (``{"optimizer_state_dict": ...}``) holds one where ``sd`` is that dict."""
    who = f"{name}.load_state_dict"
    if not isinstance(sd, Mapping):
        raise TypeError(f"{who}: expected the dict of optimizer.state_dict(), got {type(sd).__name__}")
    if "type" not in sd:
        if "param_groups" in sd and "state" in sd:
            raise ValueError(f"{who}: this is torch.optim's state_dict (its state by parameter index, in PyTorch's "
                             "layouts: a Linear's (out, in)), which xpnet's optimizers, keeping theirs by parameter "
                             "name in xpnet's layouts, cannot load without the model to pair the indices with: load "
                             "the weights with xn.load_torch_state_dict(model, checkpoint['model_state_dict']), then "
                             "this state with xn.load_torch_optimizer_state_dict(optimizer, model, "
                             "checkpoint['optimizer_state_dict'])")
        inner = [k for k, v in sd.items() if isinstance(v, Mapping) and "type" in v and "state" in v]
        where = f"; its entry {inner[0]!r} is one: optimizer.load_state_dict(d[{inner[0]!r}])" if inner else ""
        raise ValueError(f"{who}: expected the dict of optimizer.state_dict() (keys 'type', 'hyperparams', 't', "
                         f"'state'), got a dict of keys {list(sd)[:10]}{where}")
    if sd["type"] != name:
        raise ValueError(f"{who}: cannot load the state of {a_or_an(str(sd['type']))} optimizer into "
                         f"{a_or_an(name)}; build {a_or_an(str(sd['type']))} to load it")


def check_state_shapes(name: str, state: Any, params: dict[str, Any], who: str = "") -> None:
    """Raise a ValueError naming each parameter of ``params`` whose saved ``state`` (``state_dict()["state"]``)
    has another shape, or the names of ``state`` that ``params`` lacks where one of them has state of the shape of
    a parameter left without any: the state of another model (a wider layer, other names), which PyTorch would pair
    by position and a step would silently drop, starting that parameter afresh. State of names the model lacks
    while every parameter of their shape has its own is taken (it stays unused): what the optimizer itself kept
    of layers since removed (``del model[-1]`` after training), which PyTorch's own round trip keeps too."""
    who = who or f"{name}.load_state_dict: the state"
    unknown = [key for key in state if key not in params]
    if unknown:
        bare = [key for key in params if key not in state]
        free = {tuple(params[key].shape) for key in bare}
        if any(_state_shapes(state[key]) & free for key in unknown):
            raise ValueError(f"{who} is of another model: it holds state for {unknown}, which this model has no "
                             f"parameter of (its {bare} have none); load it into an optimizer of the model it was "
                             "saved from (PyTorch's would pair them by position, xpnet's by name; a step would drop "
                             "that state silently)")
    wrong = []
    for key, slots in state.items():
        p = params.get(key)
        if p is None:
            continue
        shapes = _state_shapes(slots)
        if shapes - {tuple(p.shape)}:
            wrong.append(f"{key!r} has state of shape {sorted(shapes)[0]} but the parameter is {tuple(p.shape)}")
    if wrong:
        raise ValueError(f"{who} is of another model: {'; '.join(wrong)}; load it into an optimizer of the model it "
                         "was saved from (as PyTorch's step would fail on it)")


def _state_shapes(slots: Any) -> set[tuple[int, ...]]:
    """The shapes of the arrays of one parameter's state (its scalars left out)."""
    return {tuple(v.shape) for v in slots.values() if getattr(v, "ndim", 0)}


def _named_as_no_weight(name: str) -> bool:
    """Whether the last part of ``name`` is one xpnet's layers give what is no weight: a bias (``b``, ``bx``,
    ``b_in``, ``bias``), a norm's ``gamma`` and ``beta``, WeightNorm's ``g`` and ``v``."""
    last = name.rpartition(".")[2]
    return last.startswith("b") or last in ("gamma", "g", "v")


def is_weight(name: str) -> bool:
    """Whether the parameter ``name`` is a weight for ``weight_decay_on="weights"``: its last part starts
    with ``W`` (W, Wx, Wh, a custom layer's W1) or ``weight``; biases, gamma and beta are not."""
    last = name.rpartition(".")[2]
    return last.startswith(("W", "weight"))
