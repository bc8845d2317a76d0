"""The checks of xpnet's random numbers on CuPy (Philox4x32-10 in ``xpnet.backend.cupy_kernels``, the draw
state of ``xpnet.backend.random``, Dropout's kernel), run on a CuPy device: in the ``gpu`` tests on a real
GPU, and in a fresh process on the fake CuPy (``tests/test_cupy_layers.py``), where the kernels are built
by g++.

The reference is :func:`philox4x32_10` below, written in NumPy from the definition in Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3" (SC'11) and checked against the known answers of the Random123
distribution (``tests/test_device_random.py``).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np

import xpnet as xn
from xpnet.backend import random as device_random
from xpnet.backend.graphs import StepGraph

from cupy_layer_checks import fast_paths

_MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32 with 10 rounds: counters (N, 4) uint32 words, key two uint32 words -> (N, 4) uint32."""
    c = [np.asarray(counters, dtype=np.uint64)[:, j] for j in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _MASK, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & _MASK]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & _MASK, (k1 + np.uint64(0xBB67AE85)) & _MASK
    return np.stack(c, axis=1).astype(np.uint32)


def reference_uniform(key: int, count: int, n: int, dtype: str) -> np.ndarray:
    """What ``cupy_layers.philox_uniform`` must draw from the state {key, count}: thread i takes the counter
    {i, count} (64-bit halves, low word first), element 4 i + j the word j, as a float in [0, 1)."""
    i = np.arange((n + 3) // 4, dtype=np.uint64)
    counters = np.stack([i & _MASK, i >> np.uint64(32), np.full_like(i, count & 0xFFFFFFFF),
                         np.full_like(i, count >> 32)], axis=1)
    words = philox4x32_10(counters, (key & 0xFFFFFFFF, key >> 32)).reshape(-1)[:n]
    if dtype == "float32":
        return ((words >> 8).astype(np.float32) * np.float32(2.0**-24)).astype(np.float32)
    return words.astype(np.float64) * 2.0**-32


def _state(dev: Any, key: int, count: int) -> Any:
    return xn.to_device(np.array([key, count], dtype=np.uint64), dev)


def check_philox_uniform(dev: Any) -> None:
    """The kernel's numbers equal the reference bit for bit (keys with the high word set, counts past
    2**32, sizes that do not divide by 4; drawn by one block that moves the count on itself up to ONE_BLOCK_DRAW
    numbers, by a grid and a second launch past it) and the draw count goes up by one a draw."""
    from xpnet.backend import cupy_layers

    one = cupy_layers.ONE_BLOCK_DRAW
    counted, count_draw = [], cupy_layers._count_draw
    cupy_layers._count_draw = lambda state: (counted.append(1), count_draw(state))[1]
    try:
        for key, count in ((0, 0), (2**63 + 12345, 7), (0xDEADBEEF, 2**40 + 3)):
            for dtype in ("float32", "float64"):
                for shape in ((1,), (5,), (3, 1367), (one,), (one + 3,)):
                    state, before = _state(dev, key, count), len(counted)
                    got = xn.to_numpy(cupy_layers.philox_uniform(state, shape, dtype))
                    want = reference_uniform(key, count, int(np.prod(shape)), dtype).reshape(shape)
                    assert got.dtype == np.dtype(dtype)
                    np.testing.assert_array_equal(got, want, err_msg=f"key {key} count {count} {dtype} {shape}")
                    assert xn.to_numpy(state).tolist() == [key, count + 1]
                    assert len(counted) - before == (np.prod(shape) > one), shape  # the count's own launch
    finally:
        cupy_layers._count_draw = count_draw
    layer = xn.layers.Dropout(0.5, seed=2)  # numbers for a float16 array are drawn in float32, as on the host
    half = device_random.uniform(layer.rng, (5,), xn.to_device(np.zeros(1, dtype=np.float16), dev), owner=layer)
    assert str(half.dtype) == "float32" and xn.to_numpy(layer.forward(xn.to_device(np.ones((4, 8), np.float16),
                                                                                  dev))).dtype == np.float16
    big = xn.to_numpy(cupy_layers.philox_uniform(_state(dev, 1, 0), (200_000,), "float32"))
    assert 0.0 <= big.min() and big.max() < 1.0 and abs(big.mean() - 0.5) < 0.005


def check_dropout_kernel_equals_portable(dev: Any) -> None:
    """The fused kernel gives the portable path's y and scale bit for bit from the same host generator
    state (both draw the same numbers, two forwards in a row: the count moved on alike), for each dtype, convention
    and a sequence shape, one that one block draws and one past it; a non-contiguous
    input takes the portable path; about 1 - p of the activations are kept."""
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        for p, convention, shape in ((0.1, "pytorch", (4, 9, 37)), (0.5, "book", (4, 9, 37)),
                                     (0.3, "pytorch", (4, 9, 500))):  # past ONE_BLOCK_DRAW: a grid, the count apart
            x = xn.to_device(rng.standard_normal(shape).astype(dtype), dev)
            runs = []
            for fast in (True, False):
                layer = xn.layers.Dropout(p, seed=3, convention=convention)
                with fast_paths(fast):
                    y = [layer.forward(x), layer.forward(x[:, ::2])]
                    runs.append([xn.to_numpy(a) for a in (*y, layer.backward(xn.to_device(np.ones(y[1].shape,
                                                                                                  dtype), dev)))])
            for got, want in zip(*runs):
                np.testing.assert_array_equal(got, want, err_msg=f"{dtype} p={p} {convention}")
            kept = np.count_nonzero(runs[0][0]) / runs[0][0].size
            assert abs(kept - (1 - p)) < 0.05, (p, kept)


def check_draw_state_is_seeded_again_in_place(dev: Any) -> None:
    """What a captured graph relies on: a rewind of the layer's host generator (each epoch, each
    gradcheck pass) seeds the same 16 bytes on the device again, by a kernel, so the next masks repeat
    those after the same host state, also drawn in a graph, while masks in a row differ; the state lives
    on the array's GPU and goes with the layer."""
    layer = xn.layers.Dropout(0.5, seed=1)
    x = xn.to_device(np.ones((16, 16), dtype=np.float32), dev)
    host = layer.rng.bit_generator.state
    first, second = xn.to_numpy(layer.forward(x)), xn.to_numpy(layer.forward(x))
    assert not np.array_equal(first, second)
    state = device_random._device_rngs[layer].generator
    assert state.dtype == np.uint64 and state.shape == (2,) and state.device == x.device
    device_random.set_rng_state(layer.rng, host)
    (same,) = device_random.prepare_device_draws([layer])
    assert same is state and xn.to_numpy(state)[1] == 0
    np.testing.assert_array_equal(xn.to_numpy(layer.forward(x)), first)
    assert device_random._device_rngs[layer].generator is state
    # Seeding is a kernel, not a copy from the host (which could wait for queued steps, and which CuPy
    # refuses while a stream captures): a rewound layer's forward can be captured, and its launch draws
    # the masks of that host state again.
    device_random.set_rng_state(layer.rng, host)
    graph = StepGraph(dev)
    held: list[Any] = []
    with graph.on_stream():
        graph.capture(lambda: held.append(layer.forward(x)))
        graph.launch()
        graph.stream.synchronize()
    np.testing.assert_array_equal(xn.to_numpy(held[0]), first)
    gone = weakref.ref(state)
    del layer, state, same
    gc.collect()
    assert gone() is None


CHECKS = [check_philox_uniform, check_dropout_kernel_equals_portable, check_draw_state_is_seeded_again_in_place]
