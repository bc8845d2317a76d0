"""The public names of the API contract (shared/API.md) exist and keep their signatures' keywords."""

import inspect

import pytest

import xpnet as xn

NAMES = [
    "cuda_available", "device", "Device", "to_device", "to_numpy", "XpnetDeviceWarning",
    "layers.Linear", "layers.ReLU", "layers.Sigmoid", "layers.Tanh", "layers.Flatten", "layers.Dropout",
    "layers.BatchNorm", "layers.Conv2d", "layers.MaxPool2d",
    "losses.SoftmaxCrossEntropy", "losses.MeanSquaredError",
    "Sequential", "load", "init.seed",
    "optim.SGD", "optim.Momentum", "optim.Nesterov", "optim.AdaGrad", "optim.RMSprop", "optim.Adam", "optim.AdamW",
    "train", "evaluate", "callbacks.EarlyStopping", "callbacks.ModelCheckpoint", "callbacks.LearningRateSchedule",
    "gradcheck", "GradcheckError", "testing.assert_gradients_ok", "testing.assert_backends_agree",
    "datasets.load_mnist", "datasets.load_fashion_mnist", "datasets.spiral",
    "distributed.init",
    # "Also public (added by earlier work; keep them)"
    "XpnetFileError", "XpnetBackendError", "XpnetTrainingError", "distributed.XpnetDistributedError",
    "datasets.StaticBatches", "datasets.RandomShiftFlip", "datasets.BatchIterator", "backend.set_numba",
    "load_book_params", "layers.AvgPool2d", "layers.GlobalAvgPool",
    # Composite models
    "Model", "save", "layers.Residual", "layers.Concat", "layers.Container",
    "Model.train", "Model.eval", "Model.state_dict", "Model.load_state_dict", "Model.parameters",
    "Model.named_params", "Model.named_grads", "Model.named_buffers", "Model.predict", "Model.summary", "Model.save",
    # PyTorch's names (issue 28)
    "manual_seed", "no_grad", "set_grad_enabled", "enable_grad", "is_grad_enabled",
    # PyTorch's state dicts in and out
    "load_torch_state_dict", "torch_state_dict", "read_torch_file", "load_torch_optimizer_state_dict",
    "torch_optimizer_state_dict",
]


@pytest.mark.parametrize("name", NAMES)
def test_public_name_exists(name):
    obj = xn
    for part in name.split("."):
        obj = getattr(obj, part)
    assert callable(obj)


@pytest.mark.parametrize("fn,keywords", [
    (xn.train, ["loss", "optimizer", "epochs", "batch_size", "device", "validation", "seed", "callbacks", "progress",
                "comm"]),
    (xn.gradcheck, ["t", "loss", "device", "eps", "atol", "rtol", "fast", "max_entries", "seed"]),
    (xn.evaluate, ["loss", "batch_size"]),
    (xn.layers.Linear, ["in_features", "out_features", "init", "bias"]),
    (xn.layers.Conv2d, ["in_channels", "out_channels", "kernel_size", "stride", "padding"]),
    (xn.layers.MaxPool2d, ["kernel_size", "stride", "padding"]),
    (xn.layers.AvgPool2d, ["kernel_size", "stride", "padding"]),
    (xn.datasets.load_mnist, ["normalize", "flatten", "one_hot"]),
    (xn.optim.SGD, ["lr", "momentum", "nesterov", "weight_decay"]),
    (xn.optim.Adam, ["lr", "betas", "eps", "weight_decay"]),
    (xn.testing.assert_backends_agree, ["devices", "rtol", "atol"]),
    (xn.Sequential.predict, ["batch_size"]),
    (xn.load, ["device", "dtype", "map_location", "weights_only"]),
    (xn.layers.Residual, ["body", "shortcut"]),
    (xn.Model.load_state_dict, ["strict"]),
    (xn.load_torch_state_dict, ["strict", "key"]),
    (xn.torch_state_dict, ["as_tensors"]),
    (xn.load_torch_optimizer_state_dict, ["optimizer", "model", "state_dict", "key"]),
    (xn.torch_optimizer_state_dict, ["optimizer", "model", "as_tensors", "trainable_only"]),
    (xn.Model.predict, ["batch_size"]),
])
def test_contract_keywords(fn, keywords):
    params = inspect.signature(fn).parameters
    missing = [k for k in keywords if k not in params]
    assert not missing, f"{fn.__qualname__} lacks {missing}"


def test_device_object_contract():
    dev = xn.device("cpu")
    assert dev.name == "cpu" and hasattr(dev.xp, "matmul")
