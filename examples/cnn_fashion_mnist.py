"""A small CNN on Fashion-MNIST: Conv 5x5x30 - ReLU - MaxPool 2 - Linear 100 - ReLU - Linear 10.

    python examples/cnn_fashion_mnist.py [--epochs 5] [--device auto] [--limit N]
"""

import argparse

import xpnet as xn
from xpnet.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU


def simple_convnet(channels=30, hidden=100, classes=10):
    """The book's SimpleConvNet for 1x28x28 images."""
    return xn.Sequential(Conv2d(1, channels, 5), ReLU(), MaxPool2d(2), Flatten(),
                         Linear(channels * 12 * 12, hidden), ReLU(), Linear(hidden, classes))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    args = ap.parse_args(argv)

    (x, t), (x_test, t_test) = xn.datasets.load_fashion_mnist(flatten=False)
    if args.limit:
        x, t = x[:args.limit], t[:args.limit]
    xn.init.seed(0)
    model = simple_convnet()
    print(model.summary(input_shape=(1, 28, 28)))
    # Adam at lr for two epochs, then 0.4x every two: the late small steps are worth about half a point.
    schedule = xn.callbacks.LearningRateSchedule(xn.callbacks.step(args.lr, step_size=2, gamma=0.4))
    history = xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=xn.optim.Adam(args.lr),
                       epochs=args.epochs, batch_size=100, device=args.device, validation=(x_test, t_test),
                       callbacks=[schedule], validation_name="test")
    print(f"final test accuracy: {history.epochs[-1]['val_accuracy']:.4f}")


if __name__ == "__main__":
    main()
