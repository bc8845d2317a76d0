"""What the audits of test_clear_errors_corners.py left: the optimizer's name with its article, a gradient read
after zero_grad(), a float64 dy into a composite model's own backward, the unpacked call of a recurrent layer
given a packed sequence, and PyTorch's two LSTM biases loaded into one. Each gives one clear error (or warning)
naming the layer, model or function, what was expected and what came.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.layers import Linear, ReLU

f32 = np.float32
X, T = xn.datasets.spiral(10, 3, seed=0)


def _mlp():
    xn.init.seed(0)
    return xn.Sequential(Linear(2, 8), ReLU(), Linear(8, 3))


# -- "a Adam": the optimizer's name with its article ---------------------------------------------------------------

def test_resume_from_another_optimizer_says_an_adam(tmp_path):
    path = tmp_path / "ck.npz"
    args = {"loss": "cross_entropy", "epochs": 1, "batch_size": 10, "progress": False}
    xn.train(_mlp(), (X, T), optimizer="adam", callbacks=[xn.callbacks.ModelCheckpoint(path, full=True)], **args)
    with pytest.raises(ValueError, match=r"holds the state of an Adam optimizer, got SGD; pass an Adam to continue"):
        xn.train(_mlp(), (X, T), optimizer="sgd", resume_from=path, **{**args, "epochs": 2})
