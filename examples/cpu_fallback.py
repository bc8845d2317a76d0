"""A script written for a GPU server that still runs on a laptop: device="cuda" without a GPU warns
once (XpnetDeviceWarning, with the reason) and trains on the CPU.

    python examples/cpu_fallback.py
"""

import xpnet as xn

x, t = xn.datasets.spiral(200, 3, seed=0)
xn.init.seed(0)
model = xn.Sequential(xn.layers.Linear(2, 64), xn.layers.ReLU(), xn.layers.Linear(64, 3))
history = xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=xn.optim.Adam(0.01),
                   epochs=40, batch_size=50, device="cuda", progress=False)
print(f"trained on {history.device}: train accuracy {history.epochs[-1]['train_accuracy']:.3f}")
