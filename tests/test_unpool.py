"""MaxPool2d/1d(return_indices=True) and MaxUnpool2d/1d against PyTorch's F.max_pool2d(return_indices=True) and
F.max_unpool2d in float64 on every device (padding, stride, overlapping windows, ties), xn.gradcheck through an
encoder/decoder of one's own, saving and loading, and the refusals (Sequential, indices of another pool)."""

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Conv2d, MaxPool1d, MaxPool2d, MaxUnpool1d, MaxUnpool2d, ReLU
from xpnet.testing import assert_placed

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
F = torch.nn.functional

# (kernel_size, stride, padding, input shape): tiles, overlapping windows with padding, a rectangular kernel
# whose pool drops a column (output_size needed), stride 1 (the same pixel chosen by several windows)
CASES = [(2, None, 0, (2, 3, 4, 6)), (3, 2, 1, (2, 2, 7, 9)), ((2, 3), (1, 2), (1, 1), (2, 1, 5, 6)),
         (3, 1, 1, (1, 2, 5, 6))]


def _ties(x):
    x[:, :, 1, :] = x[:, :, 2, :]  # equal neighbours: the first in row-major order, as PyTorch's
    return x


# JAX left out: it compiles each slice update per shape, seconds per case (the same code as array-api-strict's)
@pytest.mark.parametrize("dev", ["numpy", "strict-device1", "torch", pytest.param("cupy", marks=pytest.mark.gpu)],
                         indirect=True)
@pytest.mark.parametrize("case", CASES)
def test_pool_indices_and_unpool_equal_to_pytorch(dev, rng, case):
    k, s, p, shape = case
    x = _ties(rng.standard_normal(shape))
    y, idx = MaxPool2d(k, s, p, return_indices=True).forward(xn.to_device(x, dev))
    yt, it = F.max_pool2d(torch.from_numpy(x), k, s, p, return_indices=True)
    assert_placed(y, dev, "float64")
    np.testing.assert_array_equal(xn.to_numpy(y), yt.numpy())
    np.testing.assert_array_equal(xn.to_numpy(idx), it.numpy())
    h = rng.standard_normal(tuple(y.shape))
    unpool = MaxUnpool2d(k, s, p)
    z = unpool(xn.to_device(h, dev), idx, x.shape)
    ht = torch.tensor(h, requires_grad=True)
    zt = F.max_unpool2d(ht, it, k, s, p, x.shape)
    dz = rng.standard_normal(shape)
    zt.backward(torch.from_numpy(dz))
    assert_placed(z, dev, "float64")
    np.testing.assert_array_equal(xn.to_numpy(z), zt.detach().numpy())
    np.testing.assert_array_equal(xn.to_numpy(unpool.backward(xn.to_device(dz, dev))), ht.grad.numpy())


def test_dilated_pool_indices_and_default_unpool_size(rng):
    x = rng.standard_normal((2, 2, 9, 8))
    _, idx = MaxPool2d(3, 2, 1, 2, True, True).forward(x)
    np.testing.assert_array_equal(idx, F.max_pool2d(torch.from_numpy(x), 3, 2, 1, 2, True, True)[1].numpy())
    x = rng.standard_normal((1, 2, 6, 4))
    y, idx = MaxPool2d(2, return_indices=True).forward(x)
    z = MaxUnpool2d(2)(y, idx)  # no output_size: PyTorch's (H - 1)*stride - 2*padding + kernel_size
    yt, it = F.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    np.testing.assert_array_equal(z, F.max_unpool2d(yt, it, 2).numpy())


@pytest.mark.parametrize("dev", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)], indirect=True)
def test_1d_equal_to_pytorch(dev, rng):
    x = rng.standard_normal((2, 3, 9))
    pool = MaxPool1d(3, 2, 1, return_indices=True)
    y, idx = pool.forward(xn.to_device(x, dev))
    xt = torch.tensor(x, requires_grad=True)
    yt, it = F.max_pool1d(xt, 3, 2, 1, return_indices=True)
    dy = rng.standard_normal(tuple(y.shape))
    yt.backward(torch.from_numpy(dy))
    dx = pool.backward(xn.to_device(dy, dev))
    np.testing.assert_array_equal(xn.to_numpy(dx), xt.grad.numpy())  # the gradient of y alone
    np.testing.assert_array_equal(xn.to_numpy(idx), it.numpy())
    unpool = MaxUnpool1d(3, 2, 1)
    h = rng.standard_normal(tuple(y.shape))
    ht = torch.tensor(h, requires_grad=True)
    zt = F.max_unpool1d(ht, it.detach(), 3, 2, 1, (9,))
    dz = rng.standard_normal((2, 3, 9))
    zt.backward(torch.from_numpy(dz))
    z, dh = unpool(xn.to_device(h, dev), idx, (9,)), unpool.backward(xn.to_device(dz, dev))
    for got in (y, dx, z, dh):
        assert_placed(got, dev, "float64")
    np.testing.assert_array_equal(xn.to_numpy(z), zt.detach().numpy())
    np.testing.assert_array_equal(xn.to_numpy(dh), ht.grad.numpy())
    assert unpool.config() == {"kernel_size": 3, "stride": 2, "padding": 1}


class SegNet(xn.Model):
    """conv, pool with indices, conv, unpool at them, conv: SegNet's encoder/decoder in small."""

    def __init__(self):
        super().__init__()
        self.enc, self.act = Conv2d(2, 3, 3, padding=1), ReLU()
        self.pool, self.mid = MaxPool2d(2, return_indices=True), Conv2d(3, 3, 3, padding=1)
        self.unpool, self.dec = MaxUnpool2d(2), Conv2d(3, 2, 3, padding=1)

    def forward(self, x, train=True):
        h, idx = self.pool(self.act(self.enc(x)))
        return self.dec(self.unpool(self.mid(h), idx))

    def backward(self, dy):
        dh = self.mid.backward(self.unpool.backward(self.dec.backward(dy)))
        return self.enc.backward(self.act.backward(self.pool.backward(dh)))


def test_gradcheck_through_an_encoder_decoder():
    xn.init.seed(0)
    model = SegNet()
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype("float32")
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)
    assert report["enc.W"].ok and report["input"].ok


def test_saved_and_loaded_with_return_indices(tmp_path):
    model = SegNet()
    model.save(tmp_path / "segnet.npz")
    loaded = xn.load(tmp_path / "segnet.npz")
    assert loaded.pool.return_indices and repr(loaded) == repr(model)
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype("float32")
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


@pytest.mark.parametrize("build,message", [
    (lambda: xn.Sequential(Conv2d(1, 2, 3), MaxPool2d(2, return_indices=True)),
     r"^Sequential: item 1, MaxPool2d\(.*return_indices=True\), returns \(y, indices\) .*self\.unpool\(h, idx\)"),
    (lambda: xn.Sequential().append(MaxPool1d(2, return_indices=True)), r"^Sequential.append: item 0, MaxPool1d"),
    (lambda: xn.Sequential(MaxUnpool2d(2)), r"^Sequential: item 0, MaxUnpool2d.*takes two inputs"),
    (lambda: MaxUnpool2d(2)(np.zeros((1, 1, 2, 2)), np.full((1, 1, 2, 2), 5)),
     r"^MaxUnpool2d: indices outside the window of their position"),
    (lambda: MaxUnpool2d(2)(*MaxPool2d(2, return_indices=True).forward(np.zeros((1, 1, 5, 5)))),
     r"output_size=its input's shape$"),  # the pool dropped a row and a column: PyTorch would misplace values
    (lambda: MaxUnpool2d(2)(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), np.int64), (7, 4)),
     r"^MaxUnpool2d: output_size must be .* got \(7, 4\); pass the pooled input's shape"),
    (lambda: MaxUnpool2d(2)(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2))),
     r"^MaxUnpool2d: indices must be an integer"),
])
def test_refusals_are_named_clearly(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()
