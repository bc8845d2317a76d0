"""The book's first-volume networks as ``xn.Sequential`` models, from its constructors' own arguments.

A builder (``simple_convnet(...)``, ...) makes the book's network from the book constructor's own
arguments and defaults, with the book's conventions where its weights depend on them:
``Dropout(convention="book")`` (no rescale in training, x (1 - p) at test) and
``BatchNorm(convention="book")``. ``MaxPool2d(2, 2)`` is the book's ``Pooling(2, 2, stride=2)``.
"""

from __future__ import annotations

from typing import Any, Callable

from ..layers import BatchNorm, Conv2d, Dropout, Linear, MaxPool2d, ReLU, Sigmoid
from ..models import Sequential

__all__ = ["two_layer_net", "multi_layer_net", "multi_layer_net_extend", "simple_convnet", "deep_convnet",
           "BOOK_MODELS"]


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
                  dtype: str = "float32", activation: str = "relu") -> Sequential:
    """ch05's TwoLayerNet: Affine - Relu - Affine (W1, b1, W2, b2); ``activation="sigmoid"``: the second
    volume's ch01 TwoLayerNet, Affine - Sigmoid - Affine (its weights too start as 0.01 * randn)."""
    init = _init(weight_init_std)
    return Sequential(Linear(input_size, hidden_size, init=init, dtype=dtype), _activation(activation),
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
