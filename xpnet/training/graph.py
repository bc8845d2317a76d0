"""The training step captured as a CUDA graph on CuPy: ``xn.train(..., graph=None | True | False)``.

How a captured epoch goes:

1. When: :func:`obstacle` says why a run cannot be captured correctly (None when it can). ``graph=True``
   (or ``XPNET_GRAPH=1``) captures where there is none and refuses the run otherwise, with that reason;
   ``graph=None`` (the default) captures where there is none only once :data:`BY_DEFAULT` is True, which
   waits for the capture to pass its ``gpu`` tests on a real GPU (issue 23: it has only run on the fake
   CuPy), and trains eagerly until then; ``graph=False`` (or ``XPNET_GRAPH=0``) never captures. Captured: a CuPy
   device, one process, shuffled batches, no ``transform``, one input, one batch per update (no
   ``accumulate_grad_batches``), the fast paths on, every layer
   of a class in :data:`CAPTURABLE` (Linear, Conv2d and ConvTranspose2d, grouped or dilated or not, and their 1-d forms,
   the activations, Softmax and LogSoftmax, Identity, Flatten, Unflatten, BatchNorm, FrozenBatchNorm2d, LayerNorm,
   GroupNorm, InstanceNorm1d and 2d, RMSNorm, the poolings (1-d and adaptive too), Upsample, the paddings (1-d and 2-d;
   reflection, replication and circular too), pixel and channel shuffles, Unfold and Fold, Dropout, Dropout1d, Dropout2d
   and AlphaDropout, MultiheadAttention, PositionalEncoding) inside the containers of :data:`CONTAINERS` (Sequential,
   Residual, Concat, the Transformer encoder's layer and stack, nested), a loss of :data:`CAPTURED_LOSSES` (softmax
   or sigmoid cross-entropy, MSE, L1, smooth L1, Huber, NLLLoss, BCELoss, KLDivLoss, SoftMarginLoss,
   HingeEmbeddingLoss, MultiLabelSoftMarginLoss, PoissonNLLLoss), any xpnet optimizer, gradient clipping or not,
   and at least ``WARMUP + 1`` full batches per epoch. Each of these layers keeps nothing in Python that changes
   from step to step and reads nothing back to the host; BatchNorm moves its running statistics on in place (with
   ``momentum=None`` its batch count too, the weight 1/n computed from it on the device), so every launch moves them
   on; PositionalEncoding's table is made in the warm-up steps, once per length, dtype and device.
   Not captured: recurrent layers, embeddings, the book's Attention, ScaledDotProductAttention (three inputs: a
   Sequential refuses it, so it runs only in a model of the user's own), models of two inputs (the Transformer's
   decoder), and classes of the user's own, subclasses of xpnet's included (their Python would run at the
   capture only).
2. Inputs: :class:`~xpnet.datasets.StaticBatches` gathers each full batch on the device into buffers
   made once, from the epoch's permutation and a step counter kept on the device.
3. The first epoch runs ``WARMUP`` steps eagerly, on the graph's stream and allocating from its
   own memory pool (the optimizer makes its state, the pool caches the blocks of a step); then one step
   is captured (:class:`xpnet.backend.graphs.StepGraph`: recorded, not run) and the graph is launched
   once per remaining full batch. Later epochs only launch. While capturing (and in the last warm-up step, so that
   every kernel the capture records is compiled and loaded before it), Linear, Conv2d, ConvTranspose2d,
   MultiheadAttention, Upsample's interpolation and AdaptiveAvgPool2d (A_h @ x @ A_w^T, their matrices made in the
   warm-up steps, once per input size) multiply with xpnet's own kernel (:mod:`xpnet.backend.matmul_kernel`, tiled
   in shared memory; CuPy refuses cuBLAS there); eager steps keep cuBLAS. Their im2col and col2im (one raw kernel
   each; a strided copy and slices added in place for other layouts) are CuPy kernels that read nothing back, as are
   Upsample's broadcast copy and block sums, and AdaptiveMaxPool2d's gathers (``take``) and selections (``where``)
   over index arrays made in the warm-up steps.
4. Numbers that change from step to step are device arrays the kernels read: the optimizer's step count
   and learning rate (``Optimizer.device_scalars``, which the multi-tensor updates read inside their kernels, set from
   ``optimizer.lr`` and ``optimizer.t`` at each epoch's start, so a LearningRateSchedule still applies, and the lr
   again after each step where a callback has a per-step hook: ``xn.callbacks.LRScheduler(..., interval="step")``),
   the batch counter, the loss sum and the correct count, which are read once per epoch as in eager training.
   Dropout (Dropout2d too) draws its masks in the graph from its Philox state on the device
   (``xpnet.backend.random``): a key and a draw count that each launch reads and counts on; the key is seeded again
   in place at each epoch's start, before the launches, from the layer's host generator as an eager epoch seeds it
   at its first draw, so the masks are those of eager training.
5. The short last batch (when ``batch_size`` does not divide N) runs eagerly after the launches.
6. The NaN guard, SIGTERM and resume work as in eager training: the guard replays the epoch eagerly to
   name the step and layer. A graph holds the arrays of the capture; when the model's or the optimizer's
   arrays were replaced since (a restored snapshot, a callback), or other layers were frozen
   (``requires_grad_``: the captured step updates the parameters that trained then), it is captured again.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..backend.graphs import StepGraph
from ..backend.random import prepare_device_draws
from ..backend.registry import fast_paths_enabled
from ..datasets.batches import BatchIterator, StaticBatches
from ..layers import (CELU, ELU, GELU, GLU, SELU, AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d,
                      AdaptiveMaxPool2d, AlphaDropout, AvgPool1d, AvgPool2d, BatchNorm, ChannelShuffle, CircularPad1d,
                      CircularPad2d, Concat, ConstantPad1d, ConstantPad2d, Conv1d, Conv2d, ConvTranspose1d,
                      ConvTranspose2d, Dropout, Dropout1d, Dropout2d, Flatten, Fold, FrozenBatchNorm2d, GlobalAvgPool,
                      GroupNorm, Hardshrink, Hardsigmoid, Hardswish, Hardtanh, Identity, InstanceNorm1d, InstanceNorm2d,
                      LayerNorm, LeakyReLU, Linear, LogSigmoid, LogSoftmax, MaxPool1d, MaxPool2d, Mish,
                      MultiheadAttention, PixelShuffle, PixelUnshuffle, PositionalEncoding, PReLU, ReflectionPad1d,
                      ReflectionPad2d, ReLU, ReLU6, ReplicationPad1d, ReplicationPad2d, Residual, RMSNorm, Sigmoid,
                      SiLU, Softmax, Softmin, Softplus, Softshrink, Softsign, Tanh, Tanhshrink, Threshold,
                      TransformerEncoder, TransformerEncoderLayer, Unflatten, Unfold, Upsample, ZeroPad1d, ZeroPad2d)
from ..layers.tree import frozen_nodes
from ..losses import (BCELoss, HingeEmbeddingLoss, HuberLoss, KLDivLoss, MeanAbsoluteError, MeanSquaredError,
                      MultiLabelSoftMarginLoss, NLLLoss, PoissonNLLLoss, SigmoidCrossEntropy, SmoothL1Loss,
                      SoftMarginLoss, SoftmaxCrossEntropy)
from ..models.sequential import Sequential
from ..optim import Optimizer
from ..optim.device_scalars import DeviceScalars
from .data import index_dtype
from .streams import StreamBatches

__all__ = ["CAPTURABLE", "CONTAINERS", "CAPTURED_LOSSES", "WARMUP", "BY_DEFAULT", "ACCUMULATED",
           "graph_from_environment", "setting", "obstacle", "captured_epochs", "CapturedEpochs"]

# Exactly these classes, not subclasses: a class of the user's own may keep state in Python that a replay
# would not move on.
# The activations are elementwise kernels (GELU's erf too, CUDA's own), Softmax and LogSoftmax two reductions each;
# none reads anything back to the host, and their arguments are constants of the layer (PReLU's slopes a parameter).
CAPTURABLE = (Linear, Conv2d, ConvTranspose2d, ReLU, Sigmoid, Tanh, LeakyReLU, ELU, SELU, CELU, GELU, SiLU, Softplus,
              Hardtanh, ReLU6, Hardsigmoid, Hardswish, Mish, Softsign, LogSigmoid, PReLU, Softmax, LogSoftmax,
              Identity, Flatten, Unflatten, BatchNorm, LayerNorm, GroupNorm, InstanceNorm1d, InstanceNorm2d, RMSNorm,
              MaxPool2d, AvgPool2d, GlobalAvgPool, AdaptiveAvgPool2d, AdaptiveMaxPool2d, Upsample, ZeroPad2d,
              ConstantPad2d, PixelShuffle, PixelUnshuffle, Dropout, Dropout2d, MultiheadAttention,
              # the 1-d layers run their 2-d ones on views of x, dy and the params: nothing of their own moves on
              Conv1d, ConvTranspose1d, MaxPool1d, AvgPool1d, AdaptiveAvgPool1d, AdaptiveMaxPool1d,
              # slices, flips, broadcasts and concatenations (their gradients summed back), with sizes from shapes
              ReflectionPad1d, ReflectionPad2d, ReplicationPad1d, ReplicationPad2d, CircularPad1d, CircularPad2d,
              # elementwise or along one axis, their numbers constants of the layer; Dropout1d draws as Dropout2d
              GLU, Softmin, Threshold, Tanhshrink, Softshrink, Hardshrink, Dropout1d,
              # reshapes and permutes, a padded copy, im2col and col2im (Conv2d's kernels); AlphaDropout draws as
              # Dropout does
              ZeroPad1d, ConstantPad1d, ChannelShuffle, Unfold, Fold, AlphaDropout,
              # its scale and shift computed from its buffers at every forward; nothing of its own moves on
              FrozenBatchNorm2d,
              # x + a table made in the warm-up steps (once per length, dtype and device), then its Dropout child
              PositionalEncoding)
# Left out, each used only inside a model class of one's own (refused above): MaxPool2d/1d(return_indices=True)
# and MaxUnpool2d/1d (which reads its indices back to check them), the cells RNNCell, LSTMCell and GRUCell, and
# the layers of two inputs, CosineSimilarity, PairwiseDistance and Bilinear.
# Their forward calls their children and adds, permutes or concatenates what comes back: nothing of their own
# that changes from step to step.
CONTAINERS = (Sequential, Residual, Concat, TransformerEncoderLayer, TransformerEncoder)
# Their forward and backward (with check=False) are elementwise kernels and reductions that read nothing back to
# the host; their weights are copied to the device at the first eager step, before the capture (NLLLoss's
# arange(C) too). NLLLoss's count of labels not ignored is a device count as cross-entropy's; BCELoss's range check
# and KLDivLoss's batch size are skipped with check=False or read from shapes; MultiLabelSoftMarginLoss's class
# count is read from y's shape.
CAPTURED_LOSSES = (SoftmaxCrossEntropy, MeanSquaredError, SigmoidCrossEntropy, MeanAbsoluteError, SmoothL1Loss,
                   HuberLoss, NLLLoss, BCELoss, KLDivLoss, SoftMarginLoss, HingeEmbeddingLoss,
                   MultiLabelSoftMarginLoss, PoissonNLLLoss)
WARMUP = 2  # eager steps before the capture: the optimizer's state exists, the pool holds a step's blocks
# graph=None captures only when this is True: the capture has passed the gpu tests of tests/test_matmul_kernel.py,
# tests/test_graph.py and tests/test_graph_layers.py on the fake CuPy only; set it once
# `XPNET_REQUIRE_GPU=1 pytest -m gpu tests/test_matmul_kernel.py tests/test_graph.py tests/test_graph_layers.py`
# passes on a GPU.
BY_DEFAULT = False
# Why accumulate_grad_batches > 1 is not captured.
ACCUMULATED = ("a captured step launches one forward, backward and update per batch, while accumulating sums the "
               "gradients of several batches in Python between the updates, which a graph would not run again "
               "(not captured in this version)")


def obstacle(model: Any, loss: Any, optimizer: Any, batches: BatchIterator, dev: Any, *, comm: Any = None,
             transform: Any = None, inputs: int = 1, accumulate: int = 1) -> str | None:
    """Why this run's training step cannot be captured as a CUDA graph, or None when it can (``accumulate``:
    ``accumulate_grad_batches``)."""
    if accumulate > 1:
        return f"accumulate_grad_batches={accumulate}: {ACCUMULATED}"
    groups = len(getattr(optimizer, "param_groups", ()))
    if groups > 1:
        return (f"the optimizer has {groups} param groups, and a captured step reads one learning rate on the "
                "device (DeviceScalars); train with one group or eagerly")
    if not dev.is_cupy:
        return f"it needs a CuPy device; this run is on {dev.name}"
    if comm is not None:
        return "comm (data parallel) is not captured in this version: the all-reduce runs between the steps"
    if transform is not None:
        return "a transform runs Python on each batch, which a graph would not run again"
    if inputs != 1:
        return "a model of several inputs is not captured in this version"
    if not batches.shuffle:
        return "shuffle=False batches are slices, not the gathered buffers a graph reads"
    if not fast_paths_enabled():
        return "the fast paths are off (xn.backend.set_fast_paths(False) or XPNET_DISABLE_FAST_PATHS), and the " \
               "matrix product a capture needs is one of them"
    full = batches.n // batches.batch_size
    if full < WARMUP + 1:
        return f"{full} full batch(es) per epoch: a capture needs {WARMUP + 1} ({WARMUP} eager steps first)"
    if not isinstance(loss, CAPTURED_LOSSES):
        captured = ", ".join(c.__name__ for c in CAPTURED_LOSSES)
        return f"the loss {type(loss).__name__} is not captured in this version (captured: {captured})"
    if not isinstance(optimizer, Optimizer):
        return f"the optimizer {type(optimizer).__name__} is not one of xpnet's"
    for name, layer in model.named_modules().items():
        kind = type(layer)
        if kind in CONTAINERS or kind in CAPTURABLE:
            continue
        where = f"layer {name!r} ({kind.__name__})" if name else f"the model ({kind.__name__})"
        captured = ", ".join(c.__name__ for c in CAPTURABLE)
        return f"{where} is not captured in this version (captured: {captured}, inside " \
               f"{', '.join(c.__name__ for c in CONTAINERS)})"
    return None


class CapturedEpochs:
    """The epochs of ``trainer`` as launches of one captured step (see the module's docstring)."""

    def __init__(self, trainer: Any, batches: BatchIterator, classify: bool):
        self.trainer, self.batches, self.classify = trainer, batches, classify
        dev = trainer.dev
        self.graph = StepGraph(dev)
        with self.graph.on_stream(), self.graph.allocating():
            self.static = StaticBatches(batches)
            self.loss_sum = trainer.zeros(trainer.loss_sum_dtype())
            self.correct = trainer.zeros(index_dtype(dev))
            self.count = trainer.zeros(index_dtype(dev))
            self.nll_sum = None if trainer.nll is None else trainer.zeros(trainer.loss_sum_dtype())
            self.scalars = DeviceScalars(dev.xp, dev.native)
        self._held: list[Any] = []  # the arrays the graph reads and writes, as captured
        self._frozen: list[str] = []  # the layers frozen at the capture: the step updates all the others
        self._draws: list[Any] = []  # the Dropout layers' draw states (device arrays)
        self._launch_count = 0  # the targets of one launch, where the loss counts them on the host

    def _arrays(self) -> list[Any]:
        model, optimizer = self.trainer.model, self.trainer.optimizer
        return [*model.state().values(), *(a for s in optimizer.state.values() for a in s.values()), *self._draws]

    def _prepare_draws(self) -> None:
        """Seed the draw states that the epoch's start left to be seeded at the next draw (Dropout's,
        MultiheadAttention's dropout: every layer that draws on the device has one): the launches draw without
        running Python."""
        self._draws = prepare_device_draws(self.trainer.model.named_modules().values())

    def _still_valid(self) -> bool:
        now = self._arrays()
        return len(now) == len(self._held) and all(a is b for a, b in zip(now, self._held)) \
            and frozen_nodes(self.trainer.model) == self._frozen

    def _train_on(self, xb: Any, yb: Any, labels: Any) -> int:
        """One step on a batch (the static buffers, or the short last batch), its loss and correct count
        added to the device sums; its count of targets too where that is on the device, else returned
        (an int: no device work for it)."""
        trainer = self.trainer
        mean, count, hits, nll = trainer.forward_backward((xb,), yb, labels, self.classify)
        self.loss_sum += trainer.times(mean, count)  # in place: the graph's launches add into the capture's arrays
        if nll is not None:
            self.nll_sum += nll
        if not isinstance(count, int):
            self.count += count
            count = 0
        if self.classify:
            self.correct += hits
        trainer.clip(trainer.model)
        trainer.optimizer.step(trainer.model)
        return count

    def _step(self) -> int:
        buffers = self.static.gather()
        return self._train_on(buffers[0], buffers[1], buffers[-1])

    def _after_step(self, step: int) -> None:
        """The per-step hooks; an lr a scheduler set reaches the next launch through the device scalar."""
        if self.trainer.after_step(step):
            self.scalars.lr[...] = float(self.trainer.optimizer.lr)

    def _capture_step(self) -> None:
        self._launch_count = self._step()

    def run_epoch(self, epoch: int, bar: Any, snapshot: Any) -> tuple[int, float, int | None, int, float | None]:
        """The full batches of ``epoch`` (launches; the first epoch warms up and captures first), then the
        short last batch eagerly. Returns the steps run, the epoch's loss sum (NaN where the loss or a
        weight went non-finite), its correct count (None unless classifying), the count of targets the
        loss sum is over, read once, and the sum of the trainer's ``nll`` (None without one)."""
        trainer, optimizer, graph, xp = self.trainer, self.trainer.optimizer, self.graph, self.trainer.dev.xp
        from .trainer import SigtermStop  # noqa: PLC0415 - the trainer imports this module
        steps, host_count = 0, 0
        with graph.on_stream():
            self.static.load_epoch(epoch)
            self.loss_sum[...] = 0
            self.correct[...] = 0
            self.count[...] = 0
            if self.nll_sum is not None:
                self.nll_sum[...] = 0
            self._prepare_draws()
            if graph.captured and not self._still_valid():
                graph.drop()
            self.scalars.set(optimizer.lr, optimizer.t)
            optimizer.device_scalars = self.scalars
            try:
                if not graph.captured:
                    with graph.allocating():
                        for i in range(WARMUP):
                            with graph.as_captured(i == WARMUP - 1):  # the capture's kernels built before it
                                host_count += self._step()
                            self._after_step(steps)
                            steps += 1
                    self._prepare_draws()  # the states the warm-up made
                    graph.capture(self._capture_step)
                    optimizer.count_steps(-1)  # the capture ran the Python of one step but none of its kernels
                    self._held, self._frozen = self._arrays(), frozen_nodes(trainer.model)
                    if bar is not None:
                        bar.update(steps)
                while steps < len(self.static):
                    graph.launch()
                    optimizer.count_steps(1)
                    self._after_step(steps)
                    steps += 1
                    host_count += self._launch_count
                    if bar is not None:
                        bar.update(1)
                    if trainer.sigterm is not None and trainer.sigterm.requested:
                        raise SigtermStop(snapshot)
            finally:
                optimizer.device_scalars = None
            lo = len(self.static) * self.batches.batch_size
            if lo < self.batches.used:  # the short last batch, eagerly (cuBLAS), from the epoch's permutation
                rows = self.static.perm[lo:self.batches.used]
                batch = tuple(xp.take(a, rows, axis=0) for a in self.batches.arrays)
                host_count += self._train_on(batch[0], batch[1], batch[-1])
                trainer.after_step(steps)
                steps += 1
                if bar is not None:
                    bar.update(1)
            nan = trainer.zeros(self.loss_sum.dtype) + math.nan
            total = float(xp.where(trainer.params_finite(), self.loss_sum, nan))
            correct = int(self.correct) if self.classify else None
            nll = None if self.nll_sum is None else float(self.nll_sum)
        return steps, total, correct, int(self.count) + host_count, nll


def graph_from_environment() -> str:
    """``XPNET_GRAPH`` from the environment: "" (unset), "0" or "1"; anything else raises ValueError."""
    env = os.environ.get("XPNET_GRAPH", "").strip()
    if env not in ("", "0", "1"):
        raise ValueError(f"XPNET_GRAPH={env!r} in the environment: expected 0 (no CUDA-graph capture) or 1, "
                         "or unset it")
    return env


def setting(graph: Any, dev: Any) -> bool | None:
    """The capture setting, checked before any training: True (capture, or refuse), None (capture where
    that is correct: :func:`obstacle`) or False. ``XPNET_GRAPH=0`` in the environment
    turns ``graph=None`` into False, ``XPNET_GRAPH=1`` into True on a CuPy device."""
    env = graph_from_environment()
    if graph is not None and not isinstance(graph, bool):
        raise TypeError(f"train: graph must be None, True or False, got {graph!r}")
    if graph is None and env == "0":
        graph = False
    elif graph is None and env == "1" and dev.is_cupy:
        graph = True
    if graph and not dev.is_cupy:
        raise ValueError(f"train: graph=True captures the training step as a CUDA graph, which needs a CuPy "
                         f"device; this run is on {dev.name}. Pass graph=None or False")
    return graph


def captured_epochs(graph: bool | None, trainer: Any, batches: Any, classify: bool,
                    transform: Any) -> Any:
    """The :class:`CapturedEpochs` that run this training, or None (eager), as ``setting`` said."""
    if graph is False or (graph is None and not BY_DEFAULT):
        return None
    if isinstance(batches, StreamBatches):
        why = "token-stream training (truncated BPTT) is not captured in this version"
    else:
        why = obstacle(trainer.model, trainer.loss, trainer.optimizer, batches, trainer.dev,
                       comm=trainer.comm, transform=transform, inputs=trainer.inputs, accumulate=trainer.accumulate)
    if why is None:
        return CapturedEpochs(trainer, batches, classify)
    if graph:
        raise ValueError(f"train: graph=True: the training step cannot be captured as a CUDA graph: {why}. "
                         "Pass graph=None or False to train eagerly")
    return None
