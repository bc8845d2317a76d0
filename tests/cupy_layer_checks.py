"""The checks of CuPy's layer kernels (``xpnet.backend.cupy_layers``, ``cupy_cells``) against the portable code,
run on a CuPy device: in the ``gpu`` tests on a real GPU, and in a fresh process on the fake CuPy of
``tests/fake_cupy`` (``tests/test_cupy_layers.py``), where the raw kernels are built by g++.

Each ``check_*`` function asserts; fast results come from the kernels called directly (after asserting
that their ``accepts`` takes the inputs), portable ones from the layer with the fast paths off.
Pooling and ReLU must agree bit for bit, the loss and BatchNorm within a tolerance of the dtype.
Also here: :func:`count_launches`, which counts what the fake CuPy would launch on a GPU.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import numpy as np

import xpnet as xn
from xpnet import backend
from xpnet.losses import SoftmaxCrossEntropy

RTOL = {"float32": 2e-6, "float64": 1e-13}


@contextlib.contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    previous = backend.set_fast_paths(enabled)
    try:
        yield
    finally:
        backend.set_fast_paths(previous)


def _host(a: Any) -> np.ndarray:
    return xn.to_numpy(a)


def _inf_times_zero(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """The check multiplies inf by 0 on purpose (NaN, as the layers document): NumPy under the fake CuPy
    must not warn (pytest makes RuntimeWarning an error)."""

    @functools.wraps(check)
    def run(dev: Any) -> None:
        with np.errstate(invalid="ignore"):
            check(dev)

    return run


def _kernels() -> Any:
    """``xpnet.backend.cupy_layers``, which imports CuPy: only where a CuPy device is."""
    from xpnet.backend import cupy_layers

    return cupy_layers


def _norms() -> Any:
    """``xpnet.backend.cupy_norms`` (BatchNorm's and LayerNorm's kernels), which imports CuPy."""
    from xpnet.backend import cupy_norms

    return cupy_norms


def _cells() -> Any:
    """``xpnet.backend.cupy_cells`` (the recurrent steps' kernels), which imports CuPy."""
    from xpnet.backend import cupy_cells

    return cupy_cells


# -- softmax cross-entropy ---------------------------------------------------------------------------


def _loss_run(dev: Any, y: np.ndarray, t: np.ndarray, fast: bool, **kwargs: Any) -> dict[str, Any]:
    loss = SoftmaxCrossEntropy(**kwargs)
    with fast_paths(fast):
        value = loss.forward(dev.asarray(y), dev.asarray(t))
        out = {"value": float(value), "dy": _host(loss.backward()), "dy_half": _host(loss.backward(0.5)),
               "dy_array": _host(loss.backward(dev.xp.asarray(0.25, dtype=value.dtype, device=dev.native))),
               "correct": loss.correct_count()}
    assert str(value.dtype) == str(y.dtype) and value.shape == ()
    return out


def check_loss(dev: Any) -> None:
    """Value, dy (dout 1, 0.5 and a 0-d array) and the correct count of the fused kernel against the
    portable loss: ignored labels (some, all, one that is a class), smoothing, sequences, int32
    labels, ties and NaN in the argmax, one row of two classes (logits of one class are refused before any
    kernel, as on every backend)."""
    cupy_layers = _kernels()
    rng = np.random.default_rng(0)
    cases = [
        (rng.standard_normal((100, 10)), rng.integers(0, 10, 100), {}),
        (rng.standard_normal((1, 2)), np.array([1]), {}),
        (rng.standard_normal((7, 5)) * 30, np.array([0, 4, -100, 2, -100, 1, 3]), {}),
        (rng.standard_normal((4, 3)), np.full(4, -100), {}),
        (rng.standard_normal((9, 6)), rng.integers(0, 6, 9), {"ignore_index": 2}),
        (rng.standard_normal((9, 6)), np.array([0, 1, 2, 3, 4, 5, -1, 0, -1]),
         {"ignore_index": -1, "label_smoothing": 0.2}),
        (rng.standard_normal((3, 4, 6)), rng.integers(0, 6, (3, 4)), {"label_smoothing": 0.1}),
        (rng.integers(0, 3, (50, 4)).astype(float), rng.integers(0, 4, 50).astype(np.int32), {}),  # ties
        # Rows whose label is ignore_index still count as correct where their maximum is there, as argmax == t.
        (np.eye(4)[[1, 1, 0, 3]] * 5, np.array([1, 1, 0, 2]), {"ignore_index": 1}),
    ]
    for y, t, kwargs in [(y.astype(dtype), t, kw) for dtype in ("float32", "float64") for y, t, kw in cases]:
        y2, labels = dev.asarray(y.reshape(-1, y.shape[-1])), dev.asarray(t.reshape(-1))
        assert cupy_layers._loss_ready(y2, labels, kwargs.get("ignore_index", -100), 0.0), (y.shape, t.dtype)
        fast, portable = _loss_run(dev, y, t, True, **kwargs), _loss_run(dev, y, t, False, **kwargs)
        rtol = RTOL[str(y.dtype)]
        what = f"{y.dtype} {y.shape} {kwargs}"
        np.testing.assert_allclose(fast["value"], portable["value"], rtol=rtol, atol=rtol, err_msg=what)
        for k in ("dy", "dy_half", "dy_array"):
            assert fast[k].shape == y.shape and fast[k].dtype == y.dtype, (what, k)
            np.testing.assert_allclose(fast[k], portable[k], rtol=rtol, atol=rtol, err_msg=f"{what} {k}")
        assert portable["correct"] is None
        if y.ndim == 2:
            expected = int(np.count_nonzero(np.argmax(y, axis=1) == t))
            assert int(fast["correct"]) == expected, (what, int(fast["correct"]), expected)
    # NumPy's argmax takes the first NaN of a row as its maximum.
    y = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 2.0, 1.0, 0.0], [np.nan, 0.0, 5.0, 1.0]])
    loss = SoftmaxCrossEntropy()
    loss.forward(dev.asarray(y), dev.asarray(np.array([1, 0, 2])))
    assert int(loss.correct_count()) == 2


def check_loss_takes_the_portable_path_where_the_kernel_does_not_fit(dev: Any) -> None:
    """More classes than the kernel takes, one-hot targets: the portable loss, no count. uint8 labels are
    cast to the index dtype first (the loss does so on every namespace), so they take the kernel."""
    cupy_layers = _kernels()
    rng = np.random.default_rng(1)
    c = cupy_layers.MAX_CLASSES + 1
    for y, t in ((rng.standard_normal((3, c)), rng.integers(0, c, 3)),
                 (rng.standard_normal((3, 4)), np.eye(4)[[0, 3, 1]])):
        loss = SoftmaxCrossEntropy()
        fast = float(loss.forward(dev.asarray(y), dev.asarray(t)))
        assert loss.correct_count() is None
        with fast_paths(False):
            np.testing.assert_allclose(fast, float(loss.forward(dev.asarray(y), dev.asarray(t))), rtol=1e-12)
    y = dev.asarray(rng.standard_normal((3, 4)))
    small, wide = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    value = float(small.forward(y, dev.asarray(np.array([0, 3, 1], dtype=np.uint8))))
    assert value == float(wide.forward(y, dev.asarray(np.array([0, 3, 1]))))
    assert int(small.correct_count()) == int(wide.correct_count())


# -- ReLU --------------------------------------------------------------------------------------------


@_inf_times_zero
def check_relu(dev: Any) -> None:
    """y, mask and dx bit for bit: zeros, NaN and infinities in x and dy, odd sizes, a strided dy."""
    cupy_layers = _kernels()
    from xpnet.layers.activations import relu_backward, relu_forward

    rng = np.random.default_rng(2)
    for dtype in ("float32", "float64"):
        for shape in ((1,), (7, 13), (3, 5, 7, 9), (100, 100)):
            x = rng.standard_normal(shape).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            x.reshape(-1)[:3] = [np.nan, -np.inf, 0.0][: x.size]
            dy.reshape(-1)[-2:] = [np.inf, np.nan][-x.size:]
            xd, dyd = dev.asarray(x), dev.asarray(dy)
            assert cupy_layers._relu_ready(xd)
            y, mask = cupy_layers.relu_forward(xd)
            y_ref, mask_ref = relu_forward(xd)
            np.testing.assert_array_equal(_host(y), _host(y_ref))
            np.testing.assert_array_equal(_host(mask), _host(mask_ref))
            assert str(mask.dtype) == "bool" and str(y.dtype) == dtype
            np.testing.assert_array_equal(_host(cupy_layers.relu_backward(dyd, mask)), _host(relu_backward(dyd, mask)))
        strided = dev.asarray(rng.standard_normal((8, 6)).astype(dtype))[:, ::2]
        mask = dev.asarray(rng.standard_normal((8, 3)) > 0)
        np.testing.assert_array_equal(_host(cupy_layers.relu_backward(strided, mask)),
                                      _host(relu_backward(strided, mask)))


# -- MaxPool2d ---------------------------------------------------------------------------------------

POOL_GEOMETRIES = [  # (N, C, H, W), kernel, stride, padding, ceil_mode
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), False),
    ((2, 3, 7, 9), (2, 2), (2, 2), (0, 0), False),
    ((1, 2, 7, 7), (3, 3), (2, 2), (1, 1), False),
    ((2, 1, 6, 5), (3, 2), (1, 3), (1, 0), False),
    ((1, 2, 9, 4), (2, 3), (3, 1), (0, 1), False),
    ((3, 2, 5, 5), (1, 1), (2, 2), (0, 0), False),
    ((1, 1, 4, 6), (4, 6), (1, 1), (2, 3), False),
    ((2, 2, 10, 11), (3, 3), (1, 1), (1, 1), False),
    ((1, 1, 12, 12), (12, 12), (1, 1), (0, 0), False),  # 144 offsets: int32 indices
    # ceil_mode: the last windows run past the padded input
    ((2, 3, 7, 9), (2, 2), (2, 2), (0, 0), True),
    ((1, 2, 6, 8), (3, 3), (2, 2), (1, 1), True),
    ((2, 1, 9, 5), (3, 2), (3, 3), (1, 1), True),
    ((1, 2, 2, 3), (3, 3), (3, 2), (0, 0), True),  # smaller than the kernel: one window each way
]


def _random_geometry(rng: np.random.Generator) -> tuple[Any, ...]:
    kh, kw = rng.integers(1, 5, 2)
    ph, pw = rng.integers(0, kh // 2 + 1), rng.integers(0, kw // 2 + 1)
    h, w = rng.integers(max(1, kh - 2 * ph), 11), rng.integers(max(1, kw - 2 * pw), 11)
    return ((int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(h), int(w)), (int(kh), int(kw)),
            tuple(int(s) for s in rng.integers(1, 4, 2)), (int(ph), int(pw)), bool(rng.integers(0, 2)))


@_inf_times_zero
def check_maxpool2d(dev: Any) -> None:
    """y, the index of each window's first maximum and dx bit for bit against the portable layer, on
    inputs full of ties (values from {0, 1, 2}), with NaN and -inf, and inf/NaN in dy; with ceil_mode too."""
    cupy_layers = _kernels()
    rng = np.random.default_rng(3)
    geometries = POOL_GEOMETRIES + [_random_geometry(rng) for _ in range(30)]
    for dtype in ("float32", "float64"):
        for shape, kernel, stride, padding, ceil_mode in geometries:
            x = rng.integers(0, 3, shape).astype(dtype)
            if x.size > 8:
                x.reshape(-1)[[1, 5]] = [np.nan, -np.inf]
            layer = xn.layers.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
            results = []
            dy = None
            for fast in (True, False):
                with fast_paths(fast):
                    y = layer.forward(dev.asarray(x))
                    if dy is None:
                        dy = rng.standard_normal(tuple(y.shape)).astype(dtype)
                        if dy.size > 3:
                            dy.reshape(-1)[[0, 2]] = [np.inf, np.nan]
                    results.append((_host(y), _host(layer.pieces()), _host(layer.backward(dev.asarray(dy)))))
            what = f"{dtype} {shape} kernel={kernel} stride={stride} padding={padding} ceil_mode={ceil_mode}"
            assert cupy_layers._pool_ready(dev.asarray(x), kernel, stride, padding, y.shape[2:], results[0][1].dtype)
            for name, a, b in zip(("y", "first", "dx"), *results):
                assert a.dtype == b.dtype and a.shape == b.shape, (what, name)
                np.testing.assert_array_equal(a, b, err_msg=f"{what}: {name}")


# -- BatchNorm ---------------------------------------------------------------------------------------


def check_batchnorm(dev: Any) -> None:
    """Training and evaluation, (N, C, H, W), (N, C, L) and (N, D) (one reversed, not contiguous): y, dx, the
    gradients and the running statistics against the portable layer; a forward and backward launch four kernels in
    training (the statistics with the running update, y; the sums, dx) and three in evaluation, nothing else."""
    from xpnet.layers.norm import batchnorm_backward, batchnorm_forward

    cupy_norms = _norms()
    rng = np.random.default_rng(4)
    for dtype in ("float32", "float64"):
        for shape in ((8, 3, 5, 7), (5, 2, 60), (16, 5), (2, 4, 1, 1), (3, 2, 9, 1)):
            c = shape[1]
            x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            gamma = rng.standard_normal(c).astype(dtype)
            for train in (True, False):
                results = []
                for fast in (True, False):
                    layer = xn.layers.BatchNorm(c, dtype=dtype).to(dev)
                    layer.params["gamma"] = dev.asarray(gamma)
                    layer.buffers["running_var"] = dev.asarray(np.linspace(0.5, 2, c).astype(dtype))
                    before = dict(layer.buffers)
                    xd, dyd = dev.asarray(x), dev.asarray(dy)
                    if len(shape) == 2:
                        xd = xd[::-1]
                    with fast_paths(fast), _raw_launches() as names, count_launches() as counts:
                        y = layer.forward(xd, train=train)
                        dx = layer.backward(dyd)
                    if fast:
                        kernels = ["bn_stats"] * train + ["bn_normalize", "bn_backward_sums", "bn_input_grad"]
                        assert names == kernels and counts["launches"] == len(kernels) + (len(shape) == 2), \
                            (dtype, shape, train, names, counts)  # a reversed x is copied contiguous: one launch
                    # moved on in place: a captured step replays its kernels on the arrays of the capture
                    assert all(layer.buffers[k] is v for k, v in before.items()), (dtype, shape, fast)
                    results.append({"y": y, "dx": dx, **layer.grads, **layer.buffers})
                if len(shape) == 2:
                    x = np.ascontiguousarray(x[::-1])
                fast, portable = results
                x3 = dev.asarray(x.reshape(shape[0], c, -1))
                assert cupy_norms._bn_ready(x3, layer.params["gamma"], layer.params["beta"], 1e-5)
                assert cupy_norms._running_ready(*layer.buffers.values(), *layer.buffers.values(), 0.9, 0.1, 0.1)
                if train:  # PyTorch's running_var: the unbiased variance (n/(n-1)), on every path
                    x3h = x.reshape(shape[0], c, -1).astype(np.float64)
                    unbiased = x3h.transpose(1, 0, 2).reshape(c, -1).var(axis=1, ddof=1)
                    expected = 0.9 * np.linspace(0.5, 2, c) + 0.1 * unbiased
                    np.testing.assert_allclose(_host(fast["running_var"]), expected, rtol=50 * RTOL[dtype],
                                               err_msg=f"{dtype} {shape} running_var")
                # The kernel's backward after a portable forward, which keeps x - mean with no shift.
                dy3, gamma3 = dev.asarray(dy.reshape(x3.shape)), layer.params["gamma"]
                with fast_paths(False):
                    fed = batchnorm_forward(x3, gamma3, layer.params["beta"], layer.eps)
                    portable_grads = batchnorm_backward(dy3, fed[4], gamma3, fed[3], train)
                fast_grads = cupy_norms.batchnorm_backward(dy3, fed[4], gamma3, fed[3], train)
                pairs = [(k, fast[k], portable[k]) for k in portable]
                pairs += [(f"after a portable forward: {k}", a, b)
                          for k, a, b in zip(("dx", "dgamma", "dbeta"), fast_grads, portable_grads)]
                for k, a, b in pairs:
                    assert a.dtype == b.dtype and a.shape == b.shape, k
                    np.testing.assert_allclose(_host(a), _host(b), rtol=50 * RTOL[dtype], atol=50 * RTOL[dtype],
                                               err_msg=f"{dtype} {shape} train={train} {k}")


def check_batchnorm_options(dev: Any) -> None:
    """PyTorch's affine=False (constant gamma and beta given to the kernels), track_running_stats=False (the
    batch's statistics in evaluation too) and momentum=None (the running update's weights 0-d arrays from the
    device's batch count, taken by the kernel): y, dx, the gradients and every buffer after three steps,
    against the portable layer; the buffers moved on in place."""
    cupy_norms = _norms()
    rng = np.random.default_rng(6)
    for kwargs in ({"affine": False}, {"track_running_stats": False}, {"momentum": None},
                   {"momentum": None, "affine": False, "track_running_stats": False}):
        for dtype in ("float32", "float64"):
            for shape in ((8, 3, 5, 7), (16, 5)):
                xs = [(rng.standard_normal(shape) * 3 + 1).astype(dtype) for _ in range(3)]
                dys = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
                for train in (True, False):
                    results, layers = [], []
                    for fast in (True, False):
                        layer = xn.layers.BatchNorm(shape[1], dtype=dtype, **kwargs).to(dev)
                        layers.append(layer)
                        before = dict(layer.buffers)
                        with fast_paths(fast):
                            for x, dy in zip(xs, dys):
                                y = layer.forward(dev.asarray(x), train=train)
                                dx = layer.backward(dev.asarray(dy))
                        assert all(layer.buffers[k] is v for k, v in before.items()), (kwargs, dtype, shape, fast)
                        results.append({"y": y, "dx": dx, **layer.grads, **layer.buffers})
                    fast, portable = results
                    what = f"{kwargs} {dtype} {shape} train={train}"
                    assert fast.keys() == portable.keys(), what
                    for k in portable:
                        a, b = fast[k], portable[k]
                        assert a.dtype == b.dtype and a.shape == b.shape, (what, k)
                        np.testing.assert_allclose(_host(a), _host(b), rtol=50 * RTOL[dtype], atol=50 * RTOL[dtype],
                                                   err_msg=f"{what}: {k}")
                    if train and "num_batches_tracked" in layers[0].buffers:
                        buffers = layers[0].buffers
                        assert float(_host(buffers["num_batches_tracked"])) == 3.0, what
                        stats = (buffers["running_mean"], buffers["running_var"])
                        weight = 1.0 / buffers["num_batches_tracked"]  # as the layer's: the kernel takes it
                        assert cupy_norms._running_ready(*stats, *stats, weight, 1.0 - weight, weight), what


def check_frozen_norms(dev: Any) -> None:
    """BatchNorm and LayerNorm frozen (``requires_grad_(False)``: BatchNorm's kernel in evaluation gives dx only,
    no sums over the batch), in training and evaluation: y, dx and the running statistics against the portable
    layer frozen, dx against the layer not frozen, and no gradients."""
    rng = np.random.default_rng(7)
    for dtype in ("float32", "float64"):
        for make, shape in ((lambda: xn.layers.BatchNorm(3, dtype=dtype), (8, 3, 5, 4)),
                            (lambda: xn.layers.BatchNorm(5, dtype=dtype), (16, 5)),
                            (lambda: xn.layers.LayerNorm((3, 4), dtype=dtype), (6, 2, 3, 4))):
            x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            gamma = rng.uniform(0.5, 2, make().params["gamma"].shape).astype(dtype)
            for train in (True, False):
                results = []
                for fast, frozen in ((True, True), (False, True), (True, False)):
                    layer = make().to(dev)
                    layer.params["gamma"] = dev.asarray(gamma)
                    layer.requires_grad_(not frozen)
                    with fast_paths(fast):
                        y = layer.forward(dev.asarray(x), train=train)
                        dx = layer.backward(dev.asarray(dy))
                    assert not layer.grads or not frozen, (type(layer).__name__, train, sorted(layer.grads))
                    results.append({"y": y, "dx": dx, **layer.buffers})
                what = f"{type(layer).__name__} {dtype} {shape} train={train}"
                for other in results[1:]:
                    for k, b in other.items():
                        a = results[0][k]
                        assert a.dtype == b.dtype and a.shape == b.shape, (what, k)
                        np.testing.assert_allclose(_host(a), _host(b), rtol=50 * RTOL[dtype], atol=50 * RTOL[dtype],
                                                   err_msg=f"{what}: {k}")


def check_training(dev: Any) -> None:
    """``xn.train`` and ``xn.evaluate`` of a small CNN (Conv2d, BatchNorm, ReLU, MaxPool2d, Linear) with
    the kernels and without: the same losses, accuracies (the trainer's count from the loss's row hits
    against its argmax) and weights."""
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((96, 1, 8, 8)), rng.integers(0, 3, 96)
    x[t == 1, :, :4] += 1.0  # something to learn
    runs = []
    for fast in (True, False):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Conv2d(1, 4, 3, padding=1, bias=False, dtype="float64"),
                              xn.layers.BatchNorm(4, dtype="float64"), xn.layers.ReLU(), xn.layers.MaxPool2d(2),
                              xn.layers.Flatten(), xn.layers.Linear(64, 3, dtype="float64")).to(dev)
        with fast_paths(fast):
            history = xn.train(model, (x[:64], t[:64]), loss="cross_entropy", optimizer="adam", epochs=3,
                               batch_size=16, validation=(x[64:], t[64:]), progress=False, graph=False)
            scores = xn.evaluate(model, (x, t), loss="cross_entropy", batch_size=40)
        runs.append((history.epochs, scores, {k: _host(v) for k, v in model.named_params().items()}))
    (epochs, scores, params), (epochs_ref, scores_ref, params_ref) = runs
    for e, e_ref in zip(epochs, epochs_ref):
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(e[k], e_ref[k], rtol=1e-10, err_msg=f"epoch {e['epoch']} {k}")
    assert scores["accuracy"] == scores_ref["accuracy"] and scores["accuracy"] > 0.4, (scores, scores_ref)
    np.testing.assert_allclose(scores["loss"], scores_ref["loss"], rtol=1e-10)
    for k in params_ref:
        np.testing.assert_allclose(params[k], params_ref[k], rtol=1e-9, atol=1e-12, err_msg=k)


# -- LSTM and GRU ------------------------------------------------------------------------------------


def _recurrent_run(dev: Any, make: Callable[..., Any], fast: bool, dtype: str, n: int, steps: int, d: int,
                   hidden: int, start: str, seed: int) -> dict[str, Any]:
    """Forward and backward of the layer ``make(d, hidden, stateful=..., dtype=...)`` (twice when
    ``start == "stateful"``: the second call starts from the first's last state) with the kernels or
    without: outputs, dx, the gradients and the start state's gradients."""
    rng = np.random.default_rng(seed)
    xn.init.seed(seed)
    layer = make(d, hidden, stateful=start == "stateful", dtype=dtype)
    for name in layer.bias_names():  # zeros would hide a mix-up of the blocks
        layer.params[name] = rng.standard_normal(layer.params[name].shape).astype(dtype)
    layer.to(dev)
    calls = 2 if start == "stateful" else 1
    xs = [dev.asarray((rng.standard_normal((n, steps, d)) * 2).astype(dtype)) for _ in range(calls)]
    dhs = [dev.asarray(rng.standard_normal((n, steps, layer.out_size)).astype(dtype)) for _ in range(calls)]
    if start in ("state", "strided state"):
        widths = layer.state_widths  # (P, H) for LSTM's proj_size, else H each
        states = [rng.standard_normal((n, 2 * w)).astype(dtype) for w in widths]
        # views whose rows are 2H apart: the first step takes the portable path, the others the kernel
        states = [dev.asarray(s)[:, :w] if start == "strided state" else dev.asarray(s[:, :w].copy())
                  for s, w in zip(states, widths)]
        layer.set_state(*states)
    out: dict[str, Any] = {}
    with fast_paths(fast):
        for call, (x, dh) in enumerate(zip(xs, dhs)):
            out[f"hs{call}"] = layer.forward(x)
            out[f"dx{call}"] = layer.backward(dh)
            out.update({f"{k}{call}": v for k, v in layer.grads.items()})
            out.update({f"d{k}{call}": getattr(layer, "d" + k) for k in layer.state_names})
    return out


_RECURRENT_CASES = [(3, 5, 4, 7, "zeros"), (1, 1, 2, 1, "zeros"), (4, 3, 6, 33, "state"), (2, 4, 3, 5, "strided state"),
                    (3, 3, 2, 6, "stateful")]


def _check_recurrent(dev: Any, make: Callable[..., Any]) -> None:
    for dtype in ("float32", "float64"):
        for seed, (n, steps, d, hidden, start) in enumerate(_RECURRENT_CASES):
            fast = _recurrent_run(dev, make, True, dtype, n, steps, d, hidden, start, seed)
            portable = _recurrent_run(dev, make, False, dtype, n, steps, d, hidden, start, seed)
            assert fast.keys() == portable.keys()
            for k in portable:
                a, b = fast[k], portable[k]
                assert a.dtype == b.dtype and a.shape == b.shape, (dtype, start, k)
                np.testing.assert_allclose(_host(a), _host(b), rtol=50 * RTOL[dtype], atol=50 * RTOL[dtype],
                                           err_msg=f"{dtype} {(n, steps, d, hidden)} {start}: {k}")


def _step_inputs(dev: Any, dtype: str, blocks: int) -> tuple[Any, ...]:
    """What the layer gives a step's kernels: a time step's slice of the projection and of dhs, h, c, Wh
    and Wh^T as a view."""
    rng = np.random.default_rng(9)
    n, hidden = 3, 4
    ax = dev.asarray(rng.standard_normal((n, 5, blocks * hidden)).astype(dtype))[:, 2, :]
    h, c = (dev.asarray(rng.standard_normal((n, hidden)).astype(dtype)) for _ in range(2))
    Wh = dev.asarray(rng.standard_normal((hidden, blocks * hidden)).astype(dtype))
    dh = dev.asarray(rng.standard_normal((n, 5, hidden)).astype(dtype))[:, 1, :]
    return ax, h, c, Wh, Wh.T, dh, rng


def _assert_close(got: Any, want: Any, names: tuple[str, ...], dtype: str, what: str) -> None:
    for k, a, b in zip(names, got, want):
        np.testing.assert_allclose(_host(a), _host(b), rtol=50 * RTOL[dtype], atol=50 * RTOL[dtype],
                                   err_msg=f"{dtype} {what}: {k}")


def check_lstm(dev: Any) -> None:
    """The LSTM step's two kernels against the portable cells, through the layer: outputs, dx, the
    gradients of Wx, Wh and b, and the start state's dh and dc; from zeros, from a set state (contiguous,
    and a strided view, which the kernel does not take), and stateful over two calls; sizes that fill no
    block of threads; with proj_size (h narrower than c, Wr's gradient). Also: the kernel's backward after a
    portable forward (another layout of the gates)."""
    from xpnet.layers import cells

    cupy_cells = _cells()
    _check_recurrent(dev, xn.layers.LSTM)
    # proj_size H // 2 (0, no projection, where H is 1): h narrower than c
    _check_recurrent(dev, lambda d, hidden, **kw: xn.layers.LSTM(d, hidden, proj_size=hidden // 2, **kw))
    for dtype in ("float32", "float64"):
        ax, h, c, Wh, WhT, dh, rng = _step_inputs(dev, dtype, 4)
        dc = dev.asarray(rng.standard_normal(tuple(h.shape)).astype(dtype))
        assert cupy_cells._lstm_ready(ax, h, c, Wh)
        assert not cupy_cells._lstm_ready(ax, h, c, Wh[:, :8])
        with fast_paths(False):
            fed = cells.lstm_step(ax, h, c, Wh)
        for dc_next in (dc, None):
            assert cupy_cells._lstm_backward_ready(dh, dc_next, fed[2], WhT)
            with fast_paths(False):
                want = cells.lstm_step_backward(dh, dc_next, fed[2], WhT)
            _assert_close(cupy_cells.lstm_step_backward(dh, dc_next, fed[2], WhT), want,
                          ("dax", "dah", "dh_prev", "dc_prev"), dtype,
                          f"after a portable forward, dc {dc_next is not None}")
        carry = dev.asarray(rng.standard_normal(tuple(h.shape)).astype(dtype))  # the next step's dh_prev
        assert cupy_cells._lstm_backward_ready(dh, dc, fed[2], WhT, carry)
        assert not cupy_cells._lstm_backward_ready(dh, dc, fed[2], WhT, carry.T)
        with fast_paths(False):
            want = cells.lstm_step_backward(dh, dc, fed[2], WhT, carry)
            unfolded = cells.lstm_step_backward(dh + carry, dc, fed[2], WhT)
        _assert_close(want, unfolded, ("dax", "dah", "dh_prev", "dc_prev"), dtype, "the portable carry")
        _assert_close(cupy_cells.lstm_step_backward(dh, dc, fed[2], WhT, carry), want,
                      ("dax", "dah", "dh_prev", "dc_prev"), dtype, "dh + carry in the kernel")


def check_rnn(dev: Any) -> None:
    """The Elman RNN's step as two kernels against the portable cells, as :func:`check_lstm`, with tanh and
    with ReLU (``nonlinearity="relu"``)."""
    from xpnet.layers import cells

    cupy_cells = _cells()
    _check_recurrent(dev, xn.layers.RNN)
    _check_recurrent(dev, functools.partial(xn.layers.RNN, nonlinearity="relu"))
    for dtype in ("float32", "float64"):
        ax, h, _, Wh, WhT, dh, _ = _step_inputs(dev, dtype, 1)
        assert cupy_cells._rnn_ready(ax, h, Wh)
        with fast_paths(False):
            fed = cells.rnn_step(ax, h, Wh)
            want = cells.rnn_step_backward(dh, fed[1], WhT)
        assert cupy_cells._rnn_backward_ready(dh, fed[1], WhT)
        _assert_close(cupy_cells.rnn_step_backward(dh, fed[1], WhT), want, ("dax", "dah", "dh_prev"), dtype,
                      "after a portable forward")
        carry = dev.asarray(np.random.default_rng(2).standard_normal(tuple(h.shape)).astype(dtype))
        assert cupy_cells._rnn_backward_ready(dh, fed[1], WhT, carry)
        assert not cupy_cells._rnn_backward_ready(dh, fed[1], WhT, carry.T)
        with fast_paths(False):
            want = cells.rnn_step_backward(dh, fed[1], WhT, carry)
        _assert_close(cupy_cells.rnn_step_backward(dh, fed[1], WhT, carry), want, ("dax", "dah", "dh_prev"),
                      dtype, "dh + carry in the kernel")
        _assert_close(cupy_cells.rnn_step(ax, h, Wh)[1], fed[1], ("h", "h_next"), dtype, "the forward's cache")
        # nonlinearity="relu": the same kernels, max(a, 0) and dh where h_next > 0 (half the units at 0 here)
        assert cupy_cells._rnn_ready(ax, h, Wh)
        with fast_paths(False):
            fed = cells.rnn_relu_step(ax, h, Wh)
            want = cells.rnn_relu_step_backward(dh, fed[1], WhT, carry)
        assert 0 < int(np.count_nonzero(_host(fed[0]) == 0)) < fed[0].size
        _assert_close(cupy_cells.rnn_relu_step(ax, h, Wh)[1], fed[1], ("h", "h_next"), dtype, "relu's forward")
        _assert_close(cupy_cells.rnn_relu_step_backward(dh, fed[1], WhT, carry), want, ("dax", "dah", "dh_prev"),
                      dtype, "relu's backward, dh + carry in the kernel")


def check_gru(dev: Any) -> None:
    """PyTorch's GRU step as two kernels against the portable cells, as :func:`check_lstm`, with the hidden
    bias and without (``bias=False``); the book's GRU (``convention="book"``) as four kernels and four products,
    the carried gradient added inside."""
    from xpnet.layers import cells

    cupy_cells = _cells()
    _check_recurrent(dev, xn.layers.GRU)
    _check_recurrent(dev, functools.partial(xn.layers.GRU, bias=False))
    _check_recurrent(dev, functools.partial(xn.layers.GRU, convention="book"))
    for dtype in ("float32", "float64"):
        ax, h, _, Wh, _, dh, rng = _step_inputs(dev, dtype, 3)
        carry = dev.asarray(rng.standard_normal(tuple(h.shape)).astype(dtype))
        assert cupy_cells._gru_book_ready(ax, h, Wh)
        with fast_paths(False):
            fed = cells.gru_book_step(ax, h, Wh)
        _assert_close(cupy_cells.gru_book_step(ax, h, Wh), fed, ("h_next",), dtype, "the book's forward")
        _assert_close(cupy_cells.gru_book_step(ax, h, Wh)[1], fed[1], ("h", "z", "r", "rh", "hh"), dtype,
                      "the book's forward's cache")
        for given in (carry, None):
            assert cupy_cells._gru_book_backward_ready(dh, fed[1], Wh, given)
            with fast_paths(False):
                want = cells.gru_book_step_backward(dh, fed[1], Wh, given)
            got = cupy_cells.gru_book_step_backward(dh, fed[1], Wh, given)
            _assert_close((got[0], *got[1], got[2]), (want[0], *want[1], want[2]), ("dax", "dzr", "dt", "dh_prev"),
                          dtype, f"the book's backward after a portable forward, carry {given is not None}")
        assert not cupy_cells._gru_book_backward_ready(dh, fed[1], Wh, carry.T)
    for dtype in ("float32", "float64"):
        ax, h, _, Wh, WhT, dh, rng = _step_inputs(dev, dtype, 3)
        bh = dev.asarray(rng.standard_normal(int(Wh.shape[1])).astype(dtype))
        for bias in (bh, None):
            assert cupy_cells._gru_ready(ax, h, Wh, bias)
            with fast_paths(False):
                fed = cells.gru_step(ax, h, Wh, bias)
                want = cells.gru_step_backward(dh, fed[1], WhT)
            assert cupy_cells._gru_backward_ready(dh, fed[1], WhT)
            _assert_close(cupy_cells.gru_step_backward(dh, fed[1], WhT), want, ("dax", "dah", "dh_prev"), dtype,
                          f"after a portable forward, bh {bias is not None}")
            carry = dev.asarray(rng.standard_normal(tuple(h.shape)).astype(dtype))
            assert cupy_cells._gru_backward_ready(dh, fed[1], WhT, carry)
            with fast_paths(False):
                want = cells.gru_step_backward(dh, fed[1], WhT, carry)
            _assert_close(cupy_cells.gru_step_backward(dh, fed[1], WhT, carry), want,
                          ("dax", "dah", "dh_prev"), dtype, f"dh + carry in the kernel, bh {bias is not None}")
            _assert_close(cupy_cells.gru_step(ax, h, Wh, bias)[1], fed[1], ("h", "r", "z", "n", "ah_n"), dtype,
                          f"the forward's cache, bh {bias is not None}")


def check_language_model_training(dev: Any) -> None:
    """``xn.train`` of a 2-layer LSTM language model over a token stream (truncated BPTT, the state carried
    across batches) with the kernels and without: the same losses and weights."""
    rng = np.random.default_rng(6)
    ids = np.tile(rng.integers(0, 11, 37), 12)  # a repeating text: something to learn
    runs = []
    for fast in (True, False):
        xn.init.seed(0)
        model = xn.models.LanguageModel(11, 8, 12, num_layers=2, dtype="float64").to(dev)
        stream = xn.datasets.TokenStream(xn.to_device(ids, dev), 4, 6)
        with fast_paths(fast):
            history = xn.train(model, stream, loss="cross_entropy", optimizer=xn.optim.Adam(0.02), epochs=3,
                               progress=False, graph=False)
        runs.append((history.epochs, {k: _host(v) for k, v in model.named_params().items()}))
    (epochs, params), (epochs_ref, params_ref) = runs
    assert epochs[-1]["train_loss"] < 0.8 * epochs[0]["train_loss"], epochs
    for e, e_ref in zip(epochs, epochs_ref):
        np.testing.assert_allclose(e["train_loss"], e_ref["train_loss"], rtol=1e-10, err_msg=f"epoch {e['epoch']}")
    for k in params_ref:
        np.testing.assert_allclose(params[k], params_ref[k], rtol=1e-9, atol=1e-12, err_msg=k)


# -- Softmax ------------------------------------------------------------------------------------------


@_inf_times_zero
def check_softmax(dev: Any) -> None:
    """Softmax's kernels (a thread per row, last axis) against the portable path through the layer, forward and
    backward, at the tolerance of test_every_layer_everywhere's GPU cases (rtol 1e-4, atol 1e-5; the kernel sums
    in double): rows of -inf only and holding a NaN give NaN in both, a partly masked row 0 where masked;
    another axis and rows past MAX_CLASSES take the portable path."""
    cupy_layers = _kernels()
    rng = np.random.default_rng(4)
    for dtype in ("float32", "float64"):
        x = (rng.standard_normal((3, 4, 9)) * 4).astype(dtype)
        x[0, 0, :] = -np.inf
        x[0, 1, 2] = np.nan
        x[0, 3, :4] = -np.inf
        dy = rng.standard_normal(x.shape).astype(dtype)
        assert cupy_layers._softmax_ready(dev.asarray(x), 2)
        assert cupy_layers._softmax_backward_ready(dev.asarray(x), dev.asarray(dy), 2)
        got = {}
        for fast in (True, False):
            layer = xn.layers.Softmax(dim=-1)
            with fast_paths(fast):
                got[fast] = (_host(layer.forward(dev.asarray(x))), _host(layer.backward(dev.asarray(dy))))
        for k, a, b in zip(("y", "dx"), got[True], got[False]):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{dtype} {k}")
            np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{dtype} {k}")
        assert np.all(got[True][0][0, 3, :4] == 0) and np.isclose(got[True][0][0, 3, 4:].sum(), 1)
    assert not cupy_layers._softmax_ready(dev.asarray(x), 1)
    assert not cupy_layers._softmax_ready(dev.asarray(np.zeros((2, cupy_layers.MAX_CLASSES + 1))), 1)


def check_layernorm(dev: Any) -> None:
    """LayerNorm's kernels (a thread per row; dgamma and dbeta as column reductions) against the portable path
    through the layer, forward and backward, at BatchNorm's tolerance: over the last axis and the last two, with
    gamma and beta, without beta (``bias=False``), without either (``elementwise_affine=False``), frozen (dx only);
    GroupNorm, which goes through it; rows past MAX_CLASSES take the portable path."""
    cupy_layers, cupy_norms = _kernels(), _norms()
    rng = np.random.default_rng(10)
    for dtype in ("float32", "float64"):
        for make, shape in ((lambda: xn.layers.LayerNorm(7, dtype=dtype), (3, 5, 7)),
                            (lambda: xn.layers.LayerNorm((3, 4), bias=False, dtype=dtype), (2, 3, 4)),
                            (lambda: xn.layers.LayerNorm(5, elementwise_affine=False, dtype=dtype), (6, 5)),
                            (lambda: xn.layers.LayerNorm(5, dtype=dtype).requires_grad_(False), (6, 5)),
                            (lambda: xn.layers.GroupNorm(2, 4, dtype=dtype), (3, 4, 6))):
            x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            results = []
            for fast in (True, False):
                layer, draw = make().to(dev), np.random.default_rng(11)  # the same parameters for both runs
                for k in layer.params:  # not ones and zeros: a mix-up of gamma and beta shows
                    layer.params[k] = dev.asarray(draw.uniform(0.5, 2, layer.params[k].shape).astype(dtype))
                with fast_paths(fast):
                    y = layer.forward(dev.asarray(x))
                    dx = layer.backward(dev.asarray(dy))
                results.append({"y": y, "dx": dx, **layer.grads})
            what = f"{type(layer).__name__} {dtype} {shape}"
            assert results[0].keys() == results[1].keys(), what
            for k, a in results[0].items():
                b = results[1][k]
                assert a.dtype == b.dtype and a.shape == b.shape, (what, k)
                np.testing.assert_allclose(_host(a), _host(b), rtol=50 * RTOL[dtype], atol=50 * RTOL[dtype],
                                           err_msg=f"{what}: {k}")
        x2 = dev.asarray(rng.standard_normal((4, 6)).astype(dtype))
        assert cupy_norms._layernorm_ready(x2, None, None, 1e-5)
        assert not cupy_norms._layernorm_ready(x2[:, ::2], None, None, 1e-5)
    wide = dev.asarray(np.zeros((2, cupy_layers.MAX_CLASSES + 1), np.float32))
    assert not cupy_norms._layernorm_ready(wide, None, None, 1e-5)


def check_embedding_backward(dev: Any) -> None:
    """Embedding's backward as the sorted segment-sum kernels against the portable one-hot products: repeated ids,
    ids outside [0, V) (added nowhere in both), int32 and int64 ids, float32 and float64, no ids at all, 50,000 ids;
    through the layer with padding_idx; a transposed dy takes the portable path."""
    from xpnet.layers import embedding

    cupy_layers = _kernels()
    rng = np.random.default_rng(8)
    for id_dtype in (np.int32, np.int64):
        for dtype in ("float32", "float64"):
            for m in (37, 0):
                ids = dev.asarray(rng.integers(-2, 12, m).astype(id_dtype))
                dy = dev.asarray(rng.standard_normal((m, 5)).astype(dtype))
                assert cupy_layers._embedding_ready(ids, dy, 10)
                fast = cupy_layers.embedding_backward(ids, dy, 10)
                slow = embedding.embedding_backward(ids, dy, 10)
                assert fast.dtype == slow.dtype and fast.shape == slow.shape == (10, 5)
                np.testing.assert_allclose(_host(fast), _host(slow), rtol=RTOL[dtype], atol=RTOL[dtype],
                                           err_msg=f"{id_dtype.__name__} {dtype} {m}")
    assert not cupy_layers._embedding_ready(dev.asarray(np.arange(4)), dev.asarray(np.zeros((3, 4))).T, 10)
    # 50,000 positions (past the 65,536 of the pairwise kernel before it: no limit now), ids repeated ~50 times and
    # one id 10,000 times: the sort's chunks and their merge; each id's rows added in the order of their positions,
    # as np.add.at (bit for bit, the same bits at a second run), and the portable products within the dtype's
    # tolerance.
    ids = rng.integers(0, 1000, 50_000)
    ids[rng.permutation(50_000)[:10_000]] = 3
    ids[[5, 77]] = -1, 1000
    for dtype, id_dtype in (("float64", np.int64), ("float32", np.int32)):
        host = rng.standard_normal((50_000, 2)).astype(dtype)
        expected = np.zeros((1000, 2), dtype)
        inside = (ids >= 0) & (ids < 1000)
        np.add.at(expected, ids[inside], host[inside])
        ids_d, dy = dev.asarray(ids.astype(id_dtype)), dev.asarray(host)
        assert cupy_layers._embedding_ready(ids_d, dy, 1000) and 50_000 > cupy_layers._chunk(50_000)
        fast = _host(cupy_layers.embedding_backward(ids_d, dy, 1000))
        np.testing.assert_array_equal(fast, expected, err_msg=dtype)
        np.testing.assert_array_equal(_host(cupy_layers.embedding_backward(ids_d, dy, 1000)), fast, err_msg=dtype)
        if dtype == "float64":
            with fast_paths(False):
                np.testing.assert_allclose(fast, _host(embedding.embedding_backward(ids_d, dy, 1000)),
                                           rtol=RTOL[dtype], atol=RTOL[dtype])
    grads = {}
    ids = rng.integers(0, 9, (6, 4))
    dy = rng.standard_normal((6, 4, 3)).astype(np.float32)
    for fast in (True, False):
        xn.init.seed(0)
        layer = xn.layers.Embedding(9, 3, padding_idx=2).to(dev)
        with fast_paths(fast):
            layer.forward(dev.asarray(ids))
            layer.backward(dev.asarray(dy))
        grads[fast] = _host(layer.grads["W"])
    np.testing.assert_allclose(grads[True], grads[False], rtol=RTOL["float32"], atol=RTOL["float32"])
    assert np.all(grads[True][2] == 0) and np.any(grads[True] != 0)


def check_epoch_sums(dev: Any) -> None:
    """The epoch sums' kernels (a step's loss and correct count added in one) equal the portable additions bit
    for bit where no FMA is contracted, here at the dtype's tolerance: an int count or one on the device (ignored
    labels), with hits and without (the correct count then left as it is, the same array); a count of another
    index dtype takes the portable path."""
    from xpnet.backend import fast_cupy
    from xpnet.training import epoch_sums

    for dtype in ("float32", "float64"):
        sums = (dev.asarray(np.asarray(12.5, dtype)), dev.asarray(np.asarray(0.7317, dtype)))
        correct = dev.asarray(np.asarray(41))
        for count in (100, dev.asarray(np.asarray(100))):
            for hits in (dev.asarray(np.asarray(87)), None):
                args = (*sums, count, correct, hits)
                assert fast_cupy._epoch_sums_ready(*args), (dtype, count, hits)
                fast, slow = fast_cupy.epoch_sums(*args), epoch_sums._add_batch(*args)
                for a, b in zip(fast, slow):
                    assert a.dtype == b.dtype and a.shape == () == b.shape
                    np.testing.assert_allclose(_host(a), _host(b), rtol=RTOL[dtype])
                assert hits is not None or fast[1] is correct
        assert not fast_cupy._epoch_sums_ready(*sums, dev.asarray(np.asarray(100, np.int32)), correct, None)


# -- gradient clipping (xpnet.backend.fast_cupy) ----------------------------------------------------


def check_clipping(dev: Any) -> None:
    """clip_grad_norm's norm and factor (one reduction a gradient, one kernel) against the portable sums at the
    dtype's tolerance (the same order of adds; a GPU's reductions may sum a gradient in another order), NaN where a
    gradient holds one; clip_grad_value's kernel bit for bit (NaN and infinities too); a list of mixed dtypes
    takes the portable path; clip_grad_norm on a model scales its gradients alike."""
    from xpnet.backend import fast_cupy
    from xpnet.optim import clip
    from xpnet.optim.device_scalars import DeviceScalars

    rng = np.random.default_rng(5)
    for dtype in ("float32", "float64"):
        host = [rng.standard_normal(s).astype(dtype) for s in ((7, 3), (5,), (1,))]
        host[1][[0, 2]] = np.inf, -np.inf
        for case in (host[::2], [h if k != 1 else np.where(np.isinf(h), np.nan, h) for k, h in enumerate(host)]):
            grads = [dev.asarray(h) for h in case]
            for max_norm in (0.5, 100.0):
                assert fast_cupy._clip_ready(grads, max_norm)
                for fast, slow in zip(fast_cupy.clip_norm_factor(grads, max_norm), clip.norm_factor(grads, max_norm)):
                    assert fast.dtype == slow.dtype and fast.shape == () == slow.shape
                    np.testing.assert_allclose(_host(fast), _host(slow), rtol=RTOL[dtype])
        g = dev.asarray(host[1])
        assert fast_cupy._clamp_ready(g, 0.5)
        np.testing.assert_array_equal(_host(fast_cupy.clamp(g, 0.5)), _host(clip.clamp(g, 0.5)))
    mixed = [dev.asarray(np.ones(3, np.float32)), dev.asarray(np.ones(3))]
    assert not fast_cupy._clip_ready(mixed, 1.0)
    norms, grads, x = {}, {}, rng.standard_normal((5, 4)).astype(np.float32)
    for fast in (False, True):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(4, 3), xn.layers.Linear(3, 2)).to(dev)
        with fast_paths(False):
            model.backward(model.forward(dev.asarray(x)))
        with fast_paths(fast):
            norms[fast] = _host(xn.optim.clip_grad_norm(model, 0.1))
        grads[fast] = {k: _host(g) for k, g in model.named_grads().items()}
    np.testing.assert_allclose(norms[True], norms[False], rtol=RTOL["float32"])
    assert norms[True] > 0.1
    for k in grads[False]:
        np.testing.assert_allclose(grads[True][k], grads[False][k], rtol=RTOL["float32"], err_msg=k)


@contextlib.contextmanager
def _raw_launches() -> Iterator[list[str]]:
    """The names of the raw kernels ``xpnet.backend.cupy_layers._launch`` starts meanwhile (from there and from
    ``cupy_norms``, which imported it)."""
    cupy_layers, cupy_norms = _kernels(), _norms()
    names, launch = [], cupy_layers._launch

    def counted(name: str, *args: Any, **kwargs: Any) -> None:
        names.append(name)
        launch(name, *args, **kwargs)

    cupy_layers._launch = cupy_norms._launch = counted
    try:
        yield names
    finally:
        cupy_layers._launch = cupy_norms._launch = launch


def check_multi_tensor(dev: Any) -> None:
    """The multi-tensor kernels (up to MULTI arrays a launch) against the portable code: clip_grad_norm's norm and
    factor at the dtype's tolerance and its scaled gradients bit for bit, over 40 gradients (two launches) of sizes
    from 1 to past 1,024 (several lanes); Adam, AdamW (decay on the weights only), SGD (plain, with momentum and
    dampening, Nesterov's) and Nesterov over a model of 40 parameters, three steps: parameters and state against the
    per-parameter updates (fast paths off) at BatchNorm's tolerance, in two launches a step; also with AMSGrad and
    with the L2 weight decay of Adam, SGD and Nesterov folded in, and with lr and t on the device (DeviceScalars, as
    a captured step: the kernels that read them there) against the eager per-parameter updates."""
    from xpnet.backend import fast_cupy
    from xpnet.optim import clip
    from xpnet.optim.device_scalars import DeviceScalars

    rng = np.random.default_rng(12)
    sizes = [int(rng.integers(1, 40)) for _ in range(37)] + [1025, 3000, 1]
    for dtype in ("float32", "float64"):
        grads = [dev.asarray(rng.standard_normal(n).astype(dtype)) for n in sizes]
        with _raw_launches() as names:
            fast = fast_cupy.clip_norm_factor(grads, 0.5)
            scaled = fast_cupy.scaled(grads, fast[1])
        assert names == ["multi_squares", "multi_squares", "clip_norm_factor", "multi_scale", "multi_scale"], names
        for a, b in zip(fast, clip.norm_factor(grads, 0.5)):
            np.testing.assert_allclose(_host(a), _host(b), rtol=RTOL[dtype], err_msg=dtype)
        assert fast_cupy._scaled_ready(grads, fast[1])
        for a, b in zip(scaled, clip.scaled(grads, fast[1])):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(_host(a), _host(b), err_msg=dtype)
    # a gradient that is a strided view (Conv2d's dW: a transposed product) is copied, not refused
    p, g = dev.asarray(rng.standard_normal((3, 4))), dev.asarray(rng.standard_normal((4, 3))).T
    expected = _host(p - 0.1 * (g + 0.5 * p))
    assert not g.flags.c_contiguous and fast_cupy.sgd_multi_tensor([p], [g], None, 0.1, 0.0, 0.0, False, [0.5]) is None
    np.testing.assert_allclose(_host(p), expected, rtol=RTOL["float64"])
    x = rng.standard_normal((6, 3))
    # (optimizer, launches of its multi-tensor kernel in 3 steps: two a step, none at SGD momentum's first step,
    # which makes the buffers (Nesterov's first step is any step); "dev": lr and t on the device, as a captured step)
    wd = {"weight_decay": 0.1}  # the book's L2 on the weights (W), the biases spared: both kinds of slot
    for make, kernel, launches in ((lambda: xn.optim.Adam(0.01), "multi_adam", 6),
                                   (lambda: xn.optim.AdamW(0.01, weight_decay_on="weights"), "multi_adam", 6),
                                   (lambda: xn.optim.Adam(0.01, amsgrad=True), "multi_adam", 6),
                                   (lambda: xn.optim.Adam(0.01, amsgrad=True, **wd), "multi_adam", 6),
                                   (lambda: xn.optim.SGD(0.01), "multi_sgd", 6),
                                   (lambda: xn.optim.SGD(0.01, **wd), "multi_sgd", 6),
                                   (lambda: xn.optim.SGD(0.01, momentum=0.9, dampening=0.1), "multi_sgd", 4),
                                   (lambda: xn.optim.SGD(0.01, momentum=0.9, nesterov=True, **wd), "multi_sgd", 4),
                                   (lambda: xn.optim.Nesterov(0.01, momentum=0.9), "multi_sgd", 6),
                                   (lambda: xn.optim.Nesterov(0.01, momentum=0.9, **wd), "multi_sgd", 6),
                                   (lambda: xn.optim.AdamW(0.01), "multi_adam_dev", 6),
                                   (lambda: xn.optim.Adam(0.01, convention="book", amsgrad=True, **wd),
                                    "multi_adam_dev", 6),
                                   (lambda: xn.optim.SGD(0.01, momentum=0.9, **wd), "multi_sgd_dev", 4),
                                   (lambda: xn.optim.Nesterov(0.01, momentum=0.9, **wd), "multi_sgd_dev", 6)):
        results = []
        for fast in (True, False):
            xn.init.seed(0)
            model = xn.Sequential(*[xn.layers.Linear(3, 3, init="xavier", dtype="float64") for _ in range(20)]).to(dev)
            opt = make()
            if kernel.endswith("_dev"):  # as a captured step reads them; the reference is the eager step
                opt.device_scalars = DeviceScalars(dev.xp, dev.native) if fast else None
                if fast:
                    opt.device_scalars.set(opt.lr, opt.t)
            with fast_paths(fast), _raw_launches() as names:
                for _ in range(3):
                    model.backward(model.forward(dev.asarray(x)))
                    opt.step(model)
            state = {f"{k} {s}": a for k, slots in opt.state.items() for s, a in slots.items()}
            results.append(({k: _host(v) for k, v in model.named_params().items()},
                            {k: _host(v) for k, v in state.items()}, names))
        (params, state, names), (params_ref, state_ref, _) = results
        what = repr(opt)
        assert names.count(kernel) == launches, (what, names)
        assert all(np.all(np.isfinite(v)) for v in (*params.values(), *state.values())), what
        assert params.keys() == params_ref.keys() and state.keys() == state_ref.keys()
        for k in (*params_ref, *state_ref):
            a, b = (params[k], params_ref[k]) if k in params_ref else (state[k], state_ref[k])
            np.testing.assert_allclose(a, b, rtol=50 * RTOL["float64"], atol=50 * RTOL["float64"],
                                       err_msg=f"{what} {k}")


def check_lerp_all(dev: Any) -> None:
    """AveragedModel's averages (swa_utils.lerp_all: PyTorch's lerp, from the start for weights below 0.5, from the
    end above) as one multi-tensor kernel per 32 arrays, against the portable lerp at the dtype's tolerance, over 40
    arrays (two launches); an EMA update of a model launches it once, and one copy kernel for its buffers (BatchNorm's
    running statistics, equal to the model's, new arrays)."""
    from xpnet.backend import fast_cupy
    from xpnet.optim import swa_utils

    rng = np.random.default_rng(5)
    sizes = [int(rng.integers(1, 30)) for _ in range(39)] + [1500]
    for dtype in ("float32", "float64"):
        starts, ends = ([dev.asarray(rng.standard_normal(n).astype(dtype)) for n in sizes] for _ in range(2))
        for weight in (0.01, 0.75):
            with _raw_launches() as names:
                got = fast_cupy.lerp_all(starts, ends, weight)
            assert names == ["multi_lerp"] * 2, names
            for a, b in zip(got, swa_utils.lerp_all(starts, ends, weight)):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_allclose(_host(a), _host(b), rtol=RTOL[dtype], atol=RTOL[dtype],
                                           err_msg=f"{dtype} {weight}")
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(3, 4), xn.layers.BatchNorm(4), xn.layers.ReLU(),
                          xn.layers.Linear(4, 2)).to(dev)
    ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9))
    ema.update_parameters(model)
    for p in model.named_params().values():
        p += 1.0
    model.forward(dev.asarray(rng.standard_normal((5, 3)).astype("float32")))  # the running statistics move on
    with _raw_launches() as names:
        ema.update_parameters(model)
    assert names == ["multi_lerp", "multi_copy"], names
    for k, v in ema.module.named_params().items():
        np.testing.assert_allclose(_host(v), _host(model.named_params()[k]) - 0.9, rtol=1e-5, atol=1e-6, err_msg=k)
    buffers = model.named_buffers()
    for k, v in ema.module.named_buffers().items():  # copies of the model's, not its arrays
        assert v is not buffers[k] and v.dtype == buffers[k].dtype
        np.testing.assert_array_equal(_host(v), _host(buffers[k]), err_msg=k)


def check_conv_input_grad(dev: Any) -> None:
    """Conv2d's input gradient: col2im (strided, dilated, padded, per sample or not), the stride-1 flat dy and shifted
    sums as one kernel each, equal bit for bit to the portable zeros, copies and adds (the same sums in the same
    order), NCHW (a view of dy takes the portable copy); and im2col as one kernel, equal to the strided copy (a
    non-contiguous x takes that copy)."""
    import cupy

    from xpnet.backend import cupy_layers, fast_cupy, fast_path
    from xpnet.backend.fast_numpy import im2col_strided
    from xpnet.layers import _im2col

    rng = np.random.default_rng(3)
    for dtype in ("float32", "float64"):
        for x_shape, kernel, stride, padding, dilation in (((2, 3, 7, 6), (3, 3), (2, 2), (1, 1), (1, 1)),
                                                          ((3, 2, 6, 7), (2, 3), (1, 2), (0, 2), (2, 1)),
                                                          ((2, 4, 5, 5), (1, 1), (2, 2), (0, 0), (1, 1))):
            (kh, kw), (n, c, h, w) = kernel, x_shape
            oh, ow = _im2col.conv_out_hw((h, w), kernel, stride, padding, dilation)
            x = dev.asarray(rng.standard_normal(x_shape).astype(dtype))
            for per_sample in (False, True):
                with _raw_launches() as names:
                    got = fast_cupy.im2col(x, kernel, stride, padding, per_sample, dilation)
                want = im2col_strided(cupy, x, kernel, stride, padding, per_sample, dilation)
                assert names == ["im2col"] and got.shape == want.shape and got.dtype == want.dtype
                np.testing.assert_array_equal(_host(got), _host(want), err_msg=f"im2col {x_shape} {kernel}")
                strided = x[:, :, :, ::-1]
                with _raw_launches() as names:
                    got = fast_cupy.im2col(strided, kernel, stride, padding, per_sample, dilation)
                assert names == [], names
                np.testing.assert_array_equal(_host(got), _host(im2col_strided(cupy, strided, kernel, stride, padding,
                                                                               per_sample, dilation)))
                shape = (n, c * kh * kw, oh * ow) if per_sample else (c * kh * kw, n * oh * ow)
                col = dev.asarray(rng.standard_normal(shape).astype(dtype))
                with _raw_launches() as names:
                    got = cupy_layers.col2im(col, x_shape, kernel, stride, padding, per_sample, dilation)
                want = _im2col.col2im_portable(col, x_shape, kernel, stride, padding, per_sample, dilation)
                assert names == ["col2im"] and got.flags.c_contiguous and got.shape == want.shape
                np.testing.assert_array_equal(_host(got), _host(want), err_msg=f"{x_shape} {kernel} {per_sample}")
            rows, wp = h + padding[0], w + 2 * padding[1]
            dcol = dev.asarray(rng.standard_normal((c, kh * kw, n * rows * wp)).astype(dtype))
            with _raw_launches() as names:
                got = cupy_layers.conv_shifted_sums(dcol, x_shape, kernel, padding, dilation, rows, wp)
            want = _im2col.shifted_sums_portable(dcol, x_shape, kernel, padding, dilation, rows, wp)
            assert names == ["shifted_sums"] and got.flags.c_contiguous and got.shape == want.shape
            np.testing.assert_array_equal(_host(got), _host(want), err_msg=f"shifted sums {x_shape} {kernel}")
            oh1, ow1 = _im2col.conv_out_hw((h, w), kernel, (1, 1), padding, dilation)
            dy = dev.asarray(rng.standard_normal((n, 3, oh1, ow1)).astype(dtype))
            for each, kernels in ((dy, ["flat_dy"]), (dy[:, 1:], [])):  # a group's channels, a view: the portable copy
                with _raw_launches() as names:
                    got = fast_path("conv_flat_dy", dev.xp, _im2col.flat_dy_portable)(each, max(rows, oh1), wp)
                want = _im2col.flat_dy_portable(each, max(rows, oh1), wp)
                assert names == kernels and got.shape == want.shape and got.dtype == want.dtype, names
                np.testing.assert_array_equal(_host(got), _host(want), err_msg=f"flat dy {x_shape} {kernel}")


def check_shift_flip(dev: Any) -> None:
    """RandomShiftFlip's kernel (fast_cupy.shift_flip) against the portable flip and shifts, bit for bit (NaN and -0.0
    among the pixels): 3-, 4- and 5-d batches, shifts up to 1 and 3, with and without flips, both dtypes; one launch
    a call and nothing else but the draws' copy."""
    rng = np.random.default_rng(8)
    for dtype in ("float32", "float64"):
        for shape, max_shift, flip in (((33, 5, 4), 1, True), ((16, 2, 6, 7), 3, True), ((6, 2, 2, 4, 5), 1, False),
                                       ((9, 1, 3, 3), 0, True)):
            x = rng.standard_normal(shape).astype(dtype)
            x.reshape(-1)[[0, 7]] = [np.nan, -0.0]
            xd, transform = dev.asarray(x), xn.datasets.RandomShiftFlip(max_shift, flip=flip, seed=2)
            results = []
            for fast in (True, False):
                with fast_paths(fast), _raw_launches() as names, count_launches() as counts:
                    results.append(_host(transform(xd, 1, 4)))
                if fast:
                    assert names == ["shift_flip"] and counts["launches"] == 1, (dtype, shape, names, counts)
            assert results[0].dtype == results[1].dtype
            np.testing.assert_array_equal(results[0].view(f"u{x.itemsize}"), results[1].view(f"u{x.itemsize}"),
                                          err_msg=f"{dtype} {shape} max_shift={max_shift} flip={flip}")


def check_global_avg_pool(dev: Any) -> None:
    """GlobalAvgPool's backward (cupy_layers.global_avg_pool_backward, one kernel) against the portable one bit for bit,
    the sign of zeros included (-0 in dy gives +0, as the portable + 0), inf and NaN in dy, both dtypes."""
    from xpnet.layers.pool import global_avg_pool_backward

    cupy_layers = _kernels()
    rng = np.random.default_rng(10)
    for dtype in ("float32", "float64"):
        for shape in ((3, 4, 5, 6), (2, 1, 1, 1), (1, 3, 7, 2)):
            dy = rng.standard_normal(shape[:2]).astype(dtype)
            dy.reshape(-1)[: min(dy.size, 3)] = [-0.0, np.inf, np.nan][: min(dy.size, 3)]
            dy = dev.asarray(dy)
            assert cupy_layers._spread_ready(dy, shape), shape
            with _raw_launches() as names:
                got = cupy_layers.global_avg_pool_backward(dy, shape)
            want = global_avg_pool_backward(dy, shape)
            assert names == ["spread_mean"] and got.shape == want.shape and got.dtype == want.dtype, names
            np.testing.assert_array_equal(_host(got).view(f"u{got.itemsize}"), _host(want).view(f"u{got.itemsize}"),
                                          err_msg=f"{dtype} {shape}")


def check_all_finite(dev: Any) -> None:
    """The epoch's finite check of the weights (fast_cupy.all_finite, one launch per MULTI arrays) against the portable
    guard.all_finite: 40 arrays of both dtypes (two launches), all finite, then one inf, -inf or NaN in the first,
    a middle or the last array (the last past the first launch), a huge finite value, and the answer before False."""
    from xpnet.backend import fast_cupy
    from xpnet.training.guard import all_finite

    rng = np.random.default_rng(9)
    for dtype in ("float32", "float64"):
        host = [rng.standard_normal(shape).astype(dtype) for shape in [(3, 5), (700,), (1,), (2, 3, 4)] * 10]
        cases = [("finite", None, None, True), ("max", 5, np.finfo(dtype).max, True)]
        cases += [(f"{v} in {k}", k, v, True) for k, v in ((0, np.inf), (31, -np.inf), (39, np.nan), (1, np.nan))]
        cases += [("ok before False", None, None, False)]
        for what, k, value, before in cases:
            arrays = [a.copy() for a in host]
            if k is not None:
                arrays[k].reshape(-1)[-1] = value
            arrays = [dev.asarray(a) for a in arrays]
            ok = dev.xp.asarray(before, device=dev.native)
            assert fast_cupy._finite_ready(arrays, ok), what
            with _raw_launches() as names:
                got = fast_cupy.all_finite(arrays, ok)
            want = all_finite(arrays, ok)
            assert names == ["multi_finite"] * 2 and got.shape == () and got.dtype == want.dtype, (what, names)
            assert bool(_host(got)) == bool(_host(want)) == (before and (k is None or np.isfinite(value))), what


CHECKS = [check_loss, check_loss_takes_the_portable_path_where_the_kernel_does_not_fit, check_relu, check_maxpool2d,
          check_batchnorm, check_batchnorm_options, check_frozen_norms, check_training,
          check_rnn, check_lstm, check_gru, check_language_model_training, check_softmax, check_layernorm,
          check_embedding_backward, check_epoch_sums, check_clipping, check_multi_tensor,
          check_lerp_all, check_conv_input_grad, check_shift_flip, check_all_finite,
          check_global_avg_pool]


# -- launches ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def count_launches() -> Iterator[dict[str, int]]:
    """Count what the fake CuPy runs that CuPy would launch on the GPU: each kernel object's call, each
    ufunc, each array function and method that is not a view, ``astype``, indexing with arrays and
    item assignment. Allocations (``empty``, ``zeros``...: no kernel, or a memset) are not counted."""
    import cupy

    counts = {"launches": 0}
    free = {"empty", "empty_like", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like"}
    call, ufunc, astype = cupy._call, cupy.ndarray.__array_ufunc__, cupy.ndarray.astype
    getitem, setitem = cupy.ndarray.__getitem__, cupy.ndarray.__setitem__
    kernels = {k: k.__call__ for k in (cupy.ElementwiseKernel, cupy.ReductionKernel, cupy.RawKernel)}

    def counted(fn: Any, when: Any = lambda *a, **k: True) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            counts["launches"] += bool(when(*args, **kwargs))
            return fn(*args, **kwargs)
        return run

    def fancy(self: Any, key: Any) -> bool:
        return any(isinstance(k, (cupy.ndarray, list)) for k in (key if isinstance(key, tuple) else (key,)))

    cupy._call = counted(call, lambda name, *a: name not in cupy._dispatch._VIEWS and name not in free)
    cupy.ndarray.__array_ufunc__ = counted(ufunc)
    cupy.ndarray.astype = counted(astype, lambda self, dtype, *a, copy=True, **k: copy or np.dtype(dtype) != self.dtype)
    cupy.ndarray.__getitem__ = counted(getitem, fancy)
    cupy.ndarray.__setitem__ = counted(setitem)
    for k, fn in kernels.items():
        k.__call__ = counted(fn)
    try:
        yield counts
    finally:
        cupy._call, cupy.ndarray.__array_ufunc__, cupy.ndarray.astype = call, ufunc, astype
        cupy.ndarray.__getitem__, cupy.ndarray.__setitem__ = getitem, setitem
        for k, fn in kernels.items():
            k.__call__ = fn


def launches_per_mlp_step() -> float:
    """Launches per eager SGD step (``graph=False``) of a 784-100-10 MLP at batch 100 inside ``xn.train``
    on the fake CuPy: the count for an epoch of 4 steps less that for 2 steps (what an epoch does once
    cancels), over 2."""
    rng = np.random.default_rng(0)
    per_epoch = []
    for n in (200, 400):
        x = rng.standard_normal((n, 784)).astype(np.float32)
        t = rng.integers(0, 10, n)
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(784, 100), xn.layers.ReLU(), xn.layers.Linear(100, 10)).to("cuda")
        x_dev, t_dev = xn.to_device(x, "cuda"), xn.to_device(t, "cuda")
        with count_launches() as counts:
            xn.train(model, (x_dev, t_dev), loss="cross_entropy", optimizer=xn.optim.SGD(lr=0.1), epochs=1,
                     batch_size=100, progress=False, graph=False)
        per_epoch.append(counts["launches"])
    return (per_epoch[1] - per_epoch[0]) / 2


def launches_per_recurrent_step(kind: str, fast: bool, **options: Any) -> float:
    """Launches per time step of a recurrent layer's forward and backward (``kind`` "RNN", "LSTM" or "GRU",
    built with ``options``, float32, batch 20, 16 units) on the fake CuPy: the count for 8 steps less that for 4,
    over 4."""
    rng = np.random.default_rng(0)
    counted = []
    for steps in (4, 8):
        layer = getattr(xn.layers, kind)(8, 16, **options).to("cuda")
        x = xn.to_device(rng.standard_normal((20, steps, 8)).astype(np.float32), "cuda")
        dhs = xn.to_device(rng.standard_normal((20, steps, layer.out_size)).astype(np.float32), "cuda")
        with fast_paths(fast), count_launches() as counts:
            layer.backward(layer.forward(x) * 0 + dhs)
        counted.append(counts["launches"])
    return (counted[1] - counted[0]) / 4
