"""xpnet's CuPy paths under CuPy's own rules, on a machine without a GPU.

Each check runs in a fresh process with ``tests/fake_cupy`` first on its path: NumPy arrays dressed as
CuPy's, with CuPy's device rules read from its source (the fake's docstring lists them): an unhashable
``cupy.cuda.Device``, new arrays and kernel results on the *current* GPU whatever ``device=`` said, a
kernel refusing an array of another GPU, generators tied to the GPU current at their making. The
failures issue 23 predicted from CuPy's source each fail here without their fix. The same behaviour on
a real GPU is checked by the ``gpu`` tests (``pytest -m gpu``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.backend import cupy_kernels

FAKE = Path(__file__).parent / "fake_cupy"


def run_with_fake_cupy(code: str, tmp_path: Path, devices: int = 1, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python with the fake CuPy importable as ``cupy`` and ``devices`` GPUs."""
    environment = {**os.environ, "FAKE_CUPY_DEVICES": str(devices), **env,
                   "PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")])}
    for name in ("XPNET_DEVICE", "XPNET_DISABLE_FAST_PATHS"):
        environment.pop(name, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environment, cwd=tmp_path, timeout=300)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fails_on_fake_cupy(code: str, tmp_path: Path, *messages: str) -> None:
    """``code`` run on the fake CuPy (:func:`run_with_fake_cupy`) fails, each of ``messages`` in its stderr."""
    proc = run_with_fake_cupy(code, tmp_path)
    assert proc.returncode != 0 and all(m in proc.stderr for m in messages), proc.stderr


_OPTIMIZERS = """
    import json
    import numpy as np
    import xpnet as xn

    class Params:
        def __init__(self, dev):
            rng = np.random.default_rng(0)
            self.p = {"W": xn.to_device(rng.standard_normal((3, 4)), dev),
                      "b": xn.to_device(rng.standard_normal(4), dev)}
            self.grads = [{k: xn.to_device(rng.standard_normal(tuple(v.shape)), dev) for k, v in self.p.items()}
                          for _ in range(3)]
            self.g = None
        def named_params(self):
            return self.p
        def named_grads(self):
            return self.g
        def set_param(self, name, value):
            self.p[name] = value

    result = {}
    makers = {name: lambda name=name: xn.optim.get(name) for name in xn.optim.OPTIMIZERS}
    makers["sgd-momentum"] = lambda: xn.optim.SGD(0.1, momentum=0.9, dampening=0.2)
    makers["sgd-nesterov"] = lambda: xn.optim.SGD(0.1, momentum=0.9, nesterov=True)
    for name, make in sorted(makers.items()):
        model, opt = Params(xn.device("cuda")), make()
        for g in model.grads:
            model.g = g
            opt.step(model)
        result[name] = {k: xn.to_numpy(v).tolist() for k, v in model.p.items()}
    print(json.dumps(result))
"""


def test_every_optimizer_steps_cupy_arrays_as_it_steps_numpy(tmp_path):
    """Issue 23, 1: AdaGrad and RMSprop keyed their work buffer on ``p.device``, which CuPy's Device
    cannot be hashed for (TypeError); SGD (with PyTorch's momentum and Nesterov's too), Momentum and Adam
    run the fused kernels' bodies."""
    on_cupy = last_json(run_with_fake_cupy(_OPTIMIZERS, tmp_path))
    on_numpy = last_json(subprocess.run([sys.executable, "-c", textwrap.dedent(_OPTIMIZERS).replace(
        'xn.device("cuda")', 'xn.device("cpu")')], capture_output=True, text=True, cwd=tmp_path, timeout=300))
    assert sorted(on_cupy) == sorted([*xn.optim.OPTIMIZERS, "sgd-momentum", "sgd-nesterov"])
    for name, params in on_numpy.items():
        for k, v in params.items():
            np.testing.assert_allclose(on_cupy[name][k], v, rtol=1e-12, atol=1e-14, err_msg=f"{name} {k}")


def test_a_fresh_process_trains_on_cupy_arrays_it_never_asked_cuda_about(tmp_path):
    """Issue 23, 2: a Device made from a CuPy array skipped the CUDA probe, and the first
    ``to_device``, ``synchronize`` or Dropout mask read ``None.cuda`` (AttributeError)."""
    proc = run_with_fake_cupy("""
        import json
        import numpy as np
        import cupy
        import xpnet as xn

        x = cupy.asarray(np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32))
        t = cupy.asarray(np.arange(64) % 2)
        xn.backend.device_of(x).synchronize()
        model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.ReLU(), xn.layers.Dropout(0.2), xn.layers.Linear(8, 2))
        history = xn.train(model, (x, t), loss="cross_entropy", optimizer="adam", epochs=2, batch_size=16,
                           progress=False)
        print(json.dumps({"device": history.device, "model": model.device.name,
                          "loss": history.epochs[-1]["train_loss"]}))
    """, tmp_path)
    out = last_json(proc)
    assert out["device"] == out["model"] == "cuda:0"
    assert np.isfinite(out["loss"])


_TRAIN_ON = """
    import json
    import numpy as np
    import cupy
    import xpnet as xn

    def on(a):
        return int(a.device.id)

    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((48, 1, 4, 4)), rng.integers(0, 3, 48).astype(np.int32)  # float64, int32: cast there
    xn.init.seed(1)
    model = xn.Sequential(xn.layers.Conv2d(1, 2, 3, padding=1), xn.layers.BatchNorm(2), xn.layers.ReLU(),
                          xn.layers.Flatten(), xn.layers.Dropout(0.3, seed=2), xn.layers.Linear(32, 3))
    opt = xn.optim.RMSprop(0.01)
    history = xn.train(model, (x, t), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=16,
                       device=DEVICE, validation=(x, t), progress=False)
    where = {"state": sorted({on(v) for v in model.state().values()}),
             "optimizer": sorted({on(v) for s in opt.state.values() for v in s.values()}),
             "current after train": cupy.cuda.runtime.getDevice()}
    evaluation = xn.evaluate(model, (x, t), loss="cross_entropy")
    y = model.predict(x, batch_size=20)
    report = xn.gradcheck(model, x[:4], t[:4], "cross_entropy", max_entries=3)
    where.update({"predict": on(y), "gradcheck": report.device, "current after all": cupy.cuda.runtime.getDevice()})
    print(json.dumps({"where": where, "losses": [e["train_loss"] for e in history.epochs], "evaluate": evaluation,
                      "predict": xn.to_numpy(y).tolist(), "gradcheck_ok": bool(report.ok)}))
"""


def test_a_model_on_cuda_1_trains_evaluates_predicts_and_gradchecks_on_gpu_1(tmp_path):
    """Issue 23, 3: only ``to_device`` switched GPU, so ``xn.train(device="cuda:1")`` made its arrays on
    GPU 0 and the first kernel mixing the two GPUs failed ("train data: x ... does not fit the model").
    Now the model's GPU is current for the whole call (``Device.activate``), and the numbers equal the
    same run on GPU 0."""
    runs = {d: last_json(run_with_fake_cupy(_TRAIN_ON.replace("DEVICE", repr(d)), tmp_path, devices=2))
            for d in ("cuda:1", "cuda:0")}
    gpu = {"cuda:1": 1, "cuda:0": 0}
    for d, run in runs.items():
        assert run["where"] == {"state": [gpu[d]], "optimizer": [gpu[d]], "current after train": 0,
                                "predict": gpu[d], "gradcheck": d, "current after all": 0}
        assert run["gradcheck_ok"]
    one, zero = runs["cuda:1"], runs["cuda:0"]
    assert one["losses"] == zero["losses"] and one["evaluate"] == zero["evaluate"]
    np.testing.assert_array_equal(one["predict"], zero["predict"])


def test_a_device_mismatch_is_not_reported_as_data_that_does_not_fit(tmp_path):
    """Issue 23, 3: where peer access lets a kernel read another GPU, the input landed on GPU 0 and the
    model's check named the data: "train data: x of shape ... does not fit the model". A device mismatch
    is reported as it is (here provoked by switching ``Device.activate`` off)."""
    proc = run_with_fake_cupy("""
        import contextlib
        import numpy as np
        import xpnet as xn

        xn.backend.Device.activate = lambda self: contextlib.nullcontext()
        model = xn.Sequential(xn.layers.Linear(4, 3))
        x, t = np.ones((8, 4)), np.zeros(8, dtype=np.int64)  # float64 data: cast on the current GPU
        try:
            xn.train(model, (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=4, device="cuda:1",
                     progress=False)
        except ValueError as exc:
            print(f"{type(exc).__name__}: {exc}")
    """, tmp_path, devices=2, FAKE_CUPY_PEER_ACCESS="1")
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.strip().splitlines()[-1]
    assert message.startswith("XpnetDeviceError: Linear: input is on cuda:0")
    assert "parameters are on cuda:1" in message and "does not fit" not in message


def test_dropout_keeps_a_small_generator_on_its_gpu_and_frees_it_with_the_layer(tmp_path):
    """Issue 23, 8: the device generator was CuPy's default XORWOW, 48 bytes for each of 8 blocks of 256
    threads per multiprocessor (13 MB on an H200), made on whatever GPU was current, and kept after its
    layer was gone. Now: xpnet's Philox draw state, 16 bytes on the array's GPU, freed with the layer and
    never more than one per layer through training and gradcheck."""
    proc = run_with_fake_cupy("""
        import gc, json, weakref
        import numpy as np
        import cupy
        import xpnet as xn
        from xpnet.backend import random as device_random

        layer = xn.layers.Dropout(0.5, seed=1)
        with cupy.cuda.Device(1):
            x = cupy.ones((64, 64), dtype=cupy.float32)
            y = layer.forward(x)
            kept = float(cupy.count_nonzero(y)) / y.size
        u = device_random.uniform(layer.rng, (3,), x, owner=layer)  # GPU 0 is current: drawn on GPU 1 all the same
        state = device_random._device_rngs[layer].generator
        first = {"dtype": str(state.dtype), "gpu": int(state.device.id), "bytes": int(state.nbytes),
                 "y": int(y.device.id), "u": int(u.device.id), "kept": kept}
        freed = weakref.ref(state)
        del layer, state, y, u
        gc.collect()
        first["freed"] = freed() is None

        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(4, 8), xn.layers.Dropout(0.2), xn.layers.ReLU(),
                              xn.layers.Dropout(0.3), xn.layers.Linear(8, 2))
        data = (np.random.default_rng(0).standard_normal((32, 4)), np.arange(32) % 2)
        xn.train(model, data, loss="cross_entropy", optimizer="sgd", epochs=3, batch_size=8, device="cuda:1",
                 progress=False)
        after_train = len(device_random._device_rngs)
        xn.gradcheck(model, data[0][:4], data[1][:4], "cross_entropy", max_entries=2)
        after_gradcheck = len(device_random._device_rngs)
        del model
        gc.collect()
        print(json.dumps({**first, "after_train": after_train, "after_gradcheck": after_gradcheck,
                          "after_del": len(device_random._device_rngs)}))
    """, tmp_path, devices=2)
    out = last_json(proc)
    assert out["dtype"] == "uint64" and out["gpu"] == out["y"] == out["u"] == 1
    assert out["bytes"] == 16  # against 48 * 8 * 256 * 132 = 13 MB for CuPy's default generator on an H200
    assert 0.4 < out["kept"] < 0.6 and out["freed"]
    assert out["after_train"] <= 2 and out["after_gradcheck"] <= 2 and out["after_del"] == 0


def test_batchnorm_on_cupy_runs_its_channel_sums_as_one_reduction_and_equals_numpy(tmp_path):
    """Issue 23, 7: CuPy has no vecdot, and array-api-compat's stand-in is a batched matmul of N*C tiny
    products on a copy; BatchNorm's per-channel sums are the ``channel_dot`` reduction kernel instead."""
    code = """
        import json
        import numpy as np
        import xpnet as xn
        from xpnet.backend import fast_path

        dev = xn.device(DEVICE)
        rng = np.random.default_rng(0)
        x, dy = rng.standard_normal((6, 3, 4, 5)), rng.standard_normal((6, 3, 4, 5))
        layer = xn.layers.BatchNorm(3, dtype="float64").to(dev)
        y = layer.forward(xn.to_device(x, dev))
        dx = layer.backward(xn.to_device(dy, dev))
        fast = fast_path("channel_dot", dev.xp)
        print(json.dumps({"fast": None if fast is None else f"{fast.__module__}.{fast.__name__}",
                          "y": xn.to_numpy(y).tolist(), "dx": xn.to_numpy(dx).tolist(),
                          **{k: xn.to_numpy(v).tolist() for k, v in {**layer.grads, **layer.buffers}.items()}}))
    """
    on_cupy = last_json(run_with_fake_cupy(code.replace("DEVICE", "'cuda'"), tmp_path))
    on_numpy = last_json(run_with_fake_cupy(code.replace("DEVICE", "'cpu'"), tmp_path))
    assert on_cupy.pop("fast") == "xpnet.backend.fast_cupy.channel_dot" and on_numpy.pop("fast") is None
    for k, v in on_numpy.items():
        np.testing.assert_allclose(on_cupy[k], v, rtol=1e-12, atol=1e-12, err_msg=k)


def test_the_channel_dot_kernel_sums_the_products_per_channel():
    """The reduction's map expression, run in NumPy, against BatchNorm's portable channel sums."""
    from xpnet.layers.norm import _channel_dot

    in_params, out_params, map_expr, reduce_expr, post_map, identity = cupy_kernels.REDUCTION["channel_dot"]
    assert (reduce_expr, post_map, identity, out_params) == ("a + b", "y = a", "0", "T y")
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 3, 7)), rng.standard_normal((5, 3, 7))
    names = [p.split()[1] for p in in_params.split(", ")]
    mapped = eval(map_expr, {}, dict(zip(names, (a, b))))  # noqa: S307 - the package's own kernel source
    np.testing.assert_allclose(mapped.sum(axis=(0, 2)), xn.to_numpy(_channel_dot(xn.device("cpu").xp, a, b)),
                               rtol=1e-12)


@pytest.mark.parametrize("warning_filter", ["error::RuntimeWarning", "default"])
def test_a_warning_while_cupy_imports_does_not_hide_the_gpu(tmp_path, warning_filter):
    """Issue 23, 4: under pytest's ``error::RuntimeWarning`` a warning from ``import cupy`` became an
    exception, which the probe took for "no CUDA": every GPU test skipped."""
    proc = run_with_fake_cupy(f"""
        import warnings
        warnings.filterwarnings("{warning_filter.split('::')[0]}", category=RuntimeWarning)
        import xpnet as xn
        print(xn.cuda_available(), xn.backend.cuda_unavailable_reason())
    """, tmp_path, FAKE_CUPY_IMPORT_WARNING="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "None"]
    assert "CUDA path could not be detected (fake)" in proc.stderr  # shown, not swallowed


def test_the_fake_gives_views_where_cupy_does(tmp_path):
    """CuPy's basic indexing is a view also where every axis takes an int (a 0-d array sharing the memory, its
    ``.base`` the first owner: ``_core/core.pyx``'s ``_view``), where NumPy gives a scalar copy: code that reads
    ``a[k]`` and writes ``a`` afterwards sees the write on a GPU, so the fake must show it too."""
    out = last_json(run_with_fake_cupy("""
    import json, cupy, numpy as np
    a = cupy.asarray(np.arange(6.0).reshape(2, 3))
    v, row = a[1, 2], a[1]
    a[1, 2] = 9.0
    print(json.dumps([v.shape, float(v), v.base is a, row.base is a, row[0].base is a, a.base is None]))
    """, tmp_path))
    assert out == [[], 9.0, True, True, True, True]
