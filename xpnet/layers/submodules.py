"""A model's nodes and arrays by dotted name (PyTorch's ``get_submodule``, ``set_submodule``, ``get_parameter``,
``get_buffer``), and the one walk of the places where a node holds a layer.

How a layer is held. A node holds a child in an attribute (``self.conv``, named ``"conv"``), as an entry of a list,
tuple or dict in an attribute (``self.blocks[0]``, ``"blocks.0"``; ``self.heads["age"]``, ``"heads.age"``), or, in
a Sequential, as an entry of its ``layers`` list named by position (``"2"``). A :class:`Place` is one such spot and
:func:`places` lists a node's. Replacing a layer is putting another at a place: at the one a name leads to
(``set_submodule``, ``model[i] = layer``: a layer held at two places stays at the other, as PyTorch's), or at every
place holding it (:func:`replace_everywhere`, by identity: ``xn.freeze_batch_norm``'s "a layer held twice stays one
layer"). Nothing of the old layer passes to the new one, but for an optimizer built before, which knows the
parameters by name: a replacement of the same shapes goes on from the old layer's state (momentum, moments).
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, Iterator, NamedTuple

from .._user import flag
from .pytorch_params import PyTorchParam

__all__ = ["Submodules", "Place", "places", "place_of", "replace_everywhere"]

_STORES = ("params", "grads", "buffers")  # a node's own arrays by name (never layers)
_KIND = {"params": "parameter", "buffers": "buffer"}
_GETTER = {"params": "get_parameter", "buffers": "get_buffer"}
_MISSING = object()


class Place(NamedTuple):
    """Where ``holder`` keeps an object: its attribute ``attr`` (``key`` None), or the entry ``key`` of the list,
    tuple or dict that attribute is."""

    holder: Any
    attr: str
    key: Any = None

    def put(self, new: Any) -> None:
        """Put ``new`` there; a tuple, which cannot change, is replaced by one holding ``new``."""
        own = vars(self.holder)
        if self.key is None:
            own[self.attr] = new
        elif isinstance(own[self.attr], tuple):
            old = own[self.attr]
            own[self.attr] = old[:self.key] + (new,) + old[self.key + 1:]
        else:
            own[self.attr][self.key] = new

    def names(self) -> tuple[str, ...]:
        """The child names of what is here: a container's (``"conv"``, ``"blocks.0"``), a Sequential's (``"0"``)."""
        return (self.attr,) if self.key is None else (f"{self.attr}.{self.key}", str(self.key))


def places(node: Any) -> Iterator[tuple[Place, Any]]:
    """Every place of ``node``'s attributes, and of the lists, tuples and dicts in them, with what it holds."""
    for attr, value in list(vars(node).items()):
        if attr in _STORES:
            continue
        if isinstance(value, (list, tuple)):
            yield from ((Place(node, attr, i), v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            yield from ((Place(node, attr, k), v) for k, v in list(value.items()))
        else:
            yield Place(node, attr), value


def place_of(parent: Any, name: str) -> Place:
    """The place where ``parent`` holds its child ``name`` (as ``named_children()`` names it)."""
    child = parent.named_children()[name]
    found = [place for place, value in places(parent) if value is child]
    named = [place for place in found if name in place.names()]
    if len(named or found) != 1:
        raise TypeError(f"{type(parent).__name__}.named_children() names a layer {name!r} that "
                        f"{'no attribute' if not found else 'several attributes'} of it hold: replace it in "
                        f"{type(parent).__name__} itself")
    return (named or found)[0]


def replace_everywhere(nodes: Iterable[Any], new: dict[int, Any]) -> None:
    """Put ``new[id(layer)]`` at every place of ``nodes`` holding a layer whose ``id`` is a key of ``new``."""
    for node in nodes:
        for place, value in list(places(node)):
            if id(value) in new:
                place.put(new[id(value)])


class Submodules:
    """PyTorch's look-ups by dotted name, on every layer and model (:class:`~xpnet.layers.tree.Tree` derives from
    this: ``isinstance(x, Submodules)`` is "an xpnet layer or model")."""

    _attribute_children = False  # a layer assigned as an attribute becomes a child (Container): set_submodule adds

    def get_submodule(self, target: str) -> Any:
        """The layer or model at the dotted name ``target`` (PyTorch's), as ``named_modules()`` spells it:
        ``"layer1.0.conv1"``, ``"blocks.0"`` for an entry of a list attribute, ``"heads.age"`` of a dict's, ``"2"``
        for a Sequential's layer; ``""`` is this one. A layer held at two places answers to both names.
        A list or dict of layers is no node (xpnet has no ModuleList or ModuleDict): ``"blocks"`` is refused.
        AttributeError where a part is missing, as PyTorch's (``"Sequential has no attribute `5`"``), naming the
        layers held there, or where a part is no layer (``"`lr` is not an xpnet layer"``)."""
        _check_target(self, target, "get_submodule")
        if target == "":
            return self
        atoms = target.split(".")
        steps, used = _walk(self, atoms)
        if used < len(atoms):
            raise _missing(self, target, steps, atoms, used)
        return steps[-1][1]

    def set_submodule(self, target: str, module: Any, strict: bool = False) -> None:
        """Put the layer or model ``module`` at the dotted name ``target`` (PyTorch's), where the node above holds
        it: an attribute, an entry of a list, tuple or dict, a Sequential's position (checked as ``model[i] =
        layer`` checks it). The old layer leaves only that place (held elsewhere too, it stays there, as PyTorch's)
        and nothing of it passes on: ``module`` keeps its own arrays, mode and ``requires_grad`` (a new layer
        trains), and ``named_params()``, ``state_dict()`` and optimizers see it from then on. An optimizer built
        before knows the parameters by name: it starts them afresh where their shapes differ from the old ones',
        and goes on from the old layer's state (momentum, Adam's moments) where they are the same; build a new
        optimizer to start afresh (PyTorch's old optimizer would not even see the new layer).
        ``strict=False`` (the default) may also add a layer: a new attribute of a model of one's own (``"extra"``,
        ``"block.extra"``), a new entry of its dict of layers (``"heads.new"``); ``strict=True`` only replaces,
        as PyTorch's. An attribute that is no layer (``lr``) is never replaced. Errors as PyTorch's: ValueError
        for ``""`` or a ``module`` that is no xpnet layer, AttributeError for a missing part."""
        who = f"{type(self).__name__}.set_submodule"
        _check_target(self, target, "set_submodule")
        if target == "":
            raise ValueError(f"{who}: target is '' (this {type(self).__name__} itself), which nothing holds: name "
                             "the layer to replace ('layer1.0.conv1', '2')")
        if not isinstance(module, Submodules):
            raise ValueError(f"{who}: module must be an xpnet layer or model, got {_qualified(module)}")
        strict = flag(strict, who, "strict")
        atoms = target.split(".")
        steps, used = _walk(self, atoms)
        if used == len(atoms):
            parent = steps[-2][1] if len(steps) > 1 else self
            parent._set_child(steps[-1][0], module)
            return
        node, rest = steps[-1][1] if steps else self, atoms[used:]
        held = vars(node).get(rest[0])
        new_attribute = len(rest) == 1 and rest[0] and _static(node, rest[0]) is _MISSING
        new_entry = len(rest) == 2 and isinstance(held, dict) and all(isinstance(v, Submodules) for v in held.values())
        if strict or not node._attribute_children or not (new_attribute or new_entry):
            raise _missing(self, target, steps, atoms, used, adding=not strict)
        Place(node, *rest).put(module)

    def _set_child(self, name: str, layer: Any) -> None:
        """Put ``layer`` in place of the child ``name``; a Sequential checks it as ``model[i] = layer`` does."""
        place_of(self, name).put(layer)

    def get_parameter(self, target: str) -> Any:
        """The parameter at the dotted name ``target`` (PyTorch's): xpnet's names, as ``named_params()`` gives
        them (``"0.W"``, ``"layer1.0.bn1.gamma"``), the array itself; or PyTorch's names where the layer has
        PyTorch's ``weight`` and ``bias`` attributes (``"0.weight"``, ``"layer1.0.bn1.bias"``: Linear, the
        convolutions, the norms, Embedding...), what the attribute gives, in PyTorch's layout (a Linear's
        ``weight`` is the view ``W.T``). AttributeError as PyTorch's where the layer is missing
        (:meth:`get_submodule`), has no such attribute, or has it as no parameter (a buffer: :meth:`get_buffer`)."""
        return _array(self, target, "params")

    def get_buffer(self, target: str) -> Any:
        """The buffer at the dotted name ``target`` (PyTorch's), as ``named_buffers()`` names it
        (``"1.running_mean"``), the array itself. Errors as :meth:`get_parameter`'s."""
        return _array(self, target, "buffers")


def _check_target(node: Any, target: Any, method: str) -> None:
    if not isinstance(target, str):
        raise TypeError(f"{type(node).__name__}.{method}: target must be a dotted name, a str such as "
                        f"'layer1.0.conv1', got {_qualified(target)}")


def _qualified(value: Any) -> str:
    cls = type(value)
    return f"a {cls.__name__}" if cls.__module__ == "builtins" else f"a {cls.__module__}.{cls.__qualname__}"


def _walk(root: Any, atoms: list[str]) -> tuple[list[tuple[str, Any]], int]:
    """How far ``atoms`` lead from ``root`` by child names (one name may take several atoms: ``"blocks.0"``): the
    steps (child name, node) and the number of atoms they used."""
    steps: list[tuple[str, Any]] = []
    node, used = root, 0
    while used < len(atoms):
        children = node.named_children()
        name = next((n for n in (".".join(atoms[used:stop]) for stop in range(used + 1, len(atoms) + 1))
                     if n in children), None)
        if name is None:
            break
        node = children[name]
        steps.append((name, node))
        used += name.count(".") + 1
    return steps, used


def _static(node: Any, name: str) -> Any:
    """``node``'s attribute ``name`` without calling anything (no property, no ``__getattr__``), or _MISSING."""
    own = vars(node)
    return own[name] if name in own else inspect.getattr_static(type(node), name, _MISSING)


def _a(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def _missing(root: Any, target: str, steps: list[tuple[str, Any]], atoms: list[str], used: int,
             adding: bool = False) -> AttributeError:
    """The AttributeError for ``target`` where its part ``atoms[used]`` leads nowhere: PyTorch's words first."""
    node = steps[-1][1] if steps else root
    item, cls, at = atoms[used], type(node).__name__, ".".join(atoms[:used])
    prefix = at + "." if at else ""
    children = node.named_children()
    inside = [prefix + name for name in children if name.startswith(item + ".")]
    value = _static(node, item) if item else _MISSING
    if inside and used + 1 < len(atoms):
        message = f"`{item}` ({_a(value)} of layers) has no entry `{atoms[used + 1]}`: its layers are {_listed(inside)}"
    elif inside:
        message = (f"`{item}` is {_a(value)} of layers, not a layer (xpnet has no ModuleList or ModuleDict): its "
                   f"layers are {_listed(inside)}")
    elif value is not _MISSING:
        message = f"`{item}` is not an xpnet layer ({cls}.{item} is {_a(value)})"
    else:
        held = f"its layers are {_listed([prefix + name for name in children])}" if children else \
            "it holds no layers"
        message = f"{cls} has no attribute `{item}` ({f'{target!r} reached {at!r}, a {cls}: ' if at else ''}{held})"
        if adding and callable(getattr(node, "append", None)):
            message += "; a Sequential names its layers by position: model.append(layer) adds one at the end"
        elif adding and not node._attribute_children:
            message += f"; a new layer goes into a model of one's own (xn.Model), not into a {cls}"
    return AttributeError(message)


def _listed(names: list[str], most: int = 12) -> str:
    return ", ".join(map(repr, names[:most])) + (f" and {len(names) - most} more" if len(names) > most else "")


def _views(node: Any, store: str) -> dict[str, PyTorchParam]:
    """PyTorch's names of ``node``'s arrays in ``store`` (``weight``, ``running_mean``) that it holds."""
    views: dict[str, PyTorchParam] = {}
    for klass in reversed(type(node).__mro__):
        for attr, view in vars(klass).items():
            if isinstance(view, PyTorchParam):
                views[attr] = view
    return {attr: view for attr, view in views.items()
            if view.store == store and getattr(node, store).get(view.key) is not None}


def _array(root: Any, target: str, store: str) -> Any:
    """``get_parameter`` (``store`` "params") and ``get_buffer`` ("buffers")."""
    _check_target(root, target, _GETTER[store])
    path, _, key = target.rpartition(".")
    node = root.get_submodule(path)
    arrays, views = getattr(node, store), _views(node, store)
    if key in arrays:
        return arrays[key]
    if key in views:
        return getattr(node, key)
    other = "buffers" if store == "params" else "params"
    cls, value = type(node).__name__, _static(node, key) if key else _MISSING
    theirs = f"its {store} are {', '.join(map(repr, arrays))}" if arrays else f"it has no {store}"
    if views:
        theirs += f" (PyTorch's names: {', '.join(map(repr, views))})"
    if key in getattr(node, other) or key in _views(node, other):
        raise AttributeError(f"`{key}` is not a {_KIND[store]}: it is a {_KIND[other]} ({_GETTER[other]}({target!r}))")
    if value is not _MISSING:
        if isinstance(value, PyTorchParam):  # built without it (bias=False, affine=False)
            value = None
        raise AttributeError(f"`{key}` is not a {_KIND[store]} ({cls}.{key} is {_a(value)}; {theirs})")
    raise AttributeError(f"{cls} has no attribute `{key}` ({theirs}; model.named_{store}() names them all)")
