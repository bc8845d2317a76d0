"""PyTorch's answers to launch-bound small steps on CUDA, as baselines for ``compare.py --device cuda``.

- :func:`graphed`: the whole training step (forward, loss, backward, optimizer) captured once with
  ``torch.cuda.graph`` and replayed, as in PyTorch's "whole-network capture" recipe: static input
  buffers, warm-up on a side stream, ``capturable=True`` for Adam.
- :func:`peak_bytes`: the device bytes one step of training needs above what is allocated before it.

:func:`graphed` returns None, with the reason printed, where capture fails.
"""

from __future__ import annotations

from typing import Any, Callable

WARMUP = 3


def graphed(torch: Any, make_step: Callable[[bool], Callable[[Any, Any], None]], x: Any, t: Any) -> Callable | None:
    """``make_step(capturable)`` builds a fresh eager step ``step(x, t)``; returns ``replay(x, t)``, which
    replays the captured step. ``x`` and ``t`` are its static input buffers: replayed on them it copies nothing, as
    xpnet's captured cell (``compare_cuda.xpnet_graph_impl``) launches its graph on a fixed batch; another batch
    is copied into them first (``static_x.copy_(x)``, as in PyTorch's recipe)."""
    try:
        step = make_step(True)
        static_x, static_t = x, t
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                step(static_x, static_t)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step(static_x, static_t)
    except Exception as exc:  # noqa: BLE001 - a baseline that cannot run is reported and skipped
        print(f"note: torch.cuda.graph capture failed ({type(exc).__name__}: {exc}); its column is skipped")
        return None

    def replay(xb: Any, tb: Any) -> None:
        if xb.data_ptr() != static_x.data_ptr():
            static_x.copy_(xb)
            static_t.copy_(tb)
        graph.replay()

    return replay


def peak_bytes(torch: Any, step: Callable[[Any, Any], None], x: Any, t: Any) -> int:
    """Device bytes one step needs at its peak, above what was allocated before it: a step of training, after
    one untimed step (the first makes the optimizer's state, Adam's two moments, which stays; xpnet's figure,
    ``_steps.peak_memory``, is taken after its steps were timed)."""
    step(x, t)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step(x, t)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before
