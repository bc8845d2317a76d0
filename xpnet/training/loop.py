"""``xn.train``: a minibatch loop that runs where the model runs (``xn.evaluate``, the same evaluation pass
without training, is :mod:`xpnet.training.evaluation`).

How a run goes:

1. The device is resolved with ``xn.device(device, fallback=...)``. Every argument, and the
   labels against the loss and the model's output width, are checked before any training.
2. Model, optimizer state and data move to the device once. ``uint8`` inputs (raw images) are
   converted there once: ``astype(model dtype) / 255``; other inputs are cast to the model dtype.
   From here on the device is the current one (``Device.activate``: on CuPy its GPU, where CuPy
   makes every new array and runs every kernel).
3. Each epoch draws a permutation on the host from ``(seed, epoch)``, moves that index array to
   the device and gathers the batches there, so every device sees the same batches in the same
   order and a resumed run needs no saved shuffle state. The epoch counts on from the epochs that
   earlier ``xn.train`` calls trained this model object for (:func:`epochs_trained`), so that a loop of
   one-epoch calls shuffles, and transforms, as one call of as many epochs (a checkpoint keeps the count).
4. No host/device synchronisation per step: the loss sum and correct count are accumulated on
   the device and read once per epoch (and at a progress-bar refresh, at most twice a second).
   With ``accumulate_grad_batches=k`` the gradients of k batches are summed on the device too, and
   the update follows each group of them (:mod:`xpnet.training.accumulate`). Where the model is a Sequential of
   xpnet's own layers and nothing of the user's runs between steps, the steps between each epoch's first and
   last run as a plan made once an epoch, without the per-call checks the first step passed
   (:mod:`xpnet.training.planned`): the same calls, results and records.
5. Guard: the weights at the start of each epoch are kept as a device copy. When the epoch's loss
   sum, or the check that every weight is still finite (one device reduction folded into the same
   read), comes back non-finite, the epoch is replayed from that copy (and the per-step callbacks'
   state: each step at the lr its schedule gave it) one step at a time, checking
   every layer's output and gradient and the weights after each update, to name the step and the
   first layer or parameter that went non-finite; :class:`XpnetTrainingError` is raised with the
   model holding the weights from just before that step.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any, Iterable

import numpy as np

from .._user import flag, keyword_hints
from ..backend import device as _resolve_device, no_autograd
from ..backend.threads import blas_threads as threads_context
from ..datasets.batches import BatchIterator
from ..datasets.stream import TokenStream
from ..distributed._checks import describe_settings
from ..distributed._guard import collective
from ..grad_mode import grad_enabled
from ..io.signals import SigtermFlag
from ..layers.container import mode
from ..layers.recurrent_state import refuse_time_first
from ..layers.tree import frozen_nodes
from ..losses import check_mean, get as _get_loss
from ..models.ids import ids_checked_once
from ..models.inputs import is_ids, warn_unscaled
from ..optim import get as _get_optimizer
from ..optim.clip import check_positive
from . import callbacks as _callbacks, graph as _graph
from .checkpoint import load_checkpoint, set_rng_states
from .data import common_device, inputs, named_inputs, pair, prepare
from .evaluation import EVAL_BATCH, LOSS_HINT, loss_settings
from .history import History, format_logs, lr_figures, warn_if_diverged
from .lr_callback import LearningRateSchedule, LRScheduler, as_callback
from .streams import (StreamBatches, add_perplexity, check_ids, check_stream, evaluate_stream, is_sequence_loss,
                      perplexity_loss)
from .preflight import check_callbacks, check_last_activation, check_model, check_single_samples, int_arg
from .resume import BeforeResume, apply_checkpoint, restore_callbacks
from .swa_callback import AveragedWeights
from .trainer import SigtermStop, Trainer, TrainerState, logged_figures

__all__ = ["train", "epochs_trained"]

# Keywords of Keras' fit, PyTorch Lightning's Trainer, PyTorch loops and Chainer that xn.train spells otherwise:
# (the keywords, what to write instead).
_GPU = "device='cuda' (or 'cuda:1', 'cpu')"
_TRAIN_KEYWORDS = {name: hint for names, hint in (
    (("verbose",), "progress=False turns off the progress bar and the epoch lines (Keras' verbose=0)"),
    (("validation_data", "val_data"), "validation=(x_val, y_val)"),
    (("validation_split",), "xn.train takes no split: hold out rows yourself, validation=(x[n:], y[n:]) and "
                            "data=(x[:n], y[:n]) (Keras' validation_split holds out the last rows, before any "
                            "shuffling)"),
    (("criterion", "loss_fn"), LOSS_HINT),
    (("lr", "learning_rate"), "the learning rate is the optimizer's: optimizer=xn.optim.SGD(lr=0.01) (or "
                              "Adam(lr=1e-3), ...); a schedule is a callback: "
                              "callbacks=[xn.callbacks.LearningRateSchedule(...)]"),
    (("momentum", "weight_decay"), "an optimizer setting: pass it to the optimizer, optimizer=xn.optim.SGD(lr=0.1, "
                                   "momentum=0.9, weight_decay=5e-4)"),
    (("max_epochs", "num_epochs", "n_epochs", "nb_epoch", "max_epoch"), "epochs=N (the total number of epochs)"),
    (("batchsize",), "batch_size=..."),
    (("callback",), "callbacks=[...] (a list)"),
    (("metrics",), "accuracy is logged for cross-entropy (train_accuracy, val_accuracy) and perplexity for sequence "
                   "models; another figure: a callback whose on_epoch_end adds it to the logs"),
    (("lr_scheduler",), "scheduler=... (xn.optim.lr_scheduler.StepLR(optimizer, step_size=30), stepped after each "
                        "epoch; per batch: callbacks=[xn.callbacks.LRScheduler(scheduler, interval='step')])"),
    (("num_workers", "pin_memory"), "nothing to set: the data moves to the device once and every batch is gathered "
                                    "there"),
    (("gradient_clip_val", "clip_grad", "max_grad", "max_norm", "clipnorm"),
     "clip_grad_norm=5.0 (the gradients' global 2-norm, PyTorch's clip_grad_norm_, the book's max_grad)"),
    (("gradient_accumulation_steps", "accumulation_steps", "accumulate_grad_steps"),
     "accumulate_grad_batches=k (PyTorch Lightning's name): the optimizer steps once every k batches, on their "
     "mean gradient"),
    (("clip_value", "clipvalue", "gradient_clip_algorithm"),
     "clip_grad_value=0.5 (each gradient element clamped, PyTorch's clip_grad_value_), or clip_grad_norm=5.0"),
    (("initial_epoch",), "resume_from=path continues a run from a ModelCheckpoint(path, full=True) file"),
    (("gpu", "use_cuda"), _GPU),
    (("gpus",), _GPU + "; several GPUs train with comm=xn.distributed.init() under mpiexec"),
    (("x", "y"), "pass the data as one pair: xn.train(model, (x, y), ...)"),
    (("eval_interval",), "xn.train logs once per epoch (history.epochs); the book's loss every eval_interval steps "
                         "comes from a loop of your own (docs/from-the-book.md, 'The book's Trainer and xn.train')"),
    (("time_size",), "the book's RnnlmTrainer.fit(xs, ts, ..., batch_size, time_size) cuts one corpus: pass "
                     "xn.datasets.TokenStream(corpus, batch_size, time_size) as the data (targets: the next ids)"),
) for name in names}


# The model's count of epochs trained is compared too: it sets the shuffles (epochs_trained); and its frozen
# layers: they decide which gradients the all-reduce packs.
_SETTINGS = {"model": lambda m: {**describe_settings(m),
                                 "epochs trained by earlier xn.train calls": epochs_trained(m),
                                 "frozen layers (requires_grad_(False))":
                                     frozen_nodes(m) if callable(getattr(m, "named_modules", None)) else []},
             "optimizer": lambda o: describe_settings(_get_optimizer(o)),
             "loss": loss_settings}


@keyword_hints("train", _TRAIN_KEYWORDS)
@collective("xn.train", data={"data": "train data", "validation": "validation data"},
            same=("epochs", "batch_size", "seed", "shuffle", "drop_last", "accumulate_grad_batches"),
            settings=_SETTINGS)
def train(model: Any, data: Any, *extra: Any, loss: Any, optimizer: Any, epochs: int, batch_size: int | None = None,
          device: Any = "auto", validation: Any = None, seed: int = 0, callbacks: Iterable[Any] = (),
          progress: bool = True, shuffle: bool = True, fallback: bool = True,
          resume_from: str | os.PathLike | None = None, comm: Any = None, graph: bool | None = None,
          drop_last: bool = False, validation_name: str = "val", transform: Any = None,
          blas_threads: Any = None, clip_grad_norm: float | None = None, clip_grad_value: float | None = None,
          scheduler: Any = None, accumulate_grad_batches: int = 1) -> History:
    """Train ``model`` on ``data = (x, y)`` for ``epochs`` epochs of minibatches; returns a :class:`History`.

    x: (N, ...) NumPy array or array of any supported backend (uint8 images are scaled by 1/255 on
    the device), or a tuple ``(x1, x2, ...)`` for a model whose forward takes several inputs (batches
    are cut from each alike); y: (N,) class indices or (N, C) one-hot for cross-entropy, (N, ...) like
    the output for MSE. ``loss`` is a Loss or a name (``"cross_entropy"``, ``"mse"``), ``optimizer`` an Optimizer
    or a name (``"sgd"``, ``"momentum"``, ``"adam"``, ... with the optimizer's default lr).
    ``device``: ``"auto"`` (the device the model/data already live on, else a GPU if available, else
    the CPU), ``"cpu"``, ``"cuda[:N]"`` or a Device; ``fallback=False`` raises instead of falling back to
    the CPU. The same ``seed`` gives the same batches on every device. A model object trained again goes on to
    new batch orders (and ``transform`` draws): epoch e of a call is shuffled as epoch e of the epochs the
    earlier calls trained it for, so ``for _ in range(3): xn.train(model, ..., epochs=1)`` sees the batches of
    ``xn.train(model, ..., epochs=3)``, as a PyTorch, Keras or book loop reshuffles every epoch (a model
    built or loaded anew starts from the seed's first order). ``resume_from`` continues from a
    checkpoint written by ``ModelCheckpoint(path, full=True)`` up to ``epochs`` epochs in total.
    ``comm`` (``xn.distributed.init()``) trains data parallel: each rank takes its part of every global
    batch of ``batch_size`` rows, and the result equals the one-process run; every rank must pass the
    same data (every byte of x and y; a TokenStream's ids, batch_size and time_size), model, optimizer, loss
    and arguments (compared when the ranks first meet: a difference raises on every rank, naming it).
    ``graph``: capture the training step as a CUDA graph on CuPy and launch it each step
    (:mod:`xpnet.training.graph`): ``True`` (or ``XPNET_GRAPH=1``) where that is correct (a CuPy device,
    one process, shuffled batches, layers of ``xpnet.training.graph.CAPTURABLE`` inside Sequential,
    Residual or Concat, cross-entropy or MSE, any xpnet optimizer), else a clear error naming what stands
    in the way; ``None`` (the default)
    trains eagerly in this version (capture by default waits for its first run on a real GPU:
    ``xpnet.training.graph.BY_DEFAULT``); ``False`` never captures (also ``XPNET_GRAPH=0``). The weights
    equal eager training's up to the rounding of xpnet's own matrix product, which stands in for cuBLAS
    inside the graph.
    ``drop_last=True`` leaves out each epoch's last batch when it is smaller than ``batch_size`` (needed
    by BatchNorm when it would hold a single sample; the rows left out differ each epoch).
    ``validation_name`` is the name printed for the validation figures (``"test"`` when ``validation``
    is the test set); History keys stay ``val_*``.
    ``transform(x_batch, epoch, step) -> x_batch`` (e.g. ``xn.datasets.RandomShiftFlip()``) changes each
    training batch on the device after it is gathered (step counts from 0 in each epoch); validation
    data is never transformed. One process only (not with ``comm``), one input.
    Over arrays each row is a sequence of its own for stateful recurrent layers: every training batch
    starts them from zeros (as ``xn.evaluate`` does), and the state they carried
    before is theirs again after.
    With ``comm`` each rank's gradient weighs by the targets its loss averaged (``loss.mean_count()``: the
    labels that are not ``ignore_index``), so padded labels give the one-process result too.
    ``data`` may also be a ``xn.datasets.TokenStream`` (and ``validation`` another): truncated
    backpropagation through time for a model with stateful recurrent layers, the book's
    ``RnnlmTrainer`` (``xpnet.training.streams``); ``batch_size`` is then the stream's (None).
    ``clip_grad_norm``: scale the gradients each step so that their global 2-norm is at most this
    (``xn.optim.clip_grad_norm``; the book's ``max_grad``), after the all-reduce with ``comm``.
    ``clip_grad_value``: clamp each gradient element to [-clip_grad_value, clip_grad_value] instead
    (``xn.optim.clip_grad_value``, PyTorch's ``clip_grad_value_``), at the same point; one of the two.
    ``accumulate_grad_batches=k`` (PyTorch Lightning's name): the optimizer steps once every k batches, on the
    gradient of the mean loss over every sample of those batches: each batch's gradient weighs by the count its
    loss averaged (``loss.mean_count()``, as the ranks of ``comm`` weigh), summed on the device
    (:mod:`xpnet.training.accumulate`). An epoch's last group may hold fewer batches: it steps on those, with
    their own weights (as Lightning does). For a model without batch statistics or random draws (BatchNorm,
    Dropout), ``batch_size=B, accumulate_grad_batches=k`` ends with the weights of ``batch_size=k*B`` up to float
    rounding, the shuffle depending on ``seed`` and the epoch alone (with ``drop_last=False``, or where ``k*B``
    divides the samples). Clipping applies to the accumulated gradient, ``comm`` all-reduces it once per update,
    and the per-step callbacks (``on_train_batch_end``, ``LRScheduler(..., interval="step")``) run after each
    update, numbered by updates; the losses logged stay those of every batch. ``graph=True`` is refused with it
    (a captured step updates after each batch). A PyTorch loop's ``loss = loss / k; loss.backward()`` and
    ``if (i + 1) % k == 0: opt.step(); opt.zero_grad()`` is ``accumulate_grad_batches=k`` (with equal batches).
    ``scheduler``: one of ``xn.optim.lr_scheduler``'s, built on ``optimizer``, stepped after each epoch as in a
    PyTorch loop (ReduceLROnPlateau with the epoch's ``val_loss``); ``xn.callbacks.LRScheduler(scheduler,
    interval="step")`` (here or in ``callbacks``) steps it after each batch.
    Sequence models trained with cross-entropy or NLLLoss (labels (N, T)) get ``train_perplexity`` and
    ``val_perplexity`` in the history and the epoch line (exp of the mean NLL per counted token, without class
    weights or label smoothing).
    The model trains in training mode and is left in the mode (``model.train()``/``eval()``) it had.
    ``blas_threads``: how many threads NumPy's BLAS uses for the products on the CPU: ``"auto"`` (the
    default, or ``XPNET_BLAS_THREADS``) times the first steps of each epoch with 1 thread and with the
    BLAS's own count and runs the rest with the faster (one thread per core crawls on a busy machine), an
    int fixes it, ``"off"`` leaves it alone; a count the user set (``OMP_NUM_THREADS``, threadpoolctl) is
    never changed, and the count found is restored afterwards (``xpnet.backend.threads``). The count
    changes the float rounding of some large products: runs that must repeat bit for bit (a resume
    against an uninterrupted run) need the same fixed count, e.g. ``blas_threads=1``.

    Batches are cut (and shuffled) along axis 0, the samples: a model with a recurrent layer that takes
    time first (``batch_first=False``) is refused, naming the layer, unless the data is one batch, unshuffled,
    in one process; the same in ``xn.evaluate`` where it cuts more than one batch.
    Everything is checked before any training (``xpnet.training.preflight``): a clear error names what to
    change (parameters of mixed dtypes, such as a float64 layer of your own among float32 ones: which, and
    ``model.to(dtype=...)``); inputs that look like unscaled 0..255 images give a warning.
    """
    if extra:
        raise TypeError(f"train: pass the data as one pair, xn.train(model, (x, y), ...), not as "
                        f"{2 + len(extra)} separate arguments")
    if not isinstance(validation_name, str) or not validation_name.isidentifier():
        raise ValueError(f"train: validation_name must be a name such as 'val' or 'test', got {validation_name!r}")
    check_model(model, "train")
    if not grad_enabled():
        raise RuntimeError("train: gradients are off in this thread (within xn.no_grad(), or after "
                           "xn.set_grad_enabled(False)), and training backpropagates; call xn.train outside it "
                           "(PyTorch's backward refuses a loss computed under torch.no_grad() too)")
    shuffle, drop_last = flag(shuffle, "train", "shuffle"), flag(drop_last, "train", "drop_last")
    progress, fallback = flag(progress, "train", "progress"), flag(fallback, "train", "fallback")
    if transform is not None and not callable(transform):
        raise TypeError(f"train: transform must be None or a function (x_batch, epoch, step) -> x_batch, "
                        f"e.g. xn.datasets.RandomShiftFlip(), got {type(transform).__name__}")
    if transform is not None and comm is not None:
        raise NotImplementedError("train: transform with comm (data parallel) is not in this version: each "
                                  "rank would draw the same numbers for its part of the batch")
    loss = check_mean(_get_loss(loss), "train")
    check_last_activation(model, loss, "train")
    optimizer = _get_optimizer(optimizer)
    optimizer.bind(model)
    stream = check_stream(data, batch_size, "train") if isinstance(data, TokenStream) else None
    x, y = pair(data if stream is None else next(stream.epoch(0)), "train data")
    if clip_grad_norm is not None and clip_grad_value is not None:
        raise ValueError(f"train: clip_grad_norm={clip_grad_norm!r} and clip_grad_value={clip_grad_value!r} were both "
                         "given: pass one (the norm scales all gradients alike, the value clamps each element)")
    if clip_grad_norm is not None:
        clip_grad_norm = check_positive(clip_grad_norm, "train: clip_grad_norm", "max_norm")
    if clip_grad_value is not None:
        clip_grad_value = check_positive(clip_grad_value, "train: clip_grad_value", "clip_value")
    if transform is not None and isinstance(x, tuple):
        raise NotImplementedError("train: transform with several inputs is not in this version; transform the "
                                  "inputs before training, or combine them in the model")
    n = int(y.shape[0]) if stream is None else stream.batch_size * len(stream)
    epochs = int_arg("epochs", epochs, 0)
    if batch_size is None and stream is None:
        raise TypeError("train: batch_size is required (the rows of each minibatch), e.g. batch_size=100")
    batch_size = int_arg("batch_size", stream.batch_size if stream else batch_size, 1, n)
    accumulate = int_arg("accumulate_grad_batches", accumulate_grad_batches, 1)
    if accumulate > 1 and graph is True:
        raise ValueError(f"train: graph=True with accumulate_grad_batches={accumulate}: {_graph.ACCUMULATED}; "
                         "pass graph=None or False to train eagerly")
    seed = int_arg("seed", seed, 0)
    val_stream = validation if isinstance(validation, TokenStream) else None
    val = pair(validation if val_stream is None else next(val_stream.epoch(0)), "validation") \
        if validation is not None else None
    if stream is not None or val_stream is not None or batch_size < n or shuffle or comm is not None \
            or (val is not None and int(val[1].shape[0]) > max(batch_size, EVAL_BATCH)):
        refuse_time_first(model, "xn.train", shuffled=shuffle)
    callbacks = check_callbacks(callbacks, _callbacks.Callback)
    if scheduler is not None:
        callbacks.append(as_callback(scheduler))
    named = {**named_inputs("train data", x), **(named_inputs("validation", val[0]) if val else {})}
    warn_unscaled({k: a for k, a in named.items() if not is_ids(model, a)})  # ids for an Embedding are no images
    placed = common_device({"model": model.device, **named_inputs("x", x), "y": y,
                            **(named_inputs("validation x", val[0]) if val else {}), "validation y": val and val[1]})
    if isinstance(device, str) and device.strip().lower() == "auto" and placed is not None:
        dev = placed
    elif comm is not None:
        dev = comm.device(device, fallback=fallback)  # "cuda": GPU local_rank % device_count
    else:
        dev = _resolve_device(device, fallback=fallback)
    graph = _graph.setting(graph, dev)
    threads = threads_context(blas_threads, dev)  # validated here, before any training
    # a model on cuda:N runs on GPU N (Device.activate); xn.train's steps take the backward calls it made
    with dev.activate(), threads as tuner, optimizer.own_backward_calls(), BeforeResume() as before:
        rank = 0 if comm is None else int(comm.rank)

        history = History(dev.name)
        start, ckpt = 0, None
        # A stream cuts its own batches: only their row count is the run's to compare.
        cut = {"batch_size": batch_size} if stream is not None else \
            {"batch_size": batch_size, "shuffle": shuffle, "drop_last": drop_last}
        cut["accumulate_grad_batches"] = accumulate  # the updates, not the batches: compared on resume as well
        if resume_from is not None:
            ckpt = load_checkpoint(resume_from) if rank == 0 else None
            if comm is not None:
                ckpt = comm.bcast_object(ckpt, root=0)
            # A schedule sets the lr (and OneCycleLR the momentum) itself, from its own state.
            keep = ("lr",) if any(isinstance(cb, LearningRateSchedule) for cb in callbacks) else ()
            keep = ("lr", "momentum", "betas") if any(isinstance(cb, LRScheduler) for cb in callbacks) else keep
            before.take(model, optimizer, callbacks)
            start = apply_checkpoint(ckpt, model, optimizer, seed, epochs, keep=keep, batches=cut)
            history.epochs = [dict(e) for e in ckpt["meta"]["history"]["epochs"]]
        offset = int(ckpt["meta"].get("epoch_offset", 0)) if ckpt is not None else epochs_trained(model)
        model.to(dev)
        optimizer.to(dev)
        x, y, classes = prepare(x, y, model, loss, dev, "train data")
        if stream is not None:
            check_ids(stream, model, x, "train data")
        check_single_samples(model, x, n, batch_size, 1 if comm is None else int(comm.size), drop_last)
        classify = classes is not None
        if val is not None:
            xv, yv, cv = prepare(val[0], val[1], model, loss, dev, "validation")
        if comm is not None:
            comm.broadcast_params(model, root=0)

        trainer = Trainer(model, loss, optimizer, dev, comm, progress)
        trainer.transform, trainer.threads = transform, tuner
        trainer.clip_grad_norm, trainer.clip_grad_value = clip_grad_norm, clip_grad_value
        trainer.accumulate = accumulate
        trainer.epoch_offset = offset
        # Once per run: where no label is ignore_index, the loss counts its targets on the host each step.
        trainer.ignored = loss.ignores_any(y if stream is None else stream.ids)
        val_ignored = val is not None and loss.ignores_any(yv if val_stream is None else val_stream.ids)
        trainer.inputs = len(inputs(x))
        arrays = (*inputs(x), y) if classes is None or classes is y else (*inputs(x), y, classes)
        batches = StreamBatches(stream, model, dev, trainer.rank, trainer.size) if stream is not None else \
            BatchIterator(*arrays, batch_size=batch_size, shuffle=shuffle, seed=seed, rank=trainer.rank,
                          size=trainer.size, drop_last=drop_last, epoch_offset=offset)
        perplexity = is_sequence_loss(loss, y)
        trainer.nll = perplexity_loss(loss) if perplexity else None
        trainer.captured = _graph.captured_epochs(graph, trainer, batches, classify, transform)
        trainer.step_callbacks = [cb for cb in callbacks if _acts_per_step(cb)]
        state = TrainerState(model, optimizer, loss, history, dev, comm, seed, epochs, val is not None, callbacks)
        state.epoch, state.batches, state.epoch_offset = start, cut, offset
        state.captured = trainer.captured is not None
        state.logged = logged_figures(classify, perplexity, None if val is None else cv is not None)
        if trainer.show:
            ranks = f", {trainer.size} ranks" if comm is not None else ""
            what = f"{n} samples" if stream is None else \
                f"{n * stream.time_size} tokens in batches of {stream.batch_size} rows x {stream.time_size} steps"
            steps = f"{len(batches)} steps" if accumulate == 1 else \
                f"{len(batches)} batches ({-(-len(batches) // accumulate)} updates, every {accumulate} batches)"
            print(f"xpnet: training on {dev.name}{ranks}: {what}, {steps} per epoch, epochs {start + 1}..{epochs}",
                  flush=True)
        for cb in callbacks:
            # Each run's own: self.state also for an on_train_begin that does not call super, and no
            # stop_training left from an earlier run (Keras resets model.stop_training at each fit).
            cb.state, cb.stop_training = state, False
            cb.on_train_begin(state)
        if ckpt is not None:
            restore_callbacks(ckpt, callbacks)
        before.started()
        stopped = any(cb.stop_training for cb in callbacks)  # a resumed run that had finished

        # The trainer finds non-finite values itself (the guard); NumPy's overflow warnings would only
        # repeat that, once per step. SIGTERM stops at the end of a step (every rank after the same one: they
        # agree in allreduce_grads' collective of counts) or of an epoch (one that came during validation or
        # the callbacks), and ends the process after the last checkpoint is written; a process that gets to
        # neither within XPNET_SIGTERM_WAIT_S seconds is ended by SIGTERM (xpnet.io.signals). PyTorch
        # records no autograd graph: xpnet runs its own backward.
        datasets = [(stream.xs,) if stream is not None else inputs(x)]
        if val_stream is not None or val is not None:
            datasets.append((val_stream.xs,) if val_stream is not None else inputs(xv))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), SigtermFlag() as sigterm, \
                no_autograd(dev.xp), mode(model, True), ids_checked_once(model, datasets), \
                loss.none_ignored(not trainer.ignored):
            trainer.sigterm = sigterm
            for epoch in range(start + 1, start if stopped else epochs + 1):
                t0 = time.perf_counter()
                set_rng_states(model)
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                try:
                    epoch_logs = trainer.run_epoch(batches, epoch, epochs, batches.used, classify)
                except SigtermStop as stop:
                    stop.snapshot.restore(model, optimizer)  # back to the end of the last complete epoch
                    _save_last_and_terminate(callbacks, sigterm)
                nll = {"train_": epoch_logs.pop("train_nll", None), "val_": None}
                logs = {"epoch": epoch, **epoch_logs, "val_loss": None, "val_accuracy": None}
                if val_stream is not None:
                    logs["val_loss"], nll["val_"] = evaluate_stream(trainer, val_stream, val_ignored)
                elif val is not None:
                    logs["val_loss"], logs["val_accuracy"], nll["val_"] = trainer.evaluate(
                        xv, yv, cv, max(batch_size, EVAL_BATCH), val_ignored)
                if perplexity:
                    add_perplexity(logs, nll=nll)
                logs["seconds"] = time.perf_counter() - t0
                logs.update(lr_figures(optimizer))
                if comm is not None:
                    logs = comm.bcast_object(logs, root=0)
                history.epochs.append(logs)
                state.epoch = epoch
                _EPOCHS_TRAINED[model] = offset + epoch
                if trainer.open_bar is not None:
                    trainer.open_bar.close()
                if trainer.show:
                    print(f"epoch {epoch}/{epochs}  {format_logs(logs, validation_name)}", flush=True)
                for cb in _callbacks.epoch_end_order(callbacks):
                    cb.on_epoch_end(epoch, logs)
                if trainer.sigterm_agreed():
                    _save_last_and_terminate(callbacks, sigterm)
                if any(cb.stop_training for cb in callbacks):
                    break
        for cb in callbacks:
            cb.on_train_end()
        if comm is not None:  # BatchNorm's running statistics were kept per rank: every rank ends with rank 0's
            comm.broadcast_params(model, root=0)
        first = trainer.first_step_loss()  # reduced over ranks: the epochs' losses are means over all of them
        if rank == 0:
            warn_if_diverged(history, first)
        return history


# model -> the epochs xn.train has trained it for, as the shuffle counts them (see epochs_trained).
_EPOCHS_TRAINED: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()


def epochs_trained(model: Any) -> int:
    """How many epochs earlier ``xn.train`` calls trained this model object for (0 for a model built or loaded
    anew): a new call shuffles its epoch e as epoch ``epochs_trained(model) + e`` of its seed."""
    return _EPOCHS_TRAINED.get(model, 0)


# xpnet's callbacks whose on_train_batch_end acts only with interval="step" (after each epoch otherwise)
_PER_STEP_BY_INTERVAL = (LRScheduler.on_train_batch_end, AveragedWeights.on_train_batch_end)


def _acts_per_step(cb: Any) -> bool:
    """Whether ``cb``'s ``on_train_batch_end`` may do something: its own method, and for an ``LRScheduler`` or
    ``AveragedWeights``, ``interval="step"`` (an epoch's scheduler, PyTorch's usual ``StepLR``, leaves the steps
    between the epoch's first and last planned: :mod:`xpnet.training.planned`)."""
    hook = type(cb).on_train_batch_end
    if hook is _callbacks.Callback.on_train_batch_end:
        return False
    return hook not in _PER_STEP_BY_INTERVAL or cb.interval == "step"


def _save_last_and_terminate(callbacks: list[Any], sigterm: SigtermFlag) -> None:
    """Write the state after the last complete epoch to every full, not best-only ModelCheckpoint,
    then end the process by SIGTERM."""
    for cb in callbacks:
        if isinstance(cb, _callbacks.ModelCheckpoint):
            cb.save_last()
    sigterm.terminate()
