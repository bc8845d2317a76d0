"""A function captured once as a CUDA graph on a CuPy device and launched many times, with the stream
and the memory pool the graph owns (CuPy's ``Stream.begin_capture``/``end_capture``, ``Graph.launch``).

What a capture needs from CuPy, read from its source (``cupy/cuda/stream.pyx``, ``graph.pyx``,
``memory.pyx``) and kept here so that the rest of xpnet never names CuPy:

- a non-blocking stream of its own (the legacy default stream cannot capture); everything the graph
  reads or writes is queued on that stream too (:meth:`StepGraph.on_stream`), since a non-blocking
  stream does not wait for the default one;
- a memory pool of its own (:meth:`StepGraph.allocating`): a launch writes the addresses of the
  capture, so what the captured function allocated must never go to other arrays. Memory freed into
  this pool is handed out again only inside it, and the pool lives as long as the graph;
- nothing runs during the capture: CUDA records the kernels, and :meth:`launch` runs them. A capture
  refuses cuBLAS (xpnet's own product, :mod:`xpnet.backend.fast_cupy_capture`, stands in), the legacy
  cuRAND calls and any device-to-host copy.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from .libraries import cupy

__all__ = ["StepGraph"]


class StepGraph:
    """``fn`` captured on ``device`` (a CuPy :class:`~xpnet.backend.Device`) by :meth:`capture`, then
    run by :meth:`launch`. ``captured`` tells whether there is a graph."""

    def __init__(self, device: Any):
        cp = cupy()
        self._cp = cp
        with cp.cuda.Device(int(device.native.id)):
            self.stream = cp.cuda.Stream(non_blocking=True)
        self.pool = cp.cuda.MemoryPool()
        self._graph: Any = None

    @property
    def captured(self) -> bool:
        return self._graph is not None

    @contextlib.contextmanager
    def on_stream(self) -> Iterator[None]:
        """Work queued on the graph's stream, after everything queued before on the default stream."""
        self._cp.cuda.Stream.null.synchronize()
        with self.stream:
            yield

    @contextlib.contextmanager
    def allocating(self) -> Iterator[None]:
        """New arrays come from the graph's own memory pool (for the arrays of the warm-up and the capture)."""
        with self._cp.cuda.using_allocator(self.pool.malloc):
            yield

    @contextlib.contextmanager
    def as_captured(self, on: bool = True) -> Iterator[None]:
        """Within (where ``on``), eager work takes the paths a capture takes (xpnet's matrix product for cuBLAS's,
        :func:`~xpnet.backend.fast_cupy_capture.products_as_captured`): run one warm-up step so, and every kernel
        the capture records is compiled and loaded before it, not inside it."""
        from .fast_cupy_capture import products_as_captured  # noqa: PLC0415 - imports CuPy

        with products_as_captured(on):
            yield

    def capture(self, fn: Callable[[], Any]) -> None:
        """Record ``fn``'s kernels as the graph (nothing runs: :meth:`launch` runs them)."""
        self._graph = None
        with self.allocating(), self.stream:
            self.stream.begin_capture()
            try:
                fn()
            except BaseException:
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                raise
            self._graph = self.stream.end_capture()

    def launch(self) -> None:
        self._graph.launch(stream=self.stream)

    def drop(self) -> None:
        """Forget the graph (its arrays were replaced); the pool is kept for the next capture."""
        self._graph = None
