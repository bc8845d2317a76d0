"""A fine-tuning step with part of the model frozen: xpnet unfrozen, xpnet frozen and (where torch is importable)
PyTorch's same model from the same weights, unfrozen and with ``requires_grad_(False)``, float32 on the CPU,
interleaved, best of each.

Three models. "transformer" and "cnn": the input layer and the head train, the backbone between them is frozen, so
its backward still runs for dx but computes no parameter gradient (an adapter below a frozen backbone);
"transformer" is Linear 32 -> 128, a TransformerEncoder of 2 layers, 4 heads, feed-forward 512, dropout 0, Flatten,
Linear to 10 (batch 32 of 32 steps); "cnn" is Conv2d 1 -> 16, then Conv2d-BatchNorm-ReLU-MaxPool2d twice at 32
channels, Flatten, Linear to 10 (batch 64 of 28x28 images, the frozen BatchNorm in training mode). "resnet":
PyTorch's transfer-learning tutorial's fixed feature extractor, ``xn.models.ResNet('BasicBlock', [1, 1, 1, 1],
num_classes=10)`` with everything but ``fc`` frozen (batch 16 of 32x32 images; the frozen BatchNorms in training
mode), so that nothing below ``fc`` is backpropagated at all (PyTorch's: torchvision's module tree, written out
here). A step: forward, cross-entropy, ``backward_params`` (what ``xn.train`` calls), SGD with momentum. Ratios:
frozen over unfrozen for each library, and xpnet frozen over PyTorch frozen; the BLAS threads are printed.

    python benchmarks/frozen_step.py [--repeat 15] [--steps 2] [--only transformer cnn resnet]
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
    """(xpnet's model, PyTorch's or None, the input's shape)."""
    ours = xn.Sequential(L.Linear(32, 128), L.TransformerEncoder(L.TransformerEncoderLayer(128, 4, 512, 0.0), 2),
                         L.Flatten(), L.Linear(32 * 128, 10))
    theirs = torch and torch.nn.Sequential(
        torch.nn.Linear(32, 128),
        torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(128, 4, 512, 0.0, batch_first=True), 2,
                                    enable_nested_tensor=False),
        torch.nn.Flatten(), torch.nn.Linear(32 * 128, 10))
    return ours, theirs, (32, 32, 32)


def _cnn(torch: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """(xpnet's model, PyTorch's or None, the input's shape)."""
    ours = xn.Sequential(L.Conv2d(1, 16, 3, padding=1), L.Conv2d(16, 32, 3, padding=1), L.BatchNorm(32), L.ReLU(),
                         L.MaxPool2d(2), L.Conv2d(32, 32, 3, padding=1), L.BatchNorm(32), L.ReLU(), L.MaxPool2d(2),
                         L.Flatten(), L.Linear(32 * 7 * 7, 10))
    nn = torch and torch.nn
    theirs = torch and nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1),
                                     nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1),
                                     nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                     nn.Linear(32 * 7 * 7, 10))
    return ours, theirs, (64, 1, 28, 28)


def _resnet(torch: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """(xpnet's model, PyTorch's or None, the input's shape)."""
    return xn.models.ResNet("BasicBlock", [1, 1, 1, 1], num_classes=10), torch and _torch_resnet(torch.nn, 10), \
        (16, 3, 32, 32)


def _torch_resnet(nn: Any, num_classes: int) -> Any:
    """torchvision's ResNet of one BasicBlock per stage, its module names (torchvision need not be installed)."""
    def bn_conv(c_in: int, c_out: int, k: int, stride: int) -> list[Any]:
        return [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)]

    class BasicBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int):
            super().__init__()
            self.conv1, self.bn1 = bn_conv(c_in, c_out, 3, stride)
            self.conv2, self.bn2 = bn_conv(c_out, c_out, 3, 1)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = nn.Sequential(*bn_conv(c_in, c_out, 1, stride)) if stride != 1 or c_in != c_out else None

        def forward(self, x: Any) -> Any:
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
            self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            for i, (c_in, c_out) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512)]):
                setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c_in, c_out, 1 if i == 0 else 2)))
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(512, num_classes)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()


# name -> (its builder, the children frozen in both libraries, by name)
MODELS: dict[str, tuple[Callable[[Any], tuple[Any, Any, tuple[int, ...]]], list[str]]] = {
    "transformer": (_transformer, ["1"]), "cnn": (_cnn, [str(i) for i in range(1, 9)]),
    "resnet": (_resnet, ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"])}


def _xpnet_step(model: Any, x: np.ndarray, t: np.ndarray) -> Callable[[], None]:
    loss, opt = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(0.01, momentum=0.9)

    def step() -> None:
        loss.forward(model(x), t)
        model.backward_params(loss.backward())
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
            for name in backbone:
                ours.get_submodule(name).requires_grad_(False)
        steps[f"xpnet {'frozen' if frozen else 'unfrozen'}"] = _xpnet_step(ours, x, t)
        if theirs is not None:
            theirs.load_state_dict({k: torch.from_numpy(v) for k, v in xn.torch_state_dict(ours).items()})
            if frozen:
                for name in backbone:
                    theirs.get_submodule(name).requires_grad_(False)
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
