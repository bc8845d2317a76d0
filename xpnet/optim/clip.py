"""Gradient clipping: by global norm (PyTorch's ``clip_grad_norm_``, the book's ``clip_grads(grads, max_grad)``) and
by value (PyTorch's ``clip_grad_value_``)."""

from __future__ import annotations

import math
from typing import Any

from .._user import is_real
from ..backend import fast_path, namespace
from .binding import owning_model

__all__ = ["clip_grad_norm", "clip_grad_value", "check_positive"]


def check_positive(value: Any, who: str, arg: str) -> float:
    """``value`` (the argument ``arg`` of ``who``) as a float, after checking that it is a positive finite number."""
    if not is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{who}: {arg} must be a positive number, got {value!r}")
    return float(value)


def _model(target: Any, who: str, arg: str) -> Any:
    """The model whose gradients to clip: ``target``, or the model ``model.parameters()`` came from."""
    model = owning_model(target)
    if model is not None:
        return model
    raise TypeError(f"{who}: expected the model, {who}(model, {arg}), or model.parameters(); got a "
                    f"{type(target).__name__} (xpnet clips the gradients a model's backward left, not a list of "
                    "arrays)")


def _training_grads(model: Any) -> list[dict[str, Any]]:
    """The gradient stores of the layers that train (frozen ones, ``requires_grad_(False)``, left out)."""
    return [node.grads for node in model.named_modules().values() if node.grads and not node._frozen]


def clip_grad_norm(model: Any, max_norm: float, norm_type: float | str = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> Any:
    """Scale every gradient of ``model`` (a model, or what ``model.parameters()`` returns, as the
    optimizers take) by ``min(1, max_norm / (norm + 1e-6))``, where ``norm`` is the
    2-norm of all gradients of the parameters that train (frozen ones, ``requires_grad_(False)``, neither
    count nor change, as PyTorch's over ``model.parameters()`` skips a ``.grad`` of None); returns ``norm``
    (a 0-d array on the gradients' device; 0 before any backward, as PyTorch's).

    The same rule as PyTorch's ``torch.nn.utils.clip_grad_norm_`` and the book's ``clip_grads``. No
    value is read back to the host: the factor is computed and applied on the device (1 when the norm
    is within ``max_norm``). A shared parameter (weight tying) has one gradient and counts once.
    ``xn.train(..., clip_grad_norm=5.0)`` calls it each step after the gradients are all-reduced (with
    ``comm``), so it clips by the norm of the gradient every rank then applies.

    ``norm_type`` and ``error_if_nonfinite`` as PyTorch's: the p-norm of all gradients (p > 0, ``math.inf`` or
    ``'inf'`` the largest magnitude; a string is read by ``float()``, as PyTorch's); ``error_if_nonfinite=True``
    reads the norm back and raises a RuntimeError, nothing scaled, where it is NaN or infinite (else, as
    PyTorch's default, the gradients are scaled by a NaN factor). ``foreach`` (None, True or False) picks one
    of PyTorch's implementations, all of one result: taken, and xpnet's one implementation runs.
    """
    max_norm = check_positive(max_norm, "clip_grad_norm", "max_norm")
    norm_type = _norm_order(norm_type)
    if not isinstance(error_if_nonfinite, bool):
        raise TypeError(f"clip_grad_norm: error_if_nonfinite must be True or False, got {error_if_nonfinite!r}")
    _check_foreach(foreach, "clip_grad_norm")
    model = _model(model, "clip_grad_norm", "max_norm")
    stores = _training_grads(model)
    grads = [g for store in stores for g in store.values()]
    if not grads:  # no backward yet: nothing to scale, a norm of 0 as PyTorch gives (0.0 without parameters)
        params = list(model.named_params().values())
        return namespace(params[0]).zeros((), dtype=params[0].dtype, device=params[0].device) if params else 0.0
    xp = namespace(grads[0])
    if norm_type == 2.0:
        norm, factor = fast_path("clip_norm_factor", xp, norm_factor)(grads, max_norm)
    else:
        norm, factor = p_norm_factor(grads, max_norm, norm_type)
    if error_if_nonfinite and not math.isfinite(float(norm)):
        raise RuntimeError(f"clip_grad_norm: the total norm of order {norm_type} of the gradients is "
                           f"{float(norm)}, so they cannot be clipped (error_if_nonfinite=True); nothing was scaled")
    new = iter(fast_path("scaled", xp, scaled)(grads, factor))
    for store in stores:
        for k in store:
            store[k] = next(new)
    return norm


def _norm_order(norm_type: Any) -> float:
    """clip_grad_norm's ``norm_type`` as a float > 0: a number, or a string ``float()`` reads (PyTorch's ``'inf'``)."""
    try:
        order = float(norm_type) if is_real(norm_type) or isinstance(norm_type, str) else math.nan
    except ValueError:
        order = math.nan
    if not order > 0:
        raise ValueError(f"clip_grad_norm: norm_type must be a number > 0 or math.inf ('inf'), got {norm_type!r}")
    return order


def _check_foreach(foreach: Any, who: str) -> None:
    """Refuse a ``foreach`` other than PyTorch's None, True or False (each of one result here)."""
    if foreach is not None and not isinstance(foreach, bool):
        raise TypeError(f"{who}: foreach must be None, True or False, got {foreach!r}")


def scaled(grads: list[Any], factor: Any) -> list[Any]:
    """Each of ``grads`` times ``factor`` (0-d) in its own dtype, as new arrays. On CuPy one kernel for up to 32
    gradients (``xpnet.backend.fast_cupy.scaled``)."""
    xp = namespace(factor)
    return [g * xp.astype(factor, g.dtype, copy=False) for g in grads]


def norm_factor(grads: list[Any], max_norm: float) -> tuple[Any, Any]:
    """The 2-norm of ``grads`` (a list of arrays of one namespace, float16 ones squared in float32) and the
    factor ``min(max_norm / (norm + 1e-6), 1)``, both 0-d, in the first gradient's dtype (float32 for float16):
    the sums of squares one gradient at a time, added in order. On CuPy one reduction a gradient and one kernel
    (``xpnet.backend.fast_cupy.clip_norm_factor``)."""
    xp = namespace(grads[0])
    half = getattr(xp, "float16", None)  # not every namespace has it (array-api-strict)
    total = None
    for g in grads:
        g = xp.astype(g, xp.float32) if half is not None and g.dtype == half else g  # float16 squares overflow at 256
        square = xp.sum(g * g)
        total = square if total is None else total + xp.astype(square, total.dtype, copy=False)
    norm = xp.sqrt(total)
    return norm, xp.minimum(max_norm / (norm + 1e-6), xp.ones_like(norm))


def p_norm_factor(grads: list[Any], max_norm: float, p: float) -> tuple[Any, Any]:
    """:func:`norm_factor` for the p-norm (``math.inf``: the largest magnitude), PyTorch's norm of the
    gradients' own p-norms; in float32 for float16 gradients."""
    xp = namespace(grads[0])
    half = getattr(xp, "float16", None)
    norms = []
    for g in grads:
        a = xp.abs(xp.astype(g, xp.float32) if half is not None and g.dtype == half else g)
        norms.append(xp.max(a) if p == math.inf else xp.sum(a ** p) ** (1.0 / p))
    norms = [xp.astype(n, norms[0].dtype, copy=False) for n in norms]
    stacked = xp.stack(norms)
    norm = xp.max(stacked) if p == math.inf else xp.sum(stacked ** p) ** (1.0 / p)
    return norm, xp.minimum(max_norm / (norm + 1e-6), xp.ones_like(norm))


def clip_grad_value(model: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient of ``model`` (a model, or what ``model.parameters()`` returns) to
    ``[-clip_value, clip_value]``, elementwise: PyTorch's ``torch.nn.utils.clip_grad_value_``. Frozen
    parameters keep their gradients (PyTorch's skips a ``.grad`` of None); a shared parameter has one gradient.
    Device work only, nothing read back. ``xn.train(..., clip_grad_value=0.5)`` calls it each step after the
    gradients are all-reduced (with ``comm``). ``foreach`` as :func:`clip_grad_norm`'s."""
    clip_value = check_positive(clip_value, "clip_grad_value", "clip_value")
    _check_foreach(foreach, "clip_grad_value")
    for store in _training_grads(_model(model, "clip_grad_value", "clip_value")):
        for k, g in store.items():
            store[k] = fast_path("clamp", namespace(g), clamp)(g, clip_value)


def clamp(g: Any, clip_value: float) -> Any:
    """``g`` within ``[-clip_value, clip_value]``, a new array (NaN stays NaN); on CuPy one kernel
    (``xpnet.backend.fast_cupy.clamp``)."""
    xp = namespace(g)
    # Not xp.clip: array-api-compat's sends the bounds from the host and assigns through boolean masks,
    # both refused inside a captured CUDA graph.
    top = xp.ones((), dtype=g.dtype, device=g.device) * clip_value
    return xp.minimum(xp.maximum(g, -top), top)
