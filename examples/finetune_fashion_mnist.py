"""Transfer learning as a PyTorch user does it: pre-train a small CNN on Fashion-MNIST's classes 0-4 and save it;
load it, replace its head by a fresh Linear for classes 5-9, freeze the backbone with
model.backbone.requires_grad_(False) and train the head alone under a OneCycleLR stepped after every batch; then
unfreeze it and fine-tune everything at a lower lr for one epoch. The same network trained from scratch on
classes 5-9 for as many epochs as the head shows what the transfer bought. Under a minute on 2 CPU cores.

Classes 5-9 get few training images (--target-limit, 500) where classes 0-4 have all 30,000: the case transfer
learning is for. Each stage prints its test accuracy on the 5,000 test images of classes 5-9 and its training time.

    python examples/finetune_fashion_mnist.py [--pretrain-epochs 2] [--head-epochs 5] [--finetune-epochs 1]
        [--source-limit N] [--target-limit 500] [--channels 16 32] [--save pretrained.npz] [--device auto]
"""

import argparse
import os
import tempfile
import time

import numpy as np

import xpnet as xn
from xpnet.layers import BatchNorm, Conv2d, Flatten, Linear, MaxPool2d, ReLU

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class SmallCNN(xn.Model):
    """backbone (conv3x3-BatchNorm-ReLU-MaxPool2 blocks, then Flatten) -> head (Linear), the split torchvision's
    models make as ``features`` and ``fc``. x: (N, 1, 28, 28) -> scores (N, classes)."""

    def __init__(self, channels=(16, 32), classes=5):
        super().__init__()
        layers, c_in = [], 1
        for c in channels:
            layers += [Conv2d(c_in, c, 3, padding=1), BatchNorm(c), ReLU(), MaxPool2d(2)]
            c_in = c
        side = 28 >> len(channels)
        self.backbone = xn.Sequential(*layers, Flatten())
        self.head = Linear(c_in * side * side, classes)

    def forward(self, x, train=True):
        return self.head.forward(self.backbone.forward(x, train), train)

    def backward(self, dy):
        return self.backbone.backward(self.head.backward(dy))

    def backward_params(self, dy):
        # What xn.train calls: no gradient for the images, so a frozen backbone is not backpropagated through.
        self.backbone.backward_params(self.head.backward(dy))


def classes(x, t, first, limit=None):
    """The images of classes first..first+4, labelled 0..4, the first ``limit`` of them."""
    keep = (t >= first) & (t < first + 5)
    return x[keep][:limit], t[keep][:limit] - first


def plural(n, word):
    return f"{n} {word}{'s' * (n != 1)}"


def fit(model, data, optimizer, scheduler, epochs, batch_size, device):
    """xn.train with ``scheduler`` stepped after every batch; returns the seconds it took."""
    start = time.perf_counter()
    xn.train(model, data, loss=xn.losses.SoftmaxCrossEntropy(), optimizer=optimizer, epochs=epochs,
             batch_size=batch_size, device=device, progress=False,
             callbacks=[xn.callbacks.LRScheduler(scheduler, interval="step")])
    return time.perf_counter() - start


def accuracy(model, data):
    return xn.evaluate(model, data, loss=xn.losses.SoftmaxCrossEntropy(), batch_size=1000)["accuracy"]


def steps(data, batch_size, epochs):
    """The optimizer steps of ``epochs`` epochs: what a per-batch scheduler spans."""
    return len(range(0, len(data[1]), batch_size)) * epochs


def changed(layer, before):
    """How many of ``layer``'s parameters, and of its buffers, differ in any bit from the state dict ``before``."""
    names = [name for name, value in layer.state_dict().items() if not np.array_equal(value, before[name])]
    params = sum(name in layer.named_params() for name in names)
    return params, len(names) - params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pretrain-epochs", type=int, default=2)
    ap.add_argument("--head-epochs", type=int, default=5, help="epochs of the head alone, and of the same network "
                                                               "trained from scratch")
    ap.add_argument("--finetune-epochs", type=int, default=1, help="epochs of the whole network after the head "
                                                                   "(0: none)")
    ap.add_argument("--source-limit", type=int, default=None, help="training images of classes 0-4 (default: all "
                                                                   "30000)")
    ap.add_argument("--target-limit", type=int, default=500, help="training images of classes 5-9")
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--lr", type=float, default=2e-3, help="pre-training lr (Adam, annealed by cosine)")
    ap.add_argument("--head-lr", type=float, default=1e-2, help="OneCycleLR's max_lr, for the head and from scratch")
    ap.add_argument("--finetune-lr", type=float, default=1e-4, help="lr of the whole network, annealed by cosine")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--save", default=None, help="where to save the pre-trained model (default: a temporary "
                                                 "folder)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    device = xn.device(args.device)  # resolved once: one warning, not one per stage, where CUDA is missing
    (x, t), (x_test, t_test) = xn.datasets.load_fashion_mnist(flatten=False)
    source, source_test = classes(x, t, 0, args.source_limit), classes(x_test, t_test, 0)
    target, target_test = classes(x, t, 5, args.target_limit), classes(x_test, t_test, 5)
    bs = args.batch_size

    print(f"pre-training on classes 0-4 ({', '.join(CLASSES[:5])}): {len(source[1])} images, "
          f"{plural(args.pretrain_epochs, 'epoch')}, on {device}")
    xn.init.seed(0)
    model = SmallCNN(args.channels)
    opt = xn.optim.Adam(args.lr)
    sched = xn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps(source, bs, args.pretrain_epochs))
    seconds = fit(model, source, opt, sched, args.pretrain_epochs, bs, device)
    print(f"  test accuracy on 0-4 {accuracy(model, source_test):.4f}, {seconds:.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        path = args.save or os.path.join(folder, "pretrained.npz")
        model.save(path)
        # What a fine-tuning script starts from: the file, loaded onto the device, its head replaced.
        model = xn.load(path, device=device)
    pretrained = model.backbone.state_dict()

    print(f"classes 5-9 ({', '.join(CLASSES[5:])}): {len(target[1])} training images, {len(target_test[1])} "
          f"test images")
    xn.init.seed(1)
    model.head = Linear(model.head.in_features, 5).to(device)
    model.backbone.requires_grad_(False)
    trainable = sum(int(np.prod(p.shape)) for p in model.trainable_params().values())
    total = sum(int(np.prod(p.shape)) for p in model.named_params().values())
    opt = xn.optim.Adam(args.head_lr)
    sched = xn.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.head_lr, total_steps=steps(target, bs, args.head_epochs))
    seconds = fit(model, target, opt, sched, args.head_epochs, bs, device)
    params, buffers = changed(model.backbone, pretrained)
    print(f"head only, backbone frozen ({trainable:,} of {total:,} parameters train), "
          f"{plural(args.head_epochs, 'epoch')}, OneCycleLR to {args.head_lr:g}: test accuracy on 5-9 "
          f"{accuracy(model, target_test):.4f}, {seconds:.1f} s")
    print(f"  backbone parameters changed: {params} of {len(model.backbone.named_params())}; BatchNorm running "
          f"statistics changed: {buffers} of {len(model.backbone.named_buffers())} (a frozen BatchNorm updates them "
          f"in training mode, as PyTorch's)")

    if args.finetune_epochs:
        model.backbone.requires_grad_(True)
        opt = xn.optim.Adam(args.finetune_lr)
        sched = xn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps(target, bs, args.finetune_epochs))
        seconds = fit(model, target, opt, sched, args.finetune_epochs, bs, device)
        params, _ = changed(model.backbone, pretrained)
        print(f"then everything, {plural(args.finetune_epochs, 'epoch')} at lr "
              f"{args.finetune_lr:g} annealed by cosine: test accuracy on 5-9 {accuracy(model, target_test):.4f}, "
              f"{seconds:.1f} s; backbone parameters changed: {params} of {len(model.backbone.named_params())}")

    xn.init.seed(0)
    scratch = SmallCNN(args.channels)
    opt = xn.optim.Adam(args.head_lr)
    sched = xn.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.head_lr, total_steps=steps(target, bs, args.head_epochs))
    seconds = fit(scratch, target, opt, sched, args.head_epochs, bs, device)
    print(f"from scratch on 5-9, every parameter training, {plural(args.head_epochs, 'epoch')}, the same "
          f"OneCycleLR: test accuracy on 5-9 {accuracy(scratch, target_test):.4f}, {seconds:.1f} s")


if __name__ == "__main__":
    main()
