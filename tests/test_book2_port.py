"""A reader of the book's second volume moving its chapters to xpnet: what they type first (the book's
names, its Trainer's habits) works or says at once what to write, and the pieces that stand for the
book's compute what its source computes (ch01/two_layer_net.py, common/layers.py, common/util.py)."""

import numpy as np

import xpnet as xn


def _softmax(x):
    """common/functions.py softmax, for 2-D x."""
    x = x - x.max(axis=1, keepdims=True)
    x = np.exp(x)
    x /= x.sum(axis=1, keepdims=True)
    return x


def book_two_layer_net_step(params, x, t, lr):
    """Vol. 2 ch01/two_layer_net.py (Affine, Sigmoid, Affine, SoftmaxWithLoss of common/layers.py): loss and
    gradients of forward(x, t) then backward(), and the parameters after common/optimizer.py's SGD.update."""
    W1, b1, W2, b2 = params
    x1 = x
    a1 = np.dot(x1, W1) + b1                                   # Affine.forward
    out = 1 / (1 + np.exp(-a1))                                # Sigmoid.forward
    score = np.dot(out, W2) + b2                               # Affine.forward
    y = _softmax(score)                                        # SoftmaxWithLoss.forward
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    loss = -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size
    dx = y.copy()                                              # SoftmaxWithLoss.backward(dout=1)
    dx[np.arange(batch_size), t] -= 1
    dx *= 1
    dx = dx / batch_size
    dW2, db2, dout = np.dot(out.T, dx), np.sum(dx, axis=0), np.dot(dx, W2.T)      # Affine.backward
    dx = dout * (1.0 - out) * out                              # Sigmoid.backward
    dW1, db1 = np.dot(x1.T, dx), np.sum(dx, axis=0)            # Affine.backward
    grads = [dW1, db1, dW2, db2]
    return loss, grads, [p - lr * g for p, g in zip(params, grads)]


def test_two_layer_net_with_sigmoid_is_the_second_volumes_ch01_net():
    """Vol. 2's ch01 TwoLayerNet is Affine - Sigmoid - Affine (vol. 1's has a ReLU): the same loss, gradients and
    SGD step on the same weights and the book's one-hot int32 spiral labels."""
    x, labels = xn.datasets.spiral(30, 3, seed=0, dtype="float64")
    t = np.eye(3, dtype=np.int32)[labels]
    xn.init.seed(0)
    model = xn.book.two_layer_net(input_size=2, hidden_size=10, output_size=3, dtype="float64", activation="sigmoid")
    params = [np.array(p) for p in model.named_params().values()]
    loss = xn.losses.SoftmaxCrossEntropy()
    value = loss.forward(model.forward(x), t)
    model.backward(loss.backward())
    book_loss, book_grads, book_after = book_two_layer_net_step(params, x, t, lr=1.0)
    assert abs(float(value) - book_loss) < 1e-6  # the book's 1e-7 inside the log
    for got, want in zip(model.named_grads().values(), book_grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    xn.optim.SGD(lr=1.0).step(model)
    for got, want in zip(model.named_params().values(), book_after):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert isinstance(xn.book.two_layer_net(2, 10, 3).layers[1], xn.layers.ReLU)  # vol. 1's by default
