"""The CUDA sources of the CuPy fast paths, as plain strings: importable without CuPy, so the tests
run their arithmetic in NumPy on any machine (``tests/test_fast_paths.py``).

``ELEMENTWISE[name] = (in_params, out_params, body)`` for ``cupy.ElementwiseKernel``; each body is plain
arithmetic, one statement per ``;``, over arrays of one float type ``T``.

``REDUCTION[name] = (in_params, out_params, map_expr, reduce_expr, post_map_expr, identity)`` for
``cupy.ReductionKernel``: ``map_expr`` is plain arithmetic, the reduction a sum.
"""

from __future__ import annotations

__all__ = ["ELEMENTWISE", "REDUCTION"]

ELEMENTWISE = {
    "sgd": ("T g, T lr", "T p", "p -= lr * g;"),
    "momentum": ("T g, T lr, T momentum", "T p, T v", "v = v * momentum - lr * g; p += v;"),
    "adam": ("T g, T one_minus_b1, T b2, T one_minus_b2, T step, T eps", "T p, T m, T v",
             "m += one_minus_b1 * (g - m); v = v * b2 + one_minus_b2 * (g * g); p -= step * (m / (sqrt(v) + eps));"),
}

REDUCTION = {
    # BatchNorm's per-channel sum of a * b over axes 0 and 2 of (N, C, L): one pass, no temporary.
    "channel_dot": ("T a, T b", "T y", "a * b", "a + b", "y = a", "0"),
}
