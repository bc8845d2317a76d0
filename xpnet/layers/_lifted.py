"""The 1-d layers' common part: x (N, C, L) run through the 2-d layer on (N, C, 1, L)."""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

from ..backend import untracked
from .base import Layer


def lifted(layer: str, arg: str, value: Any, minimum: int, first: int = 1) -> Any:
    """PyTorch's 1-d size (an int, or a tuple of one) as the 2-d layer's pair ``(first, value)``; None, a string
    ("same") or a bool go on as they are, for the 2-d layer to take or refuse."""
    if value is None or isinstance(value, (str, bool)):
        return value
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(items) != 1 or isinstance(items[0], bool) or not isinstance(items[0], int) or items[0] < minimum:
        raise ValueError(f"{layer}: {arg} must be an int >= {minimum} (or a tuple of one), got {value!r}")
    return first, int(items[0])


# The 2-d layer's words for a (1, L) view, and the 1-d ones a user of the 1-d layer gave: a pair (first, n) of an
# argument as n, an (N, C, 1, L) shape as (N, C, L), a 1xL size as "length L".
_IN_1D = ((re.compile(r"\((\d+), (\d+), 1, (-?\d+)\)"), r"(\1, \2, \3)"),
          (re.compile(r"\b(\w+)=\([01], (-?\d+)\)"), r"\1=\2"),
          (re.compile(r"(?<!reflect )(?<!replicate )(?<!circular )\b(padded by|padding|dilated by|stride|default) "
                     r"\([01], (-?\d+)\)"), r"\1 \2"),
          (re.compile(r"\boutput \(1, (-?\d+)\)"), r"output length \1"),
          (re.compile(r"\bthe 1x(\d+) (kernel|window)"), r"the \2 of length \1"),
          (re.compile(r"\ba 1x(\d+) window every \(1, (\d+)\) pixels"), r"a window of length \1 every \2 positions"),
          (re.compile(r"\bis 1x(-?\d+)"), r"is of length \1"),
          (re.compile(r"\b1x(-?\d+)"), r"length \1"),
          (re.compile(r"\(H - 1\)\*stride"), "(L - 1)*stride"),
          (re.compile(r"odd kernel sizes"), "an odd kernel_size"))


def in_1d(message: str) -> str:
    """A 2-d layer's message about the (N, C, 1, L) view said in the 1-d layer's terms (its arguments' ints, the
    input's (N, C, L) shape), so that it names what the user gave."""
    for pattern, words in _IN_1D:
        message = pattern.sub(words, message)
    return message


class Lifted(Layer):
    """A 1-d layer that runs its 2-d one, ``self._flat``, on x (N, C, L) viewed as (N, C, 1, L), so that the
    2-d layer's fast paths, gradients and CUDA-graph capture hold as they are. The params are the 1-d layer's
    own in PyTorch's 1-d layouts (a kernel (..., k)); each forward hands the 2-d layer views of them
    (..., 1, k), and each backward takes its grads back as views in the params' shapes.
    Caches what the 2-d layer caches and the output's shape (N, C_out, L_out)."""

    in_channels: int | None = None  # the input channels, where the layer knows them

    def __init__(self) -> None:
        super().__init__()
        self._flat: Any = None
        self._y_shape = None

    @contextlib.contextmanager
    def _as_1d(self) -> Iterator[None]:
        """A ValueError or TypeError of the 2-d layer said as this layer's, saying how it runs."""
        flat = self.name.replace("1d", "2d")
        try:
            yield
        except (ValueError, TypeError) as e:
            if not str(e).startswith(flat + ": "):
                raise
            raise type(e)(f"{self.name}: {in_1d(str(e)[len(flat) + 2:])} (run as {flat} on x (N, C, L) viewed "
                          "as (N, C, 1, L))") from None

    def _adopt(self, flat: Layer) -> None:
        """Take the built 2-d layer and its initial params, the kernel's axis of one row dropped."""
        self._flat = flat
        for k, v in flat.params.items():
            self.params[k] = v.reshape(v.shape[:2] + v.shape[3:]) if v.ndim == 4 else v

    def config(self) -> dict[str, Any]:
        """The 2-d layer's config with each (1, n) pair as n."""
        return {k: v[1] if isinstance(v, list) and len(v) == 2 else v for k, v in self._flat.config().items()}

    def forward(self, x: Any, train: bool = True) -> Any:
        train = self._check_train(train)
        x = untracked(x)
        xp = self._check_float(x)
        self._check_sequence(x)
        self._check_like_params(x)
        flat = self._flat
        flat._frozen = self._frozen
        for k, v in self.params.items():
            flat.params[k] = xp.reshape(v, (*v.shape[:2], 1, *v.shape[2:])) if v.ndim == 3 else v
        with self._as_1d():
            y = flat.forward(xp.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2])), train)
        ys = y if isinstance(y, tuple) else (y,)  # a max pool's (y, indices)
        self._y_shape = (ys[0].shape[0], ys[0].shape[1], ys[0].shape[3])
        ys = tuple(xp.reshape(a, self._y_shape) for a in ys)
        return ys if isinstance(y, tuple) else ys[0]

    def sequential_refusal(self) -> str:
        return self._flat.sequential_refusal()

    def backward(self, dy: Any) -> Any:
        return self._backward(dy, self._flat.backward)

    def backward_params(self, dy: Any) -> None:
        self._backward(dy, self._flat.backward_params)

    def pieces(self) -> Any:
        return self._flat.pieces()

    def _backward(self, dy: Any, flat_backward: Any) -> Any:
        dy = untracked(dy)
        n, c, length = self._need(self._y_shape)
        xp = self._check_grad(dy, self._y_shape)
        dx = flat_backward(xp.reshape(dy, (n, c, 1, length)))
        if not self._frozen:
            for k, g in self._flat.grads.items():
                self.grads[k] = xp.reshape(g, self.params[k].shape)
        return None if dx is None else xp.reshape(dx, (dx.shape[0], dx.shape[1], dx.shape[3]))

    def _check_sequence(self, x: Any) -> None:
        """Raise a ValueError of one line unless x is (N, C, L) (with ``in_channels`` channels), saying what to do."""
        shape, channels = tuple(x.shape), self.in_channels
        expected = f"(N, {channels}, L)" if channels else "(N, C, L)"
        if x.ndim == 2:
            raise ValueError(f"{self.name}: expected a 3-d input {expected}, got shape {shape}; a batch of "
                             "one-channel sequences (N, L) is x[:, None, :], one unbatched sequence (C, L) x[None]")
        if x.ndim != 3:
            images = f"; images (N, C, H, W) go to {self.name.replace('1d', '2d')}" if x.ndim == 4 else ""
            raise ValueError(f"{self.name}: expected a 3-d input {expected}, got shape {shape}{images}")
        if channels and shape[1] != channels:
            hint = ("; this looks batch first (N, L, C), as an Embedding or LSTM gives: permute it to (N, C, L), "
                    "xp.permute_dims(x, (0, 2, 1)), as PyTorch's Conv1d needs too") if shape[2] == channels else ""
            raise ValueError(f"{self.name}: expected {channels} input channels {expected}, got shape {shape}{hint}")
