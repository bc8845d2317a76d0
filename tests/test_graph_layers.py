"""CUDA-graph capture of the training step (``xpnet/training/graph.py``) beyond the MLP of
``tests/test_graph.py``: BatchNorm (its running statistics included; PyTorch's momentum=None, whose batch
count the launches move on, affine=False and track_running_stats=False), MaxPool2d, AvgPool2d and GlobalAvgPool,
AdaptiveAvgPool2d, AdaptiveMaxPool2d and Upsample(mode='area'),
PyTorch's activations (GELU's erf kernel, Softmax's reductions), the branch containers (Residual, Concat, nested
Sequential), a small CNN (Conv2d's products on xpnet's own kernel), grouped, depthwise and dilated convolutions, a
dilated MaxPool2d, LayerNorm, GroupNorm, InstanceNorm (tracking running statistics too) and RMSNorm, the reflection,
replication and circular paddings (Conv's padding_mode too), GLU, Softmin, Threshold, the shrinks and Dropout1d,
ChannelShuffle, Unfold, Fold, ZeroPad1d, ConstantPad1d and AlphaDropout, FrozenBatchNorm2d (xn.freeze_batch_norm),
and what stays out (classes of one's own).
On the fake CuPy of ``tests/fake_cupy`` (a capture records kernels, a launch replays them without
Python); the same checks on a real GPU are the ``gpu`` tests at the end. The models are in
``tests/graph_layer_models.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

import graph_layer_models as models
from conftest import require_cuda
from test_cupy_rules import last_json, run_with_fake_cupy
from xpnet.training.graph import CAPTURABLE, CONTAINERS
from test_graph import needs_compiler

TESTS = Path(__file__).parent


def _on_fake_cupy(code: str, tmp_path: Path) -> dict:
    return last_json(run_with_fake_cupy(f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
                                        "import json, graph_layer_models as models\n" + code, tmp_path))


# A BatchNorm that moves its running statistics on into new arrays (xpnet's update before issue 23):
# the captured kernels read the arrays of before the capture at every launch.
_NEW_ARRAYS = """
import xpnet.layers.norm as norm
fast_path = norm.fast_path
def into_new_arrays(op, xp, portable=None):
    if op == "batchnorm_forward_running":  # the forward, then the update below (CuPy's fused kernel updates in place)
        return portable
    if op == "batchnorm_running":
        return lambda rm, rv, mean, var, old, new, new_var: (old * rm + new * mean, old * rv + new_var * var)
    return fast_path(op, xp, portable)
norm.fast_path = into_new_arrays
"""


@needs_compiler
@pytest.mark.parametrize("name", list(models.MODELS))
def test_captured_training_equals_eager_training(tmp_path, name):
    """Three epochs of Adam, same seed and batches: the captured run's weights and running statistics
    equal eager training's within float32 rounding, and its graph was launched for every full batch
    but the two warm-up steps (captured once: the arrays it holds stayed the model's)."""
    out = _on_fake_cupy(f"""
print(json.dumps({{"eager": models.train({name!r}, False), "captured": models.train({name!r}, True)}}))
""", tmp_path)
    assert out["eager"]["launches"] == 0
    assert out["captured"]["launches"] == 3 * models.FULL - 2
    models.assert_same_training(out["eager"], out["captured"])


@needs_compiler
def test_running_statistics_moved_on_into_new_arrays_would_be_caught(tmp_path):
    """The check above has teeth: with BatchNorm's old update (new arrays each step) the weights still
    agree, the running statistics do not. With this update the step is captured anew each epoch (two eager
    warm-up steps first: 15 launches in 3 epochs of 7 full batches), so it takes epochs of several launches for
    the statistics to go stale: 250 samples here (models.N's 3 full batches an epoch give 3 launches in all)."""
    out = _on_fake_cupy(_NEW_ARRAYS + """
print(json.dumps({"eager": models.train("batchnorm", False, samples=250),
                  "captured": models.train("batchnorm", True, samples=250)}))
""", tmp_path)
    with pytest.raises(AssertionError, match="running_"):
        models.assert_same_training(out["eager"], out["captured"])
    weights = {k: v for k, v in out["eager"]["state"].items() if "running" not in k}
    models.assert_same_training({**out["eager"], "state": weights}, {**out["captured"], "state": weights})


@needs_compiler
def test_classes_of_ones_own_are_refused_with_the_reason(tmp_path):
    """graph=True names the layer and why; graph=None trains such a model eagerly."""
    out = _on_fake_cupy("""
import numpy as np
import xpnet as xn
L = xn.layers

class MyLinear(L.Linear):
    pass

x, t = np.random.default_rng(0).standard_normal((100, 2, 6, 6)).astype(np.float32), np.arange(100) % 4
result = {}
for what, make in {"subclass": lambda: xn.Sequential(L.Flatten(), L.Residual(MyLinear(72, 72)),
                                                     L.Linear(72, 4))}.items():
    for graph in (None, True):
        with models.counting_launches() as launches:
            try:
                xn.train(make(), (x, t), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=25, device="cuda",
                         progress=False, graph=graph)
                result[f"{what} {graph}"] = launches[0]
            except ValueError as e:
                result[f"{what} {graph}"] = str(e)
print(json.dumps(result))
""", tmp_path)
    assert out["subclass None"] == 0
    captured = (f"(captured: {', '.join(c.__name__ for c in CAPTURABLE)}, inside "
                f"{', '.join(c.__name__ for c in CONTAINERS)}). Pass graph=None or False to train eagerly")
    assert out["subclass True"] == ("train: graph=True: the training step cannot be captured as a CUDA graph: "
                                    "layer '1.body' (MyLinear) is not captured in this version " + captured)


# ----------------------------------------------------------------------------------------
# On a GPU (pytest -m gpu; on the fake CuPy with PYTHONPATH=tests/fake_cupy)
# ----------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(models.MODELS))
def test_gpu_captured_training_equals_eager_training(name):
    dev = require_cuda()
    eager, captured = models.train(name, False, epochs=2, dev=dev), models.train(name, True, epochs=2, dev=dev)
    assert captured["launches"] == 2 * models.FULL - 2
    models.assert_same_training(eager, captured, rtol=1e-3, atol=1e-5)
