"""Max pooling of windows holding NaN or infinities picks what PyTorch's kernels pick (``val > maxval ||
isnan(val)``: the first maximum, the last NaN, and in a window of -inf only its first pixel inside the input):
y, the indices and dx equal F.max_pool2d's, F.max_pool1d's and F.adaptive_max_pool2d/1d's in float64, on the
portable code (NumPy, array-api-strict), the Numba kernels and CuPy's (the fake CuPy in the gpu suite)."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet import backend
from xpnet.layers import AdaptiveMaxPool1d, AdaptiveMaxPool2d, MaxPool1d, MaxPool2d

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
F = torch.nn.functional
nan, inf = math.nan, math.inf

# 2x2 blocks: one NaN after the maximum, several NaNs, NaN with -inf and +inf, +inf then NaN, -inf only, a tie.
PLANE = np.array([[1, nan, nan, 3, -inf, nan, 0],
                  [2, 0, nan, 1, inf, nan, 1],
                  [inf, 1, -inf, -inf, 2, 5, nan],
                  [nan, inf, -inf, -inf, 5, 1, 2],
                  [0.5, -1, 3, nan, -2, 4, 4],
                  [-3, 2, nan, 3, 0, -inf, 1]])
# A plane of -inf with one NaN: with padding, its windows of -inf only point at their first pixel inside.
MASKED = np.where(np.arange(PLANE.size).reshape(PLANE.shape) == 9, nan, -inf)
X = np.stack([np.stack([PLANE, MASKED]), np.stack([PLANE[::-1, ::-1], PLANE[::-1]])])

# kernel_size, stride, padding, dilation, ceil_mode: the Numba 2x2 kernel with and without padding, its
# loop over other windows, CuPy's one kernel, the dilated portable path, ceil_mode's windows past the edge.
GEOMETRIES = [(2, None, 0, 1, False), (2, 1, 1, 1, False), (2, 2, 1, 1, True), (3, 2, 1, 1, False),
              ((2, 3), 1, (1, 1), 1, False), (3, 1, 1, 2, False), (3, 2, 1, 1, True)]
WHERE = pytest.mark.parametrize("dev,numba", [("numpy", False), ("numpy", True), ("strict-device1", False),
                                              pytest.param("cupy", False, marks=pytest.mark.gpu)],
                                ids=["numpy", "numba", "strict-device1", "cupy"], indirect=["dev"])


@pytest.fixture
def switch(numba):
    if numba:
        pytest.importorskip("numba", reason="Numba is not installed (pip install -e '.[numba]')")
    previous = backend.set_numba(numba)
    yield
    backend.set_numba(previous)


def check(layer, x, dev, reference, indices=True):
    """The layer's y (and indices) and dx for dy against ``reference(xt)`` -> (y, indices) of PyTorch."""
    xt = torch.tensor(x, requires_grad=True)
    yt, it = reference(xt)
    dy = np.random.default_rng(0).standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    out = layer.forward(xn.to_device(x, dev))
    y, idx = out if indices else (out, None)
    np.testing.assert_array_equal(xn.to_numpy(y), yt.detach().numpy())  # NaN where PyTorch has NaN
    if indices:
        np.testing.assert_array_equal(xn.to_numpy(idx), it.numpy())
    dx = xn.to_numpy(layer.backward(xn.to_device(dy, dev)))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)  # overlaps add in another order


@WHERE
@pytest.mark.parametrize("k,s,p,d,ceil", GEOMETRIES)
def test_maxpool2d_nan_and_inf_windows_as_pytorch(dev, numba, switch, k, s, p, d, ceil):
    layer = MaxPool2d(k, s, p, d, True, ceil)
    check(layer, X, dev, lambda xt: F.max_pool2d(xt, k, s, p, d, ceil, True))
    if numba and d == 1:
        assert backend.fast_path("maxpool2d_forward", np) is not None
    np.testing.assert_array_equal(xn.to_numpy(layer.pieces()), _offsets(layer, X.shape[3]))


def _offsets(layer, width):
    """Each output's kernel offset, from PyTorch's indices: what gradcheck's pieces() must report."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    _, idx = F.max_pool2d(torch.from_numpy(X), (kh, kw), (sh, sw), (ph, pw), (dh, dw), layer.ceil_mode, True)
    idx = idx.numpy()
    oh, ow = idx.shape[2:]
    rows = idx // width - (np.arange(oh) * sh - ph)[:, None]
    cols = idx % width - (np.arange(ow) * sw - pw)
    return (rows // dh) * kw + cols // dw


@WHERE
def test_maxpool1d_and_adaptive_pools_as_pytorch(dev, numba, switch):
    seq = X.reshape(2, 2, -1)
    check(MaxPool1d(3, 2, 1, return_indices=True), seq, dev, lambda xt: F.max_pool1d(xt, 3, 2, 1, return_indices=True))
    check(AdaptiveMaxPool2d((4, 3)), X, dev, lambda xt: F.adaptive_max_pool2d(xt, (4, 3), True), indices=False)
    check(AdaptiveMaxPool1d(5), seq, dev, lambda xt: F.adaptive_max_pool1d(xt, 5, True), indices=False)
