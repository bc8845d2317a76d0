"""Command line: ``python -m xpnet train ...`` and ``python -m xpnet gradcheck ...``.

Errors a user can fix (a bad number, unknown device, missing or broken data, an unwritable or full
--out, a standard output that cannot be written, a bad ``XPNET_*`` setting, a run that diverged) print
``xpnet: error: ...`` and exit 2: one line, except missing data, which also lists the folders searched.
A failed run leaves no output of its own behind (no half-written files, no --out folder it created).
``train`` validates on the test set after each epoch and calls it "test" everywhere (the printed lines,
history.json, curves.png); history.json also records the run's configuration. While it runs, --out holds a
full checkpoint that Ctrl-C and SIGTERM leave behind and ``--resume`` continues (:mod:`xpnet.cli_checkpoint`).

With ``--distributed`` MPI starts before the command line is read, so that every check a rank makes
(the command line itself, the arguments every rank must share, --out, the data, the model) is agreed by
all ranks: a problem on any rank prints one line, once, and every rank exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import tempfile
from typing import Any, NoReturn, Sequence

from .io.atomic import atomic_write

DATASETS = ("fashion-mnist", "mnist", "spiral")
MODELS = ("mlp", "cnn")


class UsageError(Exception):
    """A problem with the command line or the environment that the user can fix."""


class _StdoutError(Exception):
    """Writing to standard output failed (a full device, a closed pipe)."""


class _Stdout:
    """``sys.stdout`` whose write errors are told apart from every other OSError of a run."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise _StdoutError(exc.strerror or str(exc)) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _StdoutError(exc.strerror or str(exc)) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _silence(stream: Any) -> None:
    """Point the process's standard output at the null device when ``stream`` is it, so that the text
    still buffered is dropped at exit instead of failing there again (Python's way for a closed pipe)."""
    if stream is not sys.__stdout__:
        return
    with contextlib.suppress(OSError, AttributeError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


def build_model(name: str, n_in: int, n_classes: int, image: bool = False) -> Any:
    """``mlp``: n_in-100-10 ReLU MLP; ``cnn``: conv5x5x30 - ReLU - maxpool2 - 100 - 10 (images only)."""
    from . import Sequential, layers  # noqa: PLC0415 - keep `--help` fast

    if name == "mlp":
        return Sequential(layers.Linear(n_in, 100), layers.ReLU(), layers.Linear(100, n_classes))
    if name == "cnn":
        if not image:
            raise UsageError("--model cnn needs an image dataset (fashion-mnist or mnist)")
        return Sequential(layers.Conv2d(1, 30, 5), layers.ReLU(), layers.MaxPool2d(2),
                          layers.Linear(30 * 12 * 12, 100), layers.ReLU(), layers.Linear(100, n_classes))
    raise UsageError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def load_data(name: str, flatten: bool, root: str | None) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    from . import datasets  # noqa: PLC0415

    if name == "spiral":
        x, t = datasets.spiral(300, 3, seed=0)
        xv, tv = datasets.spiral(100, 3, seed=1)
        return (x, t), (xv, tv)
    if root is not None and not os.path.isdir(root):
        raise UsageError(f"--data-root {root!r} is not a folder; give the folder that holds the {name} files, or "
                         "leave --data-root out to search the usual places")
    loader = {"fashion-mnist": datasets.load_fashion_mnist, "mnist": datasets.load_mnist}[name]
    try:
        return loader(normalize=True, flatten=flatten, root=root)
    except datasets.DatasetNotFoundError as exc:
        # The whole message: it lists the folders searched and how to get the files.
        raise UsageError(str(exc).replace("root=<folder>", "--data-root <folder>")) from exc
    except (FileNotFoundError, RuntimeError, OSError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


def _check_out(path: str) -> str:
    """Raise unless ``path`` is a writable folder or could be created as one; creates nothing."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(f"{existing!r} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UsageError(f"--out {path!r} is not a writable folder ({exc.strerror or exc})") from exc
    return path


@contextlib.contextmanager
def _outputs(out: str, keep: Sequence[str] = ()) -> Any:
    """Yield a list to append each written path to; on a failure remove them, and ``out`` and the folders
    above it that this run created, so that a failed run leaves nothing of its own. On Ctrl-C the paths in ``keep``
    (the checkpoint, where this run wrote one) stay, and ``out`` with them."""
    created = []  # the folders this run makes, deepest first (runs/latest, then runs)
    folder = os.path.abspath(out)
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    written: list[str] = []
    try:
        os.makedirs(out, exist_ok=True)
        yield written
    except BaseException as exc:
        kept = [path for path in keep if os.path.exists(path)] if isinstance(exc, KeyboardInterrupt) else []
        for path in written:
            if path not in kept:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        for made in created if not kept else []:
            with contextlib.suppress(OSError):
                os.rmdir(made)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write to --out {out!r}: {exc.strerror or exc}") from exc
        raise


def cmd_train(args: argparse.Namespace) -> int:
    import xpnet as xn  # noqa: PLC0415

    comm = args.comm
    if comm is not None:
        from .cli_ranks import same_on_every_rank  # noqa: PLC0415

        same_on_every_rank(args, comm)
    root = comm is None or comm.rank == 0
    _on_every_rank(comm, _check_environment)
    out = _on_every_rank(comm, lambda: _check_out(args.out), only_root=True) or args.out
    dev = _on_every_rank(comm, lambda: _device(args.device, comm))
    image = args.dataset != "spiral"
    (x, t), (xv, tv) = _on_every_rank(comm, lambda: load_data(args.dataset, flatten=args.model == "mlp",
                                                               root=args.data_root))

    def check_batch_size() -> None:
        if args.batch_size > len(x):
            raise UsageError(f"--batch-size {args.batch_size} is larger than the {len(x)} training samples of "
                             f"{args.dataset}")

    _on_every_rank(comm, check_batch_size, only_root=True)
    n_classes = int(t.max()) + 1
    xn.init.seed(args.seed)
    n_in = 1
    for d in x.shape[1:]:
        n_in *= int(d)
    model = _on_every_rank(comm, lambda: build_model(args.model, n_in, n_classes, image=image))
    opt_cls = xn.optim.OPTIMIZERS[args.optimizer]
    optimizer = opt_cls(lr=args.lr) if args.lr is not None else opt_cls()
    from .cli_checkpoint import RunCheckpoint, check_resume  # noqa: PLC0415

    _on_every_rank(comm, lambda: check_resume(out, args.resume), only_root=True)
    saver = RunCheckpoint(out, args.argv, comm)
    plot = ""
    # The checkpoint is this run's own output (removed if it fails) unless it continues an earlier one.
    with _outputs(out, keep=[saver.path]) if root else contextlib.nullcontext([]) as written:
        if not args.resume:
            written.append(saver.path)
        if not root:  # the checkpoint's folder, where the ranks do not share rank 0's file system
            os.makedirs(out, exist_ok=True)
        try:
            history = xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=optimizer,
                               epochs=args.epochs, batch_size=args.batch_size, device=dev, validation=(xv, tv),
                               seed=args.seed, progress=not args.quiet and root, comm=comm, validation_name="test",
                               callbacks=[saver], resume_from=saver.path if args.resume else None)
        except xn.XpnetTrainingError as exc:
            raise UsageError(str(exc)) from exc
        except ValueError as exc:  # the checkpoint does not fit the command line (its XpnetFileError too)
            if not args.resume:
                raise
            raise UsageError(str(exc).replace("resume_from: ", "--resume: ")) from exc
        except KeyboardInterrupt:
            saver.tell("Ctrl-C")
            raise
        result = xn.evaluate(model, (xv, tv), loss=xn.losses.SoftmaxCrossEntropy(), batch_size=1000, comm=comm)
        if root:
            model.save(os.path.join(out, "model.npz"))
            written.append(os.path.join(out, "model.npz"))
            record = {"config": run_config(args, model, optimizer, history.device, comm, len(x), len(xv)),
                      "device": history.device, "epochs": [_test_named(e) for e in history.epochs],
                      "test": result}
            with atomic_write(os.path.join(out, "history.json"), "w") as f:
                json.dump(record, f, indent=2)
            written.append(os.path.join(out, "history.json"))
            try:
                xn.History(history.device, record["epochs"]).plot(os.path.join(out, "curves.png"),
                                                                  title=f"{args.dataset}, {args.model}")
                written.append(os.path.join(out, "curves.png"))
                plot = ", curves.png"
            except ImportError as exc:
                print(f"xpnet: skipped curves.png: {exc}", file=sys.stderr)
            os.unlink(saver.path)  # the run is in model.npz now (see xpnet.cli_checkpoint)
    if root:
        print(f"test accuracy: {result['accuracy']:.4f}  test loss: {result['loss']:.4f}")
        print(f"wrote {os.path.join(out, 'model.npz')}, history.json{plot}")
    return 0


def _on_every_rank(comm: Any, check: Any, only_root: bool = False) -> Any:
    """``check()`` (on rank 0 only with ``only_root``); a UsageError it raises on any rank is raised
    on every rank, so that no rank goes on to wait for one that left."""
    problem, result = None, None
    if comm is None or comm.rank == 0 or not only_root:
        try:
            result = check()
        except UsageError as exc:
            if comm is None:
                raise
            problem = str(exc)
    if comm is not None:
        from .distributed._abort import raised_on_every_rank  # noqa: PLC0415
        from .distributed._checks import agree  # noqa: PLC0415

        problem = agree(comm, problem)
        if problem is not None:
            raise raised_on_every_rank(UsageError(problem))
    return result


def run_config(args: argparse.Namespace, model: Any, optimizer: Any, device: str, comm: Any, n_train: int,
               n_test: int) -> dict[str, Any]:
    """What history.json records about the run: enough to repeat it."""
    import xpnet as xn  # noqa: PLC0415

    return {"xpnet_version": xn.__version__, "command": shlex.join(["xpnet", *args.argv]),
            "dataset": args.dataset, "data_root": args.data_root, "train_samples": n_train, "test_samples": n_test,
            "model": args.model, "layers": [repr(layer) for layer in model.layers],
            "parameters": sum(math.prod(v.shape) for v in model.named_params().values()),
            "loss": "SoftmaxCrossEntropy", "optimizer": {"name": optimizer.name, **optimizer.hyperparams()},
            "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "device": device,
            "ranks": 1 if comm is None else int(comm.size)}


def _test_named(epoch: dict[str, Any]) -> dict[str, Any]:
    """An epoch record with the val_* figures named test_*, since the CLI validates on the test set."""
    return {k.replace("val_", "test_", 1): v for k, v in epoch.items()}


def cmd_gradcheck(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    import xpnet as xn  # noqa: PLC0415

    dev = _device(args.device)
    rng = np.random.default_rng(args.seed)
    xn.init.seed(args.seed)
    if args.model == "mlp":
        model = xn.Sequential(xn.layers.Linear(20, 10), xn.layers.Tanh(), xn.layers.Linear(10, 5))
        x = rng.standard_normal((4, 20))
    else:
        model = xn.Sequential(xn.layers.Conv2d(1, 3, 3, padding=1), xn.layers.Tanh(), xn.layers.AvgPool2d(2),
                              xn.layers.Flatten(), xn.layers.Linear(3 * 4 * 4, 5))
        x = rng.standard_normal((2, 1, 8, 8))
    t = rng.integers(0, 5, x.shape[0])
    model.to(dev)
    report = xn.gradcheck(model, x, t, loss=xn.losses.SoftmaxCrossEntropy(), fast=args.fast, seed=args.seed)
    print(f"device: {dev.name}")
    print(report)
    return 0 if report.ok else 1


def _check_environment() -> None:
    """The ``XPNET_*`` settings xn.train reads, checked before the data is loaded."""
    from .training.graph import graph_from_environment  # noqa: PLC0415

    try:
        graph_from_environment()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _device(spec: str, comm: Any = None) -> Any:
    """``xn.device(spec)`` (``comm.device`` in a distributed run); a bad spec is a UsageError."""
    import xpnet as xn  # noqa: PLC0415
    from .backend.devices import is_device_string, unknown_device  # noqa: PLC0415

    if not is_device_string(spec):  # said without the Python objects xn.device also takes
        raise UsageError(unknown_device(spec, python=False))
    try:
        return xn.device(spec) if comm is None else comm.device(spec)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from exc


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (``xpnet: error: ...``, exit 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"xpnet: error: {message}\n")


class _RaisingParser(_Parser):
    """A parser whose errors raise UsageError (a --distributed run agrees on them before exiting)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, an off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _number(kind: type, lo: float, inclusive: bool) -> Any:
    """An argparse type: a finite ``kind`` >= ``lo`` (> ``lo`` unless ``inclusive``)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value) or value < lo or (value == lo and not inclusive):
            raise argparse.ArgumentTypeError(f"expected a finite number {'>=' if inclusive else '>'} {lo:g}, "
                                             f"got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def parser(raising: bool = False) -> argparse.ArgumentParser:
    """The command line; with ``raising`` its errors raise UsageError instead of exiting."""
    from . import __version__  # noqa: PLC0415

    cls = _RaisingParser if raising else _Parser
    ap = cls(prog="xpnet", description="Train and check xpnet models on CPU or GPU.", formatter_class=_HelpFormatter)
    ap.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=cls)

    tr = sub.add_parser("train", help="train a model and write model.npz, history.json, curves.png",
                        description="Train a model, testing it on the test set after each epoch; write "
                                    "model.npz, history.json (the run's configuration and figures) and curves.png "
                                    "(needs matplotlib) to --out.", formatter_class=_HelpFormatter)
    tr.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="what to train on")
    tr.add_argument("--model", choices=MODELS, default="mlp",
                    help="mlp: inputs-100-classes with ReLU; cnn: conv5x5x30-ReLU-maxpool2-100-classes (the book's "
                         "SimpleConvNet)")
    tr.add_argument("--device", default="auto",
                    help="auto, cpu, cuda, cuda:N, torch:cpu, torch:cuda[:N], torch:mps, jax:cpu or jax:gpu[:N]")
    tr.add_argument("--epochs", type=_number(int, 1, True), default=5, help="passes over the training set")
    tr.add_argument("--batch-size", type=_number(int, 1, True), default=100, help="samples per step")
    tr.add_argument("--optimizer", choices=sorted(_optimizer_names()), default="adam", help="update rule")
    tr.add_argument("--lr", type=_number(float, 0, True), default=None,
                    help=f"learning rate; when left out, the optimizer's own ({_default_lrs()})")
    tr.add_argument("--seed", type=_number(int, 0, True), default=0, help="seeds the weights and the shuffles")
    tr.add_argument("--out", default="runs/latest",
                    help="output folder; it holds checkpoint.npz while the run goes on (removed when it finishes)")
    tr.add_argument("--resume", action="store_true",
                    help="continue the interrupted run whose checkpoint.npz is in --out, up to --epochs in total "
                         "(give the other options as before: the command an interrupted run prints)")
    tr.add_argument("--data-root", default=None,
                    help="folder holding the dataset's IDX files; when left out: $XPNET_DATA, the user cache, "
                         "/usr/share/datasets, else a download")
    tr.add_argument("--distributed", action="store_true",
                    help="data parallel under mpiexec (needs mpi4py: the 'mpi' extra)")
    tr.add_argument("--quiet", action="store_true", help="no progress output")
    tr.set_defaults(func=cmd_train)

    gc = sub.add_parser("gradcheck", help="check backprop against numerical gradients in float64",
                        formatter_class=_HelpFormatter)
    gc.add_argument("--model", choices=MODELS, default="mlp", help="a small model of this kind to check")
    gc.add_argument("--device", default="auto", help="as for train")
    gc.add_argument("--fast", action="store_true", help="one random direction per tensor")
    gc.add_argument("--seed", type=_number(int, 0, True), default=0,
                    help="seeds the weights, the data and the entries checked")
    gc.set_defaults(func=cmd_gradcheck)
    return ap


def _default_lrs() -> str:
    from .optim import OPTIMIZERS  # noqa: PLC0415

    return ", ".join(f"{name} {cls().lr:g}" for name, cls in sorted(OPTIMIZERS.items()))


def _optimizer_names() -> list[str]:
    from .optim import OPTIMIZERS  # noqa: PLC0415

    return list(OPTIMIZERS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    The status is also noted for xpnet.distributed (``sys.exit(main())`` looked ``sys.exit`` up before
    its wrapper existed), so that a non-zero status on one rank of a job still ends the job."""
    from .distributed._abort import note_exit  # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        status = _run(argv)
    except SystemExit as exc:  # argparse: --help, --version, or a bad command line in a one-process run
        note_exit(exc.code, "the xpnet command's exit status")
        raise
    note_exit(status, "the xpnet command's exit status")
    return status


def _run(argv: list[str]) -> int:
    from .cli_ranks import parse, start_distributed  # noqa: PLC0415

    stdout = sys.stdout
    try:
        comm = start_distributed(argv)
        args = parse(argv, comm, parser) if comm is not None else parser().parse_args(argv)
        if args is None:
            return 0
        args.argv, args.comm = argv, comm
        sys.stdout = _Stdout(stdout)
        return args.func(args)
    except _StdoutError as exc:
        _silence(stdout)
        print(f"xpnet: error: cannot write to the standard output: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        from .distributed._abort import leave_together  # noqa: PLC0415 - a job of several ranks ends as one

        if leave_together(exc):
            print(f"xpnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = stdout
