"""The error function, which the array API standard lacks and GELU needs: ``erf(x)`` takes the library's own
where xpnet registers one (``scipy.special.erf`` for NumPy where SciPy imports, ``torch.special.erf``,
CUDA's ``erf`` in a CuPy kernel, ``jax.scipy.special.erf``); :func:`erf_portable`, in standard operations only,
is the reference they are tested against and what every other namespace runs.

How the portable one goes, in the input's dtype (float32 stays float32), odd in x:

1. |x| < 1: ``erf(x) = x + x * P(x**2)``, P the Chebyshev series of ``erf(x) / x - 1`` on x**2 in [0, 1]
   (|P| < 0.13: x itself carries most of the value, exactly).
2. 1 <= |x| < 6: ``erf(x) = 1 - exp(-x**2) * G(1 / x) / x``, G the Chebyshev series of
   ``x * exp(x**2) * erfc(x)`` on 1/x in [1/6, 1] (G goes from 0.43 to 0.56, smooth in 1/x).
3. |x| >= 6 (inf too) is 6, whose erf is 1 in float64 (erfc(6) < 2**-55). NaN stays NaN.

Every branch is computed on inputs clipped to its own interval, so that nothing overflows (no warning for
|x| up to inf) before ``where`` picks the branch. The coefficients are the Chebyshev interpolants of the two
functions at 64 nodes, computed with mpmath at 40 digits and rounded to float64; the truncation error is
below 2e-19 and 1e-17 (relative to 1 and to G), under float64's rounding. ``tests/test_activations.py``
computes them again and compares, and measures the result against ``math.erf``.
"""

from __future__ import annotations

from typing import Any

from ..backend import fast_path, namespace

# erf(x) / x - 1 = sum(_SMALL[k] * T_k(2 * x**2 - 1)) for |x| <= 1.
_SMALL = (-0.024523060617345903, -0.14226120510371365, 0.010035582187599796, -0.0005768764699767485,
          2.741993125219606e-05, -1.1043175507344507e-06, 3.8488755420345036e-08, -1.1808582533875466e-09,
          3.2334215826050907e-11, -7.991015947004549e-13, 1.7990725113961456e-14, -3.718635487818693e-16,
          7.103599003714253e-18, -1.2612455119155226e-19)

# x * exp(x**2) * erfc(x) = sum(_TAIL[k] * T_k((12 / x - 7) / 5)) for 1 <= x <= 6 (1/x in [1/6, 1] mapped to [-1, 1]).
_TAIL = (0.49471361578208073, -0.06627963187965226, -0.0022764645742360114, 0.001717245128146866,
         -0.00032014496358247316, 2.6743225983670515e-05, 3.968695744344053e-06, -2.2059099609177132e-06,
         5.18822760986672e-07, -6.999918836906682e-08, -9.071270087834272e-10, 3.81951552192842e-09,
         -1.3416438565181666e-09, 2.947892218032652e-10, -3.786760799975439e-11, -2.167147256147601e-12,
         3.1122292821541805e-12, -1.1363842124992395e-12, 2.7739855277970216e-13, -4.45906676376279e-14,
         1.0733133056291638e-15, 2.4789530202320656e-15, -1.1596680074384575e-15, 3.456896098695936e-16,
         -7.485760390998475e-17, 9.669918104089653e-18)

SMALL_INTERVAL = (0.0, 1.0)  # the intervals of x**2 and 1/x the two series are fitted on (the test reads them)
TAIL_INTERVAL = (1.0 / 6.0, 1.0)


def erf(x: Any) -> Any:
    """erf of a floating array, elementwise, in its dtype: the library's own where registered, else portable."""
    return fast_path("erf", namespace(x), erf_portable)(x)


def erf_portable(x: Any) -> Any:
    """erf in standard array-API operations (see the module's docstring), within about an ulp of float64's
    rounding of the true value."""
    xp = namespace(x)
    a = xp.abs(x)
    s = xp.minimum(xp.maximum(x, -1.0), 1.0)
    # Scaled by 8 (exactly) so that s * P is not subnormal where s is not: XLA flushes subnormals to zero.
    s8 = 8.0 * s
    small = (s8 + s8 * _chebyshev(2.0 * (s * s) - 1.0, _SMALL)) * 0.125
    c = xp.minimum(xp.maximum(a, 1.0), 6.0)
    u = 1.0 / c
    tail = 1.0 - xp.exp(-(c * c)) * _chebyshev((12.0 * u - 7.0) / 5.0, _TAIL) * u
    return xp.where(a < 1.0, small, xp.sign(x) * tail)


def _chebyshev(z: Any, coefficients: tuple[float, ...]) -> Any:
    """sum(c_k * T_k(z)) by Clenshaw's recurrence (stable for |z| <= 1, no power of z formed)."""
    b1: Any = 0.0
    b2: Any = 0.0
    two_z = 2.0 * z
    for c in reversed(coefficients[1:]):
        b1, b2 = c + two_z * b1 - b2, b1
    return coefficients[0] + z * b1 - b2
