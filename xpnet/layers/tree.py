"""What every layer has as a node of a model: children, dotted names, modes, moving, state dicts.

A model is a tree of layers. A leaf (Linear, ReLU...) has no children; a composite
(:class:`~xpnet.layers.Container`, ``xn.Model``, ``xn.Sequential``, ``Residual``) names its children in
``named_children()``. Everything else is built on that one method, walked once per call by
:meth:`Tree.named_modules`: dotted names (``"stage1.0.conv1.W"``), the mode ``model(x)`` uses
(``train()``/``eval()``, PyTorch's names), moving to a device, and state dicts; a node or an array found, and a
node replaced, by its dotted name (:mod:`~xpnet.layers.submodules`). A layer that appears under two names is
visited once, under the first.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Callable, Iterator, Mapping, NamedTuple

from .. import _chainer
from .._user import flag, not_here
from ..backend import (Device, device as _resolve_device, device_of, float_dtype_name, host_copy, isdtype,
                       namespace, to_device, writable)
from . import left_out
from .named_pairs import NamedDict
from .zero_grad import READ, noted
from .grads import Grads
from .hidden_layers import warn_unlisted
from .parameter_flags import refuse_flag_loop
from .parameter_index import refuse_pytorch_index
from .pytorch_attributes import layer_hint
from .submodules import _STORES, Submodules
from .stale import loaded

__all__ = ["Tree", "Parameters", "IncompatibleKeys", "not_built", "moved", "frozen_nodes", "HOOKS"]

# The last part of a PyTorch state dict's key where xpnet's differs ("W", "gamma", "Wx", "b"...).
_PYTORCH_KEY = re.compile(r"(^|\.)(weight|bias|(weight|bias)_(ih|hh)_l\d+(_reverse)?)$")
HOOKS = ("xpnet has no hooks: model.summary(input_shape=(3, 32, 32)) lists each layer's output shape (the "
         "reasoning-about-shapes recipe's forward hook); for other work, call the layers one by one in a forward of "
         "your own")
_TO = "layer.to(device) moves a layer, model.to(device) a model: .to('cuda'), .to('cpu')"
# What a PyTorch user calls on a layer, and what xpnet has instead (a container's are in layers.container).
_LEAF_HINTS = {**_chainer.LAYER, "cuda": _TO, "cpu": _TO,
               **dict.fromkeys(("register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
                                "register_backward_hook"), HOOKS)}
_PYTORCH_HINT = ("\nthese look like a PyTorch state dict's names ('weight', 'bias', 'weight_ih_l0'...): "
                 "xn.load_torch_state_dict(model, d{}) converts its names and layouts")


def not_built(node: Any) -> str:
    """What to say about a layer or model whose ``__init__`` did not call ``super().__init__()``."""
    cls = type(node).__name__
    return f"{cls}.__init__ must call super().__init__() before anything else (without it a {cls} has no params)"


def stored_attribute(node: Any, name: str) -> AttributeError | None:
    """What to raise where ``node.name`` is missing but ``name`` is a key of its params or buffers (PyTorch's
    ``self.a`` for an ``nn.Parameter``, read back as an attribute); else None."""
    for store in ("params", "buffers"):
        if name in (vars(node).get(store) or {}):
            return AttributeError(f"{type(node).__name__!r} object has no attribute {name!r}: {name!r} is in its "
                                  f"{store}: read it as self.{store}[{name!r}] (xpnet keeps a layer's arrays in "
                                  "self.params and self.buffers; PyTorch's nn.Parameter makes an attribute)",
                                  name=name, obj=node)
    return None


def loose_arrays(model: Any) -> str:
    """What to say when ``model`` has no parameters but classes of the user's inside hold floating arrays as
    attributes (PyTorch's ``self.weight = nn.Parameter(...)``, which an optimizer would silently leave alone);
    else ``""``. xpnet's own layers, which keep what backward needs as attributes, are not looked at."""
    if model.named_params():
        return ""
    loose = [f"{prefix}.{attr}".lstrip(".") for prefix, node in model.named_modules().items()
             if type(node).__module__.split(".")[0] != "xpnet"
             for attr, value in vars(node).items()
             if hasattr(value, "shape") and hasattr(value, "dtype") and _floating(value)]
    if not loose:
        return ""
    what = "is an array attribute" if len(loose) == 1 else "are array attributes"
    return (f"{model.name} has no parameters to train: {', '.join(loose)} {what}, which an optimizer does not see "
            f"(PyTorch's nn.Parameter); put each in self.params (self.params['{loose[0].rpartition('.')[2]}'] = ...) "
            "and its gradient in self.grads in backward")


def _orphan_gradients(model: Any, orphans: list[str]) -> str:
    """What to say where ``model``'s grads hold ``orphans``, dotted names of no parameter."""
    prefix, _, key = orphans[0].rpartition(".")
    node = model.named_modules().get(prefix)
    owner = type(node).__name__ if node is not None else model.name
    held = f" ({owner}.{key} is an array attribute, which an optimizer does not see)" \
        if node is not None and hasattr(vars(node).get(key), "shape") else ""
    return (f"{model.name}: the gradient{'s' if len(orphans) > 1 else ''} {', '.join(map(repr, orphans))} "
            f"{'were' if len(orphans) > 1 else 'was'} filled but there is no parameter of that name{held}, so nothing "
            f"would train it; put the array in self.params['{key}'] in __init__ (PyTorch's nn.Parameter) and read it "
            f"there in forward, its gradient in self.grads['{key}'] in backward")


def frozen_nodes(model: Any) -> list[str]:
    """The dotted names of the nodes of ``model`` that ``requires_grad_(False)`` froze ("" for the model
    itself): what files record, and what ranks compare."""
    return [name for name, node in model.named_modules().items() if node._frozen]


def _floating(a: Any) -> bool:
    try:
        return isdtype(namespace(a), a.dtype, "real floating")
    except TypeError:  # an array of a library xpnet does not know
        return False


class Parameters(list):
    """``model.parameters()``: the parameter arrays in ``named_params()`` order, and ``.model``, the
    model they belong to (an optimizer given this binds to that model). On JAX, whose arrays are
    immutable, an update makes new arrays: ask the model again rather than keep the list."""

    def __init__(self, arrays: list[Any], model: Any):
        super().__init__(arrays)
        self.model = model
        self._next = 0

    def __iter__(self) -> Iterator[Any]:
        """The arrays; PyTorch's ``for p in model.parameters(): p.requires_grad = False`` refused, as they carry no
        flag (:mod:`.parameter_flags`)."""
        refuse_flag_loop()
        return super().__iter__()

    def __next__(self) -> Any:
        """``next(model.parameters())``, PyTorch's way to reach the first parameter (for its dtype or device):
        the arrays one by one, as PyTorch's generator gives them; indexed on the spot where PyTorch's layout is the
        transpose of xpnet's, refused (:mod:`.parameter_index`)."""
        if self._next >= len(self):
            raise StopIteration
        self._next += 1
        refuse_pytorch_index(self.model, self._next - 1)  # next(model.parameters())[:, ix] on a transposed weight
        return self[self._next - 1]


def _refuse_dtype_as_device(who: str, dev: Any, error: type[Exception]) -> None:
    """Raise ``error`` (the device parser's) where ``dev``, refused as a device, is a dtype (PyTorch's
    ``model.to(torch.float64)`` takes one first): xpnet's ``to`` takes the device first and the dtype by keyword."""
    try:
        name = float_dtype_name(dev, who)
    except (ValueError, TypeError):
        return
    raise error(f"{who}: the first argument is the device, got the dtype {dev!r}; pass it by keyword: "
                f"model.to(dtype={name!r}) (PyTorch's model.to(torch.{name}))") from None


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(d, strict=False)`` left out (PyTorch's names)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def moved(a: Any, dev: Device, dtype: Any, memo: dict[int, tuple[Any, Any]] | None = None) -> Any:
    """``a`` on ``dev`` as ``model.to`` moves it: a copy of its own where it changes device or library.
    ``memo`` (by ``id``, holding the original too so that no id is reused meanwhile) makes an array held in
    several places one array again after the move."""
    if memo is not None and id(a) in memo:
        return memo[id(a)][1]
    new = to_device(a, dev, dtype=dtype, copy=device_of(a) != dev)
    if memo is not None:
        memo[id(a)] = (a, new)
    return new


def _check_built(node: Any) -> None:
    own = vars(node)
    if not all(store in own for store in _STORES):
        raise TypeError(not_built(node))


def _visit(node: Any, prefix: str, found: dict[str, Any], seen: set[int]) -> None:
    """``named_modules``' walk below ``node`` (named ``prefix`` and a dot, or ``""`` for the root), each node
    once. A module function, not a closure: the walk runs several times a training step (2x as fast)."""
    own = node.__dict__
    if "params" not in own or "grads" not in own or "buffers" not in own:  # _STORES, spelt out: every step
        _check_built(node)
    for name, child in node.named_children().items():
        if id(child) not in seen:
            seen.add(id(child))
            found[prefix + name] = child
            leaf = child.__dict__
            if type(child).named_children is _NO_CHILDREN and "named_children" not in leaf:  # a leaf: no call
                if "params" not in leaf or "grads" not in leaf or "buffers" not in leaf:
                    _check_built(child)
                continue
            _visit(child, prefix + name + ".", found, seen)


# What an init function of PyTorch's applies to m.weight.data (NumPy's .data is a memoryview, CuPy's a pointer).
_TENSOR_METHODS = ("data", "normal_", "uniform_", "fill_", "zero_", "copy_", "mul_", "add_", "clamp_")
_TENSOR_METHODS_HINT = ("xpnet's m.weight and m.bias are the arrays themselves, without PyTorch's .data and in-place "
                        "methods: m.weight.data.normal_(0.0, 0.02) is xn.init.normal_(m.weight, 0.0, 0.02), "
                        ".uniform_(a, b) xn.init.uniform_(m.weight, a, b), m.bias.data.fill_(v) "
                        "xn.init.constant_(m.bias, v), .zero_() xn.init.zeros_(m.bias)")

# PyTorch's self.transitions.data[START, :] = -10000 (advanced_tutorial.py) on a NumPy array, and what to write.
_MEMORYVIEW_SLICE = ("memoryview: invalid slice key", "sub-views are not implemented")
_DATA_SLICE_HINT = ("xpnet's parameters are the arrays themselves, without PyTorch's .data (NumPy's .data is the "
                    "array's raw memory, a memoryview): write into the array itself, w[i, :] = v for PyTorch's "
                    "w.data[i, :] = v (BiLSTM_CRF's self.params['transitions'][START, :] = -10000)")


@contextlib.contextmanager
def tensor_method_hint() -> Iterator[None]:
    """An AttributeError for PyTorch's ``m.weight.data.normal_(...)`` on an array, raised inside, gets the line
    to write instead (``model.apply(init_fn)``, a model's ``__init__``: d2l's ``self.net.weight.data``); so does
    the memoryview's error for ``w.data[i, :] = v``."""
    try:
        yield
    except AttributeError as exc:
        if exc.name not in _TENSOR_METHODS or isinstance(exc.obj, Tree) or _TENSOR_METHODS_HINT in str(exc):
            raise
        raise AttributeError(f"{exc}: {_TENSOR_METHODS_HINT}", name=exc.name, obj=exc.obj) from exc
    except (TypeError, NotImplementedError) as exc:  # w.data[i, :] = v: NumPy's .data, a memoryview, refuses it
        if not str(exc).startswith(_MEMORYVIEW_SLICE):
            raise
        raise TypeError(f"{exc}: {_DATA_SLICE_HINT}") from exc


class Tree(Submodules):
    """The node protocol shared by every layer; ``params``, ``grads`` and ``buffers`` are the node's own. A node and
    an array by dotted name (``get_submodule``, ``set_submodule``, ``get_parameter``, ``get_buffer``) come from
    :class:`~xpnet.layers.submodules.Submodules`."""

    training: bool = True  # the mode model(x) uses; train()/eval() set it on every node of a tree
    _frozen: bool = False  # requires_grad_(False) on this node or one above: its own params are not trained

    params: dict[str, Any]
    grads: dict[str, Any]
    buffers: dict[str, Any]

    def named_children(self) -> dict[str, Any]:
        """The direct sub-layers by name (none for a leaf)."""
        return {}

    @property
    def takes_ids(self) -> bool:
        """Whether the model's (first) input is integer ids: its first layer is an Embedding (a
        composite asks its first child). ``predict``, ``summary`` and ``xn.train`` then keep integer
        inputs as they are instead of refusing them or casting them to floats. A model whose first
        input goes elsewhere sets ``takes_ids = True`` (or False) as a class attribute."""
        first = next(iter(self.named_children().values()), None)
        return bool(first is not None and first.takes_ids)

    def named_modules(self) -> dict[str, Any]:
        """Every node of the tree by dotted name, this one as ``""``, parents before children.

        Every walk of a model (``predict``, ``summary``, ``save``, ``to``, ``named_params``, training)
        comes here, so here a node whose ``__init__`` forgot ``super().__init__()`` is named: as a
        TypeError, since an AttributeError raised inside a property (``model.device``) would be replaced
        by Python with "no attribute 'device'"."""
        found: dict[str, Any] = NamedDict({"": self})  # a dict; PyTorch's pair loop over it refused
        _visit(self, "", found, {id(self)})
        return found

    def __getattr__(self, name: str) -> Any:
        # Only called when the attribute is missing: params, grads and buffers come from Layer.__init__.
        if name in _STORES:
            raise AttributeError(not_built(self), name=name, obj=self)
        stored = None if name in _chainer.LAYER else stored_attribute(self, name)  # Chainer's W: its own hint
        if stored is not None:
            raise stored
        if name in ("weight", "bias"):  # PyTorch's, where this layer has no such parameter
            keys = ", ".join(map(repr, vars(self).get("params", {}))) or "none"
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}: PyTorch's {name} is on "
                                 f"the layers PyTorch has it on (Linear, Conv2d, BatchNorm...); this one's params are "
                                 f"{keys} (layer.params[key]; a model's by dotted name: model.named_params())",
                                 name=name, obj=self)
        hint = layer_hint(self, name)  # PyTorch's fc.grad, lstm.weight_ih_l0
        error = not_here(type(self).__name__, name, _LEAF_HINTS if hint is None else {name: hint}, kind="object")
        error.name, error.obj = name, self  # Python's "Did you mean" reads them
        raise error

    def _named(self, *stores: str, trainable: bool = False) -> Any:
        """One dict by dotted name per store ("params", "grads", "buffers"), from one walk of the tree;
        a single store gives its dict; ``trainable``: leave out the frozen nodes. Called for every
        training step (the optimizer asks for params and grads together): plain loops."""
        named: list[dict[str, Any]] = [{} for _ in stores]
        for prefix, node in self.named_modules().items():
            if trainable and node._frozen:
                continue
            dot = prefix + "." if prefix else ""
            for store, out in zip(stores, named):
                arrays = getattr(node, store)
                if arrays:
                    for k, v in dict.items(arrays):  # (dict's own: a Grads' items() notes a user's read)
                        out[dot + k] = v
        return named[0] if len(stores) == 1 else tuple(named)

    def params_and_grads(self, trainable: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(named_params(), named_grads())`` from one walk of the tree; ``trainable=True``: those of the
        parameters that train only (what an optimizer's step needs). A gradient filled under a name that holds
        no parameter is refused: the array it was meant for is not trained (PyTorch's ``self.transitions =
        nn.Parameter(...)`` ported as a plain attribute, its gradient put in ``self.grads``)."""
        params, grads = self._named("params", "grads", trainable=trainable)
        orphans = [name for name in grads if name not in params]
        if orphans:
            raise ValueError(_orphan_gradients(self, orphans))
        return params, grads

    def apply(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(node)`` for every layer and model inside and for this one, children before their parents, as
        PyTorch's ``Module.apply`` (an initialisation of one's own: ``def init(m): if isinstance(m,
        xn.layers.Linear): m.params["W"] = ...``, arrays of the model's dtype on its device, or set before
        ``model.to(device)``); returns this one."""
        if not callable(fn):
            raise TypeError(f"{type(self).__name__}.apply: fn must be a function of a layer, got "
                            f"{type(fn).__name__}")
        for node in reversed(list(self.named_modules().values())):  # each node after all of its descendants
            with tensor_method_hint():
                fn(node)
        return self

    def named_params(self) -> dict[str, Any]:
        """Every parameter by dotted name (``"0.W"``, ``"stage1.0.conv1.W"``)."""
        return self._named("params")

    def trainable_params(self) -> dict[str, Any]:
        """The parameters that train, by dotted name: ``named_params()`` less those ``requires_grad_(False)``
        froze (PyTorch's ``[n for n, p in model.named_parameters() if p.requires_grad]``, as a dict)."""
        return self._named("params", trainable=True)

    def requires_grad_(self, requires_grad: bool = True) -> Any:
        """PyTorch's: ``False`` freezes every parameter of this layer and of the layers inside it (no
        optimizer changes them, gradient clipping and ``comm`` leave their gradients out, xpnet's layers but the
        recurrent ones skip their parameter gradients' products and sums in backward while still passing dx
        back), ``True`` lets them train again.
        Freezing empties their ``grads``: a frozen parameter has no gradient. Returns the layer."""
        requires_grad = flag(requires_grad, f"{type(self).__name__}.requires_grad_", "requires_grad")
        for node in self.named_modules().values():
            node._frozen = not requires_grad
            if not requires_grad:
                node.grads = Grads(node.params, type(node))
        return self

    @property
    def requires_grad(self) -> bool:
        """Whether any parameter of this layer (or of a layer inside) trains; a layer without parameters
        answers what ``requires_grad_`` last set. Setting it is ``requires_grad_(value)``, as Keras'
        ``trainable`` (the same property) and Chainer's ``update_enabled`` (read only there)."""
        nodes = self.named_modules().values()
        if not any(node.params for node in nodes):
            return not self._frozen
        return any(node.params and not node._frozen for node in nodes)

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    trainable = requires_grad  # Keras' layer.trainable = False

    @property
    def update_enabled(self) -> bool:
        """Chainer's name for :attr:`requires_grad` (read only, as there)."""
        return self.requires_grad

    def disable_update(self) -> None:
        """Chainer's ``link.disable_update()``: ``requires_grad_(False)``."""
        self.requires_grad_(False)

    def enable_update(self) -> None:
        """Chainer's ``link.enable_update()``: ``requires_grad_(True)``."""
        self.requires_grad_(True)

    def named_grads(self) -> dict[str, Any]:
        """The gradients the last backward filled, by the names of their parameters. Read while a layer's round of
        backward calls left a call out (``left_out.OPEN``), refused as an optimizer's step refuses it: a step
        written by hand reads them here."""
        if left_out.OPEN:
            left_out.refuse_read(self)
        own = self.__dict__  # seen: a step after another backward takes what the reader made of them
        own[READ] = noted(own.get(READ, (0, 0)))
        return self._named("grads")

    def named_buffers(self) -> dict[str, Any]:
        """State saved and moved with the model but not trained (BatchNorm's running statistics)."""
        return self._named("buffers")

    def state(self) -> dict[str, Any]:
        """Params and buffers by name, the arrays themselves on their device (what ``save`` writes)."""
        return {**self.named_params(), **self.named_buffers()}

    def parameters(self) -> Parameters:
        """The parameter arrays in ``named_params()`` order, carrying ``.model`` (PyTorch's name)."""
        loose = loose_arrays(self)
        if loose:
            raise TypeError(f"{type(self).__name__}.parameters(): {loose}")
        return Parameters(list(self.named_params().values()), self)

    def set_param(self, name: str, value: Any) -> None:
        """Replace one parameter or buffer by its dotted name (``"0.W"``) with an array of the same
        shape. A read-only NumPy array (a memmap opened with "r", ``np.broadcast_to``) is copied:
        optimizers update parameters in place."""
        prefix, _, key = name.rpartition(".") if isinstance(name, str) else ("", "", "")
        node = self.named_modules().get(prefix)
        store = None if node is None else node.params if key in node.params else node.buffers
        who = f"{type(self).__name__}.set_param"
        if store is None or key not in store:
            raise KeyError(f"{who}: the model has no parameter or buffer {name!r}; it has "
                           f"{', '.join(self.state()) or 'none'}")
        if not hasattr(value, "shape") or tuple(value.shape) != tuple(store[key].shape):
            got = f"shape {tuple(value.shape)}" if hasattr(value, "shape") else f"a {type(value).__name__}"
            raise ValueError(f"{who}: {name!r} needs an array of shape {tuple(store[key].shape)}, got {got}")
        store[key] = writable(value)

    @property
    def device(self) -> Device | None:
        """The device holding the parameters and buffers (None when there are none)."""
        for v in self.state().values():
            return device_of(v)
        return None

    def to(self, dev: Any = None, dtype: Any = None, *, device: Any = None) -> Any:
        """Move every parameter and buffer to ``dev`` (a spec or Device; None: where they are), casting
        floats to ``dtype`` when given (e.g. ``"float64"``); gradients are dropped. Returns the layer.
        ``device=`` is ``dev`` by PyTorch's keyword (the Mario tutorial's ``self.net.to(device="cuda")``).

        An array that changes device or library is copied (``xn.to_device(..., copy=True)``): the model's
        new arrays never share memory with the old ones, which the caller may still hold (a JAX array, a
        NumPy array that PyTorch would otherwise wrap), since optimizers update parameters in place.
        Arrays already on ``dev`` stay as they are.

        An array held in several places stays one array: a weight tied by identity (two layers' params
        holding the same array, PyTorch's ``dec.weight = enc.weight``) and an attribute that is a
        parameter or buffer itself (the book's ``self.W = W`` beside ``params["W"]``) are moved once and
        hold the moved array, so training and ``xn.gradcheck`` still see one weight."""
        if device is not None:
            if dev is not None:
                raise TypeError(f"{type(self).__name__}.to: got a device twice, {dev!r} and device={device!r}; "
                                "give one")
            dev = device
        if dtype is not None:
            dtype = float_dtype_name(dtype, f"{type(self).__name__}.to")
        here = self.device
        try:
            dev = (here if here is not None else _resolve_device("cpu")) if dev is None else _resolve_device(dev)
        except (ValueError, TypeError) as exc:
            _refuse_dtype_as_device(f"{type(self).__name__}.to", dev, type(exc))
            raise
        memo: dict[int, tuple[Any, Any]] = {}
        nodes = self.named_modules().values()
        for node in nodes:
            node._move_own(dev, dtype, memo)
        for node in nodes:
            own = vars(node)
            for k, v in own.items():
                if k not in _STORES and id(v) in memo and memo[id(v)][0] is v:
                    own[k] = memo[id(v)][1]
        warn_unlisted(self, f"{type(self).__name__}.to", "were not moved or cast")
        return self

    def _move_own(self, dev: Any, dtype: Any, memo: dict[int, tuple[Any, Any]] | None = None) -> None:
        """Move this node's own parameters and buffers (not its children's) and drop its gradients; a
        layer holding other arrays (a recurrent layer's carried state) moves them too. ``memo``: see
        :func:`moved`."""
        for store in (self.params, self.buffers):
            for k, v in store.items():
                store[k] = moved(v, dev, dtype, memo)
        self.grads = Grads(self.params, type(self))

    def train(self, mode: bool = True) -> Any:
        """Set the mode of every node: ``model(x)`` then runs in training mode (``mode=True``) or in
        evaluation mode (Dropout off, BatchNorm's running statistics). Returns the model."""
        try:
            mode = flag(mode, f"{type(self).__name__}.train", "mode")
        except TypeError as exc:
            raise TypeError(f"{exc} (xn.train(model, ...) trains a model)") from None
        for node in self.named_modules().values():
            node.training = mode
        return self

    def eval(self) -> Any:
        """``train(False)``: ``model(x)`` is inference from now on. Returns the model."""
        return self.train(False)

    def state_dict(self) -> dict[str, Any]:
        """Every parameter and buffer by dotted name, as host (NumPy) copies (PyTorch's name). Warns where a layer of
        one's own that is not a container holds a layer with parameters, which are then not in it."""
        warn_unlisted(self, f"{type(self).__name__}.state_dict", "are not in the state dict")
        return {k: host_copy(v) for k, v in self.state().items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, *,
                        assign: bool = False) -> IncompatibleKeys:
        """Put the arrays of ``state_dict`` (host or device arrays, by dotted name) into the model, each
        cast to its parameter's dtype and moved to its device: PyTorch's ``assign=False``, its default. Its
        ``assign=True`` (the model taking the dict's own arrays, their dtype and device) is refused.

        Checks everything before changing anything: a ValueError names every misshapen key and, with
        ``strict=True`` (the default), every missing and unexpected one (and a line pointing to
        ``xn.load_torch_state_dict`` where unexpected keys look like PyTorch's). Returns the missing and
        unexpected keys (empty when strict).
        """
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            path = isinstance(state_dict, (str, bytes, os.PathLike))
            raise TypeError(f"{who}: expected a dict of arrays by name (from model.state_dict()), got "
                            f"{type(state_dict).__name__}" + (
                                "; xn.load(path) rebuilds the whole model, ready to use: model = xn.load(path) (for "
                                "its weights alone, model.load_state_dict(xn.load(path).state_dict()))"
                                if isinstance(state_dict, Tree) or path else ""))
        strict = flag(strict, who, "strict")  # strict="no" was taken as True
        if flag(assign, who, "assign"):
            raise ValueError(f"{who}: assign=True (PyTorch's: the model takes the dict's own tensors, their dtype "
                             "and device) is not supported: xpnet copies each array into the model's dtype and "
                             "device, as PyTorch's assign=False; leave it out, building the model in the dtype "
                             "and on the device wanted (model.to(device, dtype=...)) before load_state_dict(d); "
                             "xpnet has no meta device to build it on")
        own = self.state()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        torch_like = [k for k in unexpected if isinstance(k, str) and _PYTORCH_KEY.search(k)]
        if not strict:  # PyTorch's names for layers of this model: left out silently, where PyTorch's load fills them
            layers = {k.rpartition(".")[0] for k in torch_like} & {k.rpartition(".")[0] for k in missing}
            torch_like = [k for k in torch_like if k.rpartition(".")[0] in layers]
            if torch_like:
                problems.append(f"strict=False would leave out {torch_like} and leave "
                                f"{[k for k in missing if k.rpartition('.')[0] in layers]} as they are")
        for k, v in state_dict.items():
            if k not in own:
                continue
            if not hasattr(v, "shape") or not hasattr(v, "dtype"):
                problems.append(f"{k!r} is a {type(v).__name__}, not an array")
            elif tuple(int(d) for d in v.shape) != tuple(own[k].shape):
                problems.append(f"{k!r} has shape {tuple(int(d) for d in v.shape)} in the dict but "
                                f"{tuple(own[k].shape)} in the model")
        if problems:
            inner = [k for k, v in state_dict.items() if missing and isinstance(v, Mapping) and set(own) <= set(v)]
            raise ValueError(f"{who}: " + "; ".join(problems) + (
                _PYTORCH_HINT.format("" if strict else ", strict=False") if torch_like else "") + (
                f"\nits entry {inner[0]!r} holds this model's arrays (a checkpoint dict?): "
                f"model.load_state_dict(d[{inner[0]!r}])" if inner else ""))
        for k, v in state_dict.items():
            if k in own:
                value = to_device(v, device_of(own[k]), dtype=own[k].dtype)
                # Never memory shared with the caller's dict (a NumPy array moved to array-api-strict or
                # PyTorch can be a view of it): training updates parameters in place.
                self.set_param(k, namespace(value).asarray(value, copy=True))
        loaded(self)  # a backward of a forward from before it is refused (layers.stale)
        return IncompatibleKeys(missing, unexpected)


_NO_CHILDREN = Tree.named_children  # a leaf's: _visit need not call it
