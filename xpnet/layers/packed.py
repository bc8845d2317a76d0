"""PyTorch's packed sequences (``torch.nn.utils.rnn``), kept as the padded array and its lengths; and its
``pad_sequence``, which pads a list of sequences into one batch.

``pack_padded_sequence(x, lengths, batch_first=False, enforce_sorted=True)`` then ``gru(packed, h0)`` then
``pad_packed_sequence(out)`` runs each sequence over its own length, as PyTorch's: a forward direction stops at
the sequence's last step (h_n is the state there), a reverse one starts there, and the output is zero past it.
xpnet's recurrent layers mask the padded steps instead of packing the rows: the state is kept through them and
their gradient is dropped, so outputs, h_n and every gradient are PyTorch's (tested against it in float64).

The layout is the one ``pack_padded_sequence`` was given (time first by default, as PyTorch's), whatever the
layer's ``batch_first``, as in PyTorch, where a packed sequence has none. The layer's ``backward`` takes the
gradient of ``pad_packed_sequence``'s output in that layout (its steps past the longest length may be left out,
as ``pad_packed_sequence`` leaves them out) and gives dx in the input's shape, zero at the padded steps.
"""

from __future__ import annotations

import functools
from typing import Any

from ..backend import kept, namespace, to_numpy

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence"]


class PackedSequence:
    """A padded batch ``padded`` ((T, N, ...), or (N, T, ...) with ``batch_first``) and its ``lengths`` (N ints)."""

    __slots__ = ("padded", "lengths", "batch_first")

    def __init__(self, padded: Any, lengths: tuple[int, ...], batch_first: bool):
        self.padded, self.lengths, self.batch_first = padded, lengths, batch_first

    @property
    def data(self) -> Any:
        raise AttributeError(
            "xpnet's PackedSequence keeps the padded array, not PyTorch's flat packed rows (.data of "
            "sum(lengths) rows): pad_packed_sequence(packed) gives the padded array and the lengths")

    def valid(self, xp: Any, dtype_of: Any) -> Any:
        """(N, T) bool on ``dtype_of``'s device: True at the steps inside each sequence (kept per lengths)."""
        steps = self.padded.shape[int(self.batch_first)]

        def make() -> Any:
            lengths = xp.asarray(self.lengths, device=dtype_of.device)
            return xp.arange(steps, device=dtype_of.device)[None, :] < lengths[:, None]

        return _kept(("valid", self.lengths, steps), dtype_of, make)

    def reversed_rows(self, xp: Any, y: Any) -> Any:
        """``y`` (N, T, ...) with each sequence's first ``length`` steps in reverse order (the padded steps stay):
        what a reverse direction reads, and its own inverse."""
        n, steps = y.shape[0], y.shape[1]
        flat = xp.reshape(y, (n * steps, *y.shape[2:]))
        order = _kept(("reversed", self.lengths, steps), y,
                      lambda: xp.asarray(_reversed_order(self.lengths, steps), device=y.device))
        return xp.reshape(xp.take(flat, order, axis=0), y.shape)


# Device arrays made from host lengths, kept per (what, lengths, steps, array type, device), the latest 64: a
# training loop over batches of a few lengths copies each to the device once, not at every forward and backward.
_KEPT: dict[tuple[Any, ...], Any] = {}


def _kept(key: tuple[Any, ...], like: Any, make: Any) -> Any:
    """``make()``'s array for ``key`` on ``like``'s device, made once and kept (see _KEPT)."""
    return kept(_KEPT, (*key, type(like), str(like.device)), make)


@functools.lru_cache(maxsize=64)
def _reversed_order(lengths: tuple[int, ...], steps: int) -> tuple[int, ...]:
    """The rows of a flat (N * T, ...) batch that reverse each sequence within its length (made once per lengths)."""
    return tuple(i * steps + (length - 1 - t if t < length else t) for i, length in enumerate(lengths)
                 for t in range(steps))


def _lengths(who: str, lengths: Any, n: int, steps: int, enforce_sorted: bool) -> tuple[int, ...]:
    try:
        values = [int(v) for v in (lengths.tolist() if hasattr(lengths, "tolist") else lengths)]
    except (TypeError, ValueError):
        raise TypeError(f"{who}: lengths must be N ints (a list, a host array or a CPU tensor), got "
                        f"{type(lengths).__name__}") from None
    if len(values) != n:
        raise ValueError(f"{who}: lengths holds {len(values)} lengths but the input has N = {n} sequences")
    if any(v < 1 or v > steps for v in values):
        raise ValueError(f"{who}: every length must be in [1, T = {steps}], got {values}")
    if enforce_sorted and any(a < b for a, b in zip(values, values[1:])):
        raise ValueError(f"{who}: lengths {values} must be sorted in decreasing order when enforce_sorted=True "
                         "(PyTorch's rule); pass enforce_sorted=False for any order")
    return tuple(values)


def pack_padded_sequence(input: Any, lengths: Any, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """PyTorch's ``nn.utils.rnn.pack_padded_sequence``: input (T, N, D) ((N, T, D) with ``batch_first``) and
    N lengths, for an RNN, LSTM or GRU (any ``batch_first`` of theirs) to run each sequence over its length."""
    who = "pack_padded_sequence"
    if not isinstance(batch_first, bool):
        raise TypeError(f"{who}: batch_first must be True or False, got {batch_first!r}")
    if getattr(input, "ndim", None) != 3:
        raise ValueError(f"{who}: expected input of shape {'(N, T, D)' if batch_first else '(T, N, D)'}, got "
                         f"{tuple(getattr(input, 'shape', ()))}")
    steps, n = (input.shape[1], input.shape[0]) if batch_first else (input.shape[0], input.shape[1])
    return PackedSequence(input, _lengths(who, lengths, n, steps, enforce_sorted), batch_first)


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Any, Any]:
    """PyTorch's ``nn.utils.rnn.pad_packed_sequence``: ``(padded, lengths)``, padded (T, N, ...) up to the longest
    length (or ``total_length``), zero past each sequence's end; lengths an int64 host array."""
    who = "pad_packed_sequence"
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{who}: expected the PackedSequence a recurrent layer returned for a packed input, got "
                        f"{type(sequence).__name__}")
    if batch_first is not sequence.batch_first:
        raise ValueError(f"{who}: batch_first={batch_first!r}, but the sequence was packed with "
                         f"batch_first={sequence.batch_first!r}: unpack it in the layout it was packed in, as the "
                         "layer's backward takes the gradient in that layout (permute afterwards if needed)")
    if padding_value != 0.0:
        raise ValueError(f"{who}: padding_value={padding_value!r} is not supported: xpnet's padded steps are 0")
    y = sequence.padded
    xp = namespace(y)
    axis = int(batch_first)
    longest = max(sequence.lengths)
    if total_length is not None and total_length < longest:
        raise ValueError(f"{who}: total_length={total_length} is less than the longest length, {longest}")
    size = longest if total_length is None else total_length
    y = fit_steps(xp, y, size, axis)
    return y, to_numpy(sequence.lengths).astype("int64", copy=False)  # on the host, as PyTorch's


def fit_steps(xp: Any, y: Any, steps: int, axis: int) -> Any:
    """``y`` cut or zero-padded to ``steps`` along ``axis`` (the padded steps hold zeros and take no gradient)."""
    have = y.shape[axis]
    if have >= steps:
        return y[:, :steps, ...] if axis == 1 else y[:steps, ...]
    shape = list(y.shape)
    shape[axis] = steps - have
    return xp.concat([y, xp.zeros(tuple(shape), dtype=y.dtype, device=y.device)], axis=axis)


def packed_grad(who: str, dy: Any, packed: PackedSequence, steps: int) -> Any:
    """A packed forward's output gradient (a padded array, or a PackedSequence) in the packed layout, ``steps``
    long: up to the longest length, as ``pad_packed_sequence`` cut it, is enough."""
    if isinstance(dy, PackedSequence):
        dy = dy.padded
    axis = int(packed.batch_first)
    xp = namespace(dy)
    if getattr(dy, "ndim", None) != 3 or dy.shape[1 - axis] != len(packed.lengths) or \
            not max(packed.lengths) <= dy.shape[axis]:
        layout = "(N, T, H)" if packed.batch_first else "(T, N, H)"
        raise ValueError(f"{who}.backward: the forward ran over a packed sequence, so dy is the gradient of "
                         f"pad_packed_sequence's output, {layout} in the packed layout, with N = "
                         f"{len(packed.lengths)} and T >= {max(packed.lengths)}; got {tuple(getattr(dy, 'shape', ()))}")
    return fit_steps(xp, dy, steps, axis)


def pad_sequence(sequences: Any, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Any:
    """PyTorch's ``nn.utils.rnn.pad_sequence``: N arrays (L_i, *) of one dtype on one device -> (T, N, *), time
    first as PyTorch's default ((N, T, *) with ``batch_first=True``), T the longest L_i, each padded with
    ``padding_value`` after its steps (before them with ``padding_side="left"``). A collate_fn's batch of token
    ids of several lengths, for ``pack_padded_sequence`` or an Embedding with ``padding_idx``."""
    who = "pad_sequence"
    if not isinstance(sequences, (list, tuple)) or not sequences:
        raise TypeError(f"{who}: expected a non-empty list of arrays (L_i, *), got "
                        f"{'an empty one' if isinstance(sequences, (list, tuple)) else type(sequences).__name__}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"{who}: batch_first must be True or False, got {batch_first!r}")
    if padding_side not in ("right", "left"):
        raise ValueError(f"{who}: padding_side must be 'right' or 'left', got {padding_side!r}")
    first = sequences[0]
    for i, seq in enumerate(sequences):
        if getattr(seq, "ndim", 0) < 1 or tuple(seq.shape[1:]) != tuple(first.shape[1:]) or seq.dtype != first.dtype:
            raise ValueError(f"{who}: sequence {i} is {_described(seq)}, where sequence 0 is {_described(first)}: "
                             f"every sequence is (L_i, *) with the same trailing shape and dtype")
    xp = namespace(first)
    steps = max(seq.shape[0] for seq in sequences)
    padded = []
    for seq in sequences:
        pad = xp.full((steps - seq.shape[0], *first.shape[1:]), padding_value, dtype=first.dtype, device=first.device)
        padded.append(xp.concat([seq, pad] if padding_side == "right" else [pad, seq], axis=0))
    return xp.stack(padded, axis=0 if batch_first else 1)


def _described(seq: Any) -> str:
    """``seq`` for a message: its shape and dtype, or its type where it is no array."""
    if not hasattr(seq, "shape"):
        return f"a {type(seq).__name__}"
    return f"of shape {tuple(seq.shape)} and dtype {seq.dtype}"
