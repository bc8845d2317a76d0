"""The book's gradient check done right: backprop vs numerical gradients in float64, on the model's
device, with a decision and a table instead of eyeballed mean differences.

    python examples/gradient_check.py [--device auto]
"""

import argparse

import numpy as np

import xpnet as xn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    xn.init.seed(0)
    net = xn.Sequential(xn.layers.Linear(784, 50), xn.layers.ReLU(), xn.layers.Linear(50, 10))
    net.to(args.device)
    rng = np.random.default_rng(0)
    x, t = rng.random((3, 784)), rng.integers(0, 10, 3)
    report = xn.gradcheck(net, x, t, loss=xn.losses.SoftmaxCrossEntropy(), max_entries=200)
    print(report)
    print("backprop agrees with numerical gradients" if report.ok else "GRADIENT MISMATCH")


if __name__ == "__main__":
    main()
