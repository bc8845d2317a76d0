"""A small residual network for Fashion-MNIST (target 93.5 % test accuracy in 10 epochs): a conv-BatchNorm-ReLU stem
of 36 channels and a 2x2 max pool to 14x14, three stages of residual blocks of 36, 72 and 144 channels (the last
two halve the image with a stride-2 block whose shortcut is a 1x1 conv and a BatchNorm), global average pooling
and one Linear layer; SGD with Nesterov momentum 0.9, weight decay 5e-4 and a cosine learning-rate schedule from
0.1, training batches flipped left-right at random on the device.

The blocks are ``xn.layers.Residual`` layers (no backward to write); the network around them is an ``xn.Model``
with its forward and backward written out, the book's way.

    python examples/fashion_mnist_resnet.py [--epochs 10] [--channels 36 72 144] [--blocks 1]
                                            [--optimizer nesterov|adamw] [--lr LR] [--weight-decay WD]
                                            [--batch-size 100] [--device auto] [--limit N] [--save resnet.npz]
"""

import argparse
import time

import xpnet as xn
from xpnet.layers import BatchNorm, Conv2d, GlobalAvgPool, Linear, MaxPool2d, ReLU, Residual


def basic_block(c_in, c_out, stride=1):
    """ResNet's basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), the shortcut a 1x1 conv with
    BatchNorm where the block changes the shape, else the identity."""
    body = xn.Sequential(Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), BatchNorm(c_out), ReLU(),
                         Conv2d(c_out, c_out, 3, padding=1, bias=False), BatchNorm(c_out))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = xn.Sequential(Conv2d(c_in, c_out, 1, stride=stride, bias=False), BatchNorm(c_out))
    return xn.Sequential(Residual(body, shortcut), ReLU())


class ResNet(xn.Model):
    """stem (conv, BatchNorm, ReLU, 2x2 max pool) -> stages (``blocks`` residual blocks each, every stage after the
    first starting with a stride-2 block) -> global average pooling -> Linear.
    x: (N, 1, H, W) -> scores (N, classes)."""

    def __init__(self, channels=(36, 72, 144), blocks=1, classes=10):
        super().__init__()
        self.stem = xn.Sequential(Conv2d(1, channels[0], 3, padding=1, bias=False), BatchNorm(channels[0]), ReLU(),
                                  MaxPool2d(2))
        self.stages = []
        c_in = channels[0]
        for i, c in enumerate(channels):
            self.stages.append(xn.Sequential(*(basic_block(c_in if j == 0 else c, c, 2 if i and j == 0 else 1)
                                               for j in range(blocks))))
            c_in = c
        self.pool, self.fc = GlobalAvgPool(), Linear(c_in, classes)

    def forward(self, x, train=True):
        h = self.stem.forward(x, train)
        for stage in self.stages:
            h = stage.forward(h, train)
        return self.fc.forward(self.pool.forward(h, train), train)

    def backward(self, dy):
        dh = self.pool.backward(self.fc.backward(dy))
        for stage in reversed(self.stages):
            dh = stage.backward(dh)
        return self.stem.backward(dh)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--channels", type=int, nargs="+", default=[36, 72, 144])
    ap.add_argument("--blocks", type=int, default=1, help="residual blocks per stage")
    ap.add_argument("--optimizer", choices=["nesterov", "adamw"], default="nesterov")
    ap.add_argument("--lr", type=float, default=None, help="default: 0.1 for Nesterov, 2e-3 for AdamW")
    ap.add_argument("--weight-decay", type=float, default=None, help="default: 5e-4 for Nesterov, 1e-4 for AdamW")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--max-shift", type=int, default=0, help="random shift of training images, pixels")
    ap.add_argument("--no-flip", action="store_true", help="no random left-right flips of training images")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    ap.add_argument("--save", default=None, help="write the trained model to this .npz file")
    args = ap.parse_args(argv)

    (x, t), (x_test, t_test) = xn.datasets.load_fashion_mnist(flatten=False)
    if args.limit:
        x, t = x[:args.limit], t[:args.limit]
    xn.init.seed(0)
    model = ResNet(tuple(args.channels), blocks=args.blocks)
    print(model.summary(input_shape=(1, 28, 28)).rsplit("\n", 2)[-1])  # the parameter count
    augment = xn.datasets.RandomShiftFlip(args.max_shift, flip=not args.no_flip)
    if args.optimizer == "nesterov":  # weight decay on the conv and Linear weights only, as the book's
        lr = 0.1 if args.lr is None else args.lr
        optimizer = xn.optim.Nesterov(lr, momentum=0.9,
                                      weight_decay=5e-4 if args.weight_decay is None else args.weight_decay)
    else:
        lr = 2e-3 if args.lr is None else args.lr
        optimizer = xn.optim.AdamW(lr, weight_decay=1e-4 if args.weight_decay is None else args.weight_decay)
    schedule = xn.callbacks.LearningRateSchedule(xn.callbacks.cosine(lr, args.epochs, min_lr=lr / 100))
    start, cpu_start = time.perf_counter(), time.process_time()
    xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(),
             optimizer=optimizer, epochs=args.epochs,
             batch_size=args.batch_size, device=args.device, validation=(x_test, t_test), validation_name="test",
             callbacks=[schedule], transform=augment)
    # CPU time too: on a machine shared with other work the wall time says little about the code.
    print(f"{args.epochs} epochs in {time.perf_counter() - start:.0f} s ({time.process_time() - cpu_start:.0f} s "
          "of CPU time)")
    if args.save:
        xn.save(model, args.save)
        print(f"wrote {args.save}")


if __name__ == "__main__":
    main()
