"""PyTorch's activations (LeakyReLU, ELU, GELU, SiLU, Softplus, Softmax, LogSoftmax, Identity) against PyTorch itself
in float64 on every device, and GELU's erf: the portable one against ``math.erf`` and its coefficients computed
again, each library's fast path against the portable one."""

import math

import numpy as np
import pytest
from conftest import DEVICES, library_device, require_cuda

import xpnet as xn
from xpnet import backend
from xpnet.layers import _erf

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


# -- erf -------------------------------------------------------------------------------------------------------


def _erf_grid(dtype):
    """A dense grid over [-6.5, 6.5], the branch ends and their neighbours, tiny and subnormal x, and the tails
    up to the largest float and inf, in ``dtype``."""
    info = np.finfo(dtype)
    tiny = np.geomspace(info.smallest_subnormal, 1.0, 3000, dtype=dtype)
    ends = np.array([1.0, 6.0], dtype)
    ends = np.concatenate([ends, np.nextafter(ends, dtype(0)), np.nextafter(ends, dtype(10))])
    tails = np.array([0.0, 7.0, 30.0, 1e10, info.max, np.inf], dtype)
    grid = np.concatenate([np.linspace(-6.5, 6.5, 100_001, dtype=dtype), tiny, ends, tails])
    return np.concatenate([grid, -grid])


def _ulps(ours, reference):
    """|ours - reference| in units of the last place of the reference, in the reference's dtype."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference)
    return np.abs(ours - reference) / np.spacing(np.abs(reference)).astype(np.float64)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_portable_erf_is_within_an_ulp_of_math_erf(dev, dtype):
    x = _erf_grid(np.dtype(dtype).type)
    if dev.xp.__name__.startswith("jax"):  # XLA on the CPU flushes subnormals to zero (its own erf too)
        x = x[(x == 0) | (np.abs(x) >= np.finfo(dtype).tiny)]
    expected = np.array([math.erf(float(v)) for v in x]).astype(dtype)
    got = _erf.erf_portable(xn.to_device(x, dev))
    xn.testing.assert_placed(got, dev, dtype)
    ulps = _ulps(xn.to_numpy(got), expected)
    # On a GPU the formula's exp is CUDA's, within 1 ulp (double) or 2 (float) where NumPy's is within half of one
    # (CUDA C++ Programming Guide, Mathematical Functions): FAKE_CUPY_ROUNDING=1 gives 2.0 ulps here on the fake.
    limit = 2.0 if getattr(dev, "is_cupy", False) else 1.0
    assert ulps.max() <= limit, f"{ulps.max()} ulps at x = {x[np.argmax(ulps)]!r}"
    assert np.isnan(xn.to_numpy(_erf.erf_portable(xn.to_device(np.array([np.nan], dtype), dev))))[0]


def _chebyshev_coefficients(mp, f, interval, degree, nodes=64):
    """The Chebyshev interpolant of ``f`` on ``interval`` at ``nodes`` points, its first ``degree + 1`` terms."""
    a, b = (mp.mpf(v) for v in interval)
    angles = [mp.pi * (j + mp.mpf(1) / 2) / nodes for j in range(nodes)]
    values = [f((a + b) / 2 + (b - a) / 2 * mp.cos(t)) for t in angles]
    c = [2 * mp.fsum(v * mp.cos(k * t) for v, t in zip(values, angles)) / nodes for k in range(degree + 1)]
    return (float(c[0] / 2), *(float(v) for v in c[1:]))


def test_erf_coefficients_are_the_chebyshev_series_of_their_functions():
    mp = pytest.importorskip("mpmath", reason="mpmath computes the coefficients again (it comes with PyTorch)")
    mp.mp.dps = 40

    def small(t):  # erf(x) / x - 1 at t = x**2
        x = mp.sqrt(t)
        return 2 / mp.sqrt(mp.pi) - 1 if t == 0 else mp.erf(x) / x - 1

    def tail(u):  # x * exp(x**2) * erfc(x) at u = 1 / x
        x = 1 / u
        return x * mp.exp(x * x) * mp.erfc(x)

    assert _erf._SMALL == _chebyshev_coefficients(mp, small, (0, 1), len(_erf._SMALL) - 1)
    assert _erf.SMALL_INTERVAL == (0.0, 1.0)
    assert _erf._TAIL == _chebyshev_coefficients(mp, tail, (mp.mpf(1) / 6, 1), len(_erf._TAIL) - 1)
    assert _erf.TAIL_INTERVAL == (1 / 6, 1.0)


# How far a library's erf may be from the portable one (within an ulp of math.erf): SciPy's float64 erf (Cephes)
# is 3 ulps from math.erf at x = 0.857, XLA's float32 erf 5 ulps at x = -3.79, CUDA documents 2 for both.
FAST_ULPS = {"float64": 4.0, "float32": 6.0}


def _fast_erf_equals_portable(fast_erf, x, dtype):
    """The fast path's erf and the portable one on the same input, in the input's dtype."""
    fast, portable = fast_erf(x), _erf.erf_portable(x)
    assert str(fast.dtype).endswith(dtype) and str(portable.dtype).endswith(dtype)
    ulps = _ulps(xn.to_numpy(fast), portable)
    assert ulps.max() <= FAST_ULPS[dtype], f"{ulps.max()} ulps at x = {x[np.argmax(ulps)]!r}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
def test_each_librarys_erf_equals_the_portable_one(library, dtype):
    grid = _erf_grid(np.dtype(dtype).type)
    if library == "numpy":
        pytest.importorskip("scipy", reason="NumPy's fast erf is SciPy's, which is not installed")
        from xpnet.backend import fast_scipy as fast
        dev = xn.device("cpu")
    elif library == "torch":
        from xpnet.backend import fast_torch as fast
        dev = library_device("torch:cpu")
    else:
        dev = library_device("jax:cpu")
        from xpnet.backend import fast_jax as fast
        grid = grid[(grid == 0) | (np.abs(grid) >= np.finfo(dtype).tiny)]  # XLA on the CPU flushes subnormals
    assert backend.fast_path("erf", dev.xp, _erf.erf_portable) is fast.erf
    _fast_erf_equals_portable(lambda x: fast.erf(xn.to_device(x, dev)), grid, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cupys_erf_kernel_equals_the_portable_one(dtype):
    dev = require_cuda()
    from xpnet.backend import fast_cupy

    assert backend.fast_path("erf", dev.xp, _erf.erf_portable) is fast_cupy.erf
    _fast_erf_equals_portable(lambda x: fast_cupy.erf(xn.to_device(x, dev)), _erf_grid(np.dtype(dtype).type), dtype)


def test_without_fast_paths_erf_is_the_portable_one():
    previous = backend.set_fast_paths(False)
    try:
        assert backend.fast_path("erf", xn.device("cpu").xp, _erf.erf_portable) is _erf.erf_portable
    finally:
        backend.set_fast_paths(previous)


@pytest.mark.parametrize("fast_paths", [True, False], ids=["fast-paths", "portable"])
def test_float16_gelu_gives_float16_as_pytorchs(fast_paths):
    """SciPy's erf (NumPy's fast path) has no float16 loop and answered float64: a float16 GELU's y and dx came
    out float64. Both stay float16 on either path, within 2 float16 ulps of PyTorch's float16 GELU."""
    x = np.linspace(-6.0, 6.0, 241).astype(np.float16)
    previous = backend.set_fast_paths(fast_paths)
    try:
        layer = xn.layers.GELU()
        y, dx = layer.forward(x), layer.backward(np.ones_like(x))
    finally:
        backend.set_fast_paths(previous)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.GELU()(xt)
    yt.backward(torch.ones_like(yt))
    assert yt.dtype == torch.float16 and y.dtype == np.float16 and dx.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float64), yt.detach().numpy().astype(np.float64), rtol=0, atol=4e-3)
    np.testing.assert_allclose(dx.astype(np.float64), xt.grad.numpy().astype(np.float64), rtol=0, atol=4e-3)


# -- the layers against PyTorch ----------------------------------------------------------------------------------

L = xn.layers
nn = torch.nn

# (id, xpnet's layer, PyTorch's module): each argument away from its default at least once.
LAYERS = [
    ("LeakyReLU", L.LeakyReLU, nn.LeakyReLU),
    ("LeakyReLU-0.2", lambda: L.LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2)),
    ("LeakyReLU-slope-above-1", lambda: L.LeakyReLU(negative_slope=1.5), lambda: nn.LeakyReLU(1.5)),
    ("ELU", L.ELU, nn.ELU),
    ("ELU-alpha-0.5", lambda: L.ELU(alpha=0.5), lambda: nn.ELU(0.5)),
    ("GELU", L.GELU, nn.GELU),
    ("GELU-tanh", lambda: L.GELU(approximate="tanh"), lambda: nn.GELU(approximate="tanh")),
    ("SiLU", L.SiLU, nn.SiLU),
    ("Softplus", L.Softplus, nn.Softplus),
    ("Softplus-beta-2-threshold-10", lambda: L.Softplus(2.0, 10.0), lambda: nn.Softplus(2.0, 10.0)),
    ("Softplus-beta-0.5", lambda: L.Softplus(beta=0.5), lambda: nn.Softplus(beta=0.5)),
    ("Softplus-negative-beta", lambda: L.Softplus(beta=-1.0), lambda: nn.Softplus(beta=-1.0)),
    ("Softmax-last", lambda: L.Softmax(dim=-1), lambda: nn.Softmax(dim=-1)),
    ("Softmax-1", lambda: L.Softmax(1), lambda: nn.Softmax(1)),
    ("Softmax-0", lambda: L.Softmax(dim=0), lambda: nn.Softmax(dim=0)),
    ("LogSoftmax-last", lambda: L.LogSoftmax(dim=-1), lambda: nn.LogSoftmax(dim=-1)),
    ("LogSoftmax-1", lambda: L.LogSoftmax(1), lambda: nn.LogSoftmax(1)),
    ("Identity", L.Identity, nn.Identity),
]
# PyTorch's activations of MobileNet, GANs and self-normalising networks: on JAX all in one test (XLA compiles each
# operation once per shape, ~0.4 s a case).
MORE = [
    ("SELU", L.SELU, nn.SELU),
    ("CELU", L.CELU, nn.CELU),
    ("CELU-alpha-0.5", lambda: L.CELU(0.5), lambda: nn.CELU(0.5)),
    ("ReLU6", L.ReLU6, nn.ReLU6),
    ("Hardtanh", L.Hardtanh, nn.Hardtanh),
    ("Hardtanh--2-0.5", lambda: L.Hardtanh(-2.0, max_val=0.5), lambda: nn.Hardtanh(-2.0, max_val=0.5)),
    ("Hardsigmoid", L.Hardsigmoid, nn.Hardsigmoid),
    ("Hardswish", L.Hardswish, nn.Hardswish),
    ("Mish", L.Mish, nn.Mish),
    ("Softsign", L.Softsign, nn.Softsign),
    ("LogSigmoid", L.LogSigmoid, nn.LogSigmoid),
]
SOFTMAX = (L.Softmax, L.LogSoftmax)


def _on_devices(ids=None):
    """(dev, make_ours, make_theirs) over the conftest's devices for LAYERS, and for MORE on all but JAX."""
    return [pytest.param(d.values[0], o, t, id=f"{d.id}-{i}", marks=d.marks)
            for table, skip in ((LAYERS, ()), (MORE, ("jax",))) for i, o, t in table
            for d in DEVICES if d.id not in skip and (ids is None or ids(i))]
CLOSE = {"rtol": 1e-12, "atol": 1e-12}


def _nudged(v):
    return [v, np.nextafter(v, -np.inf), np.nextafter(v, np.inf)]


def _inputs(rng, softmax, dtype="float64"):
    """(4, 3, 10) inputs and gradients: random values and, in the first 40 places, x around 0, large |x|, each
    Softplus's threshold (20, 10 / 2, 20 / 0.5, -20 for beta = -1) with its neighbours on either side, and the
    kinks of the hard activations exactly (+-1, +-3, 6; Hardtanh(-2, 0.5)'s). Softmax's
    large values are +-1e4 (where an unshifted exp overflows), not 1e150: their differences would overflow."""
    x = rng.standard_normal((4, 3, 10)) * 3
    if softmax:
        special = [0.0, -0.0, 1e-300, -1e-300, 1e4, -1e4, 700.0, -700.0, 1e4, 1e4]
    else:
        # float32: 2e38, whose double overflows (Softplus(beta=2)) but not 1.5 times it (LeakyReLU(1.5)'s output);
        # float64: PyTorch's tanh-GELU gradient is NaN past 1.3e154.
        large = 2e38 if dtype == "float32" else 1e150
        special = [0.0, -0.0, 1e-300, -1e-300, 1e-10, -1e-10, 30.0, -30.0, 1e3, -1e3, large, -large,
                   *_nudged(20.0), *_nudged(5.0), *_nudged(40.0), *_nudged(-20.0),
                   1.0, -1.0, 3.0, -3.0, 6.0, -2.0, 0.5, *_nudged(-3.0)[1:], *_nudged(3.0)[1:]]
    flat = x.reshape(-1)
    flat[:len(special)] = special
    return x.astype(dtype), rng.standard_normal(x.shape).astype(dtype)


def _theirs(make_theirs, x, dy):
    """PyTorch's y and dx, in x's dtype."""
    xt = torch.tensor(x, requires_grad=True)
    yt = make_theirs()(xt)
    yt.backward(torch.from_numpy(dy))
    return yt.detach().numpy(), xt.grad.numpy()


def _compare_with_pytorch(dev, rng, make_ours, make_theirs, ours=None, dtype="float64", close=CLOSE):
    """y and dx of xpnet's layer on ``dev`` and of PyTorch's (on the CPU) for the same x and dy in ``dtype``; the
    result in ``dev``'s namespace, on its device, in that dtype; x and dy read-only on NumPy, so that a layer
    writing into either fails."""
    ours = make_ours() if ours is None else ours
    x, dy = _inputs(rng, isinstance(ours, SOFTMAX), dtype)
    y_ref, dx_ref = _theirs(make_theirs, x, dy)
    x_dev, dy_dev = xn.to_device(x, dev), xn.to_device(dy, dev)
    for a in (x_dev, dy_dev):
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    y = ours.forward(x_dev)
    dx = ours.backward(dy_dev)
    for what, got, expected in (("y", y, y_ref), ("dx", dx, dx_ref)):
        xn.testing.assert_placed(got, dev, dtype)
        got = xn.to_numpy(got)
        assert np.isfinite(got).all(), f"{what} is not finite at x = {x[~np.isfinite(got)]}"
        # PyTorch's GELU gradient is NaN where x**2 overflows (2e38 in float32): ours is its limit there
        theirs = np.isfinite(expected)
        np.testing.assert_allclose(got[theirs], expected[theirs], **close, err_msg=what)
    np.testing.assert_array_equal(xn.to_numpy(x_dev), x)
    np.testing.assert_array_equal(xn.to_numpy(dy_dev), dy)


@pytest.mark.parametrize("dev, make_ours, make_theirs", _on_devices(), indirect=["dev"])
def test_each_layer_equals_pytorch_in_float64(dev, rng, make_ours, make_theirs):
    _compare_with_pytorch(dev, rng, make_ours, make_theirs)


def test_the_other_activations_equal_pytorch_on_jax(rng):
    dev = library_device("jax:cpu")
    for _, make_ours, make_theirs in MORE:
        _compare_with_pytorch(dev, rng, make_ours, make_theirs)


@pytest.mark.parametrize("dev, make_ours, make_theirs", _on_devices(), indirect=["dev"])
def test_float32_stays_float32_without_overflow(dev, rng, make_ours, make_theirs):
    """float32 in, float32 out, as close to PyTorch's float32 as rounding allows, 2e38 included (Softplus(beta=2)
    doubles it: clipped first). atol 1e-5: the tanh form's gradient near x = -5 is a difference of two terms of
    1e-6 that float32's tanh, a last place off -1, leaves wrong in both (PyTorch's 0, NumPy's -2.4e-6, the
    true -3.1e-7 at x = -5.34, dy = 2)."""
    _compare_with_pytorch(dev, rng, make_ours, make_theirs, dtype="float32", close={"rtol": 1e-5, "atol": 1e-5})


def test_pytorchs_tanh_gelu_gradient_is_nan_past_1e154_and_ours_its_limit():
    x = np.array([2e154, 1e300, -2e154, -1e300])
    assert np.isnan(_theirs(lambda: nn.GELU(approximate="tanh"), x, np.ones(4))[1]).all()
    layer = L.GELU(approximate="tanh")
    np.testing.assert_array_equal(layer.forward(x), [2e154, 1e300, 0.0, 0.0])
    np.testing.assert_array_equal(layer.backward(np.ones(4)), [1.0, 1.0, 0.0, 0.0])


class _GELUWithoutTheDensityTerm(L.GELU):
    """Bug: dx = dy * Phi(x), the x * pdf(x) term left out."""

    def backward(self, dy):
        return dy * self._phi


class _LeakyReLUWithTheSlopeOnTheWrongSide(L.LeakyReLU):
    """Bug: the slope applied where x > 0 instead of where x <= 0."""

    def backward(self, dy):
        return xn.backend.namespace(dy).where(self._mask, dy * self.negative_slope, dy)


@pytest.mark.parametrize("buggy, make_theirs", [
    (lambda: _GELUWithoutTheDensityTerm(), nn.GELU),
    (lambda: _LeakyReLUWithTheSlopeOnTheWrongSide(0.2), lambda: nn.LeakyReLU(0.2))], ids=["GELU", "LeakyReLU"])
def test_a_planted_gradient_bug_is_caught(rng, buggy, make_theirs):
    with pytest.raises(AssertionError, match="dx"):
        _compare_with_pytorch(xn.device("cpu"), rng, buggy, make_theirs)
    report = xn.gradcheck(xn.Sequential(L.Linear(5, 6, dtype="float64"), buggy(), L.Linear(6, 3, dtype="float64")),
                         rng.standard_normal((4, 5)))
    assert not report.ok


@pytest.mark.parametrize("dev, make, _", _on_devices(lambda i: "Softmax-0" not in i), indirect=["dev"])
def test_gradcheck_passes(dev, make, _):
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(5, 6), make(), xn.layers.Linear(6, 3)).to(dev)
    x = xn.to_device(np.random.default_rng(0).standard_normal((4, 5)).astype("float32"), dev)
    report = xn.gradcheck(model, x)
    assert report.ok, str(report)
    assert report["input"].ok and report["0.W"].ok


# -- arguments, files, printing ------------------------------------------------------------------------------


@pytest.mark.parametrize("make, error, message", [
    (lambda: L.GELU(approximate="exact"), ValueError,
     r"^GELU: approximate must be 'none' or 'tanh' \(PyTorch's\), got 'exact'$"),
    (lambda: L.GELU(approximate=None), ValueError, r"^GELU: approximate must be .*, got None$"),
    (lambda: L.LeakyReLU(negative_slope="a"), ValueError,
     r"^LeakyReLU: negative_slope must be a finite number, got 'a'$"),
    (lambda: L.LeakyReLU(True), ValueError, r"^LeakyReLU: negative_slope must be a finite number, got True$"),
    (lambda: L.ELU(alpha=float("nan")), ValueError, r"^ELU: alpha must be a finite number, got nan$"),
    (lambda: L.Softplus(beta=0), ValueError, r"^Softplus: beta must be a finite number other than 0, got 0$"),
    (lambda: L.Softplus(threshold="20"), ValueError, r"^Softplus: threshold must be a finite number, got '20'$"),
    (lambda: L.Softmax(), ValueError, (r"^Softmax: dim is required: PyTorch's dim=None picks dim 0 for 0-, 1- and "
                                       r"3-d inputs .* write Softmax\(dim=-1\) for the last axis")),
    (lambda: L.LogSoftmax(None), ValueError, r"^LogSoftmax: dim is required: .* write LogSoftmax\(dim=-1\)"),
    (lambda: L.Softmax(dim=1.0), ValueError, r"^Softmax: dim must be an int \(an axis of the input\), got 1.0$"),
    (lambda: L.LeakyReLU(inplace=True), ValueError,
     r"^LeakyReLU: inplace=True is not supported: xpnet never writes into a layer's input; leave inplace out"),
    (lambda: L.ELU(1.0, True), ValueError, r"^ELU: inplace=True is not supported"),
    (lambda: L.SiLU(inplace=True), ValueError, r"^SiLU: inplace=True is not supported"),
    (lambda: L.ReLU6(True), ValueError, r"^ReLU6: inplace=True is not supported"),
    (lambda: L.Hardswish(inplace=True), ValueError, r"^Hardswish: inplace=True is not supported"),
    (lambda: L.CELU(1.0, True), ValueError, r"^CELU: inplace=True is not supported"),
    (lambda: L.CELU(alpha=0), ValueError, r"^CELU: alpha must be a finite number other than 0, got 0$"),
    (lambda: L.Hardtanh(1.0, -1.0), ValueError, (r"^Hardtanh: max_val must be greater than min_val \(PyTorch's "
                                                 r"rule\), got min_val=1.0, max_val=-1.0$")),
    (lambda: L.Hardtanh(min_value=-2.0), ValueError, (r"^Hardtanh: min_value= is deprecated in PyTorch and not "
                                                      r"taken here; write min_val=-2.0$")),
    (lambda: L.Hardtanh(max_val="1"), ValueError, r"^Hardtanh: max_val must be a finite number, got '1'$"),
    # torchvision writes nn.ReLU(True) and nn.Dropout(p, True): a TypeError, or True taken as Dropout's seed.
    (lambda: L.ReLU(True), ValueError, r"^ReLU: inplace=True is not supported: xpnet never writes into"),
    (lambda: L.Dropout(0.5, inplace=True), ValueError, r"^Dropout: inplace=True is not supported"),
    (lambda: L.Dropout(0.5, True), ValueError, r"^Dropout: the second argument is seed \(an int\), got True; "
                                               r"PyTorch's second, inplace, goes by name here: inplace=False"),
])
def test_bad_arguments_name_the_layer_the_argument_and_what_came(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_softmax_of_a_row_of_minus_inf_is_nan_as_pytorchs_without_a_warning(dev):
    """A row every position of which is masked (-inf) gave NaN with NumPy's "invalid value" RuntimeWarning (an
    error in this suite), where MultiheadAttention's softmax gave it quietly; they are one function now, and
    LogSoftmax shifts by the max the same way. A row with one finite value stays PyTorch's, gradients too."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    x = np.array([[-math.inf, -math.inf, -math.inf], [1.0, -math.inf, 2.0]])
    for layer, theirs in ((L.Softmax(dim=-1), torch.softmax), (L.LogSoftmax(dim=-1), torch.log_softmax)):
        xt = torch.tensor(x, requires_grad=True)
        want = theirs(xt, dim=-1)
        want.backward(torch.ones_like(want))
        y = xn.to_numpy(layer.forward(xn.to_device(x, dev)))
        dx = xn.to_numpy(layer.backward(xn.to_device(np.ones_like(x), dev)))
        # rtol: a few ulps of float64 (a GPU's exp and log are CUDA's, 1 ulp off NumPy's and PyTorch's CPU ones)
        np.testing.assert_allclose(y, want.detach().numpy(), rtol=1e-14, atol=0, err_msg=layer.name)
        # atol: Softmax's dx = y * (1 - sum(y)) is 0 here; on CuPy its row kernel's sum of y may come an ulp off 1
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-14, atol=1e-15, err_msg=layer.name)
        assert np.isnan(y[0]).all() and not np.isnan(y[1]).any()


def test_a_dim_outside_the_input_is_refused_at_forward_naming_both():
    with pytest.raises(ValueError, match=r"^Softmax: dim=5 is not an axis of the 2-d input of shape \(2, 3\) "
                                         r"\(expected -2 to 1\)$"):
        L.Softmax(dim=5).forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^LogSoftmax: dim=-3 is not an axis of the 2-d input"):
        L.LogSoftmax(dim=-3).forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^Softmax: expected an input of at least one axis, got a 0-d array$"):
        L.Softmax(dim=0).forward(np.zeros(()))


@pytest.mark.parametrize("make", [pytest.param(o, id=i) for i, o, _ in LAYERS + MORE])
def test_bad_inputs_and_gradients_are_refused_as_the_other_layers_do(make):
    layer = make()
    with pytest.raises(RuntimeError, match=f"^{layer.name}: backward called before forward"):
        layer.backward(np.zeros((2, 3)))
    with pytest.raises(TypeError, match=f"^{layer.name}: expected a floating-point input, got dtype int64"):
        layer.forward(np.zeros((2, 3), np.int64))
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=rf"^{layer.name}: expected dy of shape \(2, 3\) \(the last forward's "
                                         r"output\), got \(3, 2\)"):
        layer.backward(np.zeros((3, 2)))


def test_pytorchs_defaults_and_positional_order_are_taken_inplace_false_too():
    assert L.LeakyReLU().negative_slope == nn.LeakyReLU().negative_slope == 0.01
    assert L.ELU().alpha == nn.ELU().alpha == 1.0
    assert L.GELU().approximate == nn.GELU().approximate == "none"
    assert (L.Softplus().beta, L.Softplus().threshold) == (nn.Softplus().beta, nn.Softplus().threshold) == (1.0, 20.0)
    assert (L.LeakyReLU(0.3, False).negative_slope, L.ELU(0.4, False).alpha) == (0.3, 0.4)
    assert (L.Softplus(3, 5).beta, L.Softplus(3, 5).threshold) == (3.0, 5.0)
    assert L.SiLU(inplace=False).config() == {} and L.LeakyReLU(inplace=False).config() == {"negative_slope": 0.01}
    assert L.ReLU(inplace=False).config() == {} and repr(L.ReLU(False)) == "ReLU()"
    assert L.Dropout(0.3, inplace=False).config() == L.Dropout(0.3).config()
    assert (L.Hardtanh().min_val, L.Hardtanh().max_val) == (nn.Hardtanh().min_val, nn.Hardtanh().max_val) == (-1, 1)
    assert (L.ReLU6().min_val, L.ReLU6().max_val) == (nn.ReLU6().min_val, nn.ReLU6().max_val) == (0, 6)
    assert L.CELU().alpha == nn.CELU().alpha == 1.0 and L.CELU(0.3, False).alpha == 0.3
    assert (L.Hardtanh(-2, 3, False).min_val, L.Hardtanh(-2, 3, False).max_val) == (-2.0, 3.0)


def test_identity_takes_any_arguments_as_pytorchs_and_keeps_none():
    layer = L.Identity(54, unused_argument1=0.1, unused_argument2=object())
    assert layer.config() == {} and repr(layer) == "Identity()"
    x = np.ones((2, 3))
    assert layer.forward(x) is x and layer.backward(x) is x


def test_repr_shows_the_arguments_away_from_their_defaults():
    assert [repr(m) for m in (L.LeakyReLU(), L.LeakyReLU(0.2), L.ELU(alpha=0.5), L.GELU(), L.GELU("tanh"), L.SiLU(),
                              L.Softplus(), L.Softplus(2, threshold=10), L.Softmax(dim=-1), L.LogSoftmax(1),
                              L.Hardtanh(), L.Hardtanh(0, 2), L.ReLU6(), L.CELU(), L.CELU(2), L.SELU(), L.Mish())] == [
        "LeakyReLU()", "LeakyReLU(negative_slope=0.2)", "ELU(alpha=0.5)", "GELU()", "GELU(approximate='tanh')",
        "SiLU()", "Softplus()", "Softplus(beta=2.0, threshold=10.0)", "Softmax(dim=-1)", "LogSoftmax(dim=1)",
        "Hardtanh()", "Hardtanh(min_val=0.0, max_val=2.0)", "ReLU6()", "CELU()", "CELU(alpha=2.0)", "SELU()", "Mish()"]


def _every_new_layer():
    return xn.Sequential(L.Linear(5, 6), L.LeakyReLU(0.2), L.ELU(alpha=0.5), L.GELU(approximate="tanh"), L.SiLU(),
                         L.Softplus(2.0, 10.0), L.Identity(6), L.GELU(), L.Softmax(dim=1), L.Linear(6, 4),
                         L.LogSoftmax(dim=-1), L.Hardtanh(-2.0, 0.5), L.ReLU6(), L.Hardsigmoid(), L.Hardswish(),
                         L.SELU(), L.CELU(0.5), L.Mish(), L.Softsign(), L.LogSigmoid())


def test_saved_and_loaded_with_their_arguments_on_another_device(tmp_path, rng):
    strict = pytest.importorskip("array_api_strict")
    dev1 = xn.Device(strict, strict.Device("device1"))
    model = _every_new_layer()
    model.save(tmp_path / "activations.npz")
    loaded = xn.load(tmp_path / "activations.npz", device=dev1)
    assert repr(loaded) == repr(model) and [m.config() for m in loaded] == [m.config() for m in model]
    assert [type(m) for m in loaded] == [type(m) for m in model]
    x = rng.standard_normal((3, 5)).astype(np.float32)
    y = loaded.forward(xn.to_device(x, dev1))
    xn.testing.assert_placed(y, dev1, "float32")
    np.testing.assert_allclose(xn.to_numpy(y), model.forward(x), rtol=1e-6, atol=1e-7)


def test_summary_shows_each_layer_and_its_output_shape():
    rows = [line.split()[:4] for line in _every_new_layer().summary().splitlines()[2:22]]
    names = ["Linear", "LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "Identity", "GELU", "Softmax", "Linear",
             "LogSoftmax", "Hardtanh", "ReLU6", "Hardsigmoid", "Hardswish", "SELU", "CELU", "Mish", "Softsign",
             "LogSigmoid"]
    assert rows == [[str(i), name, "(N,", "4)" if i >= 9 else "6)"] for i, name in enumerate(names)]


def test_xn_functional_points_at_the_layers():
    with pytest.raises(AttributeError, match=r"xn.layers.GELU\(\) for F.gelu, xn.layers.Softmax\(dim\) for F.softmax"):
        xn.functional  # noqa: B018
