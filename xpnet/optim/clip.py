"""Gradient clipping by global norm: PyTorch's ``clip_grad_norm_``, the book's ``clip_grads(grads, max_grad)``."""

from __future__ import annotations

import math
from typing import Any

from .._user import is_real
from ..backend import namespace
from .base import owning_model

__all__ = ["clip_grad_norm", "check_max_norm"]


def check_max_norm(max_norm: Any, who: str = "clip_grad_norm") -> float:
    """``max_norm`` as a float, after checking that it is a positive finite number."""
    if not is_real(max_norm) or not math.isfinite(max_norm) or max_norm <= 0:
        raise ValueError(f"{who}: max_norm must be a positive number, got {max_norm!r}")
    return float(max_norm)


def _model(target: Any) -> Any:
    """The model whose gradients to clip: ``target``, or the model ``model.parameters()`` came from."""
    model = owning_model(target)
    if model is not None:
        return model
    raise TypeError(f"clip_grad_norm: expected the model, clip_grad_norm(model, max_norm), or model.parameters(); "
                    f"got a {type(target).__name__} (xpnet clips the gradients a model's backward left, not a list "
                    "of arrays)")


def clip_grad_norm(model: Any, max_norm: float) -> Any:
    """Scale every gradient of ``model`` (a model, or what ``model.parameters()`` returns, as the
    optimizers take) by ``min(1, max_norm / (norm + 1e-6))``, where ``norm`` is the
    2-norm of all gradients of the parameters that train (frozen ones, ``requires_grad_(False)``, neither
    count nor change, as PyTorch's over ``model.parameters()`` skips a ``.grad`` of None); returns ``norm`` (a 0-d array on the gradients' device; 0 before
    any backward, as PyTorch's).

    The same rule as PyTorch's ``torch.nn.utils.clip_grad_norm_`` and the book's ``clip_grads``. No
    value is read back to the host: the factor is computed and applied on the device (1 when the norm
    is within ``max_norm``). A shared parameter (weight tying) has one gradient and counts once.
    ``xn.train(..., clip_grad_norm=5.0)`` calls it each step after the gradients are all-reduced (with
    ``comm``), so it clips by the norm of the gradient every rank then applies.
    """
    max_norm = check_max_norm(max_norm)
    model = _model(model)
    stores = [node.grads for node in model.named_modules().values() if node.grads and not node._frozen]
    grads = [g for store in stores for g in store.values()]
    if not grads:  # no backward yet: nothing to scale, a norm of 0 as PyTorch gives (0.0 without parameters)
        params = list(model.named_params().values())
        return namespace(params[0]).zeros((), dtype=params[0].dtype, device=params[0].device) if params else 0.0
    xp = namespace(grads[0])
    half = getattr(xp, "float16", None)  # not every namespace has it (array-api-strict)
    total = None
    for g in grads:
        g = xp.astype(g, xp.float32) if half is not None and g.dtype == half else g  # float16 squares overflow at 256
        square = xp.sum(g * g)
        total = square if total is None else total + xp.astype(square, total.dtype)
    norm = xp.sqrt(total)
    factor = xp.minimum(max_norm / (norm + 1e-6), xp.ones_like(norm))
    for store in stores:
        for k, g in store.items():
            store[k] = g * xp.astype(factor, g.dtype)
    return norm
