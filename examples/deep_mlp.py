"""The book's arbitrary-depth network: any list of hidden sizes, trained with xn.train.

    python examples/deep_mlp.py [--hidden 100 100 100 100] [--device auto] [--epochs 3] [--limit N]
"""

import argparse

import xpnet as xn


def deep_mlp(n_in, hidden, n_out, dropout=0.0):
    """Linear-ReLU(-Dropout) blocks of the given widths, then a Linear output (no ReLU on the logits)."""
    layers, width = [], n_in
    for h in hidden:
        layers += [xn.layers.Linear(width, h), xn.layers.ReLU()]
        if dropout:
            layers.append(xn.layers.Dropout(dropout))
        width = h
    layers.append(xn.layers.Linear(width, n_out))
    return xn.Sequential(*layers)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 100, 100, 100])
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    args = ap.parse_args(argv)

    (x, t), (x_test, t_test) = xn.datasets.load_fashion_mnist()
    if args.limit:
        x, t = x[:args.limit], t[:args.limit]
    xn.init.seed(0)
    model = deep_mlp(784, args.hidden, 10, args.dropout)
    print(model)
    history = xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=xn.optim.Adam(1e-3),
                       epochs=args.epochs, batch_size=100, device=args.device, validation=(x_test, t_test))
    print(f"final test accuracy: {history.epochs[-1]['val_accuracy']:.4f}")


if __name__ == "__main__":
    main()
