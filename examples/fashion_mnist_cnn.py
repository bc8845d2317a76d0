"""A small modern CNN for Fashion-MNIST (target 93 % in 10 epochs; 93.17 % seen with the defaults): three 3x3
conv-BatchNorm-ReLU-MaxPool blocks of 32, 64 and 128 channels, a Linear(256)-ReLU-Dropout head, AdamW with a
cosine learning-rate schedule, and training batches flipped left-right at random on the device (random shifts
of --max-shift pixels cost accuracy in 10 epochs: 91.47 % with 1, 90.38 % with 2, two blocks, hidden 128).

    python examples/fashion_mnist_cnn.py [--epochs 10] [--channels 32 64 128] [--max-shift 0] [--no-flip]
                                         [--label-smoothing 0.0] [--device auto] [--limit N]
"""

import argparse
import time

import xpnet as xn
from xpnet.layers import BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU


def modern_cnn(channels=(32, 64, 128), hidden=256, dropout=0.3, conv_dropout=0.0, classes=10):
    """Conv(3x3, padding 1)-BatchNorm-ReLU-MaxPool(2)(-Dropout) per entry of ``channels``, for 1x28x28
    images, then Linear-ReLU-Dropout-Linear."""
    layers, c_in, side = [], 1, 28
    for c in channels:
        layers += [Conv2d(c_in, c, 3, padding=1), BatchNorm(c), ReLU(), MaxPool2d(2)]
        if conv_dropout:
            layers.append(Dropout(conv_dropout))
        c_in, side = c, side // 2
    return xn.Sequential(*layers, Flatten(), Linear(c_in * side * side, hidden), ReLU(), Dropout(dropout),
                         Linear(hidden, classes))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--hidden", type=int, default=256, help="width of the Linear layer of the head")
    ap.add_argument("--dropout", type=float, default=0.3, help="Dropout in the head")
    ap.add_argument("--conv-dropout", type=float, default=0.0, help="Dropout after each conv block")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--max-shift", type=int, default=0, help="random shift of training images, pixels")
    ap.add_argument("--no-flip", action="store_true", help="no random left-right flips of training images")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    args = ap.parse_args(argv)

    (x, t), (x_test, t_test) = xn.datasets.load_fashion_mnist(flatten=False)
    if args.limit:
        x, t = x[:args.limit], t[:args.limit]
    xn.init.seed(0)
    model = modern_cnn(args.channels, hidden=args.hidden, dropout=args.dropout, conv_dropout=args.conv_dropout)
    print(model)
    augment = xn.datasets.RandomShiftFlip(args.max_shift, flip=not args.no_flip)
    print(f"training batches augmented by {augment}")
    schedule = xn.callbacks.LearningRateSchedule(xn.callbacks.cosine(args.lr, args.epochs, min_lr=args.lr / 100))
    start, cpu_start = time.perf_counter(), time.process_time()
    xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(label_smoothing=args.label_smoothing),
                       optimizer=xn.optim.AdamW(args.lr, weight_decay=1e-4), epochs=args.epochs,
                       batch_size=args.batch_size, device=args.device, validation=(x_test, t_test),
                       callbacks=[schedule], validation_name="test",
                       transform=augment)
    # CPU time too: on a machine shared with other work the wall time says little about the code.
    print(f"{args.epochs} epochs in {time.perf_counter() - start:.0f} s ({time.process_time() - cpu_start:.0f} s "
          "of CPU time)")


if __name__ == "__main__":
    main()
