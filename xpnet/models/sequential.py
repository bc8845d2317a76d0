"""``Sequential``: layers applied in order, the seeds' TwoLayerNet and deeper nets."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .._user import a_or_an, is_int
from ..layers.base import Layer
from ..layers.container import STATE_HINT
from ..layers.dy_dtype import OUTPUT_DTYPE, message
from ..layers.submodules import Place
from ..layers.uses import chained
from .chain import StopsWhereNothingTrains, backward_chain
from .model import Model

__all__ = ["Sequential"]


class Sequential(StopsWhereNothingTrains, Model):
    """Layers (or models) applied in order. ``named_params()`` keys are ``"<index>.<param>"``, e.g. ``"0.W"``,
    and ``"<index>.<name>.<param>"`` inside a model it holds.

    ``Sequential(OrderedDict([('fc1', Linear(4, 8)), ('act', ReLU())]))`` names its layers by the keys, as
    PyTorch's: ``model.fc1``, ``"fc1.W"``, ``named_children()``; ``model[0]`` still indexes. The keys follow
    PyTorch's ``add_module``: strings, not empty, without ``"."``, none an attribute of the model (``forward``,
    ``layers``). As PyTorch's, ``append`` names the new layer by its position (``"2"``), ``del model[i]`` and
    ``pop`` name every layer by position again, a slice keeps the names, and ``insert`` is refused (PyTorch's
    fails there on a KeyError)."""

    _name_hints = {name: f"xn.Sequential names its layers by position ('0', '1', ...): model.append(layer) adds one "
                         f"at the end ({what}); for named layers, xn.Sequential(OrderedDict([('b2', block), ...])) "
                         f"as PyTorch's, or an xn.Model whose __init__ assigns them as attributes, self.b2 = ..."
                   for name, what in (("add_module", "PyTorch's net.add_module('b2', block) names it 'b2'"),
                                      ("add", "Gluon's and Keras' net.add"))}
    _attribute_children = False  # its layers are self.layers, by position (or by the names it was built with)

    def __init__(self, *layers: Layer):
        super().__init__()
        self.__dict__["_names"] = None  # the layers' names where built from an OrderedDict, else by position
        names = None
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            names, layers = list(layers[0]), tuple(layers[0].values())
        elif len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            _check_item("Sequential", i, layer)
        self.layers: list[Layer] = list(layers)
        if names is not None:
            for name in names:
                _check_name(self, name)
            self.__dict__["_names"] = names

    def _child_names(self) -> list[str] | None:
        """The layers' names where it was built from an OrderedDict (by position past them, where
        ``model.layers`` was added to directly), else None."""
        names = self.__dict__.get("_names")
        if names is None:
            return None
        return (names + [str(i) for i in range(len(names), len(self.layers))])[:len(self.layers)]

    def _index_of(self, name: str) -> int | None:
        names = self._child_names()
        return names.index(name) if names is not None and name in names else None

    def __getattr__(self, name: str) -> Any:
        i = self._index_of(name)
        if i is not None:  # model.fc1, PyTorch's named layer
            return self.layers[i]
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        i = self._index_of(name) if self.__dict__.get("_names") else None
        if i is not None:  # model.fc1 = Linear(...): PyTorch's replacement of a named layer, in its place
            self[i] = value
            return
        super().__setattr__(name, value)

    def append(self, layer: Layer) -> Sequential:
        """Add ``layer`` at the end and return the model, as PyTorch's ``Sequential.append``."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.append: expected an xpnet layer, got {_what(layer)}{_instead(layer)}")
        _check_item("Sequential.append", len(self.layers), layer)
        names = self._child_names()
        if names is not None:  # PyTorch's add_module(str(len(self)), module)
            name = str(len(self.layers))
            if name in names:
                raise _NameRefused(f"Sequential.append: the new layer is named by its position, {name!r}, which "
                                   f"names layer {names.index(name)} already (PyTorch's append would replace that "
                                   f"one): build the Sequential again from an OrderedDict of the names you want")
            self.__dict__["_names"] = names + [name]
        self.layers.append(layer)
        return self

    def extend(self, layers: Any) -> Sequential:
        """Add each of ``layers`` at the end and return the model, as PyTorch's ``Sequential.extend``."""
        layers = list(layers)
        for i, layer in enumerate(layers):
            _check_item("Sequential.extend", i, layer)
        if self._child_names() is not None:  # PyTorch's: append each, named by position
            for layer in layers:
                self.append(layer)
            return self
        self.layers.extend(layers)
        return self

    def insert(self, index: int, layer: Layer) -> Sequential:
        """Put ``layer`` before position ``index`` (negative from the end; ``len(model)`` appends) and return the
        model, as PyTorch's ``Sequential.insert``."""
        n = len(self.layers)
        if self._child_names() is not None:
            raise TypeError(f"Sequential.insert: this Sequential names its layers ({', '.join(self._child_names())}), "
                            f"and PyTorch's insert moves layers by the names '0', '1', ... (a KeyError there): "
                            f"build it again from an OrderedDict with the new layer in its place")
        if not is_int(index) or not -n <= index <= n:
            raise IndexError(f"Sequential.insert: index must be an int in -{n}..{n}, got {index!r}")
        _check_item("Sequential.insert", int(index) if index >= 0 else int(index) + n, layer)
        self.layers.insert(int(index), layer)
        return self

    def pop(self, i: Any) -> Any:
        """Remove the layer at ``i`` (an int, or a slice: a Sequential of them) and return it, as PyTorch's."""
        taken = self[i]
        del self[i]
        return taken

    def __setitem__(self, i: Any, layer: Layer) -> None:
        """``model[i] = layer`` replaces the layer at index ``i`` (PyTorch's ``model.classifier[6] = Linear(...)``
        when fine-tuning); the new layer trains, whatever the old one's ``requires_grad``."""
        self[i]  # the index checks and their messages
        if isinstance(i, slice):
            raise TypeError("Sequential: a layer is replaced by an int index (model[i] = layer), got a slice")
        _check_item("Sequential", int(i) % len(self.layers), layer)
        Place(self, "layers", int(i) % len(self.layers)).put(layer)

    def _set_child(self, name: str, layer: Layer) -> None:
        i = self._index_of(name)  # set_submodule("2", layer): model[2] = layer, its checks and messages
        self[int(name) if i is None else i] = layer

    def __delitem__(self, i: Any) -> None:
        """``del model[i]`` (an int or a slice) removes those layers, as PyTorch's; the layers left are named by
        position, as PyTorch's renumbers them (named ones too)."""
        if not isinstance(i, slice):
            self[i]
            i = int(i)
        del self.layers[i]
        self.__dict__["_names"] = None

    def named_children(self) -> dict[str, Layer]:
        layers = self.layers
        names = self._child_names()
        if names is not None:
            return dict(zip(names, layers))
        if len(layers) <= len(_INDEX_NAMES):  # the names made once: every training step's walk asks
            return dict(zip(_INDEX_NAMES, layers))
        return {str(i): layer for i, layer in enumerate(layers)}

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: Any) -> Any:
        """The layer at index ``i``; a slice gives a Sequential of those layers (the same objects), as
        PyTorch's."""
        if isinstance(i, slice):
            names = self._child_names()
            if names is not None:  # PyTorch's keeps the names
                return Sequential(OrderedDict(zip(names[i], self.layers[i])))
            return Sequential(*self.layers[i])
        if not is_int(i):
            raise TypeError(f"Sequential: layers are indexed by an int or a slice, got a {type(i).__name__}")
        if not -len(self.layers) <= i < len(self.layers):
            raise IndexError(f"Sequential: index {i} is out of range for its {len(self.layers)} layers "
                             f"(0..{len(self.layers) - 1}, or negative from the end)")
        return self.layers[int(i)]

    def __iter__(self):
        return iter(self.layers)

    def config(self) -> dict[str, Any]:
        if type(self).__init__ is not Sequential.__init__:  # a subclass with arguments of its own
            return super().config()
        names = self._child_names()
        return {"layers": list(self.layers), **({"names": names} if names is not None else {})}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """The Sequential ``config()`` described: its layers, named where it keeps their ``names``."""
        config = dict(config)
        names, layers = config.pop("names", None), config.pop("layers", [])
        if config or (names is not None and len(names) != len(layers)):
            raise TypeError(f"Sequential takes its layers and their names, got {sorted(config)} and "
                            f"{len(layers)} layers for {len(names or [])} names")
        return cls(OrderedDict(zip(names, layers))) if names is not None else cls(*layers)

    def forward(self, x: Any, train: bool = True) -> Any:
        """Each layer's forward in turn: x (N, ...) -> the last layer's output.

        ``train=True`` (the default) is training mode: Dropout drops units, BatchNorm normalises with the
        batch's statistics and updates its running ones, and each layer keeps what ``backward`` needs.
        To evaluate, call ``model.predict(x)`` (evaluation mode, on the model's device, in batches with
        ``batch_size=``) or ``model.forward(x, train=False)``. ``model(x)`` runs in the model's mode:
        training mode until ``model.eval()`` (PyTorch's rule), so ``model(x_test)`` on a new model lets
        BatchNorm's running statistics take in the test data. Caches the output's dtype, which ``backward``'s dy
        must have.
        """
        if train is not True and train is not False:  # _check_train's own first test, without its call
            train = self._check_train(train, hint=STATE_HINT)
        y = chained(self, self.layers, x, train)
        try:  # dy_dtype.noted, inline: no call on a training step's path (an attribute read, not getattr())
            self.__dict__[OUTPUT_DTYPE] = y.dtype
        except AttributeError:  # a layer of one's own returning no array: nothing to check dy against
            self.__dict__[OUTPUT_DTYPE] = None
        return y

    def backward(self, dy: Any, input_grad: bool = True) -> Any:
        """Backpropagate ``dy`` through every layer, filling each layer's ``grads``; returns dx.
        ``input_grad=False`` skips the gradient for the input (returns None): training needs none, nor
        any gradient below the first layer whose parameters train (a frozen backbone is not backpropagated
        through at all). A dy of another dtype than the last forward's output (float64 into a float32 model) is
        refused here, before it makes gradients of that dtype that the optimizer would refuse at its step."""
        try:  # dy_dtype.refuse_other_dtype, inline as the forward's note
            expected, got = self.__dict__[OUTPUT_DTYPE], dy.dtype
        except (KeyError, AttributeError):  # no forward yet, or dy no array: the layers say so
            expected = got = None
        if got is not expected and expected is not None and got != expected:
            raise TypeError(message(self, got, expected, f", from {_last_layer(self)},"))
        return backward_chain(self.layers, dy, input_grad)


def _last_layer(model: Sequential) -> str:
    """Where ``model``'s output comes from, for a message: "layer 2 (Linear)"."""
    return f"layer {len(model.layers) - 1} ({model.layers[-1].name})" if model.layers else "its input (no layers)"


_INDEX_NAMES = tuple(str(i) for i in range(256))  # a Sequential's children's names, "0", "1", ...


def _check_item(where: str, i: int, layer: Any) -> None:
    """Raise unless ``layer`` (item ``i``) is an xpnet layer of one input and one output."""
    if not isinstance(layer, Layer):
        raise TypeError(f"{where}: item {i} is {_what(layer)}, not an xpnet layer{_instead(layer)}")
    refusal = layer.sequential_refusal()
    if refusal:
        shown = repr(layer) if "\n" not in repr(layer) else layer.name  # a container's repr takes many lines
        raise ValueError(f"{where}: item {i}, {shown}, {refusal}")


class _NameRefused(KeyError):
    """PyTorch's KeyError for a layer's name, read as a sentence (a KeyError's own str() is the repr)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _check_name(model: Sequential, name: Any) -> None:
    """Refuse a key of ``Sequential(OrderedDict(...))`` that PyTorch's ``add_module`` refuses, with its error
    types: no string (TypeError), empty, holding ``"."`` or naming an attribute of the model (KeyError)."""
    if not isinstance(name, str):
        raise TypeError(f"Sequential: a layer's name must be a str (PyTorch's rule), got {_what(name)} {name!r}")
    if name == "" or "." in name:
        raise _NameRefused(f"Sequential: a layer's name can't be empty or contain '.' (dotted names go through "
                           f"it: 'fc1.W'), got {name!r}")
    if name in vars(model) or hasattr(type(model), name):
        raise _NameRefused(f"Sequential: a layer's name can't be {name!r}, an attribute of the Sequential (as "
                           f"PyTorch's \"attribute {name!r} already exists\"): name it otherwise")


def _what(item: Any) -> str:
    """``item`` for a message: "a dict", "an int", or the class with its module where it is another library's
    ("torch.nn.modules.linear.Linear": a bare "Linear" reads as xpnet's), a class given itself too ("the class
    torch.nn.modules.activation.ReLU"; an xpnet layer's class by its name)."""
    kind = item if isinstance(item, type) else type(item)
    bare = kind.__module__ in ("builtins", "collections") or isinstance(item, type) and issubclass(item, Layer)
    name = kind.__name__ if bare else f"{kind.__module__}.{kind.__qualname__}"
    return f"the class {name}" if isinstance(item, type) else a_or_an(name) if bare else name


def _instead(item: Any) -> str:
    """What to write for ``item`` where a PyTorch user gave it: ``nn.Sequential(OrderedDict([...]))``'s named
    layers, a torch.nn module (or its class), a layer class not called."""
    if isinstance(item, Mapping):
        return ("; named layers come in an OrderedDict, as PyTorch's nn.Sequential takes them (a dict is refused "
                "there too): xn.Sequential(OrderedDict(layers)), or xn.Sequential(*layers.values()) to name them "
                "by position")
    if isinstance(item, type) and issubclass(item, Layer):
        return f": call it, {item.__name__}(...)"
    kind = item if isinstance(item, type) else type(item)  # a module, or its class not called
    if kind.__module__.split(".")[0] == "torch":
        from .. import layers
        name = kind.__name__
        twin = f" (xn.layers.{name})" if isinstance(getattr(layers, name, None), type) else ""
        return f": a PyTorch module; build the model from xpnet's layers{twin}"
    return ""
