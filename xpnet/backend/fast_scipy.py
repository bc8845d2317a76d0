"""NumPy's fast path through SciPy, where it imports (SciPy is no dependency of xpnet): ``scipy.special.erf``
for GELU, one ufunc pass where the portable erf (``xpnet.layers._erf``) takes some sixty. Imported only when
a NumPy array asks for erf."""

from __future__ import annotations

from typing import Any, Callable

import scipy.special


def erf(x: Any) -> Any:
    """``scipy.special.erf`` in ``x``'s dtype: SciPy has no float16 loop and gives float64 for float16 (a float16
    GELU's output and gradient would come out float64), so that result is rounded back."""
    y = scipy.special.erf(x)
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def register(add: Callable[..., Any]) -> None:
    add("erf", erf)
