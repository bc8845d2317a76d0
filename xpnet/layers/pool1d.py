"""PyTorch's 1-d poolings over (N, C, L) sequences: the 2-d ones on (N, C, 1, L), windows (1, k)."""

from __future__ import annotations

from typing import Any

from ._lifted import Lifted, lifted
from .adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .pool import AvgPool2d, MaxPool2d


class MaxPool1d(Lifted):
    """PyTorch's nn.MaxPool1d, its arguments in its order and with its defaults (ints or tuples of one): MaxPool2d
    on x viewed as (N, C, 1, L). x: (N, C, L) -> y: (N, C, L_out), L_out = (L + 2p - d*(k - 1) - 1) // s + 1
    (ceil_mode: rounded up). Caches each window's argmax offset, as MaxPool2d."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__()
        with self._as_1d():
            self._adopt(MaxPool2d(lifted(self.name, "kernel_size", kernel_size, 1),
                                  lifted(self.name, "stride", stride, 1),
                                  lifted(self.name, "padding", padding, 0, first=0),
                                  lifted(self.name, "dilation", dilation, 1), return_indices, ceil_mode))


class AvgPool1d(Lifted):
    """PyTorch's nn.AvgPool1d, its arguments in its order and with its defaults (ints or tuples of one): AvgPool2d
    on x viewed as (N, C, 1, L), the same divisors (count_include_pad, ceil_mode). x: (N, C, L) -> y: (N, C, L_out).
    Caches the input shape and 1 / the divisors, as AvgPool2d."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__()
        with self._as_1d():
            self._adopt(AvgPool2d(lifted(self.name, "kernel_size", kernel_size, 1),
                                  lifted(self.name, "stride", stride, 1),
                                  lifted(self.name, "padding", padding, 0, first=0), ceil_mode, count_include_pad))

    def config(self) -> dict[str, Any]:
        config = super().config()
        del config["divisor_override"]  # PyTorch's AvgPool1d has none
        return config


class AdaptiveAvgPool1d(Lifted):
    """PyTorch's nn.AdaptiveAvgPool1d(output_size): AdaptiveAvgPool2d((1, output_size)) on x viewed as (N, C, 1, L).
    x: (N, C, L) -> y: (N, C, output_size). Caches what AdaptiveAvgPool2d caches."""

    def __init__(self, output_size: Any):
        super().__init__()
        with self._as_1d():
            self._adopt(AdaptiveAvgPool2d(lifted(self.name, "output_size", output_size, 1)))


class AdaptiveMaxPool1d(Lifted):
    """PyTorch's nn.AdaptiveMaxPool1d(output_size, return_indices=False): AdaptiveMaxPool2d((1, output_size)) on x
    viewed as (N, C, 1, L). x: (N, C, L) -> y: (N, C, output_size). Caches what AdaptiveMaxPool2d caches."""

    def __init__(self, output_size: Any, return_indices: bool = False):
        super().__init__()
        with self._as_1d():
            self._adopt(AdaptiveMaxPool2d(lifted(self.name, "output_size", output_size, 1), return_indices))
