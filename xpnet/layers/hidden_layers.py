"""A layer of one's own that is not a container holding a layer with parameters as an attribute (PyTorch's
``self.conv = nn.Conv2d(...)`` in an ``nn.Module``, ported as an ``xn.layers.Layer``): a leaf lists no layer inside
it, so those parameters are in no ``named_params()``: never trained, moved, cast or saved. What the optimizer
binding the model, ``model.to(...)`` and ``model.state_dict()`` warn, each saying what it left out there."""

from __future__ import annotations

from typing import Any

from .._user import warn

__all__ = ["unlisted_parameters", "warn_unlisted"]


def unlisted_parameters(model: Any, consequence: str = "are in no optimizer's reach and will not train") -> str | None:
    """Why some parameters of ``model`` are in no ``named_params()``, or None: a layer of one's own that is not a
    container (an ``xn.layers.Layer`` subclass, not ``xn.Model``) holding a layer with parameters as an
    attribute (xpnet's own such layers, Conv1d's Conv2d, hand their parameters on themselves). A layer the model
    lists elsewhere (a tied Embedding) is not one. ``consequence``: what that means for the caller."""
    from .base import is_xpnet_class  # imported here: the layer base imports the tree, which imports this module
    nodes = model.named_modules()
    listed = {id(node) for node in nodes.values()}
    for name, node in nodes.items():
        if getattr(node, "uses_inside", True) or is_xpnet_class(type(node)):
            continue
        own = {id(p) for p in node.params.values()}
        for attr, held in _held(vars(node)):
            if id(held) in listed:
                continue
            hidden = [k for k, p in held.named_params().items() if id(p) not in own]
            if hidden:
                where = f"'{name}' ({type(node).__name__})" if name else type(node).__name__
                return (f"{where} holds the {type(held).__name__} {attr!r} {'in' if '[' in attr else 'as'} an "
                        f"attribute, and a layer that is not a "
                        f"container lists no layer inside it: its parameters {', '.join(map(repr, hidden))} "
                        f"{consequence}; subclass xn.Model (a container) for a layer made of layers, or put them in "
                        "the layer's own params")
    return None


def warn_unlisted(model: Any, who: str, consequence: str) -> None:
    """Warn, as ``who`` (``"Sequential.state_dict"``), where :func:`unlisted_parameters` finds parameters of ``model``
    in no ``named_params()``; ``consequence``: what that means for ``who``'s work."""
    hidden = unlisted_parameters(model, consequence)
    if hidden is not None:
        warn(f"{who}: {hidden}")


def _held(attrs: dict[str, Any]) -> Any:
    """(the attribute as written, a layer) for each layer held in ``attrs``: as an attribute, or in a list, tuple
    or dict held as one (``self.blocks = [nn.Linear(3, 3), ...]``, PyTorch's ModuleList ported as a list)."""
    for attr, value in attrs.items():
        if _is_layer(value):
            yield attr, value
        elif isinstance(value, (list, tuple)):
            yield from ((f"{attr}[{i}]", v) for i, v in enumerate(value) if _is_layer(v))
        elif isinstance(value, dict):
            yield from ((f"{attr}[{k!r}]", v) for k, v in value.items() if _is_layer(v))


def _is_layer(value: Any) -> bool:
    """Whether ``value`` is a layer (a layer's class, timm's ``self.act_layer = nn.GELU``, holds none)."""
    return hasattr(value, "named_params") and hasattr(value, "backward") and not isinstance(value, type)
