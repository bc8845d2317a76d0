"""PyTorch's nn.Conv1d and nn.ConvTranspose1d over (N, C, L) sequences: Conv2d and ConvTranspose2d on (N, C, 1, L)."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from ._lifted import Lifted, lifted
from .conv import Conv2d
from .conv_transpose import ConvTranspose2d
from .pytorch_params import PyTorchParam


def _kaiming_uniform(shape: tuple[int, ...], rng: Any) -> Any:
    """PyTorch's init of a convolution's weight, kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(math.prod(shape[1:]))
    return rng.uniform(-bound, bound, shape)


class Conv1d(Lifted):
    """PyTorch's nn.Conv1d: Conv2d on x viewed as (N, C, 1, L), kernel (1, k), stride (1, s), padding (0, p),
    dilation (1, d). x: (N, in_channels, L) -> y: (N, out_channels, L_out), L_out = (L + 2p - d*(k - 1) - 1) // s + 1.

    The arguments are PyTorch's, in its order and with its defaults, ints (or tuples of one); ``padding`` also
    "valid" or "same" (stride 1 and an even d*(k - 1) here); ``groups`` as Conv2d's. params: W (out_channels,
    in_channels // groups, k), b (out_channels,): PyTorch's ``weight`` and ``bias``. ``init="pytorch"`` (the
    default) draws both as PyTorch does, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels // groups * k;
    Conv2d's initialisers ("he", ...) draw W from the same fan_in, b zeros. Caches what Conv2d caches.
    """

    weight = PyTorchParam("W")  # PyTorch's name and layout
    bias = PyTorchParam("b")  # None when built without one

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: Any = 1, bias: bool = True, padding_mode: Any = "zeros", device: Any = None,
                 *, init: Any = "pytorch", dtype: str = "float32"):
        super().__init__()
        pytorch = isinstance(init, str) and init == "pytorch"
        if isinstance(init, str) and not pytorch and init not in _init.NAMES:
            raise _init.bad_init(init, self.name, also=("pytorch",))
        with self._as_1d():
            flat = Conv2d(in_channels, out_channels, lifted(self.name, "kernel_size", kernel_size, 1),
                          lifted(self.name, "stride", stride, 1), lifted(self.name, "padding", padding, 0, first=0),
                          lifted(self.name, "dilation", dilation, 1), groups, bias, padding_mode, device,
                          init=_kaiming_uniform if pytorch else init, dtype=dtype)
        self.in_channels, self.out_channels, self.init = flat.in_ch, flat.out_ch, init
        self._adopt(flat)
        if pytorch and flat.has_bias:
            self.params["b"] = _init.uniform((flat.out_ch,), 1.0 / math.sqrt(math.prod(flat.params["W"].shape[1:])),
                                             flat.dtype)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "init": self.init if isinstance(self.init, (str, int, float)) else "pytorch"}


class ConvTranspose1d(Lifted):
    """PyTorch's nn.ConvTranspose1d: ConvTranspose2d on x viewed as (N, C, 1, L), kernel (1, k) and so on.
    x: (N, in_channels, L) -> y: (N, out_channels, L_out), L_out = (L - 1)*s - 2p + d*(k - 1) + output_padding + 1.

    The arguments are PyTorch's, in its order and with its defaults (ints or tuples of one); params: W
    (in_channels, out_channels // groups, k), b (out_channels,): PyTorch's ``weight`` and ``bias``, drawn as
    ConvTranspose2d draws them (``init="pytorch"``, PyTorch's own, by default). Caches what ConvTranspose2d caches.
    """

    weight = PyTorchParam("W")  # PyTorch's name and layout
    bias = PyTorchParam("b")  # None when built without one

    train_hint = ("PyTorch's forward(x, output_size) is not taken here: choose the output size with "
                  "ConvTranspose1d(..., output_padding=...)")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, groups: Any = 1, bias: bool = True, dilation: Any = 1,
                 padding_mode: Any = "zeros", device: Any = None, *, init: Any = "pytorch", dtype: str = "float32"):
        super().__init__()
        with self._as_1d():
            flat = ConvTranspose2d(in_channels, out_channels, lifted(self.name, "kernel_size", kernel_size, 1),
                                   lifted(self.name, "stride", stride, 1),
                                   lifted(self.name, "padding", padding, 0, first=0),
                                   lifted(self.name, "output_padding", output_padding, 0, first=0), groups, bias,
                                   lifted(self.name, "dilation", dilation, 1), padding_mode, device, init=init,
                                   dtype=dtype)
        self.in_channels, self.out_channels = flat.in_channels, flat.out_channels
        self._adopt(flat)
