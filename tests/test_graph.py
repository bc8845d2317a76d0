"""CUDA-graph capture of the training step (issue 23), on the fake CuPy of ``tests/fake_cupy``, whose
capture records kernels without running them and replays them without Python, as CUDA does
(``tests/test_fake_capture.py``). The same checks on a real GPU are the ``gpu`` tests at the end."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import xpnet as xn
from xpnet.backend.graphs import StepGraph
from xpnet.training.graph import CAPTURABLE, CONTAINERS

from conftest import require_cuda
from test_cupy_rules import last_json, run_with_fake_cupy

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None,
                                    reason="the fake RawKernel builds kernels with g++, which this machine lacks")


@needs_compiler
def test_linear_multiplies_by_cublas_eagerly_and_by_its_kernel_while_captured(tmp_path):
    out = last_json(run_with_fake_cupy("""
        import json, numpy as np, cupy
        import xpnet as xn
        layer = xn.layers.Linear(6, 4).to(xn.device("cuda"))
        x = xn.to_device(np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32), xn.device("cuda"))
        eager = layer.forward(x)
        eager_dx = layer.backward(cupy.ones((5, 4), dtype=cupy.float32))
        eager_dW = layer.grads["W"].copy()
        stream, pool = cupy.cuda.Stream(non_blocking=True), cupy.cuda.MemoryPool()
        with cupy.cuda.using_allocator(pool.malloc), stream:
            stream.begin_capture()
            y = layer.forward(x)
            dx = layer.backward(cupy.ones((5, 4), dtype=cupy.float32))
            dW = layer.grads["W"]
            graph = stream.end_capture()
        graph.launch()
        print(json.dumps({"kernels": graph.kernels,
                          "close": [bool(cupy.allclose(a, b, rtol=1e-6, atol=1e-6)) for a, b in
                                    [(y, eager), (dx, eager_dx), (dW, eager_dW)]]}))
    """, tmp_path))
    assert out["kernels"].count("xpnet_matmul_float32") == 3 and "matmul" not in out["kernels"], out
    assert out["close"] == [True, True, True]


# ----------------------------------------------------------------------------------------
# The captured training step
# ----------------------------------------------------------------------------------------

# The launches counted, and 250 samples: 7 full batches of 32 and one of 26.
_COUNTED = """
    import json, numpy as np
    import xpnet as xn
    from xpnet.backend.graphs import StepGraph

    launches = [0]
    launch = StepGraph.launch
    def counted(self):
        launches[0] += 1
        launch(self)
    StepGraph.launch = counted

    rng = np.random.default_rng(0)
    x = rng.standard_normal((250, 12)).astype(np.float32)   # 7 full batches of 32 and one of 26
"""

_TRAIN = _COUNTED + """
    t = rng.integers(0, 4, 250)

    def run(optimizer, graph, schedule=True, epochs=3, **kw):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(12, 16), xn.layers.Tanh(), xn.layers.Linear(16, 16),
                              xn.layers.ReLU(), xn.layers.Linear(16, 4))
        launches[0] = 0
        callbacks = [xn.callbacks.LearningRateSchedule(xn.callbacks.step(optimizer.lr, 1, 0.5))] if schedule else []
        h = xn.train(model, (x, t), loss="cross_entropy", optimizer=optimizer, epochs=epochs, batch_size=32,
                     device="cuda", progress=False, graph=graph, callbacks=callbacks, **kw)
        return {"params": {k: xn.to_numpy(v).tolist() for k, v in model.named_params().items()},
                "losses": [e["train_loss"] for e in h.epochs], "accuracy": [e["train_accuracy"] for e in h.epochs],
                "launches": launches[0], "t": optimizer.t}
"""

_OPTIMIZERS = {"sgd": "xn.optim.SGD(0.1)", "sgd-nesterov": "xn.optim.SGD(0.05, momentum=0.9, nesterov=True)",
               "momentum": "xn.optim.Momentum(0.05)", "adam": "xn.optim.Adam(0.01)",
               "adamw": "xn.optim.AdamW(0.01)", "rmsprop": "xn.optim.RMSprop(0.01)",
               "rmsprop-momentum-centered": "xn.optim.RMSprop(0.01, momentum=0.5, centered=True)",
               "adagrad": "xn.optim.AdaGrad(0.05)", "nadam": "xn.optim.NAdam(0.01)",
               "radam": "xn.optim.RAdam(0.01, decoupled_weight_decay=True, weight_decay=0.01)",
               "adamax": "xn.optim.Adamax(0.01)", "adadelta": "xn.optim.Adadelta(1.0)"}


def _assert_same_training(eager: dict, captured: dict, rtol: float = 2e-4, atol: float = 2e-5) -> None:
    for k, v in eager["params"].items():
        np.testing.assert_allclose(captured["params"][k], v, rtol=rtol, atol=atol, err_msg=k)
    np.testing.assert_allclose(captured["losses"], eager["losses"], rtol=1e-5)
    assert captured["accuracy"] == eager["accuracy"]
    assert captured["t"] == eager["t"]


@needs_compiler
def test_captured_training_equals_eager_training_for_every_optimizer(tmp_path):
    """Same seed, same batches: three epochs (7 full batches and a short one each, the learning rate
    halved every epoch) give the weights of eager training within float32 rounding; the captured run
    launched its graph for all but the warm-up steps and the short batches."""
    out = last_json(run_with_fake_cupy(_TRAIN + f"""
    result = {{}}
    for name, make in {_OPTIMIZERS!r}.items():
        result[name] = {{"eager": run(eval(make), False), "captured": run(eval(make), True),
                        "default": run(eval(make), None)}}
        xn.training.graph.BY_DEFAULT = True  # what graph=None will do once the capture has run on a GPU
        result[name]["default on"] = run(eval(make), None)
        xn.training.graph.BY_DEFAULT = False
    print(json.dumps(result))
    """, tmp_path))
    for name, runs in out.items():
        assert runs["eager"]["launches"] == 0
        assert runs["captured"]["launches"] == 3 * 7 - 2, name
        _assert_same_training(runs["eager"], runs["captured"])
        # graph=None trains eagerly until the capture has run on a real GPU (graph.BY_DEFAULT)
        assert runs["default"] == runs["eager"], name
        assert runs["default on"] == runs["captured"], name


@needs_compiler
def test_a_per_step_scheduler_reaches_the_captured_step(tmp_path):
    """LinearLR stepped after each batch (xn.callbacks.LRScheduler(..., interval="step")): the captured step
    reads the lr of its own step from the device scalar, so the weights are eager training's; each launch
    ran with the lr the scheduler had set before it. The same for SWALR's annealing (xn.optim.swa_utils) with
    NAdam."""
    out = last_json(run_with_fake_cupy(_TRAIN + """
    from xpnet.optim.lr_scheduler import LinearLR
    from xpnet.optim.swa_utils import SWALR
    def scheduled(graph, swa=False):
        opt = xn.optim.NAdam(0.01) if swa else xn.optim.SGD(0.1, momentum=0.9)
        lrs = SWALR(opt, swa_lr=0.001, anneal_epochs=15) if swa else LinearLR(opt, start_factor=0.01, total_iters=20)
        return run(opt, graph, schedule=False, scheduler=xn.callbacks.LRScheduler(lrs, interval="step"))
    print(json.dumps({"eager": scheduled(False), "captured": scheduled(True), "flat": run(xn.optim.SGD(0.1,
                      momentum=0.9), True, schedule=False), "swa eager": scheduled(False, True),
                      "swa captured": scheduled(True, True), "swa flat": run(xn.optim.NAdam(0.01), True,
                      schedule=False)}))
    """, tmp_path))
    for kind in ("", "swa "):
        assert out[kind + "captured"]["launches"] == 3 * 7 - 2
        _assert_same_training(out[kind + "eager"], out[kind + "captured"])
        assert not np.allclose(out[kind + "flat"]["params"]["0.W"], out[kind + "captured"]["params"]["0.W"],
                               rtol=1e-3), kind


@needs_compiler
def test_captured_training_with_frozen_layers_equals_eager_and_is_captured_again_when_they_change(tmp_path):
    """Layers 0 and 2 frozen, layer 0 unfrozen after epoch 1, frozen after epoch 2 and unfrozen after epoch 3
    (Adam counts its own steps, the launches of epoch 3 included): the captured run trains as the eager one,
    layer 2 stays bit-identical in both, and each epoch's graph is captured anew: two warm-up steps fewer
    launched in each."""
    out = last_json(run_with_fake_cupy(_TRAIN + """
    class Unfreeze(xn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            self.state.model[0].requires_grad_(epoch % 2 == 1)

    def frozen_run(graph):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(12, 16), xn.layers.Tanh(), xn.layers.Linear(16, 16),
                              xn.layers.ReLU(), xn.layers.Linear(16, 4))
        model[0].requires_grad_(False)
        model[2].requires_grad_(False)
        before = xn.to_numpy(model[2].params["W"]).tolist()
        launches[0] = 0
        optimizer = xn.optim.Adam(0.01)
        h = xn.train(model, (x, t), loss="cross_entropy", optimizer=optimizer, epochs=4, batch_size=32,
                     device="cuda", progress=False, graph=graph, callbacks=[Unfreeze()])
        return {"params": {k: xn.to_numpy(v).tolist() for k, v in model.named_params().items()},
                "losses": [e["train_loss"] for e in h.epochs], "accuracy": [e["train_accuracy"] for e in h.epochs],
                "launches": launches[0], "t": optimizer.t, "kept": xn.to_numpy(model[2].params["W"]).tolist() == before}
    print(json.dumps({"eager": frozen_run(False), "captured": frozen_run(True)}))
    """, tmp_path))
    assert out["eager"]["kept"] and out["captured"]["kept"]
    assert out["captured"]["launches"] == 4 * (7 - 2)
    _assert_same_training(out["eager"], out["captured"])


@needs_compiler
def test_a_step_count_baked_into_the_graph_would_be_caught(tmp_path):
    """The check above has teeth: Adam with its step count read from the host (baked into the graph at
    the capture, as a Python float would be) trains differently from eager Adam."""
    out = last_json(run_with_fake_cupy(_TRAIN + """
    from xpnet.optim import base
    eager = run(xn.optim.Adam(0.01), False, schedule=False)
    per_step = base.Optimizer._per_step
    def baked(self, key, p, compute):
        ds = self.device_scalars
        if ds is None:
            return per_step(self, key, p, compute)
        return ds.once((key, p.dtype), lambda: ds.xp.astype(ds.lr * 0 + compute(self.lr, self.t), p.dtype))
    base.Optimizer._per_step = baked
    captured = run(xn.optim.Adam(0.01), True, schedule=False)
    print(json.dumps({"eager": eager, "captured": captured}))
    """, tmp_path))
    with pytest.raises(AssertionError):
        _assert_same_training(out["eager"], out["captured"])


@needs_compiler
def test_clipping_by_value_is_captured_and_trains_as_eagerly(tmp_path):
    """clip_grad_value clamps the gradients inside the captured step as clip_grad_norm scales them: the weights
    of eager training with it, which differ from those without it."""
    out = last_json(run_with_fake_cupy(_TRAIN + """
    print(json.dumps({"eager": run(xn.optim.SGD(0.1), False, clip_grad_value=0.01),
                      "captured": run(xn.optim.SGD(0.1), True, clip_grad_value=0.01),
                      "unclipped": run(xn.optim.SGD(0.1), False)}))
    """, tmp_path))
    assert out["captured"]["launches"] == 3 * 7 - 2
    _assert_same_training(out["eager"], out["captured"])
    assert not np.allclose(out["eager"]["params"]["0.W"], out["unclipped"]["params"]["0.W"], rtol=1e-3)


@needs_compiler
def test_what_cannot_be_captured_trains_eagerly_by_default_and_is_refused_when_asked_for(tmp_path):
    out = last_json(run_with_fake_cupy(_TRAIN + """
    import os
    result = {}
    def attempt(name, **kw):
        try:
            result[name] = run(xn.optim.SGD(0.1), **kw)["launches"]
        except ValueError as e:
            result[name] = str(e)
    attempt("unshuffled default", graph=None, shuffle=False)
    attempt("unshuffled", graph=True, shuffle=False)
    attempt("clipped", graph=True, clip_grad_norm=1.0)
    os.environ["XPNET_GRAPH"] = "0"
    attempt("XPNET_GRAPH=0", graph=None)
    del os.environ["XPNET_GRAPH"]
    class Doubling(xn.layers.Layer):  # a layer of the user's own: its Python might do anything a graph skips
        def forward(self, x, train=True):
            return 2 * x

        def backward(self, dy):
            return 2 * dy

    for graph in (None, True):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(12, 16), xn.layers.ReLU(), Doubling(), xn.layers.Linear(16, 4))
        launches[0] = 0
        try:
            xn.train(model, (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=32, device="cuda",
                     progress=False, graph=graph)
            result[f"custom {graph}"] = launches[0]
        except ValueError as e:
            result[f"custom {graph}"] = str(e)
    print(json.dumps(result))
    """, tmp_path))
    assert out["unshuffled default"] == 0 and out["XPNET_GRAPH=0"] == 0 and out["custom None"] == 0
    assert "shuffle=False" in out["unshuffled"] and out["unshuffled"].startswith("train: graph=True: ")
    assert out["clipped"] == 3 * 7 - 2
    captured, containers = (", ".join(c.__name__ for c in kinds) for kinds in (CAPTURABLE, CONTAINERS))
    assert out["custom True"] == ("train: graph=True: the training step cannot be captured as a CUDA graph: layer "
                                  f"'2' (Doubling) is not captured in this version (captured: {captured}, inside "
                                  f"{containers}). Pass graph=None or False to train eagerly")


@needs_compiler
def test_the_nan_guard_and_resume_work_with_a_captured_step(tmp_path):
    out = last_json(run_with_fake_cupy(_TRAIN + f"""
    from xpnet.training.trainer import XpnetTrainingError
    try:
        run(xn.optim.SGD(1e30), True, schedule=False)
        guard = None
    except XpnetTrainingError as e:
        guard = str(e)
    whole = run(xn.optim.Adam(0.01), True, schedule=False, epochs=3)
    path = {str(tmp_path / "ckpt.npz")!r}
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(12, 16), xn.layers.Tanh(), xn.layers.Linear(16, 16),
                          xn.layers.ReLU(), xn.layers.Linear(16, 4))
    xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=1, batch_size=32,
             device="cuda", progress=False, graph=True, callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)])
    opt = xn.optim.Adam(0.01)
    h = xn.train(model, (x, t), loss="cross_entropy", optimizer=opt, epochs=3, batch_size=32, device="cuda",
                 progress=False, graph=True, resume_from=path)
    resumed = {{"params": {{k: xn.to_numpy(v).tolist() for k, v in model.named_params().items()}},
               "losses": [e["train_loss"] for e in h.epochs], "accuracy": [e["train_accuracy"] for e in h.epochs],
               "t": opt.t}}
    print(json.dumps({{"guard": guard, "whole": whole, "resumed": resumed}}))
    """, tmp_path))
    assert out["guard"] is not None and "training stopped: the loss became non-finite in epoch 1, step" in out["guard"]
    _assert_same_training(out["whole"], out["resumed"])


_DROPOUT = _TRAIN + """
    from xpnet.backend import cupy_layers
    from xpnet.backend.fast_cupy_capture import capturing

    def dropout_run(graph, epochs=3, **kw):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(12, 16), xn.layers.ReLU(), xn.layers.Dropout(0.3),
                              xn.layers.Linear(16, 16), xn.layers.Tanh(), xn.layers.Dropout(0.5, convention="book"),
                              xn.layers.Linear(16, 4))
        launches[0] = 0
        opt = xn.optim.Adam(0.01)
        h = xn.train(model, (x, t), loss="cross_entropy", optimizer=opt, epochs=epochs, batch_size=32, device="cuda",
                     progress=False, graph=graph, **kw)
        return model, {"params": {k: xn.to_numpy(v).tolist() for k, v in model.named_params().items()},
                       "losses": [e["train_loss"] for e in h.epochs],
                       "accuracy": [e["train_accuracy"] for e in h.epochs],
                       "launches": launches[0], "t": opt.t}
"""


@needs_compiler
def test_dropout_is_captured_and_its_masks_are_those_of_eager_training(tmp_path):
    """Each launch draws new masks from the Dropout layers' Philox states on the device, seeded again at
    each epoch's start as eager training seeds them at its first draw: three epochs give eager training's
    weights, a resumed run those of the whole run. The check has teeth: a capture that baked the draw
    count (no count kept moving on the device) replays one mask and fails it."""
    out = last_json(run_with_fake_cupy(_DROPOUT + f"""
    result = {{"eager": dropout_run(False)[1], "captured": dropout_run(True)[1]}}
    path = {str(tmp_path / "ckpt.npz")!r}
    model, _ = dropout_run(True, epochs=1, callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)])
    opt = xn.optim.Adam(0.01)
    h = xn.train(model, (x, t), loss="cross_entropy", optimizer=opt, epochs=3, batch_size=32, device="cuda",
                 progress=False, graph=True, resume_from=path)
    result["resumed"] = {{"params": {{k: xn.to_numpy(v).tolist() for k, v in model.named_params().items()}},
                         "losses": [e["train_loss"] for e in h.epochs],  # the checkpoint's epoch 1 and two more
                         "accuracy": [e["train_accuracy"] for e in h.epochs], "t": opt.t}}

    forward = cupy_layers.dropout_forward
    def baked(x, p, kept, rng, owner):  # a capture whose draw count does not move on at each launch
        if not capturing():
            return forward(x, p, kept, rng, owner)
        state = xn.backend.random.cupy_draw_state(rng, x, owner)
        y, scale = x.copy(), x.copy()
        cupy_layers._launch("dropout_forward", (x.size + 3) // 4, (x, y, scale, state, float(p), float(kept), x.size),
                            T=x.dtype)
        return y, scale
    entries = xn.backend.registry._FAST_PATHS[("dropout_forward", "cupy")]
    entries[:] = [(family, baked if fn is forward else fn, accepts) for family, fn, accepts in entries]
    xn.backend.registry.forget_resolved()
    result["baked"] = dropout_run(True)[1]
    print(json.dumps(result))
    """, tmp_path))
    assert out["captured"]["launches"] == 3 * 7 - 2 and out["eager"]["launches"] == 0
    _assert_same_training(out["eager"], out["captured"])
    _assert_same_training(out["captured"], out["resumed"])
    with pytest.raises(AssertionError):
        _assert_same_training(out["eager"], out["baked"])


# ----------------------------------------------------------------------------------------
# On a GPU (pytest -m gpu; on the fake CuPy in tests/test_gpu_checks.py's run of the gpu suite)
# ----------------------------------------------------------------------------------------


def _mlp_training(optimizer, graph, x, t, dev, dropout=0.0, frozen=False, dtype="float32"):
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(784, 100), xn.layers.ReLU(),
                          *([xn.layers.Dropout(dropout)] if dropout else []), xn.layers.Linear(100, 10)).to(dev, dtype)
    model[0].requires_grad_(not frozen)
    first = xn.to_numpy(model[0].params["W"])
    h = xn.train(model, (x, t), loss="cross_entropy", optimizer=optimizer, epochs=2, batch_size=100, device=dev,
                 progress=False, graph=graph,
                 callbacks=[xn.callbacks.LearningRateSchedule(xn.callbacks.step(optimizer.lr, 1, 0.5))])
    assert not frozen or np.array_equal(xn.to_numpy(model[0].params["W"]), first)  # a frozen layer stays as it was
    return {k: xn.to_numpy(v) for k, v in model.named_params().items()}, h.epochs


@pytest.mark.gpu
@pytest.mark.parametrize("make, dropout, frozen", [
    (lambda: xn.optim.SGD(0.1), 0.0, False), (lambda: xn.optim.Momentum(0.05), 0.0, False),
    (lambda: xn.optim.Adam(1e-3), 0.0, False), (lambda: xn.optim.Adam(1e-3), 0.2, False),
    (lambda: xn.optim.Adam(1e-3), 0.0, True), (lambda: xn.optim.NAdam(1e-3), 0.0, False),
    (lambda: xn.optim.RAdam(1e-3), 0.0, False), (lambda: xn.optim.Adamax(1e-3), 0.0, False),
    (lambda: xn.optim.Adadelta(), 0.0, False)],
    ids=["sgd", "momentum", "adam", "adam-dropout", "adam-frozen", "nadam", "radam", "adamax", "adadelta"])
def test_gpu_captured_training_equals_eager(make, dropout, frozen, monkeypatch):
    """The 784-100-10 MLP, 2 epochs of 4 full batches and a short one: the captured step (launched for all
    but the warm-up steps) gives eager training's weights, losses and accuracies within float32 rounding;
    with Dropout, its masks drawn in the graph are eager training's; with the first layer frozen, it stays."""
    dev = require_cuda()
    rng = np.random.default_rng(0)
    x, t = rng.random((450, 784), dtype=np.float32), rng.integers(0, 10, 450)
    eager, eager_epochs = _mlp_training(make(), False, x, t, dev, dropout, frozen)
    launches = []
    launch = StepGraph.launch
    monkeypatch.setattr(StepGraph, "launch", lambda self: (launches.append(1), launch(self)))
    captured, captured_epochs = _mlp_training(make(), True, x, t, dev, dropout, frozen)
    assert len(launches) == 2 * 4 - 2
    for k, v in eager.items():
        np.testing.assert_allclose(captured[k], v, rtol=1e-3, atol=1e-5, err_msg=k)
    for e, c in zip(eager_epochs, captured_epochs):
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4)
        assert abs(c["train_accuracy"] - e["train_accuracy"]) <= 2 / 450


@pytest.mark.gpu
@pytest.mark.parametrize("make, kernel, dtype, rtol", [
    (lambda: xn.optim.SGD(0.02, momentum=0.9, nesterov=True, weight_decay=1e-3), "multi_sgd_dev", "float32", 1e-3),
    (lambda: xn.optim.Adam(1e-3, amsgrad=True, weight_decay=0.1), "multi_adam_dev", "float32", 1e-3),
    (lambda: xn.optim.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), "multi_sgd_dev", "float64", 1e-10),
    (lambda: xn.optim.Adam(1e-3, amsgrad=True, weight_decay=0.1), "multi_adam_dev", "float64", 1e-10)],
    ids=["sgd", "adam", "sgd-lr0.1-float64", "adam-float64"])
def test_gpu_the_captured_update_is_one_multi_tensor_kernel_reading_the_device_scalars(make, kernel, dtype, rtol,
                                                                                       monkeypatch):
    """The captured step updates the four parameters in one multi-tensor kernel that reads the learning rate (and
    Adam's step size and eps) on the device, weight decay and AMSGrad inside, and trains as eagerly (the lr halved
    after the first epoch: a number baked into the graph would keep the first). In float64 the two agree to 1e-10:
    SGD at lr 0.1 drifted past rtol 1e-3 in float32 (0.2 % of the first weight matrix, all of it in one hidden unit
    whose pre-activation for one sample was 1e-7 after 8 steps, where the two products' rounding flips its ReLU:
    the captured product sums in another order than cuBLAS/NumPy), and agrees to 2e-12 in float64."""
    dev = require_cuda()
    from xpnet.backend import cupy_layers, fast_cupy_capture

    rng = np.random.default_rng(0)
    x, t = rng.random((450, 784), dtype=np.float32).astype(dtype), rng.integers(0, 10, 450)
    eager, _ = _mlp_training(make(), False, x, t, dev, dtype=dtype)
    recorded, launch = [], cupy_layers._launch
    monkeypatch.setattr(cupy_layers, "_launch", lambda name, *a, **k: (
        fast_cupy_capture.capturing() and recorded.append(name), launch(name, *a, **k))[1])
    captured, _ = _mlp_training(make(), True, x, t, dev, dtype=dtype)
    assert recorded.count(kernel) == 1 and not any(n.startswith("multi") and n != kernel for n in recorded), recorded
    for k, v in eager.items():
        assert captured[k].dtype == v.dtype == dtype, (k, captured[k].dtype, v.dtype)
        np.testing.assert_allclose(captured[k], v, rtol=rtol, atol=rtol / 100, err_msg=k)


@pytest.mark.gpu
def test_the_last_warm_up_step_builds_the_kernels_the_capture_records(monkeypatch):
    """xpnet's matrix product, which only a capture takes, first ran inside the capture: NVRTC's compile and the
    module's load then happened while the stream captured. The last warm-up step runs it eagerly first (the
    first warm-up step keeps cuBLAS, as every eager step)."""
    dev = require_cuda()
    from xpnet.backend import fast_cupy_capture

    calls = []
    kernel = fast_cupy_capture.kernel_matmul
    monkeypatch.setattr(fast_cupy_capture, "kernel_matmul",
                        lambda a, b: (calls.append(fast_cupy_capture.capturing()), kernel(a, b))[1])
    rng = np.random.default_rng(0)
    x, t = rng.random((130, 20), dtype=np.float32), rng.integers(0, 4, 130)
    xn.init.seed(0)
    model = xn.Sequential(xn.layers.Linear(20, 16), xn.layers.ReLU(), xn.layers.Linear(16, 4))
    xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=32,
             device=dev, progress=False, graph=True)
    assert calls and not calls[0] and True in calls, calls
    assert calls.count(False) == calls.count(True)  # one warm-up step's products, then the capture's

@needs_compiler
def test_the_captured_step_sums_the_perplexitys_plain_nll_as_eager_training(tmp_path):
    """Cross-entropy with class weights and label smoothing on labels (N, T): the captured step adds up the
    mean NLL without them, which perplexity is exp of, as the eager step does (not exp of the loss)."""
    out = last_json(run_with_fake_cupy(_COUNTED + """
    t = rng.integers(0, 4, (250, 3))
    def run(graph):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(4, 16), xn.layers.Tanh(), xn.layers.Linear(16, 4))
        launches[0] = 0
        loss = xn.losses.SoftmaxCrossEntropy(weight=np.array([1.0, 2.0, 0.5, 1.5]), label_smoothing=0.1)
        h = xn.train(model, (x.reshape(250, 3, 4), t), loss=loss, optimizer=xn.optim.Adam(0.01), epochs=2,
                     batch_size=32, device="cuda", progress=False, graph=graph)
        return {"epochs": h.epochs, "launches": launches[0]}
    print(json.dumps({"eager": run(False), "captured": run(True)}))
    """, tmp_path))
    assert out["captured"]["launches"] == 2 * 7 - 2
    for e, c in zip(out["eager"]["epochs"], out["captured"]["epochs"]):
        assert c["train_perplexity"] == pytest.approx(e["train_perplexity"], rel=1e-5)
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-5)
        assert e["train_perplexity"] != pytest.approx(np.exp(e["train_loss"]), rel=1e-3)


@needs_compiler
def test_captured_training_equals_eager_training_for_every_captured_loss(tmp_path):
    """Each loss of CAPTURED_LOSSES (class weights and pos_weight included: copied to the device at the first
    eager step, not per launch) trains as eagerly when its step is captured: the same weights within float32
    rounding, the same losses, and for the binary cross-entropies and NLLLoss the same accuracy. The losses
    on (log-)probabilities train a model ending in the LogSoftmax or Sigmoid they follow."""
    out = last_json(run_with_fake_cupy(_COUNTED + """
    signs = np.where(rng.uniform(size=(250, 4)) < 0.5, -1.0, 1.0).astype(np.float32)
    cases = {
        "softmax-weighted": ("xn.losses.SoftmaxCrossEntropy(weight=np.array([1.0, 2.0, 0.5, 1.5]), "
                             "label_smoothing=0.1)", 4, rng.integers(0, 4, 250)),
        "sigmoid": ("xn.losses.SigmoidCrossEntropy(pos_weight=np.array([2.0]))", 1, rng.integers(0, 2, 250)),
        "mse": ("xn.losses.MeanSquaredError()", 4, rng.standard_normal((250, 4))),
        "l1": ("xn.losses.MeanAbsoluteError()", 4, rng.standard_normal((250, 4))),
        "smooth-l1": ("xn.losses.SmoothL1Loss(beta=0.5)", 4, rng.standard_normal((250, 4))),
        "huber": ("xn.losses.HuberLoss(delta=0.5)", 4, rng.standard_normal((250, 4))),
        "nll": ("xn.losses.NLLLoss(weight=np.array([1.0, 2.0, 0.5, 1.5]))", 4, rng.integers(0, 4, 250),
                "LogSoftmax(dim=1)"),
        "bce-probs": ("xn.losses.BCELoss()", 1, rng.integers(0, 2, 250), "Sigmoid()"),
        "kl-div": ("xn.losses.KLDivLoss(reduction='batchmean')", 4, rng.dirichlet(np.ones(4), 250),
                   "LogSoftmax(dim=1)"),
        "soft-margin": ("xn.losses.SoftMarginLoss()", 4, signs),
        "hinge-embedding": ("xn.losses.HingeEmbeddingLoss(margin=0.5)", 4, signs),
        "multilabel-soft-margin": ("xn.losses.MultiLabelSoftMarginLoss(weight=np.array([1.0, 2.0, 0.5, 1.5]))", 4,
                                   (signs > 0).astype(np.float32)),
        "poisson-nll": ("xn.losses.PoissonNLLLoss(full=True)", 4, rng.integers(0, 5, (250, 4)).astype(np.float32)),
    }

    def run(loss, width, t, last=None, graph=False):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(12, 16), xn.layers.Tanh(), xn.layers.Linear(16, width),
                              *([eval("xn.layers." + last)] if last else []))
        launches[0] = 0
        h = xn.train(model, (x, t), loss=eval(loss), optimizer=xn.optim.Adam(0.01), epochs=3, batch_size=32,
                     device="cuda", progress=False, graph=graph)
        return {"params": {k: xn.to_numpy(v).tolist() for k, v in model.named_params().items()},
                "losses": [e["train_loss"] for e in h.epochs],
                "accuracy": [e.get("train_accuracy") for e in h.epochs], "launches": launches[0]}

    print(json.dumps({name: {"eager": run(*case), "captured": run(*case, graph=True)}
                      for name, case in cases.items()}))
    """, tmp_path))
    for name, runs in out.items():
        assert runs["eager"]["launches"] == 0 and runs["captured"]["launches"] == 3 * 7 - 2, name
        for k, v in runs["eager"]["params"].items():
            np.testing.assert_allclose(runs["captured"]["params"][k], v, rtol=2e-4, atol=2e-5, err_msg=f"{name} {k}")
        np.testing.assert_allclose(runs["captured"]["losses"], runs["eager"]["losses"], rtol=1e-5, err_msg=name)
        assert runs["captured"]["accuracy"] == runs["eager"]["accuracy"], name
    assert all(a is not None for k in ("sigmoid", "nll", "bce-probs") for a in out[k]["eager"]["accuracy"])
