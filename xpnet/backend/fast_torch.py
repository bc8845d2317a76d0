"""PyTorch fast paths: ``unfold`` and ``fold`` are im2col and col2im in the per-sample layout
(N, C*kh*kw, oh*ow); ``index_add_`` is the embedding's scatter-add; ``torch.special.erf`` is GELU's erf.
Imported only when a PyTorch tensor asks for them."""

from __future__ import annotations

from typing import Any, Callable

import torch

Pair = tuple[int, int]


def im2col(x: Any, kernel: Pair, stride: Pair, padding: Pair, per_sample: bool = False,
           dilation: Pair = (1, 1)) -> Any:
    col = torch.nn.functional.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    return col if per_sample else col.permute(1, 0, 2).reshape(col.shape[1], -1)


def col2im(col: Any, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
           per_sample: bool = False, dilation: Pair = (1, 1)) -> Any:
    """Sums overlapping windows and drops the padding, as ``col2im_portable``."""
    if not per_sample:
        col = col.reshape(col.shape[0], x_shape[0], -1).permute(1, 0, 2)
    return torch.nn.functional.fold(col, tuple(x_shape[2:]), kernel, dilation=dilation, padding=padding,
                                    stride=stride)


def embedding_backward(ids: Any, dy: Any, num_embeddings: int) -> Any:
    """dW with row v the sum of the rows of dy whose id is v (``index_add_`` adds repeated ids)."""
    dW = torch.zeros((num_embeddings, dy.shape[1]), dtype=dy.dtype, device=dy.device)
    return dW.index_add_(0, ids, dy)


def erf(x: Any) -> Any:
    return torch.special.erf(x)


def register(add: Callable[..., Any]) -> None:
    add("im2col", im2col)
    add("col2im", col2im)
    add("embedding_backward", embedding_backward)
    add("erf", erf)
