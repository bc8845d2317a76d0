"""JAX's fast path: ``jax.scipy.special.erf`` for GELU, in place of the portable erf (``xpnet.layers._erf``),
which JAX would trace and compile as some sixty operations. Imported only when a JAX array asks for erf."""

from __future__ import annotations

from typing import Any, Callable

import jax.scipy.special


def erf(x: Any) -> Any:
    return jax.scipy.special.erf(x)


def register(add: Callable[..., Any]) -> None:
    add("erf", erf)
