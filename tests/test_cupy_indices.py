"""Ids, labels and indices out of range are refused on CuPy by xpnet's own checks. CuPy reads and writes row i % n
where NumPy raises IndexError (its take, take_along_axis, fancy indexing and scatter kernels wrap: the fake CuPy of
tests/fake_cupy wraps as they do), so on the GPU no check may be left to the array library."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import require_cuda

import xpnet as xn

X = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3)

CASES = {
    "SoftmaxCrossEntropy, label n": (lambda d: xn.losses.SoftmaxCrossEntropy()(d(X), d([0, 1, 2, 3])),
                                     "SoftmaxCrossEntropy: labels must lie in [0, 3)"),
    "NLLLoss, label -1": (lambda d: xn.losses.NLLLoss()(d(X), d([0, 1, 2, -1])), "NLLLoss: labels must lie in [0, 3)"),
    "Embedding, id n": (lambda d: xn.layers.Embedding(5, 2).to(d.device)(d([[1, 5]])), "Embedding: ids must lie"),
    "Embedding, id -1": (lambda d: xn.layers.Embedding(5, 2).to(d.device)(d([[1, -1]])), "Embedding: ids must lie"),
    "EmbeddingBag, id n": (lambda d: xn.layers.EmbeddingBag(5, 2).to(d.device)(d([1, 9]), d([0, 1])),
                           "EmbeddingBag: ids must lie"),
    "MaxUnpool2d, index past the window": (
        lambda d: xn.layers.MaxUnpool2d(2).to(d.device)(d(np.ones((1, 1, 2, 2), np.float32)),
                                                        d([[[[0, 99], [8, 10]]]])),
        "MaxUnpool2d: indices outside the window"),
    "xn.train, label n": (lambda d: xn.train(xn.Sequential(xn.layers.Linear(3, 3)), (X, np.array([0, 1, 2, 3])),
                                             loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=2,
                                             device=d.device, progress=False),
                          "labels must lie in [0, 3)"),
}


class _On:
    """``d(values)``: the values as an array on the device (integers as int64); ``d.device``: the device."""

    def __init__(self, device):
        self.device = device

    def __call__(self, values):
        values = np.asarray(values)
        return xn.to_device(values.astype(np.int64) if values.dtype.kind == "i" else values, self.device)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(CASES))
def test_out_of_range_ids_labels_and_indices_are_refused_on_cupy(case):
    call, message = CASES[case]
    with pytest.raises(ValueError, match=re.escape(message)):
        call(_On(require_cuda()))
