"""Command line: ``python -m xpnet train ...`` and ``python -m xpnet gradcheck ...``.

Errors a user can fix (unknown device, missing data, unwritable --out) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Sequence

from .fileio import atomic_write

DATASETS = ("fashion-mnist", "mnist", "spiral")
MODELS = ("mlp", "cnn")


class UsageError(Exception):
    """A problem with the command line or the environment that the user can fix."""


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
    loader = {"fashion-mnist": datasets.load_fashion_mnist, "mnist": datasets.load_mnist}[name]
    try:
        return loader(normalize=True, flatten=flatten, root=root)
    except (FileNotFoundError, RuntimeError, OSError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


def _writable_dir(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UsageError(f"--out {path!r} is not a writable folder ({exc.strerror or exc})") from exc
    return path


def cmd_train(args: argparse.Namespace) -> int:
    import xpnet as xn  # noqa: PLC0415

    comm = None
    if args.distributed:
        try:
            comm = xn.distributed.init()
        except xn.distributed.MPIUnavailableError as exc:
            raise UsageError(str(exc).splitlines()[0]) from exc
    root = comm is None or comm.rank == 0
    out = _writable_dir(args.out) if root else args.out
    dev = comm.device(args.device) if comm is not None else _device(args.device)
    image = args.dataset != "spiral"
    (x, t), (xv, tv) = load_data(args.dataset, flatten=args.model == "mlp", root=args.data_root)
    n_classes = int(t.max()) + 1
    xn.init.seed(args.seed)
    n_in = 1
    for d in x.shape[1:]:
        n_in *= int(d)
    model = build_model(args.model, n_in, n_classes, image=image)
    opt_cls = xn.optim.OPTIMIZERS[args.optimizer]
    optimizer = opt_cls(lr=args.lr) if args.lr is not None else opt_cls()
    history = xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=optimizer,
                       epochs=args.epochs, batch_size=args.batch_size, device=dev, validation=(xv, tv),
                       seed=args.seed, progress=not args.quiet and root, comm=comm)
    result = xn.evaluate(model, (xv, tv), loss=xn.losses.SoftmaxCrossEntropy(), batch_size=1000, comm=comm)
    if root:
        model.save(os.path.join(out, "model.npz"))
        with atomic_write(os.path.join(out, "history.json"), "w") as f:
            json.dump(history.to_dict(), f, indent=2)
        plot = ""
        try:
            history.plot(os.path.join(out, "curves.png"))
            plot = ", curves.png"
        except ImportError as exc:
            print(f"note: {exc}", file=sys.stderr)
        print(f"test accuracy: {result['accuracy']:.4f}  test loss: {result['loss']:.4f}")
        print(f"wrote {os.path.join(out, 'model.npz')}, history.json{plot}")
    return 0


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


def _device(spec: str) -> Any:
    import xpnet as xn  # noqa: PLC0415

    try:
        return xn.device(spec)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from exc


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="xpnet", description="Train and check xpnet models on CPU or GPU.")
    sub = ap.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a model and write model.npz, history.json, curves.png")
    tr.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    tr.add_argument("--model", choices=MODELS, default="mlp")
    tr.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    tr.add_argument("--epochs", type=int, default=5)
    tr.add_argument("--batch-size", type=int, default=100)
    tr.add_argument("--optimizer", choices=sorted(_optimizer_names()), default="adam")
    tr.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", default="runs/latest", help="output folder (default: runs/latest)")
    tr.add_argument("--data-root", default=None, help="folder holding the dataset files")
    tr.add_argument("--distributed", action="store_true", help="data parallel under mpiexec (needs xpnet[mpi])")
    tr.add_argument("--quiet", action="store_true", help="no progress output")
    tr.set_defaults(func=cmd_train)

    gc = sub.add_parser("gradcheck", help="check backprop against numerical gradients in float64")
    gc.add_argument("--model", choices=MODELS, default="mlp")
    gc.add_argument("--device", default="auto")
    gc.add_argument("--fast", action="store_true", help="one random direction per tensor")
    gc.add_argument("--seed", type=int, default=0)
    gc.set_defaults(func=cmd_gradcheck)
    return ap


def _optimizer_names() -> list[str]:
    from .optim import OPTIMIZERS  # noqa: PLC0415

    return list(OPTIMIZERS)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
