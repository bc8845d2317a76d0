"""The book's networks in xpnet, and its ``params.pkl`` files loaded without running pickled code.

How loading goes:

1. ``read_book_params(path)`` reads the pickle with an unpickler that knows only NumPy arrays,
   dicts, lists, tuples, numbers and strings; any other class or function named in the file
   (``os.system``, a custom class) is refused before it is called, and arrays must hold numbers.
2. A builder (``simple_convnet(...)``, ...) makes the book's network as an ``xn.Sequential`` from
   the book constructor's own arguments and defaults, with the book's conventions where its weights
   depend on them: ``Dropout(convention="book")`` (no rescale in training, x (1 - p) at test) and
   ``BatchNorm(convention="book")``. ``MaxPool2d(2, 2)`` is the book's ``Pooling(2, 2, stride=2)``.
3. The arrays are copied in the book's order: ``W1, b1`` into the first layer with a weight
   (Linear = the book's Affine, (in, out); Conv2d = Convolution, (FN, C, FH, FW)), ``W2, b2`` into
   the next, and ``gamma1, beta1``, ... into the BatchNorm layers in order. Missing, unexpected or
   misshapen arrays are an error naming the key before anything is copied.

The book saves no BatchNorm running statistics: they start at 0, as in the book's own network
after ``load_params``; run train-mode forwards over training data to fill them.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from . import init as _init_module
from .backend import to_device
from .layers import BatchNorm, Conv2d, Dropout, Linear, MaxPool2d, ReLU, Sigmoid
from .model import Sequential

__all__ = ["load_book_params", "read_book_params", "two_layer_net", "multi_layer_net", "multi_layer_net_extend",
           "simple_convnet", "deep_convnet", "BOOK_MODELS"]


# -- reading a params.pkl safely ------------------------------------------------------------------

def _reduce_function(obj: Any) -> Any:
    return obj.__reduce__()[0]


# What pickle names to rebuild NumPy arrays and scalars (NumPy 1 wrote numpy.core, NumPy 2 numpy._core).
_RECONSTRUCT, _SCALAR = _reduce_function(np.empty(0)), _reduce_function(np.float64(0.0))
_ALLOWED = {
    **{(module, "_reconstruct"): _RECONSTRUCT for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _SCALAR for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
}


class _Refused(pickle.UnpicklingError):
    pass


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(
                f"refused to load {module}.{name}: a params file may hold only NumPy arrays, dicts, lists, "
                "numbers and strings") from None


def read_book_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``{name: array}`` dict of a book ``params.pkl``, read with a restricted unpickler (never
    plain ``pickle.load``). Raises ValueError naming the file for anything else."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = _ArraysOnly(f).load()
    except _Refused as e:
        raise ValueError(f"read_book_params: {path!r}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ValueError(f"read_book_params: {path!r} is not a readable params pickle ({type(e).__name__}: {e})") \
            from None
    if not isinstance(data, dict):
        raise ValueError(f"read_book_params: {path!r} holds a {type(data).__name__}, expected a dict of arrays "
                         "as the book's save_params writes")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise ValueError(f"read_book_params: {path!r}: entry {key!r} is {kind}, expected a numeric NumPy array")
    return dict(data)


# -- the book's networks ------------------------------------------------------------------------

def _init(weight_init_std: Any) -> Any:
    """The book's weight_init_std: 'relu'/'he' -> He; 'sigmoid'/'xavier' -> sqrt(1/fan_in); else a std."""
    name = str(weight_init_std).lower()
    if name in ("relu", "he"):
        return "relu"
    if name in ("sigmoid", "xavier"):
        return "sigmoid"
    return float(weight_init_std)


def _activation(activation: str) -> Any:
    if activation not in ("relu", "sigmoid"):
        raise ValueError(f"activation must be 'relu' or 'sigmoid' (as in the book), got {activation!r}")
    return ReLU() if activation == "relu" else Sigmoid()


def two_layer_net(input_size: int, hidden_size: int, output_size: int, weight_init_std: float = 0.01,
                  dtype: str = "float32") -> Sequential:
    """ch05's TwoLayerNet: Affine - Relu - Affine (W1, b1, W2, b2)."""
    init = _init(weight_init_std)
    return Sequential(Linear(input_size, hidden_size, init=init, dtype=dtype), ReLU(),
                      Linear(hidden_size, output_size, init=init, dtype=dtype))


def multi_layer_net_extend(input_size: int, hidden_size_list: list[int], output_size: int,
                           activation: str = "relu", weight_init_std: Any = "relu", weight_decay_lambda: float = 0,
                           use_dropout: bool = False, dropout_ration: float = 0.5, use_batchnorm: bool = False,
                           dtype: str = "float32") -> Sequential:
    """common/multi_layer_net_extend.py: (Affine - [BatchNorm] - activation - [Dropout]) x n - Affine.

    ``weight_decay_lambda`` only changes the book's training: pass ``weight_decay=`` to the optimizer.
    """
    init, sizes, layers = _init(weight_init_std), [input_size, *hidden_size_list], []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers.append(Linear(fan_in, fan_out, init=init, dtype=dtype))
        if use_batchnorm:
            layers.append(BatchNorm(fan_out, dtype=dtype, convention="book"))
        layers.append(_activation(activation))
        if use_dropout:
            layers.append(Dropout(dropout_ration, convention="book"))
    layers.append(Linear(sizes[-1], output_size, init=init, dtype=dtype))
    return Sequential(*layers)


def multi_layer_net(input_size: int, hidden_size_list: list[int], output_size: int, activation: str = "relu",
                    weight_init_std: Any = "relu", weight_decay_lambda: float = 0,
                    dtype: str = "float32") -> Sequential:
    """common/multi_layer_net.py: (Affine - activation) x n - Affine."""
    return multi_layer_net_extend(input_size, hidden_size_list, output_size, activation, weight_init_std,
                                  weight_decay_lambda, dtype=dtype)


_SIMPLE_CONV = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


def _conv(channels: int, conv_param: dict[str, int], init: Any, dtype: str) -> Conv2d:
    return Conv2d(channels, conv_param["filter_num"], conv_param["filter_size"], conv_param["stride"],
                  conv_param["pad"], init=init, dtype=dtype)


def _conv_out(size: int, conv_param: dict[str, int]) -> int:
    return (size + 2 * conv_param["pad"] - conv_param["filter_size"]) // conv_param["stride"] + 1


def simple_convnet(input_dim: tuple[int, int, int] = (1, 28, 28), conv_param: dict[str, int] | None = None,
                   hidden_size: int = 100, output_size: int = 10, weight_init_std: Any = 0.01,
                   dtype: str = "float32") -> Sequential:
    """ch07's SimpleConvNet: Conv - Relu - Pool(2, 2, stride=2) - Affine - Relu - Affine (W1..W3)."""
    conv_param = {**_SIMPLE_CONV, **(conv_param or {})}
    init = _init(weight_init_std)
    h, w = _conv_out(input_dim[1], conv_param) // 2, _conv_out(input_dim[2], conv_param) // 2
    return Sequential(_conv(input_dim[0], conv_param, init, dtype), ReLU(), MaxPool2d(2, 2),
                      Linear(conv_param["filter_num"] * h * w, hidden_size, init=init, dtype=dtype), ReLU(),
                      Linear(hidden_size, output_size, init=init, dtype=dtype))


_DEEP_CONV = ({"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
              {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
              {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
              {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
              {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
              {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1})


def deep_convnet(input_dim: tuple[int, int, int] = (1, 28, 28), conv_param_1: dict[str, int] | None = None,
                 conv_param_2: dict[str, int] | None = None, conv_param_3: dict[str, int] | None = None,
                 conv_param_4: dict[str, int] | None = None, conv_param_5: dict[str, int] | None = None,
                 conv_param_6: dict[str, int] | None = None, hidden_size: int = 50, output_size: int = 10,
                 dtype: str = "float32") -> Sequential:
    """ch08's DeepConvNet: (Conv - Relu - Conv - Relu - Pool) x 3 - Affine - Relu - Dropout - Affine -
    Dropout (W1..W8; He initialisation; both Dropouts with the book's convention, ratio 0.5)."""
    given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6)
    params = [{**default, **(p or {})} for default, p in zip(_DEEP_CONV, given)]
    channels, (h, w), layers = input_dim[0], input_dim[1:], []
    for i, p in enumerate(params):
        layers += [_conv(channels, p, "relu", dtype), ReLU()]
        channels, h, w = p["filter_num"], _conv_out(h, p), _conv_out(w, p)
        if i % 2 == 1:
            layers.append(MaxPool2d(2, 2))
            h, w = h // 2, w // 2
    layers += [Linear(channels * h * w, hidden_size, init="relu", dtype=dtype), ReLU(),
               Dropout(0.5, convention="book"), Linear(hidden_size, output_size, init="relu", dtype=dtype),
               Dropout(0.5, convention="book")]
    return Sequential(*layers)


BOOK_MODELS: dict[str, Callable[..., Sequential]] = {
    "TwoLayerNet": two_layer_net, "MultiLayerNet": multi_layer_net, "MultiLayerNetExtend": multi_layer_net_extend,
    "SimpleConvNet": simple_convnet, "DeepConvNet": deep_convnet}


# -- copying the arrays in ----------------------------------------------------------------------

def _book_keys(model: Sequential) -> list[tuple[str, Any, str]]:
    """(book key, layer, param) in the book's numbering: W/b per weighted layer, gamma/beta per BatchNorm."""
    keys, weighted, norms = [], 0, 0
    for layer in model.layers:
        if "W" in layer.params:
            weighted += 1
            keys += [(f"{k}{weighted}", layer, k) for k in ("W", "b") if k in layer.params]
        elif isinstance(layer, BatchNorm):
            norms += 1
            keys += [(f"{k}{norms}", layer, k) for k in ("gamma", "beta")]
    return keys


def load_book_params(path: str | os.PathLike, model: str | Sequential = "SimpleConvNet", *, device: Any = "cpu",
                     dtype: str | None = None, **book_args: Any) -> Sequential:
    """Build the book's network and copy a book ``params.pkl`` (``save_params``'s format) into it.

    model: a book class name (``"TwoLayerNet"``, ``"MultiLayerNet"``, ``"MultiLayerNetExtend"``,
    ``"SimpleConvNet"``, ``"DeepConvNet"``) with that constructor's arguments as keywords (the book's
    defaults apply), or an ``xn.Sequential`` whose weighted layers and BatchNorms are in the book's
    order. dtype: the model's (default: the file's, float64 for the book's files). Returns the model
    on ``device``. Example: ``xn.load_book_params("ch07/params.pkl", "SimpleConvNet")``.
    """
    arrays = read_book_params(path)
    state = _init_module.generator().bit_generator.state  # building draws weights that are overwritten
    try:
        return _load(arrays, os.fspath(path), model, device, dtype, book_args)
    finally:
        _init_module.generator().bit_generator.state = state


def _load(arrays: dict[str, np.ndarray], path: str, model: str | Sequential, device: Any, dtype: str | None,
          book_args: dict[str, Any]) -> Sequential:
    if dtype is None:
        dtype = str(arrays["W1"].dtype) if "W1" in arrays and arrays["W1"].dtype.kind == "f" else "float32"
    if isinstance(model, str):
        if model not in BOOK_MODELS:
            raise ValueError(f"load_book_params: unknown book model {model!r}; known: {', '.join(BOOK_MODELS)} "
                             "(or pass an xn.Sequential)")
        model = BOOK_MODELS[model](**book_args, dtype=dtype)
    elif not isinstance(model, Sequential):
        raise TypeError(f"load_book_params: model must be a book class name or an xn.Sequential, "
                        f"got {type(model).__name__}")
    elif book_args:
        raise TypeError(f"load_book_params: {sorted(book_args)} are book constructor arguments; they need a "
                        "model name, not a Sequential")
    keys = _book_keys(model)
    expected, found = {k for k, _, _ in keys}, set(arrays)
    if expected != found:
        raise ValueError(f"load_book_params: {path!r} does not match the model: missing "
                         f"{sorted(expected - found)}, unexpected {sorted(found - expected)}")
    for key, layer, name in keys:
        want = tuple(layer.params[name].shape)
        if arrays[key].shape != want:
            raise ValueError(f"load_book_params: {key} in {path!r} has shape {arrays[key].shape}, "
                             f"the model's {layer.name}.{name} has {want}; check the book constructor's arguments")
    model.to("cpu", dtype=dtype)
    for key, layer, name in keys:
        layer.params[name] = to_device(arrays[key], model.device, dtype=dtype)
    return model.to(device)
