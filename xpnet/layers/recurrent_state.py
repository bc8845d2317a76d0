"""The state a recurrent layer carries from one forward to the next, and what runs over a whole model do with it.

A time loop (:mod:`xpnet.layers.recurrent`) starts from zeros, from what ``set_state`` gave, or, with
``stateful=True``, from where its last forward ended. :class:`CarriedState` is that part of the layer: ``h``
(and LSTM's ``c``), ``set_state``, ``reset_state``, the state moved with the layer, the start of a forward (or the
start PyTorch's ``hx`` gave it, with ``return_state=True``), and the gradient of the final state a backward starts
from.
The functions below serve the loops over a model: a probe forward that leaves no trace (:func:`probe_states`),
batches whose rows are sequences of their own (:func:`independent_batches`), and the refusal to cut time-first
data into batches (:func:`refuse_time_first`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..backend import namespace, untracked
from .recurrent_args import NO_HX, hx_rows
from .tree import moved


class CarriedState:
    """The state of a time loop over (N, T, ...) sequences, ``state_names`` arrays of shape (N, hidden_size) (an
    LSTM's h (N, proj_size) where it projects h): a base of the recurrent layers, before
    :class:`~xpnet.layers.base.Layer` (whose input checks it uses)."""

    state_names: tuple[str, ...] = ("h",)
    hidden_size: int
    proj_size = 0  # LSTM's projection of h, PyTorch's proj_size (0: none)

    def __init__(self) -> None:
        super().__init__()
        self._state: tuple[Any, ...] | None = None

    @property
    def out_size(self) -> int:
        """The width of h, of the output at each step and of what the next stacked layer takes."""
        return self.proj_size or self.hidden_size

    @property
    def state_widths(self) -> tuple[int, ...]:
        """The width of each state array, in ``state_names`` order: h's ``out_size``, c's ``hidden_size``."""
        return (self.out_size,) + (self.hidden_size,) * (len(self.state_names) - 1)

    @property
    def h(self) -> Any:
        """The hidden state the next forward starts from (None: zeros)."""
        return None if self._state is None else self._state[0]

    def reset_state(self) -> None:
        """The next forward starts from zeros."""
        self._state = None

    def set_state(self, h: Any, c: Any = None) -> None:
        """Start the next forwards from ``h`` (N, out_size) (and ``c`` (N, H) for LSTM; None: zeros). Without
        ``stateful`` every forward starts there until ``reset_state()`` (the book's non-stateful
        layers ignore ``set_state``); with it the first does and the state then moves on."""
        if c is not None and "c" not in self.state_names:
            raise TypeError(f"{self.name}: has no cell state c; call set_state(h)")
        check_state_arrays(self.name, self.state_names, h, c)
        h, c = untracked(h), None if c is None else untracked(c)
        xp = namespace(h)
        width, cells = self.state_widths[0], self.state_widths[-1]
        if h.ndim != 2 or h.shape[1] != width:
            raise ValueError(f"{self.name}: state h must have shape (N, {width}), got {tuple(h.shape)}")
        self._check_like_params(h, "state h", "h")
        if "c" not in self.state_names:
            self._state = (h,)
            return
        c = xp.zeros((h.shape[0], cells), dtype=h.dtype, device=h.device) if c is None else c
        if tuple(c.shape) != (h.shape[0], cells):
            raise ValueError(f"{self.name}: state c must have shape {(h.shape[0], cells)} (N, hidden_size), got "
                             f"{tuple(c.shape)}")
        self._check_like_params(c, "state c", "c")
        self._state = (h, c)

    def _final_state_grad(self, xp: Any, dhs: Any, dh_n: Any, dc_n: Any) -> tuple[Any, ...] | None:
        """The state gradient the reverse loop starts from: None without ``dh_n`` and ``dc_n``, else one array
        per state (h's zeros where only dc_n is given; dc None where only dh_n is), each checked against its shape;
        ``dhs`` is batch first."""
        if dc_n is not None and "c" not in self.state_names:
            raise TypeError(f"{self.name}.backward: dc_n is an LSTM's (the gradient of c_n); {self.name} has no "
                            "cell state: pass backward(dhs, dh_n) only")
        if dh_n is None and dc_n is None:
            return None
        grads, n = [], dhs.shape[0]
        for what, g, width in zip(("dh_n", "dc_n"), (dh_n, dc_n), self.state_widths):
            if g is None:
                grads.append(None if what == "dc_n" else xp.zeros_like(dhs[:, 0, :]))
                continue
            g = untracked(g)
            self._check_like_params(g, what, what)
            if tuple(g.shape) != (n, width):
                raise ValueError(f"{self.name}.backward: {what} must have shape (N, {width}) = {(n, width)}, the "
                                 f"final state's (one layer's row of PyTorch's {what[1:]}), got {tuple(g.shape)}")
            grads.append(g)
        return tuple(grads)

    def _move_own(self, dev: Any, dtype: Any, memo: dict[int, tuple[Any, Any]] | None = None) -> None:
        """Params and buffers, and the carried state (stateful=True) with them; the cache is dropped."""
        super()._move_own(dev, dtype, memo)
        if self._state is not None:
            self._state = tuple(moved(s, dev, dtype, memo) for s in self._state)
        self._cache = None

    def _start(self, x: Any, hx: Any = NO_HX) -> tuple[Any, ...]:
        """The state a forward over ``x`` (N, T, ...) starts from: PyTorch's ``hx`` where given (``return_state``;
        None: zeros), over what ``set_state`` gave or the last forward carried (``stateful``), else zeros."""
        xp = namespace(x)
        n = x.shape[0]
        state, what = self._state, "the state"
        if hx is not NO_HX:
            row = hx_rows(self.name, self.state_names, self.state_widths, 1, hx)[0]
            row = (row,) if row is not None and len(self.state_names) == 1 else row
            state, what = None if row is None else tuple(s[0, ...] for s in row), "hx"
        if state is None:
            return tuple(xp.zeros((n, w), dtype=x.dtype, device=x.device) for w in self.state_widths)
        if state[0].shape[0] != n:
            fix = "call reset_state() or set_state() for the new batch" if hx is NO_HX else "give hx the input's N"
            if self.batch_first and state[0].shape[0] == x.shape[1] and self.__dict__.get("_packed") is None:
                fix += (f"; or, where the input {tuple(x.shape)} is time first, (T, N, {x.shape[2]}) (PyTorch's "
                        f"default), build the layer with batch_first=False: it reads (N, T, {x.shape[2]})")
            raise ValueError(f"{self.name}: {what} holds {state[0].shape[0]} sequences but the input has {n}; {fix}")
        for name, s in zip(self.state_names, state):
            self._check_like_params(s, f"state {name}", name if hx is NO_HX else "hx")
        return state

    def _returned(self, xp: Any, state: tuple[Any, ...]) -> Any:
        """A forward's final state as PyTorch returns it (``return_state=True``): one layer's row of h_n
        (1, N, out_size), and of LSTM's c_n (1, N, hidden_size), as ``(h_n, c_n)`` or h_n alone."""
        rows = tuple(xp.expand_dims(s, axis=0) for s in state)
        return rows if len(rows) == 2 else rows[0]

    def _final_rows(self, dh_n: Any, dc_n: Any) -> tuple[Any, Any]:
        """``return_state=True``'s backward: dh_n (1, N, out_size) and dc_n (1, N, hidden_size), the shapes the
        forward returned h_n and c_n in, as the (N, width) rows a backward takes (None stays None)."""
        rows = []
        for what, g, width in zip(("dh_n", "dc_n"), (dh_n, dc_n), (self.state_widths[0], self.state_widths[-1])):
            if g is not None and (getattr(g, "ndim", None) != 3 or g.shape[0] != 1 or g.shape[2] != width):
                raise ValueError(f"{self.name}.backward: {what} must have shape (1, N, {width}), the {what[1:]} the "
                                 f"forward returned (return_state=True), got {tuple(getattr(g, 'shape', ()))}")
            rows.append(None if g is None else untracked(g)[0, ...])
        return rows[0], rows[1]


@contextmanager
def probe_states(model: Any) -> Iterator[None]:
    """Within: every recurrent layer of ``model`` starts from zeros (a one-row probe forward fits);
    after: each holds the state and backward cache it had, so the probe leaves no trace."""
    layers = [node for node in model.named_modules().values() if isinstance(node, CarriedState)]
    kept = [(node._state, node._cache) for node in layers]
    for node in layers:
        node._state = None
    try:
        yield
    finally:
        for node, (state, cache) in zip(layers, kept):
            node._state, node._cache = state, cache


def refuse_time_first(model: Any, who: str, shuffled: bool = False) -> None:
    """Raise where a recurrent layer of ``model`` takes time first (``batch_first=False``) in a loop that
    cuts (``shuffled``: and shuffles) axis 0 of the data (``who``, e.g. ``"xn.train"``): axis 0 is time there."""
    found = [f"layer {name!r} ({node.name})" for name, node in model.named_modules().items()
             if isinstance(node, CarriedState) and not node.batch_first]
    if found:
        raise ValueError(f"{who} cuts the data into batches along axis 0, the samples, but {', '.join(found)} "
                         f"takes time first (batch_first=False, input (T, N, ...)), so its batches would be cut "
                         f"{'and shuffled ' if shuffled else ''}along time. Build the recurrent layers with "
                         "batch_first=True and pass (N, T, ...) data")


@contextmanager
def independent_batches(model: Any) -> Iterator[Callable[[], None]]:
    """For ``predict``, ``evaluate`` and ``train`` over arrays, whose rows are sequences of their own:
    within, calling the yielded function before a batch has every stateful recurrent layer of ``model``
    start it from zeros, not from the end of the batch before (other sequences, maybe another count of
    them); after, each recurrent layer holds the state it had before, so the call leaves no trace in it."""
    layers = [node for node in model.named_modules().values() if isinstance(node, CarriedState)]
    kept = [node._state for node in layers]

    def fresh() -> None:
        for node in layers:
            if node.stateful:
                node._state = None

    try:
        yield fresh
    finally:
        for node, state in zip(layers, kept):
            node._state = state


def check_state_arrays(who: str, names: tuple[str, ...], h: Any, c: Any) -> None:
    """A TypeError naming ``who`` where ``h`` or ``c`` given to ``set_state`` is not an array: PyTorch's hx pair
    ``(h0, c0)`` passed whole, or a list, would otherwise fail inside the array library."""
    for what, value in (("h", h), ("c", c)):
        if value is not None and not hasattr(value, "shape"):
            pair = ("; PyTorch's hx pair (h0, c0) is set_state(h0, c0)" if "c" in names and
                    isinstance(value, tuple) else "")
            raise TypeError(f"{who}.set_state({', '.join(names)}): {what} must be an array, got a "
                            f"{type(value).__name__}{pair}")
