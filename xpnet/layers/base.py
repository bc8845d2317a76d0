"""The layer protocol and the input checks every layer shares."""

from __future__ import annotations

import inspect
import numbers
import operator
from typing import Any

from .._user import flag
from ..backend import XpnetDeviceError, device_of, dtype_name, isdtype, namespace, same_device
from .backward_calls import rounded
from .buffer_store import Buffers
from .dy_hint import dy_hint
from .grads import Grads
from .no_grad_calls import marked
from .reuse import reused
from .tree import Tree
from .unwritten import unwritten_backward
from .uses import called, recorded
from .zero_grad import arm, counted

_LAYER_TYPES: dict[str, type] = {}  # by class name: what files name xpnet's own layers by
_CLASSES: dict[tuple[str, str], type] = {}  # by (module, qualified name): every layer and model class
_FLOATS: dict[tuple[type, Any], Any] = {}  # (array type, floating dtype) -> namespace, for _check_float


class _InitArgs:
    """The arguments a layer was built with (``config()`` names them), kept out of a container's layer search."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.args, self.kwargs = args, kwargs


class Layer(Tree):
    """One operation with ``forward(x, train=True) -> y`` and ``backward(dy) -> dx``.

    ``params`` and ``grads`` are dicts with the same keys; ``backward`` overwrites ``grads``
    (one backward per forward, as in the book). ``buffers`` holds state that is saved and moved
    with the layer but not trained (BatchNorm's running statistics). As a node of a model
    (:class:`~xpnet.layers.tree.Tree`) a layer also has dotted names, a mode (``train()``/``eval()``)
    and state dicts.
    """

    train_hint = ""  # what an array passed as forward's train most likely was meant to be, for its error
    # Attributes another layer's backward writes into (a TiedLinear's share of an Embedding's gradient): not put
    # back between the backward calls of a layer called more than once in a forward (layers.reuse).
    kept_between_uses: tuple[str, ...] = ()
    # Whether a training-mode call of forward within a model's forward is noted as a use (layers.uses); the
    # recurrent cells keep a cache per call of their own instead.
    records_uses = True
    uses_inside = False  # whether the layers its forward calls are uses of their own (a container's children)
    # A recurrent layer built with stateful=True carries its state from one call into the next (layers.uses
    # refuses a second call of it in one forward). Here, so that reading it costs no failed attribute lookup.
    stateful = False

    def __new__(cls, *args: Any, **kwargs: Any) -> "Layer":
        self = super().__new__(cls)
        self.__dict__["_init_args"] = _InitArgs(args, kwargs)
        return self

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = Grads(self.params, type(self))  # a missing key says why (layers.grads)
        self.buffers: dict[str, Any] = Buffers()  # model.buffers(), PyTorch's, says what to write (buffer_store)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[(cls.__module__, cls.__qualname__)] = cls
        # A layer called twice in a forward takes its calls back in reverse (layers.reuse); after zero_grad(),
        # backward adds its gradients, as PyTorch's (layers.zero_grad)
        forward, backward, backward_params = (_own_or_mixed_in(cls, name)
                                              for name in ("forward", "backward", "backward_params"))
        # A backward never serves a forward run under xn.no_grad(): recorded (or marked) notes it, rounded refuses
        # (layers.no_grad_calls)
        if forward is not None:  # layer.forward(x) is a use, as layer(x)
            cls.forward = recorded(forward, vars(cls).get("_train_of_forward")) if cls.records_uses else marked(forward)
        if backward is not None:
            cls.backward = rounded(counted(reused(backward)), backward, ticks=cls.records_uses)  # cells sum their own
        if backward_params is not None:
            cls.backward_params = rounded(reused(backward_params), backward_params)
        # A class of the user's may not take the name of one of xpnet's in files without a module;
        # a private base (_Pool2d) is no layer a file may name.
        known = _LAYER_TYPES.get(cls.__name__)
        if not cls.__name__.startswith("_") and (known is None or not is_xpnet_class(known) or is_xpnet_class(cls)):
            _LAYER_TYPES[cls.__name__] = cls

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, x: Any, train: bool = True) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError(unwritten_backward(self))  # a layer of one's own with a forward only

    def pieces(self) -> Any:
        """Which piece of a piecewise-smooth function the last forward used, one value per element
        (ReLU: x > 0; MaxPool2d: the offset of each window's maximum), or None for a smooth layer.

        Two forwards whose pieces differ straddle a kink (ReLU at 0, a tie in a max window):
        ``xn.gradcheck`` compares them across its +-eps passes to find the entries where a central
        difference cannot be trusted. A layer with a kink of its own overrides this.
        """
        return None

    def sequential_refusal(self) -> str:
        """Why this layer cannot sit in a Sequential (it takes or gives more than one array), or "": by default,
        a forward that requires more than one input (MultiheadAttention's query, key, value), or one that takes
        no ``train`` (PyTorch's ``forward(self, x)``, nn_tutorial's ``Lambda``), which the Sequential passes."""
        parameters = inspect.signature(self.forward).parameters
        if "train" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            from .container import no_train  # imported here: the container module imports this one
            return no_train(self)
        required = [p.name for p in parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
                    and not p.name.startswith("train")]  # a layer of one's own may require train (the book's flag)
        if len(required) < 2:
            return ""
        return (f"takes {len(required)} inputs ({', '.join(required)}) where a Sequential passes one: write an "
                f"xn.Model whose forward passes them, self.layer({', '.join(required)})")

    def backward_params(self, dy: Any) -> None:
        """Fill ``grads`` without computing dx (the first layer of a model needs no input gradient).
        Layers whose dx is costly override this."""
        self.backward(dy)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """PyTorch's ``model.zero_grad()`` (a model's or a layer's, as ``cell.zero_grad()``), as
        ``optimizer.zero_grad()``: clear every gradient (``set_to_none=False``: zeros), and from now on add the
        gradients of each ``backward`` to those already there until the next ``zero_grad()``
        (:mod:`xpnet.layers.zero_grad`). Never called, each ``backward`` overwrites every gradient (the book's loop)."""
        arm(self, set_to_none=flag(set_to_none, f"{type(self).__name__}.zero_grad", "set_to_none"))

    def cleargrads(self) -> None:
        """Chainer's ``model.cleargrads()``: :meth:`zero_grad` (Chainer's backward adds to the gradients too)."""
        self.zero_grad()

    def __call__(self, x: Any, *more: Any, train: bool | None = None) -> Any:
        """``forward`` in the layer's mode (``train()``/``eval()``; training until told), or as ``train`` says
        (by keyword, or second by position: ``layer(x, False)``). A layer of one's own whose forward takes more
        inputs before ``train`` gets them as PyTorch's module does: ``self.gc1(x, adj_mat)`` calls
        ``forward(x, adj_mat, train=...)``."""
        if more:
            if len(more) < _inputs_of(type(self)):
                return self.forward(x, *more, train=called(self, train))
            if len(more) > 1 or train is not None:
                raise TypeError(f"{self.name}.forward takes {_inputs_of(type(self))} input(s), then train: got "
                                f"{1 + len(more)} arguments by position" + (", and train" if train is not None else ""))
            train = more[0]
        return self.forward(x, train=called(self, train))

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (saved by ``model.save``): by default the
        arguments it was built with, by name. Override it, with ``from_config``, when they are not
        numbers, strings, lists, dicts or layers (``model.save`` says which one is not)."""
        return init_arguments(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        """The layer ``config()`` described (a layer whose saved form changed reads old files here)."""
        return cls(**config)

    def __repr__(self) -> str:
        """PyTorch-style: the constructor arguments, leaving out those at their default (but ``bias``)."""
        defaults = init_parameters(type(self))
        shown = []
        for key, value in self.config().items():
            if hasattr(value, "shape") and hasattr(value, "dtype"):  # an array argument (the book's Affine(W, b))
                shown.append(f"{key}=<array {tuple(value.shape)} {dtype_name(value)}>")
                continue
            value = _readable(value)
            param = defaults.get(key)
            if key != "bias" and param is not None and param.default is not inspect.Parameter.empty \
                    and _same(_readable(param.default), value):
                continue
            shown.append(f"{key}={value!r}")
        return f"{self.name}({', '.join(shown)})"

    # -- checks shared by layers ------------------------------------------------------------

    def _check_train(self, train: Any, inputs: str = "x", hint: str = "") -> bool:
        """``train`` when it is True or False (NumPy's bool too). Anything else is an argument given in
        train's place, a mask or an initial state in PyTorch's habit, which would otherwise be ignored
        or read as true: a TypeError of one line naming ``{layer}.forward({inputs}, train)`` and ``hint``
        (by default the class's ``train_hint``)."""
        if train is True or train is False:  # the hot path: two identity tests
            return train
        try:
            return flag(train, self.name, "train")
        except TypeError:
            raise TypeError(f"{self.name}.forward({inputs}, train): train must be True or False, got "
                            f"{type(train).__name__}" + (f"; {hint or self.train_hint}" if hint or self.train_hint
                                                         else "")) from None

    def _check_float(self, x: Any) -> Any:
        """The namespace of ``x`` after checking it is a floating array (raises TypeError). The answer depends on
        ``x``'s type and dtype alone: those that passed are kept (``_FLOATS``), a step asks ~6 times."""
        try:
            xp = _FLOATS.get((type(x), x.dtype))
        except (AttributeError, TypeError):  # no dtype (a list), or one that cannot be hashed: checked below
            xp = None
        if xp is not None:
            return xp
        if not hasattr(x, "dtype"):
            from .packed import PackedSequence  # on the error's path only
            if isinstance(x, PackedSequence):
                raise TypeError(f"{self.name}: got a PackedSequence, which only RNN, LSTM and GRU take (PyTorch's "
                                "too); unpack it first: x, lengths = xn.layers.pad_packed_sequence(packed)")
            raise TypeError(f"{self.name}: expected an array, got a {type(x).__name__}; convert it with "
                            "np.asarray(x, dtype=np.float32) (or xn.to_device(x, device, dtype='float32'))")
        xp = namespace(x)
        if not isdtype(xp, x.dtype, "real floating"):
            raise TypeError(f"{self.name}: expected a floating-point input, got dtype {x.dtype}; "
                            "convert with xp.astype(x, xp.float32) (images: also divide by 255)")
        if len(_FLOATS) < 256:  # NumPy makes a new dtype object per byte order: do not grow forever
            _FLOATS[(type(x), x.dtype)] = xp
        return xp

    def _check_like_params(self, x: Any, what: str = "input", arg: str = "x") -> None:
        """Raise when ``x`` is not in the params' namespace, device and dtype (a layer without params, such
        as ``BatchNorm(affine=False)``, its buffers'); ``what`` names it in the message (``"input"``,
        ``"state h"``) and ``arg`` in the fix (``xn.to_device(x, device)``)."""
        for v in (self.params or self.buffers).values():
            held = "parameters" if self.params else "buffers"
            if not same_device(x, v):
                if device_of(x) == device_of(v):  # a NumPy scalar (np.float32(1.0)), not an array
                    raise TypeError(f"{self.name}: {what} is a {type(x).__name__}, not an array (N, ...) like the "
                                    f"layer's {held} ({type(v).__name__})")
                raise XpnetDeviceError(f"{self.name}: {what} is on {device_of(x)} but the layer's {held} are on "
                                       f"{device_of(v)}; move the model with model.to(device) or the {what} with "
                                       f"xn.to_device({arg}, device)")
            if x.dtype != v.dtype:
                raise TypeError(f"{self.name}: {what} dtype {x.dtype} does not match the {held}' dtype "
                                f"{v.dtype}; cast one of them (model.to(device, dtype=...))")
            return

    def _check_grad(self, dy: Any, shape: tuple[int, ...]) -> Any:
        """The namespace of ``dy`` after checking it is a floating array of ``shape``, the shape of the
        last forward's output (elementwise layers would otherwise broadcast a wrong one silently)."""
        xp = self._check_float(dy)
        if tuple(dy.shape) != tuple(shape):
            raise ValueError(f"{self.name}: expected dy of shape {tuple(shape)} (the last forward's output), "
                             f"got {tuple(dy.shape)}{dy_hint(tuple(shape), tuple(dy.shape))}")
        return xp

    def _need(self, cached: Any) -> Any:
        if cached is None:
            raise RuntimeError(f"{self.name}: backward called before forward (one backward per forward)"
                               f"{_replaced_forward_hint(type(self))}")
        return cached


def _own_or_mixed_in(cls: type, name: str) -> Any:
    """The function ``cls`` defines as ``name``, or takes from a base of the user's that is no layer (a mixin:
    ``class Net(ForwardMixin, xn.Model)``, whose forward and backward would otherwise run unwrapped: a layer called
    twice in it refused, or its calls not taken back in turn), to be wrapped on ``cls``; None where it comes from a
    layer class (wrapped there already) or from xpnet's own mixins (``StopsWhereNothingTrains``: it calls the
    wrapped backward)."""
    for base in cls.__mro__:
        if name in vars(base):
            found = vars(base)[name]
            if base is cls:
                return found
            mixed_in = not issubclass(base, Layer) and not is_xpnet_class(base)
            return found if mixed_in and inspect.isfunction(found) else None
    return None


def described(a: Any) -> str:
    """``a`` for a message on mixed inputs: ``float32 cupy.ndarray on cuda:0``, ``float32 numpy.ndarray on cpu``
    (CuPy's and NumPy's arrays are both named ndarray: the module and the device tell them apart); a non-array
    by its type."""
    if not hasattr(a, "dtype"):
        return f"a {type(a).__name__}"
    kind = type(a)
    return f"{a.dtype} {kind.__module__.split('.')[0]}.{kind.__name__} on {device_of(a)}"


def positive_int(layer: Layer, arg: str, value: Any) -> int:
    """``value`` as an int >= 1, else a ValueError naming the layer and argument."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or operator.index(value) < 1:
        raise ValueError(f"{layer.name}: {arg} must be a positive int, got {value!r}")
    return operator.index(value)


# PyTorch's factory argument device=: every xpnet layer is made on the host, then moved.
DEVICE_DEFAULT = (None, "make the layer, then move it (or the model holding it) with .to(device)")
# PyTorch's inplace= (the activations, Dropout): xpnet never writes into a layer's input.
INPLACE = (False, ("xpnet never writes into a layer's input; leave inplace out (the output is the same, in new "
                    "memory)"))


def pytorch_defaults_only(who: str, table: dict[str, tuple[Any, str]], given: dict[str, Any]) -> None:
    """PyTorch's constructor arguments that xpnet has no use for, ``table[arg] = (default, what to do
    instead)``: each of ``given`` at its default passes (a bool never stands for a number, nor a number
    for a bool); any other value raises a ValueError of one line naming ``who``, the argument and what
    to do instead."""
    for arg, value in given.items():
        default, instead = table[arg]
        if default is None or isinstance(default, bool):
            same = value is default
        elif isinstance(default, str):
            same = isinstance(value, str) and value == default
        else:
            same = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == default
        if not same:
            shown = repr(value) if isinstance(value, (numbers.Number, str)) else f"<{type(value).__name__}>"
            raise ValueError(f"{who}: {arg}={shown} is not supported: {instead}")


def init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The parameters of ``cls``'s constructor by name, a subclass's over its bases' (one passing ``**kwargs``
    on keeps its base's defaults)."""
    parameters: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            parameters.update(inspect.signature(vars(klass)["__init__"]).parameters)
    return parameters


def _same(default: Any, value: Any) -> bool:
    """Whether an argument equals its default (a comparison that gives no plain bool counts as different)."""
    try:
        equal = default == value
    except Exception:  # noqa: BLE001 - any comparison that cannot be made is a difference
        return False
    return equal if isinstance(equal, bool) else False


def _readable(value: Any) -> Any:
    """A saved (h, w) pair as the int it came from when both are equal, other lists as tuples."""
    if isinstance(value, (list, tuple)):
        return value[0] if len(value) == 2 and value[0] == value[1] else tuple(value)
    return value


def init_arguments(layer: Layer) -> dict[str, Any]:
    """The arguments ``layer`` was built with, by the names of its class's ``__init__`` (``*args`` as a
    list, ``**kwargs`` as a dict under their own names)."""
    init_args = layer.__dict__.get("_init_args") or _InitArgs((), {})
    bound = inspect.signature(type(layer).__init__).bind(layer, *init_args.args, **init_args.kwargs)
    return dict(list(bound.arguments.items())[1:])


def build_from_arguments(cls: type, config: dict[str, Any]) -> Any:
    """``cls`` built from what :func:`init_arguments` gave: each argument passed as its parameter takes it."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    unknown = set(config) - {p.name for p in params}
    if unknown:
        raise TypeError(f"{cls.__qualname__} takes no arguments {sorted(unknown)}")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in params:
        if p.name not in config:
            continue
        value = config[p.name]
        if p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(value)
        elif p.kind is p.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[p.name] = value
    return cls(*args, **kwargs)


def _owner(cls: type, name: str) -> type:
    """The class of ``cls``'s method resolution order that defines ``name``."""
    return next(k for k in cls.__mro__ if name in vars(k))


def records_init_arguments(cls: type) -> bool:
    """Whether files record a layer of ``cls`` by the arguments it was built with rather than by its
    ``config()``: a class of the user's whose ``__init__`` is its own, below the class that wrote
    ``config`` (``class MyLinear(Linear)`` with an ``__init__`` of its own: Linear's config would not
    rebuild it). xpnet's own classes always use their ``config``."""
    if is_xpnet_class(cls):
        return False
    init, config = _owner(cls, "__init__"), _owner(cls, "config")
    return init is not config and issubclass(init, config)


def builds_from_arguments(cls: type) -> bool:
    """Whether a record of ``cls`` written by its arguments (:func:`records_init_arguments`) is built by
    :func:`build_from_arguments` rather than by a ``from_config`` written for the class's own ``__init__``."""
    init, from_config = _owner(cls, "__init__"), _owner(cls, "from_config")
    return init is not from_config and issubclass(init, from_config)


_INPUTS: dict[type, int] = {}


def _inputs_of(cls: type) -> int:
    """How many inputs ``cls.forward`` takes by position before ``train`` (all its positional ones where it takes
    no ``train``), at least 1."""
    if cls not in _INPUTS:
        names = [p.name for p in inspect.signature(cls.forward).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
        _INPUTS[cls] = max(1, names.index("train") if "train" in names else len(names))
    return _INPUTS[cls]


def is_xpnet_class(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "xpnet"


def _replaced_forward_hint(cls: type) -> str:
    """Where a class of the user's replaces the forward of the xpnet layer it subclasses (mnist_forward_forward's
    ``class Layer(nn.Linear)`` computing ``x @ W + b`` itself), whose backward reads what that forward caches:
    what to write; else ""."""
    own = next(c for c in cls.__mro__ if "forward" in vars(c))
    base = next((c for c in cls.__mro__ if "forward" in vars(c) and is_xpnet_class(c)), None)
    if base is None or is_xpnet_class(own):
        return ""
    return (f": {own.__name__}.forward replaces {base.__name__}.forward, whose caches {base.__name__}.backward "
            f"reads. Call super().forward(x) in it for that part, and write {own.__name__}.backward(dy) for the "
            "rest (self.relu(super().forward(x)) goes back as super().backward(self.relu.backward(dy)))")


def layer_class(name: str, module: str | None = None) -> type:
    """The layer or model class a file names: by ``module`` and qualified name for a class of the
    user's, by name alone for xpnet's own. Nothing is imported: a class not defined in this program
    gives a ValueError saying what to import."""
    if module is None:
        try:
            return _LAYER_TYPES[name]
        except KeyError:
            raise ValueError(f"unknown layer type {name!r} in saved model; known: {sorted(_LAYER_TYPES)}") from None
    cls = _CLASSES.get((module, name))
    if cls is not None:
        return cls
    elsewhere = sorted(m for m, q in _CLASSES if q == name)
    hint = f" (a class {name} is defined in {', '.join(map(repr, elsewhere))}, but the file names {module!r})" \
        if elsewhere else ""
    where = "define it in this script as in the one that saved the model" if module == "__main__" else \
        f"import it first: from {module} import {name.split('.')[0]}"
    raise ValueError(f"the saved model uses class {name} from module {module!r}, which this program has not "
                     f"defined; {where}{hint}. xn.load never imports or unpickles anything")


def layer_from_config(name: str, config: dict[str, Any]) -> Layer:
    return layer_class(name).from_config(config)
