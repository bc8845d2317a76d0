"""The Numba kernels around a stride-1 Conv2d's input-gradient product (``xpnet.backend.numba_conv``) give the
portable code's bits, are what NumPy arrays get where Numba is installed, and step aside for other inputs."""

import numpy as np
import pytest

from xpnet import backend
from xpnet.layers import Conv2d
from xpnet.layers._im2col import flat_dy_portable, shifted_sums_portable

pytest.importorskip("numba", reason="Numba is not installed (pip install -e '.[numba]')")
from xpnet.backend import numba_conv  # noqa: E402 - only where Numba is installed


def grads(layer, x, numba):
    """dx, dW and db of one forward and backward, with the Numba kernels on or off."""
    previous = backend.set_numba(numba)
    try:
        y = layer.forward(x)
        dx = layer.backward(np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype))
        return dx, layer.grads["W"], layer.grads["b"]
    finally:
        backend.set_numba(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", [{"padding": 1}, {"padding": 0}, {"padding": (2, 0), "dilation": (2, 1)},
                                    {"padding": (1, 1), "groups": 2},
                                    {"padding": 1, "padding_mode": "reflect"}, {"kernel_size": 5, "padding": 2}],
                         ids=["same", "valid", "dilated", "groups", "reflect", "5x5"])
def test_stride1_input_gradient_equals_portable_bit_for_bit(dtype, kwargs):
    # 8 input channels: at least 64 rows per product, the batch-wide layout that these kernels serve.
    kwargs = {"kernel_size": 3, **kwargs}
    layer = Conv2d(8 * kwargs.get("groups", 1), 6, dtype=dtype, **kwargs)
    assert not layer._per_sample()
    x = np.random.default_rng(0).standard_normal((3, layer.in_channels, 7, 6)).astype(dtype)
    for fast, ref in zip(grads(layer, x, True), grads(layer, x, False), strict=True):
        assert fast.dtype == ref.dtype and fast.shape == ref.shape
        np.testing.assert_array_equal(fast, ref)


def test_numpy_arrays_get_the_kernels_and_other_inputs_the_portable_passes():
    assert backend.fast_path("conv_flat_dy", np) is numba_conv.flat_dy
    assert backend.fast_path("conv_shifted_sums", np) is numba_conv.shifted_sums
    # float16 is not built for: the portable passes, the same values.
    dy = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float16)
    flat = backend.fast_path("conv_flat_dy", np, flat_dy_portable)(dy, 5, 7)
    np.testing.assert_array_equal(flat, flat_dy_portable(dy, 5, 7))
    dcol = np.reshape(np.arange(2 * 9 * 70, dtype=np.float16), (2, 9, 70))
    args = (dcol, (2, 2, 4, 5), (3, 3), (1, 1), (1, 1), 5, 7)
    np.testing.assert_array_equal(backend.fast_path("conv_shifted_sums", np, shifted_sums_portable)(*args),
                                  shifted_sums_portable(*args))
    previous = backend.set_numba(False)
    try:
        assert backend.fast_path("conv_shifted_sums", np) is None
    finally:
        backend.set_numba(previous)
