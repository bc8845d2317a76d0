"""A fine-tuning step with the middle of the model frozen: xpnet unfrozen, xpnet frozen and (where torch is
importable) PyTorch's same model from the same weights, unfrozen and with ``requires_grad_(False)``, float32 on the
CPU, interleaved, best of each.

The input layer and the head train, the backbone between them is frozen, so its backward still runs for dx but
computes no parameter gradient (an adapter below a frozen backbone; a backbone frozen above nothing that trains is
not backpropagated at all). Two models: "transformer" (Linear 32 -> 128, a TransformerEncoder of 2 layers,
4 heads, feed-forward 512, dropout 0, Flatten, Linear to 10; batch 32 of 32 steps) and "cnn" (Conv2d 1 -> 16,
then Conv2d-BatchNorm-ReLU-MaxPool2d twice at 32 channels, Flatten, Linear to 10; batch 64 of 28x28 images, the
frozen BatchNorm in training mode). A step: forward, cross-entropy, backward, SGD with momentum. Ratios: frozen
over unfrozen for each library, and xpnet frozen over PyTorch frozen; the BLAS threads are printed.

    python benchmarks/frozen_step.py [--repeat 15] [--steps 2] [--only transformer cnn]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from typing import Any, Callable

import numpy as np

from _threads import thread_line

import xpnet as xn

L = xn.layers


def _transformer(torch: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """(xpnet's model, PyTorch's or None, the input's shape); the backbone is child 1 of both."""
    ours = xn.Sequential(L.Linear(32, 128), L.TransformerEncoder(L.TransformerEncoderLayer(128, 4, 512, 0.0), 2),
                         L.Flatten(), L.Linear(32 * 128, 10))
    theirs = torch and torch.nn.Sequential(
        torch.nn.Linear(32, 128),
        torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(128, 4, 512, 0.0, batch_first=True), 2,
                                    enable_nested_tensor=False),
        torch.nn.Flatten(), torch.nn.Linear(32 * 128, 10))
    return ours, theirs, (32, 32, 32)


def _cnn(torch: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """(xpnet's model, PyTorch's or None, the input's shape); the backbone is children 1 to 8 of both."""
    ours = xn.Sequential(L.Conv2d(1, 16, 3, padding=1), L.Conv2d(16, 32, 3, padding=1), L.BatchNorm(32), L.ReLU(),
                         L.MaxPool2d(2), L.Conv2d(32, 32, 3, padding=1), L.BatchNorm(32), L.ReLU(), L.MaxPool2d(2),
                         L.Flatten(), L.Linear(32 * 7 * 7, 10))
    nn = torch and torch.nn
    theirs = torch and nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1),
                                     nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1),
                                     nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                     nn.Linear(32 * 7 * 7, 10))
    return ours, theirs, (64, 1, 28, 28)


MODELS: dict[str, tuple[Callable[[Any], tuple[Any, Any, tuple[int, ...]]], range]] = {
    "transformer": (_transformer, range(1, 2)), "cnn": (_cnn, range(1, 9))}


def _xpnet_step(model: Any, x: np.ndarray, t: np.ndarray) -> Callable[[], None]:
    loss, opt = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.01, momentum=0.9)

    def step() -> None:
        loss.forward(model(x), t)
        model.backward(loss.backward(), input_grad=False)
        opt.step(model)

    return step


def _torch_step(torch: Any, model: Any, x: np.ndarray, t: np.ndarray) -> Callable[[], None]:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    tx, tt = torch.from_numpy(x), torch.from_numpy(t)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(tx), tt).backward()
        opt.step()

    return step


def _steps(name: str, torch: Any) -> dict[str, Callable[[], None]]:
    """The name of each configuration -> its step, from one set of weights."""
    build, backbone = MODELS[name]
    steps = {}
    for frozen in (False, True):
        xn.init.seed(0)
        ours, theirs, shape = build(torch)
        rng = np.random.default_rng(0)
        x, t = rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, shape[0])
        if frozen:
            for i in backbone:
                ours[i].requires_grad_(False)
        steps[f"xpnet {'frozen' if frozen else 'unfrozen'}"] = _xpnet_step(ours, x, t)
        if theirs is not None:
            theirs.load_state_dict({k: torch.from_numpy(v) for k, v in xn.torch_state_dict(ours).items()})
            if frozen:
                for i in backbone:
                    theirs[i].requires_grad_(False)
            steps[f"PyTorch {'frozen' if frozen else 'unfrozen'}"] = _torch_step(torch, theirs, x, t)
    return steps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15, help="interleaved rounds; the best of each is kept")
    ap.add_argument("--steps", type=int, default=2, help="steps a round")
    ap.add_argument("--only", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = ap.parse_args(argv)
    torch = None
    if importlib.util.find_spec("torch"):
        import torch  # noqa: PLC0415 - the baseline, in the backends extra
    print(thread_line(torch))
    for name in args.only:
        steps = _steps(name, torch)
        for step in steps.values():
            step()  # warm up
        best = dict.fromkeys(steps, float("inf"))
        for _ in range(args.repeat):
            for who, step in steps.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                best[who] = min(best[who], (time.perf_counter() - t0) / args.steps)
        times = ", ".join(f"{who} {s * 1e3:.1f} ms" for who, s in best.items())
        ratios = [f"xpnet frozen/unfrozen {best['xpnet frozen'] / best['xpnet unfrozen']:.2f}x"]
        if torch is not None:
            ratios += [f"PyTorch frozen/unfrozen {best['PyTorch frozen'] / best['PyTorch unfrozen']:.2f}x",
                       f"xpnet frozen/PyTorch frozen {best['xpnet frozen'] / best['PyTorch frozen']:.2f}x"]
        print(f"{name}: {times} a step; {', '.join(ratios)}", flush=True)


if __name__ == "__main__":
    main()
