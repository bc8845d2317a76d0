"""Gradient checking: central differences in float64 against the analytic ``backward``.

``gradcheck(model_or_layer, x, t, loss)`` copies the model (or one layer) and the input to float64 on
the device that holds the model, runs one forward and backward pass on the copy for the analytic
gradients, then perturbs each entry of every parameter and of the input by +-eps (in place, or on
immutable JAX arrays by storing a perturbed copy, :func:`xpnet.backend.set_at`):

    numerical = (f(p + eps) - f(p - eps)) / (2 * eps)

An entry passes when ``|numerical - analytic| <= atol + rtol * |numerical|``, unless it sits at a
kink, where a central difference measures nothing. Kinks are found by what they are: layers with
one (ReLU, MaxPool2d) report through ``layer.pieces()`` which piece each element used (x > 0, the
offset of a window's maximum), and an entry whose +-eps passes change any piece straddles a kink
(an input exactly at ReLU's 0, a tie in a max window). Crossing one kink, the analytic value must
lie between the one-sided slopes (f(p + eps) - f(p)) / eps and (f(p) - f(p - eps)) / eps (any
subgradient does; anything else fails). Crossing several at once (an image's flat background
feeds many tied windows) it is counted as a kink without a verdict: one-sided slopes of a sum of
kinks do not bound a sum of subgradients. For layers that report nothing the slopes decide alone:
a failing entry whose slopes disagree by more than ten times the tolerance and bracket the
analytic value is a candidate kink, measured again at eps/10. Strong curvature also parts the
slopes, by f'' * eps, so there the gap shrinks tenfold while the central difference stays: that is
no kink, and the entry fails. A kink's gap stays (or the central difference moves): it is counted as
a kink if the slopes at eps/10 still bracket the analytic value; an entry whose kink lay between
eps/10 and eps passes or fails on its central difference at eps/10. Only candidates cost these two
passes more. ``fast=True`` checks one random unit direction u per tensor instead:
(f(p + eps*u) - f(p - eps*u)) / (2*eps) against <grad, u>.

f is ``loss.forward(model.forward(x, train=True), t)`` with a loss, else ``sum(y * r)`` for a fixed
random r drawn from ``seed`` (then dy = r). Forward passes run in training mode (BatchNorm uses
batch statistics), and each evaluates the same function: before each pass the copy is put back as it
was at the start of the check, every generator a layer keeps in an attribute rewound (Dropout's
``rng``: all passes see the same mask), every attribute a forward rebinds restored (a ``stateful=True``
recurrent layer starts each pass from the state it carried in) and every buffer restored (a running
mean updated by forward). The original model is never modified. The first pass runs the model's forward
with every record a backward reads; a Sequential of leaf layers runs the later ones, which no backward
follows, as each layer's forward in turn (:mod:`xpnet.gradcheck_plan`), any other model through its own
forward without the records (:mod:`xpnet.layers.unrecorded`), a Linear or ReLU given the input it had in the
first pass by its planned forward.
Any model is checked whole, through its own forward and backward: a Sequential, a model of the
user's (dotted rows, ``stage1.0.conv1.W``), one with several inputs (``x`` a tuple; rows ``input[0]``...).

The backward pass also fails a layer that writes into the gradient it receives, and the forward
pass one that writes into its input (every leaf layer is watched, whatever code calls it; a model's
own forward is checked on the input it was given). After the entries of each tensor, f is evaluated
once more at the unperturbed point: where it differs from f(p) beyond rounding (by more than both
``eps * atol`` and 64 float64 ulps of f), the passes did not compare one function (a mask from
NumPy's global generator, an array attribute a forward adds to in place, an input written into) and
the tensor's entries mean nothing: its row fails, saying "the forward is not repeatable".

What it cannot catch: a gradient wrong only at a kink, in a way each entry alone cannot show. Entry
by entry, any value between the one-sided slopes is a valid subgradient, so a max-pool backward that
routes dy to every tied maximum of a window (the routed gradients then add up to k * dy) passes on an
input with ties: each tied entry alone has slopes 0 and dy. Nor can an input without ties (random
values) show it: there the routing is right. Test how a backward treats ties against a reference on
an input with ties (``xn.layers.MaxPool2d``'s backward, PyTorch's), or by a property: each window's
dx adds up to its dy.

A wrong dx shows in the rows of the layers before the faulty one, not in its own. When a model's check
fails, :func:`xpnet.gradcheck_locate.locate` checks its layers one by one, each on the input it saw,
walking back from the output, and the report names the first whose own check fails.

A device without float64 (array-api-strict's "no_float64") cannot hold the copy: the check then
runs on a float64 copy on the CPU, with an ``XpnetDeviceWarning``.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import replace
from typing import Any

import array_api_compat
import numpy as np

from . import losses as _losses
from ._user import flag, is_int, is_real, seed as _seed, warn
from .backend import (CPU, Device, XpnetDeviceWarning, device_of, host_copy, namespace, no_autograd,
                      release_device_rngs, set_at, set_rng_state, to_device, to_numpy, update_rule)
from .backend import device as _resolve_device
from .layers.base import Layer
from .gradcheck_locate import locate
from .gradcheck_plan import SeenInputs, planned_forward, planned_leaves, planned_loss
from .gradcheck_report import GradcheckError, GradcheckReport, GradcheckRow
from .layers.container import watch
from .layers.uncalled import FORWARDS
from .layers.unrecorded import unrecorded
from .layers.zero_grad import arm

__all__ = ["gradcheck", "GradcheckReport", "GradcheckRow"]

KINK_FACTOR = 10.0
RETEST = 10.0  # a candidate unreported kink is measured again at eps / RETEST
_WROTE_X = "forward wrote into its input x"
NOT_REPEATABLE = "the forward is not repeatable (state, buffers or input change between calls)"
_PERTURBED = ("params", "grads", "forward", "backward", "backward_params")  # not put back between passes


def gradcheck(model_or_layer: Layer, x: Any, t: Any = None, loss: Any = None, *,
              device: Any = None, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4,
              fast: bool = False, max_entries: int | None = None, seed: int = 0, fast_mode: bool | None = None,
              raise_exception: bool = False) -> GradcheckReport:
    """Compare the analytic gradients of ``model_or_layer`` with central differences in float64.

    x: the input batch (any backend; moved to the check's device), or a tuple of them for a model
    with several inputs; integer ids (for a model that starts with an Embedding) get no row of their
    own. t, loss: targets and a loss
    (an ``xn.losses`` instance, class or name); without them the output is reduced by a fixed
    random projection. device: where to run (default: the device holding the model, else x's).
    max_entries: check a seeded random subset of at most that many entries per tensor.
    fast: one random direction per tensor. Costs 1 + 2 * (entries, or directions with fast) + 1 per tensor
    forward passes (the last: f at the unperturbed point again, to see that the forward is repeatable).
    Frozen parameters (``requires_grad_(False)``) have no gradient: they get no row, and the report names
    them. Returns a :class:`GradcheckReport`, true where every row passes; the model and x are left untouched.
    fast_mode: PyTorch's name for ``fast``. raise_exception: raise :class:`~xpnet.testing.GradcheckError` (the
    report's table) where a row fails; PyTorch's gradcheck does by default, xpnet's returns the report.
    """
    fast, seed = flag(fast, "gradcheck", "fast"), _seed(seed, "gradcheck")
    raise_exception = flag(raise_exception, "gradcheck", "raise_exception")
    if fast_mode is not None:
        fast_mode = flag(fast_mode, "gradcheck", "fast_mode")
        if fast and not fast_mode:
            raise TypeError("gradcheck: fast=True and fast_mode=False disagree (fast_mode is PyTorch's name for "
                            "fast); give one")
        fast = fast_mode
    _check_args(model_or_layer, t, loss, eps, atol, rtol, fast, max_entries)
    # NumPy scalars as Python numbers: np.float32 arithmetic would round the perturbed values.
    eps, atol, rtol = float(eps), float(atol), float(rtol)
    max_entries = None if max_entries is None else int(max_entries)
    xs = x if isinstance(x, tuple) else (x,)
    dev = _check_device(model_or_layer, xs[0], device)
    xp = dev.xp
    with dev.activate():  # a model on cuda:N runs on GPU N (Device.activate)
        xs = tuple(to_device(a, dev) for a in xs)
        ids = [xp.isdtype(a.dtype, "integral") for a in xs]  # token ids into an Embedding: no input row
        for a, is_ids in zip(xs, ids):
            if not is_ids and not xp.isdtype(a.dtype, "real floating"):
                raise TypeError(f"gradcheck: x must be a floating-point array (or integer ids for an Embedding), "
                                f"got dtype {a.dtype}")
            if not is_ids and (a.ndim < 1 or a.shape[0] == 0 or not bool(xp.all(xp.isfinite(a)))):
                what = "holds NaN or inf" if a.ndim and a.shape[0] else f"has no samples (shape {tuple(a.shape)})"
                raise ValueError(f"gradcheck: x {what}; central differences need at least one sample of finite "
                                 "values")
        # Copies even from float64: the check perturbs them in place.
        x64 = [xp.asarray(a, copy=True) if is_ids else xp.astype(a, xp.float64, copy=True)
               for a, is_ids in zip(xs, ids)]
        clone = copy.deepcopy(model_or_layer).to(dev, dtype="float64").train()
        arm(clone, on=False)  # each pass's backward overwrites, whatever zero_grad() was called on the model
        if t is not None:
            t = to_device(t, dev)
            if xp.isdtype(t.dtype, "real floating"):
                t = xp.astype(t, xp.float64)
        loss = None if loss is None else copy.deepcopy(_losses.get(loss))

        rng = np.random.default_rng(seed)
        objective = _Objective(clone, loss, t, x64)
        try:
            with no_autograd(xp):
                f0, mutation_rows = objective.base_pass(rng)
                grads = clone.named_grads()
                # (name, array, its gradient, how to store a perturbed array where the array was kept)
                tensors = [(name, p, grads.get(name), _param_slot(clone, name))
                           for name, p in clone.trainable_params().items()]
                tensors += [("input" if len(x64) == 1 else f"input[{i}]", a, dx, _input_slot(objective.xs, i))
                            for i, (a, dx) in enumerate(zip(x64, objective.dxs)) if not ids[i]]
                rows = [_check_tensor(objective, name, a, grad, put, f0, rng, eps, atol, rtol, fast, max_entries)
                        for name, a, grad, put in tensors]
                located: list[str] = []
                if not all(row.ok for row in rows) and clone.named_children():
                    check = functools.partial(gradcheck, device=dev, eps=eps, atol=atol, rtol=rtol, fast=fast,
                                              max_entries=max_entries, seed=seed)
                    located = locate(clone, objective.xs, check, objective.rewind)
        finally:
            objective.release_rngs()
        frozen = tuple(name for name in clone.named_params() if name not in clone.trainable_params())
        report = GradcheckReport(rows + mutation_rows, float(eps), float(atol), float(rtol), bool(fast),
                                 max_entries, dev.name, objective.passes, tuple(located), frozen)
    if raise_exception and not report.ok:
        raise GradcheckError(report)
    return report


class _Objective:
    """The scalar f on the float64 copy: the model's forward, then the loss (or a random projection r)."""

    def __init__(self, model: Layer, loss: Any, t: Any, xs: list[Any]):
        self.model, self.loss, self.t, self.xs = model, loss, t, xs
        nodes = model.named_modules().values()
        self.rngs = [(rng, rng.bit_generator.state) for node in nodes
                     for rng in vars(node).values() if isinstance(rng, np.random.Generator)]
        # What a forward may change besides the parameters: attributes it rebinds (a recurrent layer's
        # carried state, a cache, a counter) and the buffers (a running mean), as they are now.
        self.kept = [(node, {k: v for k, v in vars(node).items() if k not in _PERTURBED},
                      {k: namespace(v).asarray(v, copy=True) for k, v in node.buffers.items()}) for node in nodes]
        self.r = None
        self.dxs: list[Any] = []
        self.passes = 0
        self.pieces: list[tuple[Layer, Any]] = []
        self.planned: Any = None  # the later passes' forward and loss (gradcheck_plan), found after the first pass
        self.planned_loss: Any = None
        self.unrecorded: unrecorded | None = None  # the later passes' switch: the model's forward without its records

    def __call__(self) -> tuple[Any, Any]:
        """f at the current (perturbed) params and input, and how many elements of the layers'
        pieces differ from the base pass's (kinks crossed; None where no layer reports pieces), both
        0-d arrays left on the device."""
        self._rewind()
        if self.planned is not None:
            y = self.planned(*self.xs)
        elif self.unrecorded is not None:
            with self.unrecorded as switch:
                y = self.model.forward(*self.xs, train=True)
            if switch.looked:  # an evaluation-mode call, whose records may change the values: with them from now on
                self.unrecorded = None
                self.rewind()
                y = self.model.forward(*self.xs, train=True)
        else:
            y = self.model.forward(*self.xs, train=True)
        f, crossed = self._reduce(y, check=False), None
        for layer, base in self.pieces:
            count = namespace(base).count_nonzero(layer.pieces() != base)
            crossed = count if crossed is None else crossed + count
        return f, crossed

    def base_pass(self, rng: np.random.Generator) -> tuple[float, list[GradcheckRow]]:
        """f(x) as a float, with every layer's grads and ``self.dxs`` filled by backward, and a
        failing row for each layer that wrote into its input or its incoming gradient."""
        self._rewind()
        mutations = _Mutations()
        given = [host_copy(a) for a in self.xs]
        with watch(self.model, mutations) as leaves:
            y = self.model.forward(*self.xs, train=True)
            if not hasattr(y, "shape"):
                many = f"a {type(y).__name__} of {len(y)}" if isinstance(y, (tuple, list, dict)) else \
                    f"a {type(y).__name__}"
                raise TypeError(f"gradcheck checks a model with one output array; {self.model.name}.forward "
                                f"returned {many}. Check one output at a time (a small xn.Model around it whose "
                                "forward returns that output and whose backward passes dy to it), or one "
                                "array made of them all")
            if not any(row.status == f"FAIL: {_WROTE_X}" for row in mutations.rows):  # a leaf's row says it
                for i, (before, a) in enumerate(zip(given, self.xs)):
                    what = f"forward wrote into its input {'x' if len(self.xs) == 1 else f'x[{i}]'}: " \
                           f"{NOT_REPEATABLE}"
                    mutations.rows += _mutation_row("", self.model, before, a, what)
            for layer in leaves.values():
                pieces = layer.pieces()
                if pieces is not None:
                    self.pieces.append((layer, namespace(pieces).asarray(pieces, copy=True)))
            if self.loss is None:
                self.r = to_device(rng.standard_normal(tuple(y.shape)), device_of(y), dtype="float64")
            f0 = float(to_numpy(self._reduce(y, check=True)))
            if not math.isfinite(f0):
                raise ValueError(f"gradcheck: the {'loss' if self.loss else 'output'} is {f0} at the given x and "
                                 "weights (NaN or inf in a weight or an output); central differences need finite "
                                 "values")
            # A copy of r: a layer that writes into dy must not change f for the passes that follow.
            dy = namespace(y).asarray(self.r, copy=True) if self.loss is None else self.loss.backward()
            dx = self.model.backward(dy)
        self.dxs = list(dx) if isinstance(dx, (tuple, list)) else [dx]
        self.dxs += [None] * (len(self.xs) - len(self.dxs))
        self.planned = planned_forward(self.model, self.xs)
        if self.planned is None:
            self.unrecorded = unrecorded(planned_leaves(self.model, self.xs, mutations.inputs))
        self.planned_loss = planned_loss(self.loss, self.model, self.xs)
        return f0, mutations.rows

    def release_rngs(self) -> None:
        for rng, _ in self.rngs:
            release_device_rngs(rng)

    def _rewind(self) -> None:
        self.passes += 1
        self.rewind()

    def rewind(self) -> None:
        """The model back to where the check started: every generator (the same masks), every attribute
        a forward rebinds (a stateful layer's carried state) and every buffer (copied: a forward may
        write into it)."""
        for rng, state in self.rngs:
            set_rng_state(rng, state)
        for node, attributes, buffers in self.kept:
            own = vars(node)
            own.update(attributes)
            if FORWARDS not in attributes:  # the training forwards since a backward: 0 again, as at the start
                own.pop(FORWARDS, None)
            for k, v in buffers.items():
                node.buffers[k] = namespace(v).asarray(v, copy=True)

    def _reduce(self, y: Any, check: bool) -> Any:
        if self.loss is None:
            return namespace(y).sum(y * self.r)
        if self.planned_loss is not None:
            value = self.planned_loss(y, self.t)
            if value is not None:
                return value
        return self.loss.forward(y, self.t, check=check)


class _Mutations(SeenInputs):
    """A failing row for each layer that wrote into its input x or its incoming gradient dy (and, as
    ``SeenInputs``, what each was given, for the later passes' plan)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[GradcheckRow] = []
        self.before: list[np.ndarray] = []  # host copies of what the running layer was given

    def before_forward(self, name: str, layer: Layer, xs: tuple[Any, ...]) -> None:
        super().before_forward(name, layer, xs)
        self.before = [host_copy(x) for x in xs]

    def forward(self, name: str, layer: Layer, xs: tuple[Any, ...], y: Any) -> None:
        for before, x in zip(self.before, xs):
            self.rows += _mutation_row(name, layer, before, x, _WROTE_X)

    def before_backward(self, name: str, layer: Layer, dy: Any) -> None:
        self.before = [host_copy(dy)]

    def backward(self, name: str, layer: Layer, dy: Any, dx: Any) -> None:
        self.rows += _mutation_row(name, layer, self.before[0], dy, "backward wrote into its incoming gradient dy")


def _param_slot(model: Layer, name: str) -> Any:
    """put(array): ``array`` stored as ``model``'s parameter ``name`` (``set_param``, which walks the model's tree),
    unless it is stored there already (a write in place; a forward that rebinds the parameter finds it put back)."""
    prefix, _, key = name.rpartition(".")
    node = model.named_modules()[prefix]

    def put(a: Any) -> None:
        if node.params.get(key) is not a:
            model.set_param(name, a)
    return put


def _input_slot(xs: list[Any], i: int) -> Any:
    """put(array): ``array`` as the i-th input of the passes."""
    def put(a: Any) -> None:
        if xs[i] is not a:
            xs[i] = a
    return put


def _check_tensor(f: _Objective, name: str, a: Any, grad: Any, put: Any, f0: float, rng: np.random.Generator,
                  eps: float, atol: float, rtol: float, fast: bool, max_entries: int | None) -> GradcheckRow:
    shape = tuple(int(d) for d in a.shape)
    if grad is None:
        return _broken_row(name, shape, "FAIL: backward left no gradient for it")
    if tuple(grad.shape) != shape:
        return _broken_row(name, shape, f"FAIL: gradient has shape {tuple(grad.shape)}, expected {shape}")
    size = math.prod(shape)
    if size == 0:
        return _broken_row(name, shape, "ok", checked=0)
    xp = namespace(a)
    grad = to_numpy(grad)
    if fast:
        u_host = rng.standard_normal(shape)
        u_host /= np.linalg.norm(u_host)
        u = to_device(u_host, device_of(a), dtype="float64")
        analytic = np.asarray([np.sum(grad * u_host)])
        indices = None

        def probe(positions: Any, step: float) -> list[Any]:
            """(f, kinks crossed) at +step and -step along u; ``positions`` is the one direction."""
            values = []
            for _ in positions:
                for sign in (1.0, -1.0):
                    put(a + (sign * step) * u)
                    values.append(f())
            put(a)
            return values
    else:
        flat = np.arange(size) if max_entries is None or max_entries >= size else \
            np.sort(rng.choice(size, size=max_entries, replace=False))
        indices = [tuple(int(i) for i in idx) for idx in zip(*np.unravel_index(flat, shape))] if shape else [()]
        analytic = grad.reshape(-1)[flat]
        # The values come to the host once per tensor; writing a float back restores an entry exactly.
        host = to_numpy(a)
        held = [a]  # the array as stored now (set_at makes a new one on immutable backends)
        in_place = update_rule(xp) == "in place"

        def write(idx: tuple[int, ...], value: float) -> None:
            if in_place:  # set_at's own rule, found once per tensor, not at each of its ~3 writes per entry
                held[0][idx] = value
            else:
                held[0] = set_at(held[0], idx, value)
            put(held[0])

        def probe(positions: Any, step: float) -> list[Any]:
            """(f, kinks crossed) at +step and -step of each entry ``indices[i]`` for i in ``positions``."""
            values = []
            for i in positions:
                idx = indices[i]
                v = float(host[idx])
                for value in (v + step, v - step):
                    write(idx, value)
                    values.append(f())
                write(idx, v)
            return values

    def measured(values: list[Any]) -> np.ndarray:
        """(f, kinks crossed) of each pass on the host, one row each."""
        found = np.zeros((len(values), 2))
        found[:, 0] = to_numpy(xp.stack([value for value, _ in values]))
        if f.pieces:
            found[:, 1] = to_numpy(xp.stack([crossed for _, crossed in values]))
        return found

    # The unperturbed point once more after every entry: the forward must give f0 back.
    found = measured(probe(range(len(analytic)), eps) + [f()])
    again, fpm = float(found[-1, 0]), found[:-1].reshape(-1, 2, 2)
    row = _compare(name, shape, fpm[:, 0, 0], fpm[:, 1, 0], f0, analytic, fpm[:, 0, 1] + fpm[:, 1, 1], indices,
                   eps, atol, rtol, lambda positions: measured(probe(positions, eps / RETEST))[:, 0].reshape(-1, 2))
    if abs(again - f0) > max(eps * atol, 64 * np.finfo(np.float64).eps * max(abs(f0), 1.0)) \
            or not math.isfinite(again):
        return replace(row, status=f"FAIL: {NOT_REPEATABLE}: f was {f0:.17g} at the start, "
                                               f"{again:.17g} at the same point after checking {name}")
    if not row.ok and np.all(fpm[:, 0, 0] == fpm[:, 1, 0]) and np.any(analytic != 0):
        # The forward reads another array than the one perturbed: a copy made in __init__, or (on JAX,
        # whose perturbed arrays are new ones) an attribute kept beside params.
        return replace(row, status="FAIL: perturbing it does not change the output: is the array also held "
                                   "outside params?")
    return row


def _compare(name: str, shape: tuple[int, ...], fp: np.ndarray, fm: np.ndarray, f0: float,
             analytic: np.ndarray, crossed: np.ndarray, indices: list[tuple[int, ...]] | None, eps: float,
             atol: float, rtol: float, retest: Any) -> GradcheckRow:
    """The row for one tensor from f at +-eps of each checked entry (``fp``, ``fm``); ``retest(positions)``
    gives f at +-eps/RETEST of the entries at those positions, asked only for candidate unreported kinks."""
    # A broken layer may give inf or NaN: that is a failure to report, not a reason to stop.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        numerical, err, tol, gap, bracketed = _differences(fp, fm, f0, analytic, eps, atol, rtol)
        bad = ~(err <= tol)
        unreported = np.zeros_like(bad)
        candidates = np.flatnonzero(bad & (crossed == 0) & (gap > KINK_FACTOR * tol) & bracketed)
        if candidates.size:
            # Curvature also makes the one-sided slopes differ, by f'' * eps: a gap that shrinks with eps
            # (and a central difference that stays) is curvature, where the entry has to pass; a kink's
            # gap stays. At eps/RETEST an entry whose kink lay further than that is measured as smooth.
            small = retest(candidates)
            num_s, err_s, tol_s, gap_s, bracketed_s = _differences(small[:, 0], small[:, 1], f0,
                                                                   analytic[candidates], eps / RETEST, atol, rtol)
            smooth_s = err_s <= tol_s
            stays = (gap_s > 0.3 * gap[candidates]) | (np.abs(num_s - numerical[candidates]) > 0.1 * gap[candidates])
            unreported[candidates] = ~smooth_s & bracketed_s & (gap_s > KINK_FACTOR * tol_s) & stays
            passed = candidates[smooth_s]
            numerical[passed], err[passed], tol[passed] = num_s[smooth_s], err_s[smooth_s], tol_s[smooth_s]
            bad[passed] = False
        kink = (crossed >= 2) | ((crossed == 1) & bracketed) | unreported
        smooth = ~kink
        scale = np.maximum(np.abs(numerical), np.abs(analytic))
        rel = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), 0.0)
        # err / tol ranks the entries: the worst is the one closest to (or furthest past) failing.
        ratio = err / np.maximum(tol, np.finfo(np.float64).tiny)
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        worst = int(np.argmax(np.where(smooth, ratio, -np.inf))) if smooth.any() else int(np.argmax(ratio))
        failed = bool((bad & ~kink).any())
    return GradcheckRow(name=name, shape=shape, checked=len(numerical),
                        max_abs_err=float(np.max(err[smooth])) if smooth.any() else math.nan,
                        max_rel_err=float(np.max(rel[smooth])) if smooth.any() else math.nan,
                        worst_index=None if indices is None else indices[worst],
                        numerical=float(numerical[worst]), analytic=float(analytic[worst]),
                        kinks=int(kink.sum()), status="FAIL" if failed else "ok")


def _differences(fp: np.ndarray, fm: np.ndarray, f0: float, analytic: np.ndarray, eps: float, atol: float,
                 rtol: float) -> tuple[np.ndarray, ...]:
    """The central difference, its error and tolerance, the gap between the one-sided slopes, and
    whether those slopes bracket the analytic value (within the tolerance)."""
    numerical = (fp - fm) / (2.0 * eps)
    err = np.abs(numerical - analytic)
    tol = atol + rtol * np.abs(numerical)
    right, left = (fp - f0) / eps, (f0 - fm) / eps
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    return numerical, err, tol, hi - lo, (analytic >= lo - tol) & (analytic <= hi + tol)


def _broken_row(name: str, shape: tuple[int, ...], status: str, checked: int = 0) -> GradcheckRow:
    return GradcheckRow(name, shape, checked, math.nan, math.nan, None, math.nan, math.nan, 0, status)


def _mutation_row(prefix: str, layer: Layer, before: np.ndarray, array: Any, what: str) -> list[GradcheckRow]:
    """A failing row when ``array`` no longer holds ``before``; ``prefix``: the layer's dotted name."""
    after = to_numpy(array)
    if np.array_equal(before, after, equal_nan=True):
        return []
    with np.errstate(invalid="ignore"):
        diff = np.where(np.isnan(before) & np.isnan(after), 0.0, np.abs(after - before))
    flat = int(np.argmax(np.where(np.isnan(diff), np.inf, diff)))
    index = tuple(int(i) for i in np.unravel_index(flat, before.shape))
    name = f"{prefix} ({layer.name})" if prefix else layer.name
    return [GradcheckRow(name, tuple(before.shape), int(before.size), float(np.nanmax(diff)), math.nan, index,
                         float(before[index]), float(after[index]), 0, f"FAIL: {what}")]


def _check_args(target: Any, t: Any, loss: Any, eps: float, atol: float, rtol: float, fast: bool,
                max_entries: int | None) -> None:
    if not isinstance(target, Layer):
        raise TypeError(f"gradcheck: expected an xn.Sequential or an xpnet layer (or an xn.Model), got "
                        f"{type(target).__name__}")
    if loss is not None and t is None:
        raise ValueError("gradcheck: a loss needs targets t")
    if t is not None and loss is None:
        raise ValueError("gradcheck: targets t were given without a loss; pass loss=... "
                         "(or neither, to check through a random projection of the output)")
    for arg, value, low in (("eps", eps, "> 0"), ("atol", atol, ">= 0"), ("rtol", rtol, ">= 0")):
        if not is_real(value) or not math.isfinite(value) or value < 0 or (low == "> 0" and value == 0):
            raise ValueError(f"gradcheck: {arg} must be a finite number {low}, got {value!r}")
    if max_entries is not None:
        if not is_int(max_entries) or max_entries < 1:
            raise ValueError(f"gradcheck: max_entries must be None or an int >= 1, got {max_entries!r}")
        if fast:
            raise ValueError("gradcheck: max_entries has no effect with fast=True (one direction per tensor)")


def _check_device(target: Layer, x: Any, spec: Any) -> Device:
    """The device for the float64 copy: ``spec``, else the model's, else x's; the CPU (with a
    warning) when that device has no float64."""
    if spec is not None:
        dev = _resolve_device(spec)
    else:
        held = list(target.state().values())
        if held:
            dev = device_of(held[0])
        elif array_api_compat.is_array_api_obj(x):
            dev = device_of(x)
        else:
            dev = CPU
    if not dev.supports_float64():
        warn(f"gradcheck: device {dev} has no float64; checking a float64 copy on the CPU instead",
             XpnetDeviceWarning)
        dev = CPU
    return dev
