"""How inputs become a model's inputs, alike in ``xn.train``, ``xn.evaluate`` and ``predict``: integer
ids stay ids for a model that takes them, uint8 images are scaled by 1/255, other numbers are cast to the
model's dtype, and whole numbers that look like unscaled 0..255 images are warned about."""

from __future__ import annotations

import math
from typing import Any

from .._user import warn
from ..backend import Device, device_of, dtype_name, namespace, to_device

__all__ = ["is_ids", "to_model_dtype", "check_fits", "warn_unscaled"]


def is_ids(model: Any, x: Any) -> bool:
    """Whether the input ``x`` is integer ids that the model takes as they are (its first layer is an
    Embedding: ``model.takes_ids``; then every integer input is ids, as both of a seq2seq model's),
    rather than numbers to cast to the model's dtype (or to refuse)."""
    return bool(getattr(model, "takes_ids", False)) and namespace(x).isdtype(x.dtype, "integral")


def to_model_dtype(x: Any, dev: Device, dtype: Any) -> Any:
    """``x`` on ``dev`` in the model's float dtype; uint8 (images) is scaled by 1/255 on the device
    (``xn.train``, ``xn.evaluate`` and ``predict`` alike). Host data is cast on the host (float64 NumPy
    data for a float32 JAX model without x64 too)."""
    if dtype_name(x) == "uint8":
        return dev.xp.astype(to_device(x, dev), dtype) / 255.0
    return to_device(x, dev, dtype=dtype)


def check_fits(x: Any, dev: Device, dtype: Any, what: str) -> None:
    """Refuse finite values of ``x`` that the cast to the model's float ``dtype`` would make inf (past float16's
    65504, say), naming ``what`` (``"train data: x"``): NumPy's cast would only warn "overflow encountered in
    cast" from inside xpnet, and training would then blame a non-finite input batch the data never held.
    Looks only where ``dtype`` is narrower than ``x``'s (two reductions over x, no copy); a NaN or inf of the
    data's own is left to the training's guard."""
    xp, target = namespace(x), dev.xp
    if dtype is None or not target.isdtype(dtype, "real floating") or x.ndim == 0 or x.shape[0] == 0:
        return
    if xp.isdtype(x.dtype, "real floating"):
        widest = float(xp.finfo(x.dtype).max)
    elif xp.isdtype(x.dtype, "integral"):
        widest = float(xp.iinfo(x.dtype).max)
    else:
        return
    info = target.finfo(dtype)
    largest, eps = float(info.max), float(info.eps)
    if widest <= largest:
        return
    with device_of(x).activate():
        big = max(float(xp.max(x)), -float(xp.min(x)))
    # The cast rounds to nearest: half an ulp past the largest number (65520 in float16) it gives inf.
    if math.isfinite(big) and big >= largest + largest * eps / (2 * (2 - eps)):
        name = str(dtype).rsplit(".", 1)[-1]
        raise ValueError(f"{what} holds values up to {big:.3g} in magnitude, which {name} (largest {largest:g}) "
                         f"cannot hold: cast to the model's dtype they would become inf; scale them (standardize, "
                         f"or divide by their largest value) or use a float32 model")


def probe_rows(a: Any) -> Any:
    """The first two rows of ``a`` (all of them where it has fewer), what the checks before training run the
    model on: two, since a ``BatchNorm(track_running_stats=False)`` normalises with the batch's statistics in
    evaluation too and refuses one value per feature (the stop clamped: one past the end is no standard slice)."""
    return a[0:min(2, int(a.shape[0])), ...]


_UNSCALED_ROWS = 1024  # rows warn_unscaled looks at, evenly spaced: a full pass cost 24 ms on Fashion-MNIST
_UNSCALED_MIN_MAX = 32  # the smallest maximum that looks like 8-bit pixels rather than counts or codes


def warn_unscaled(arrays: dict[str, Any]) -> None:
    """Warn once when integer or float inputs look like raw 0..255 images (uint8 is scaled by design).

    The rule: every value a whole number, the smallest >= 0 and the largest in [32, 255]. A set of
    8-bit images reaches far past 32 (its brightest pixels near 255); small whole-number features
    (counts, ratings, ordinal codes, 4-bit images such as scikit-learn's digits, 0..16) stay below
    and are left alone. Looks at up to ``_UNSCALED_ROWS`` rows spread over the data: raw images are
    raw throughout."""
    for arg, x in arrays.items():
        xp = namespace(x)
        if x.dtype == xp.uint8 or x.ndim < 2 or x.shape[0] == 0:
            continue
        n = int(x.shape[0])
        x = x if n <= _UNSCALED_ROWS else x[::-(-n // _UNSCALED_ROWS), ...]
        with device_of(x).activate():  # inputs on cuda:N are read on GPU N (Device.activate)
            lo, hi = float(xp.min(x)), float(xp.max(x))
            if not (lo >= 0 and _UNSCALED_MIN_MAX <= hi <= 255):
                continue
            if xp.isdtype(x.dtype, "real floating") and not bool(xp.all(x == xp.round(x))):
                continue
        warn(f"{arg}: the inputs look like unscaled images (whole numbers in [{lo:g}, {hi:g}], dtype "
             f"{x.dtype}); divide by 255 first (uint8 arrays are scaled by xn.train itself)")
        return
