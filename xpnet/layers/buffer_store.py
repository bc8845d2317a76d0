"""A layer's ``buffers``: its own dict of arrays saved and moved with it, not trained (BatchNorm's running
statistics). PyTorch's ``model.buffers()`` is a method giving every buffer of the model; called here, the dict
says what to write (``model.named_buffers()``), where Python said "'dict' object is not callable"."""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["Buffers"]


class Buffers(dict):
    """A dict, by buffer name, of one layer's (or model's) own buffers; calling it says what PyTorch's
    ``model.buffers()`` is here."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("layer.buffers is the dict of this layer's own buffers (arrays saved and moved with it, not "
                        "trained), not PyTorch's method: model.named_buffers() is every buffer of the model and the "
                        "layers inside it by dotted name, and model.named_buffers().values() is PyTorch's "
                        "model.buffers()")
