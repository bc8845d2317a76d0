"""The base of every loss (:class:`Loss`) and the checks losses share; the value a call gives is
:class:`~xpnet.losses.value.LossValue`."""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from .._user import is_real
from ..backend import device as _resolve_device
from ..backend import device_of, dtype_name, isdtype, namespace, same_device, to_device, to_numpy, untracked
from .summed import checked_backward, counted_forward
from .value import LossValue


class Loss:
    """Base class of the losses (``forward(y, t)`` -> the loss, ``backward()`` -> dy), with the checks they share.

    Each subclass's ``forward`` and ``backward`` are wrapped so that a
    backward after the values of several calls were summed (``loss += criterion(output, t[i])``) is refused
    (:mod:`xpnet.losses.summed`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in vars(cls):
            cls.forward = counted_forward(vars(cls)["forward"])
        if "backward" in vars(cls):
            cls.backward = checked_backward(vars(cls)["backward"])
        if "__init__" in vars(cls):
            cls.__init__ = _refusing_legacy(vars(cls)["__init__"])

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}()"

    def __call__(self, y: Any, t: Any) -> "LossValue":
        """``forward(y, t)`` read back as a :class:`LossValue` (a float), for PyTorch-style loops. In a loop
        that must not wait for the device each step, call ``forward`` (a 0-d array on the device)."""
        return LossValue(self.forward(y, t), self)

    def to(self, device_spec: Any = None, dtype: Any = None, *, device: Any = None) -> "Loss":
        """The loss itself (PyTorch's ``nn.CrossEntropyLoss().to(device)``): a loss holds no parameters, and its
        constant weights go to the data's device and dtype at their first use there. ``device_spec`` (or
        ``device=``, PyTorch's keyword) is checked as ``model.to``'s."""
        if device is not None:
            if device_spec is not None:
                raise TypeError(f"{type(self).__name__}.to: got a device twice, {device_spec!r} and "
                                f"device={device!r}; give one")
            device_spec = device
        if device_spec is not None:
            _resolve_device(device_spec)
        return self

    def forward(self, y: Any, t: Any, check: bool = True) -> Any:
        raise NotImplementedError

    def backward(self, dout: Any = 1.0) -> Any:
        raise NotImplementedError

    def mean_count(self) -> Any:
        """How many terms the last forward's mean is over: an int, or a 0-d integer array on the device
        (cross-entropy's labels that are not ``ignore_index``, counted when asked); None where the loss does
        not say. The loops weigh each batch's mean by it (``xn.evaluate``'s loss is the mean over every
        target of the data, whatever ``batch_size``, and with ``comm`` each rank's gradient by its count);
        None: by the batch's rows."""
        return None

    def ignores_any(self, t: Any) -> bool:
        """Whether some target of the data ``t`` would count for nothing in the mean (cross-entropy: a label
        equal to ``ignore_index``): the loops ask once per run (one read from the device), then vouch for
        the answer with :meth:`none_ignored`."""
        return False

    @contextmanager
    def none_ignored(self, vouched: bool = True) -> Iterator[None]:
        """Within (where ``vouched``), the caller has checked once that no target of its data is ignored
        (cross-entropy: no label equals ``ignore_index``): :meth:`mean_count` is then a Python int from the
        shapes alone, with no device work per batch. A loss that ignores nothing has nothing to do."""
        yield

    def correct_count(self) -> Any:
        """How many rows of the last forward's predictions have their first maximum at their label, as
        ``count_nonzero(argmax(y, axis=-1) == t)``: a 0-d integer array on the device where the loss
        found it along the way (CuPy's fused softmax cross-entropy), else None (count it yourself).
        SigmoidCrossEntropy counts its elements whose logit is on their target's side instead."""
        return None

    def _check_pair(self, y: Any, t: Any) -> Any:
        """The namespace of predictions ``y`` and targets ``t`` after checking them: arrays (not a scalar target),
        of one namespace and device, ``y`` floating. What passed depends on their types and y's dtype alone, but
        for the device: those are kept (``_PAIRS``), and a pair of them asks the device only (every loss call)."""
        try:
            xp = _PAIRS.get((type(y), y.dtype, type(t)))
        except (AttributeError, TypeError):  # no dtype (a list), or one that cannot be hashed: checked below
            xp = None
        if xp is not None and same_device(y, t):
            return xp
        if isinstance(t, (int, float, np.generic)):
            raise TypeError(f"{self.name}: targets must be an array, got the {type(t).__name__} scalar {t!r} (an "
                            "element of a 1-d array, t[i]); keep the batch axis, t[i:i + 1] (PyTorch's "
                            f"target.unsqueeze(-1), then target[i]), for predictions of shape {tuple(y.shape)}")
        for what, a in (("predictions", y), ("targets", t)):
            if not hasattr(a, "dtype"):  # a list: namespace() would fail with no word of the loss
                raise TypeError(f"{self.name}: {what} must be an array, got a {type(a).__name__}; convert it with "
                                "np.asarray (or xn.to_device) first")
        xp = namespace(y)
        if namespace(t) is not xp or not same_device(y, t):
            raise ValueError(f"{self.name}: predictions are on {device_of(y)} but targets are on {device_of(t)}; "
                             "move both to one device")
        if not isdtype(xp, y.dtype, "real floating"):
            raise TypeError(f"{self.name}: expected floating-point predictions, got dtype {y.dtype}")
        if len(_PAIRS) < 256:  # NumPy makes a new dtype object per byte order: do not grow forever
            _PAIRS[(type(y), y.dtype, type(t))] = xp
        return xp


_LEGACY = ("PyTorch's deprecated size_average= and reduce= are reduction= here: size_average=False is "
           "reduction='sum', size_average=True reduction='mean' (the default); reduce=False, a loss per element, xpnet "
           "has not (its backward starts from one number)")


def _refusing_legacy(init: Any) -> Any:
    """A loss's ``__init__`` that refuses PyTorch's ``size_average=`` and ``reduce=`` keywords (where it takes
    neither, by name or as ``**kwargs``: a loss of one's own may read them) saying what to write, where Python
    would say "unexpected keyword argument" alone."""
    takes = inspect.signature(init).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes.values()):
        return init

    @functools.wraps(init)
    def run(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs and any(old in kwargs and old not in takes for old in ("size_average", "reduce")):
            raise TypeError(f"{type(self).__name__}: {_LEGACY}")
        init(self, *args, **kwargs)
    return run


# (type of predictions, their dtype, type of targets) -> the namespace, for the pairs _check_pair passed
_PAIRS: dict[tuple[type, Any, type], Any] = {}


def check_reduction(loss: str, reduction: Any, leave_out: str = "") -> str:
    """``reduction`` (PyTorch's name): ``"mean"`` or ``"sum"``; ``"none"``, a loss per position, is refused
    (``leave_out``: how this loss leaves positions out instead, e.g. ``", with ignore_index to leave positions
    out"``)."""
    if not isinstance(reduction, str) or reduction not in ("mean", "sum"):
        why = ("xpnet has no loss per position (its backward starts from one number): pass 'mean' or 'sum'"
               f"{leave_out}") if reduction == "none" else "expected 'mean' or 'sum'"
        if isinstance(reduction, bool):  # MSELoss(False), L1Loss(False): PyTorch's first positional argument
            why += f"; a bool there is {_LEGACY}"
        raise ValueError(f"{loss}: reduction={reduction!r} is not supported: {why}")
    return reduction


class ElementwiseLoss(Loss):
    """Shared by the losses of predictions against targets of their shape, a term per element: the pair's
    checks, ``reduction`` (the mean over every element, PyTorch's default, or their sum), the count.
    A subclass's forward calls :meth:`_pair`, its backward :meth:`_scale`."""

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = check_reduction(self.name, reduction)
        self._n: int | None = None  # the elements of the last forward

    def _pair(self, y: Any, t: Any) -> tuple[Any, Any, Any]:
        """(xp, y, t) with t in y's dtype, after checking the pair and their shapes; notes the count."""
        y, t = untracked(y), untracked(t)
        xp = self._check_pair(y, t)
        if tuple(y.shape) != tuple(t.shape):
            raise ValueError(f"{self.name}: predictions {tuple(y.shape)} and targets {tuple(t.shape)} differ in shape")
        if t.dtype != y.dtype:
            t = xp.astype(t, y.dtype)
        self._n = element_count(y)
        return xp, y, t

    def _reduced(self, xp: Any, terms: Any) -> Any:
        """The sum of the terms, divided by the count (their number) but under ``reduction="sum"``."""
        total = xp.sum(terms)
        return total if self.reduction == "sum" else total / self._n

    def _scale(self, dout: Any) -> Any:
        """What each element's derivative is multiplied by in backward: dout, over the count for a mean."""
        if self._n is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        check_dout(self, dout)
        return dout if self.reduction == "sum" else dout / self._n

    def mean_count(self) -> Any:
        """Every element of the last forward (None before one)."""
        return self._n

    def _settings(self) -> list[str]:
        """This loss's arguments that differ from their defaults, as ``name=value`` for the repr."""
        return [f"reduction={self.reduction!r}"] if self.reduction != "mean" else []

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(self._settings())})"


class HostWeights:
    """A loss's constant weights (class weights, BCE's ``weight`` and ``pos_weight``), kept on the host in
    float64 as given, and sent to the data's device in its dtype at the first use there: one copy per
    device and dtype, none per step (a captured CUDA step reads the copy its warm-up made). Not saved:
    losses are not part of a model's files."""

    def __init__(self, value: Any, who: str, arg: str, ndim: int | None = None) -> None:
        host = to_numpy(value) if hasattr(value, "shape") else np.asarray(value)
        if host.dtype == np.bool_ or not (np.issubdtype(host.dtype, np.integer) or
                                          np.issubdtype(host.dtype, np.floating)):
            raise TypeError(f"{who}: {arg} must be an array of real numbers, got {type(value).__name__} of dtype "
                            f"{host.dtype}")
        if ndim is not None and host.ndim != ndim:
            raise ValueError(f"{who}: {arg} must be a 1-d array (one weight per class), got shape {host.shape}")
        host = host.astype(np.float64)
        if not np.all(np.isfinite(host)) or np.any(host < 0):
            bad = float(host[~(np.isfinite(host) & (host >= 0))][0])
            raise ValueError(f"{who}: {arg} must hold finite weights >= 0 (a negative weight rewards the error it "
                             f"weighs), got {bad!r}")
        host.flags.writeable = False
        self.host = host
        self.shape = host.shape
        self._copy: Any = None  # the weights where they were last used

    def like(self, a: Any) -> Any:
        """The weights on ``a``'s device in ``a``'s dtype. The copy is checked against ``a`` itself, not kept
        under a namespace or device object: a module (and JAX's Device) cannot be deep-copied or pickled."""
        copy = self._copy
        # same_device first: it compares the namespaces too, and two libraries' dtypes never compare.
        if copy is None or not same_device(copy, a) or copy.dtype != a.dtype:
            copy = self._copy = to_device(self.host, device_of(a), dtype=dtype_name(a))
        return copy

    def __repr__(self) -> str:
        host = self.host
        return repr(host.tolist()) if host.ndim <= 1 and host.size <= 8 else f"<array of shape {host.shape}>"


def check_dout(loss: Loss, dout: Any) -> None:
    """``dout``, the gradient of what follows the loss, is a number (1.0: the loss itself) or a 0-d array."""
    if not (is_real(dout) or getattr(dout, "shape", None) == ()):
        raise TypeError(f"{loss.name}: backward(dout): dout must be a number (1.0 by default), got {dout!r}")


def element_count(a: Any) -> int:
    """The number of elements of ``a``, from its shape."""
    n = 1
    for d in a.shape:
        n *= int(d)
    return n
