"""The book's TwoLayerNet (784-50-10, SGD lr 0.1, batch 100) on Fashion-MNIST, written the book's way
-- forward, backward, update in a hand-written loop -- but on any device and with xpnet's layers.

    python examples/two_layer_net.py [--device auto] [--epochs 5] [--limit N]
"""

import argparse

import numpy as np

import xpnet as xn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    args = ap.parse_args(argv)

    (x_train, t_train), (x_test, t_test) = xn.datasets.load_fashion_mnist(normalize=True, flatten=True)
    if args.limit:
        x_train, t_train = x_train[:args.limit], t_train[:args.limit]
    dev = xn.device(args.device)
    print(f"device: {dev.name}")
    xn.init.seed(0)
    net = xn.Sequential(xn.layers.Linear(784, 50), xn.layers.ReLU(), xn.layers.Linear(50, 10)).to(dev)
    loss, optimizer = xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(lr=0.1)
    x_train, t_train = dev.asarray(x_train), dev.asarray(t_train)
    x_test, t_test = dev.asarray(x_test), dev.asarray(t_test)
    xp, batch_size = dev.xp, 100
    train_size = x_train.shape[0]
    iters_per_epoch = max(train_size // batch_size, 1)
    rng = np.random.default_rng(0)

    def accuracy(x, t):
        y = net.predict(x, batch_size=10000)
        return float(xp.mean(xp.astype(xp.argmax(y, axis=1) == t, xp.float32)))

    for epoch in range(1, args.epochs + 1):
        for _ in range(iters_per_epoch):
            batch = dev.asarray(rng.choice(train_size, batch_size))
            loss.forward(net.forward(xp.take(x_train, batch, axis=0)), xp.take(t_train, batch, axis=0), check=False)
            net.backward(loss.backward(), input_grad=False)
            optimizer.step(net)
        print(f"epoch {epoch}: train acc {accuracy(x_train, t_train):.4f}, test acc {accuracy(x_test, t_test):.4f}")


if __name__ == "__main__":
    main()
