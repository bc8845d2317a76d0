"""L-BFGS, PyTorch's ``torch.optim.LBFGS``: ``optimizer.step(closure)`` evaluates the loss and the gradients again,
several times a step, through the closure, on a flat vector of the parameters that train.

``step`` follows ``torch/optim/lbfgs.py`` step by step: the first iteration's steepest descent scaled by
``min(1, 1 / sum|g|) * lr``, the two-loop recursion over the last ``history_size`` pairs (s, y) with the initial
Hessian ``ys / yy``, a fixed step ``lr`` or the strong-Wolfe line search (:mod:`.line_search`), and the stopping
tests (gradient, direction, step, loss change, ``max_iter``, ``max_eval``), counting ``func_evals`` and ``n_iter``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .._user import is_int
from ..backend import device_of, namespace, no_autograd, same_device, to_device, update_rule
from ..layers.left_out import OPEN as _LEFT_OUT, refuse as refuse_left_out
from ..layers.stale import changed
from ..layers.zero_grad import armed
from ._blame import mixed_dtypes
from .base import Optimizer, check_state_dict
from .hyperparams import choice, positive
from .line_search import strong_wolfe

__all__ = ["LBFGS", "NOT_IN_TRAIN"]

_CLOSURE = ("def closure(): opt.zero_grad(); loss = criterion(model(x), t); model.backward(criterion.backward()); "
            "return loss; then opt.step(closure)")
NOT_IN_TRAIN = ("xn.train cannot step an LBFGS: each of its steps calls a closure that evaluates the loss and the "
                "gradients again, up to max_eval times, on one fixed batch; write the loop: opt = "
                f"xn.optim.LBFGS(model.parameters(), lr=1); {_CLOSURE}, a few times (x, t: the whole data set, or "
                "one batch per step)")
_ARRAYS = ("d", "prev_flat_grad")  # the state's flat arrays; "old_dirs" and "old_stps" are lists of them
_LISTS = ("old_dirs", "old_stps", "ro")


def _count(arg: str, v: Any, opt: Any) -> int:
    if not is_int(v) or v < 1:
        raise ValueError(f"{type(opt).__name__}: {arg} must be an int >= 1, got {v!r}")
    return int(v)


class LBFGS(Optimizer):
    """L-BFGS with PyTorch's arguments, order and defaults: ``LBFGS(model.parameters(), lr=1, max_iter=20,
    max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9, history_size=100, line_search_fn=None)``;
    ``max_eval=None`` is ``max_iter * 5 // 4``, ``line_search_fn`` None (fixed steps of ``lr``) or
    ``"strong_wolfe"``. It is built with the model (or ``model.parameters()``), as PyTorch's.

    ``step(closure)`` runs up to ``max_iter`` iterations, each calling ``closure()`` once or more: the closure
    runs ``opt.zero_grad()``, the forward, the loss and ``model.backward(criterion.backward())``, and returns
    the loss (``criterion(...)``'s value, or a 0-d array), read with ``float()`` once per evaluation as
    PyTorch's; ``step`` returns what the first call returned. The steps equal ``torch.optim.LBFGS``'s in
    float64; step lengths and dot products are Python floats, where PyTorch keeps some as 0-d tensors of the
    parameters' dtype, so in float32 they agree to float32's rounding only.

    It works on one flat vector of the parameters that train (all of one dtype, on one device), in
    ``trainable_params()`` order: a frozen parameter (``requires_grad_(False)``) is left out and exactly as it
    is, as PyTorch's LBFGS gives one without a gradient a zero one; a parameter that trains but that the
    closure's backward did not reach (a layer the forward did not use) has a zero gradient, as there. Freezing
    or replacing a layer between steps changes that vector: ``step`` refuses, saying to build a new LBFGS.

    ``state`` is PyTorch's (which it registers under the first parameter): ``func_evals``, ``n_iter``, and after
    an iteration ``d``, ``t`` (the last step length), ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``,
    ``prev_flat_grad``, ``prev_loss``; PyTorch's scratch list ``al`` is left out. ``state_dict()`` and
    ``load_state_dict()`` keep all of it (the arrays on their device), so a resumed run goes on equally.
    ``xn.train`` does not take an LBFGS (:data:`NOT_IN_TRAIN` says what to write instead).

    Refused at an evaluation, before the parameters change further, as at any optimizer's step: a closure whose
    backward ran without ``zero_grad()`` ever called on the model (PyTorch would add each evaluation's gradient to
    the last's; given ``zero_grad()`` once before the loop, xpnet adds them alike), a layer given fewer backward
    calls than the closure's forward called it (:mod:`~xpnet.layers.left_out`), and a backward of a forward from
    before a move of the parameters (:mod:`~xpnet.layers.stale`: an output computed outside the closure).
    """

    ONE_GROUP_ONLY = "LBFGS doesn't support per-parameter options (parameter groups), as PyTorch's"

    def __init__(self, lr: float = 1, max_iter: int = 20, max_eval: int | None = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100, line_search_fn: str | None = None):
        super().__init__(lr)
        self.max_iter = _count("max_iter", max_iter, self)
        self.max_eval = self.max_iter * 5 // 4 if max_eval is None else _count("max_eval", max_eval, self)
        self.tolerance_grad = positive("tolerance_grad", tolerance_grad, self, allow_zero=True)
        self.tolerance_change = positive("tolerance_change", tolerance_change, self, allow_zero=True)
        self.history_size = _count("history_size", history_size, self)
        self.line_search_fn = choice("line_search_fn", line_search_fn, (None, "strong_wolfe"), self)
        self._names: list[str] = []  # the parameters the flat arrays of ``state`` hold, in order

    def hyperparams(self) -> dict[str, Any]:
        return {"lr": self.lr, "max_iter": self.max_iter, "max_eval": self.max_eval,
                "tolerance_grad": self.tolerance_grad, "tolerance_change": self.tolerance_change,
                "history_size": self.history_size, "line_search_fn": self.line_search_fn}

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.hyperparams().items())})"

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Up to ``max_iter`` L-BFGS iterations, evaluating through ``closure()``; returns its first loss."""
        model = self._model_for(closure)
        params = self._trained(model)
        xp = self._check_params(model, params)
        state = self.state
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        lr, max_iter, max_eval = self.lr, self.max_iter, self.max_eval
        tolerance_grad, tolerance_change, history_size = self.tolerance_grad, self.tolerance_change, self.history_size

        def dot(a: Any, b: Any) -> float:
            return float(xp.tensordot(a, b, axes=1))

        def max_abs(a: Any) -> float:
            return float(xp.max(xp.abs(a)))

        with no_autograd(xp):
            orig_loss, loss, flat_grad = self._evaluate(closure, model, xp)
            self.t += 1
            current_evals = 1
            state["func_evals"] += 1
            opt_cond = max_abs(flat_grad) <= tolerance_grad
            if opt_cond:
                return orig_loss

            d, t = state.get("d"), state.get("t")
            old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
            h_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")

            n_iter = 0
            while n_iter < max_iter:
                n_iter += 1
                state["n_iter"] += 1

                # the descent direction
                if state["n_iter"] == 1:
                    d = -flat_grad
                    old_dirs, old_stps, ro = [], [], []
                    h_diag = 1.0
                else:
                    y = flat_grad - prev_flat_grad
                    s = d * t
                    ys = dot(y, s)
                    if ys > 1e-10:
                        if len(old_dirs) == history_size:  # the limited memory: the oldest pair goes
                            old_dirs.pop(0)
                            old_stps.pop(0)
                            ro.pop(0)
                        old_dirs.append(y)
                        old_stps.append(s)
                        ro.append(1.0 / ys)
                        h_diag = ys / dot(y, y)  # the scale of the initial inverse Hessian
                    # the two-loop recursion: the L-BFGS inverse Hessian times -g
                    al = [0.0] * len(old_dirs)
                    q = -flat_grad
                    for i in range(len(old_dirs) - 1, -1, -1):
                        al[i] = dot(old_stps[i], q) * ro[i]
                        q -= al[i] * old_dirs[i]
                    d = q * h_diag
                    for i in range(len(old_dirs)):
                        be_i = dot(old_dirs[i], d) * ro[i]
                        d += (al[i] - be_i) * old_stps[i]
                prev_flat_grad, prev_loss = flat_grad, loss

                # the step length: the first iteration's scaled to the gradient, then lr
                if state["n_iter"] == 1:
                    total = float(xp.sum(xp.abs(flat_grad)))
                    t = min(1.0, 1.0 / total if total > 0 else math.inf) * lr
                else:
                    t = lr
                gtd = dot(flat_grad, d)
                if gtd > -tolerance_change:  # the directional derivative is below tolerance
                    break

                ls_func_evals = 0
                if self.line_search_fn is not None:
                    x_init = [xp.asarray(p, copy=True) for p in self._trained(model).values()]

                    def obj_func(t_try: float) -> tuple[float, Any]:
                        return self._directional_evaluate(closure, model, xp, x_init, t_try, d)

                    # PyTorch's line search keeps its own tolerance_change, 1e-9, whatever the optimizer's
                    loss, flat_grad, t, ls_func_evals = strong_wolfe(
                        obj_func, lambda g: dot(g, d), t, max_abs(d), loss, flat_grad, gtd,
                        tolerance_change=1e-9, max_ls=max_eval - current_evals)
                    self._add_grad(model, xp, t, d)
                    opt_cond = max_abs(flat_grad) <= tolerance_grad
                else:
                    self._add_grad(model, xp, t, d)
                    if n_iter != max_iter:  # the last iteration's loss would go unused: not evaluated
                        _, loss, flat_grad = self._evaluate(closure, model, xp)
                        opt_cond = max_abs(flat_grad) <= tolerance_grad
                        ls_func_evals = 1
                current_evals += ls_func_evals
                state["func_evals"] += ls_func_evals

                if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                    break
                if max_abs(d * t) <= tolerance_change or abs(loss - prev_loss) < tolerance_change:  # no progress
                    break

            state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                         prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        self._moved(model)  # one rule, a forward per step: the closure's forwards are before it (layers.stale)
        return orig_loss

    # -- the model as one flat vector -------------------------------------------------------

    def _model_for(self, closure: Any) -> Any:
        """The bound model, once ``closure`` is checked to be one."""
        if closure is None:
            raise TypeError(f"{self.name}.step(closure): L-BFGS evaluates the loss and the gradients again several "
                            f"times a step, so it needs the closure that does it, as PyTorch's: {_CLOSURE}")
        if hasattr(closure, "named_params"):
            raise TypeError(f"{self.name}.step takes the closure that evaluates the loss, not the model (the one "
                            f"it was built with, LBFGS(model.parameters(), ...)): {_CLOSURE}")
        if not callable(closure):
            raise TypeError(f"{self.name}.step: closure must be a function of no arguments returning the loss, "
                            f"got {type(closure).__name__}: {_CLOSURE}")
        model = self._bound()
        if model is None:
            why = "the model it was built with no longer exists" if self._model is not None else \
                "it was built without one"
            raise RuntimeError(f"{self.name}.step(): no model to update ({why}); build it with the model, as "
                               f"PyTorch's: {self.name}(model.parameters(), lr={self.lr})")
        return model

    @staticmethod
    def _trained(model: Any) -> dict[str, Any]:
        trainable = getattr(model, "trainable_params", None)
        return trainable() if trainable is not None else model.named_params()

    def _check_params(self, model: Any, params: dict[str, Any]) -> Any:
        """The namespace of ``params``, checked to make one flat vector, the one of the history in ``state``."""
        if not params:
            raise ValueError(f"{self.name}: {type(model).__name__} has no parameter that trains (all frozen, or "
                             "none): nothing to optimize")
        mixed = mixed_dtypes(model, params)
        if mixed:
            raise ValueError(f"{self.name} works on one flat vector of the parameters: {mixed}")
        first_name, first = next(iter(params.items()))
        elsewhere = [n for n, p in params.items() if not same_device(p, first)]
        if elsewhere:
            raise ValueError(f"{self.name} works on one flat vector of the parameters, on one device: "
                             f"{', '.join(map(repr, elsewhere))} are not on {device_of(first)} as {first_name!r} "
                             "is; move the model to one device: model.to(device)")
        xp = namespace(*params.values())
        update_rule(xp)
        names = list(params)
        previous = self.state.get("prev_flat_grad")
        size = sum(math.prod(p.shape) for p in params.values())
        if previous is not None and (names != self._names or size != previous.shape[0]):
            raise RuntimeError(f"{self.name}.step: the parameters that train are not those of its earlier steps "
                               f"({len(names)} arrays of {size} numbers now, {len(self._names)} of "
                               f"{previous.shape[0]} then: a layer frozen, unfrozen or replaced); its history is of "
                               f"the flat vector of those: build a new {self.name}(model.parameters(), ...)")
        self._names = names
        if previous is not None and (not same_device(previous, first) or previous.dtype != first.dtype):
            self._move(device_of(first), first.dtype)  # the model was moved (model.to) since the last step
        return xp

    def _evaluate(self, closure: Callable[[], Any], model: Any, xp: Any) -> tuple[Any, float, Any]:
        """(what ``closure()`` returned, that as a float, the flat gradient its backward left)."""
        returned = closure()
        try:
            loss = float(returned)
        except (TypeError, ValueError):
            raise TypeError(f"{self.name}.step: the closure returned {type(returned).__name__}, expected the loss "
                            f"(a number or a 0-d array): {_CLOSURE}") from None
        params, grads = self._trained_and_grads(model)
        if not any(name in grads for name in params):
            raise RuntimeError(f"{self.name}.step: the closure left no gradient (no model.backward since "
                               f"zero_grad()): {_CLOSURE}")
        if not armed(model):
            raise RuntimeError(f"{self.name}.step: the closure's backward ran without zero_grad() (never called on "
                               f"{type(model).__name__}): each of its backward calls overwrites the gradients (the "
                               f"book's rule), where PyTorch adds each evaluation's gradient to the last's until "
                               f"zero_grad() clears them; call opt.zero_grad() first in the closure, as PyTorch's "
                               f"LBFGS examples do: {_CLOSURE}")
        if _LEFT_OUT:  # a layer's backward calls fewer than its calls in the closure's forward (layers.left_out)
            refuse_left_out(self, [(name, model, name, p, None, xp) for name, p in params.items()])
        flat = []
        for name, p in params.items():
            g = grads.get(name)
            if g is None:  # no backward reached it: a zero gradient, as PyTorch's LBFGS takes a grad of None
                flat.append(xp.zeros_like(xp.reshape(p, (-1,))))
                continue
            self._check_gradient(model, name, p, g, params)
            flat.append(xp.reshape(g, (-1,)))
        return returned, loss, xp.concat(flat)

    def _add_grad(self, model: Any, xp: Any, step: float, update: Any) -> None:
        """Every parameter that trains += ``step`` * its part of the flat ``update``."""
        offset = 0
        for name, p in self._trained(model).items():
            n = math.prod(p.shape)
            new = p
            new += step * xp.reshape(update[offset:offset + n], p.shape)
            if new is not p:  # an immutable namespace (JAX) made a new array: store it in the model
                model.set_param(name, new)
            offset += n
        self._moved(model)

    def _moved(self, model: Any) -> None:
        """The parameters that train changed: a backward of a forward from before is refused (layers.stale), as
        PyTorch's second backward through a graph of the old weights."""
        changed(model, f"{self.name}.step(closure)", len(self._names))

    def _directional_evaluate(self, closure: Callable[[], Any], model: Any, xp: Any, x: list[Any], t: float,
                              d: Any) -> tuple[float, Any]:
        """(loss, flat gradient) at the parameters ``x`` + ``t`` * ``d``; the parameters are ``x`` again after,
        also where the closure raised."""
        self._add_grad(model, xp, t, d)
        try:
            _, loss, flat_grad = self._evaluate(closure, model, xp)
        finally:
            in_place = update_rule(xp) == "in place"
            for (name, p), saved in zip(self._trained(model).items(), x):
                if in_place:
                    p[...] = saved
                else:
                    model.set_param(name, saved)
            self._moved(model)
        return loss, flat_grad

    # -- checkpointing ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, the steps taken (``t``), the names of the parameters in the flat vector, and the
        state (its arrays on their device; its lists copied, so that later steps leave this one as it is); the
        group's keys of the user's own in ``param_groups`` where it has some."""
        sd = {"type": self.name, "hyperparams": self.hyperparams(), "t": self.t, "params": list(self._names),
              "state": {k: list(v) if k in _LISTS else v for k, v in self.state.items()}}
        if self.param_groups[0].own:
            sd["param_groups"] = self.groups_state()
        return sd

    def load_state_dict(self, sd: dict[str, Any], device: Any = None) -> None:
        check_state_dict(self.name, sd)
        for k, v in type(self)(**sd["hyperparams"]).hyperparams().items():  # checked as the constructor does
            setattr(self, k, v)
        self.load_groups(sd.get("param_groups", [{}]))  # the own keys, the hyperparameters again
        self.t = int(sd["t"])
        self._names = list(sd.get("params", []))
        self.state = {k: list(v) if k in _LISTS else v for k, v in sd["state"].items()}
        if device is not None:
            self._move(device)

    def to(self, device: Any) -> "LBFGS":
        """Move the state's arrays to ``device`` (``step`` also moves them to the parameters' device and dtype)."""
        self._move(device)
        return self

    def _move(self, device: Any, dtype: Any = None) -> None:
        state = self.state
        for k in _ARRAYS:
            if state.get(k) is not None:
                state[k] = to_device(state[k], device, dtype=dtype)
        for k in ("old_dirs", "old_stps"):
            if k in state:
                state[k] = [to_device(v, device, dtype=dtype) for v in state[k]]
