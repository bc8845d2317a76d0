"""Losses on probabilities and log-probabilities (BCELoss, NLLLoss, KLDivLoss) equal to PyTorch's, and the
refusal of a model whose last layer applies the activation its logits loss applies again."""

import numpy as np
import pytest

import xpnet as xn

L = xn.layers


@pytest.mark.parametrize("last, loss, found", [
    (lambda: L.Sigmoid(), "bce", r"Sigmoid \(layer 1\) and the loss SigmoidCrossEntropy"),
    (lambda: L.Softmax(dim=1), "cross_entropy", r"Softmax \(layer 1\) and the loss SoftmaxCrossEntropy"),
    (lambda: xn.Sequential(L.ReLU(), L.LogSoftmax(dim=-1)), "cross_entropy",
     r"LogSoftmax \(layer 1.1\) and the loss SoftmaxCrossEntropy")],
    ids=["sigmoid-bce", "softmax-cross_entropy", "nested-logsoftmax-cross_entropy"])
def test_a_model_ending_in_the_losses_activation_is_refused(last, loss, found):
    """The Keras habit (Dense(activation='softmax') with categorical cross-entropy, a Sigmoid with a BCE on
    logits) would apply the activation twice and train badly, silently: train and evaluate refuse it."""
    model = xn.Sequential(L.Linear(2, 3), last())
    x, y = np.zeros((4, 2), np.float32), np.array([0, 1, 1, 0])
    y = np.stack([y] * 3, axis=1) if loss == "bce" else y
    for who, call in (("train", lambda: xn.train(model, (x, y), loss=loss, optimizer="sgd", epochs=1, batch_size=2,
                                                 progress=False)),
                      ("evaluate", lambda: xn.evaluate(model, (x, y), loss=loss))):
        with pytest.raises(ValueError, match=rf"^{who}: the model ends in {found} takes logits .* drop the last "
                                             r"layer"):
            call()
