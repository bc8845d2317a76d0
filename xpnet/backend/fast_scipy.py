"""NumPy's fast path through SciPy, where it imports (SciPy is no dependency of xpnet): ``scipy.special.erf``
for GELU, one ufunc pass where the portable erf (``xpnet.layers._erf``) takes some sixty. Imported only when
a NumPy array asks for erf."""

from __future__ import annotations

from typing import Any, Callable

import scipy.special


def erf(x: Any) -> Any:
    return scipy.special.erf(x)


def register(add: Callable[..., Any]) -> None:
    add("erf", erf)
