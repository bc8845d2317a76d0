"""``compare.py --device cuda``'s table: xpnet on CuPy, eager and with its step captured as a CUDA graph,
against PyTorch eager, PyTorch's captured step (``torch_cuda.py``) and, with ``--compile``, torch.compile;
below it the LSTM language model on CUDA. Imported by ``compare.py`` only on ``--device cuda``."""

from __future__ import annotations

import lstm_lm
import torch_cuda
from _steps import EPOCH, best_times, peak_memory, torch_impl, xpnet_impl


def xpnet_graph_impl(make, optimizer, dev, x, t):
    """xpnet's step captured as a CUDA graph (``xpnet.backend.graphs.StepGraph``, what ``xn.train(graph=...)``
    launches), on a model of its own (``launch.model``): ``(launch, sync)``, or None where a layer cannot be
    captured. Two eager warm-up steps come first: after them and ``n`` launches the model has taken ``2 + n``
    steps."""
    from xpnet.backend.graphs import StepGraph  # noqa: PLC0415 - imports CuPy
    from xpnet.optim.base import DeviceScalars  # noqa: PLC0415
    from xpnet.training.graph import CAPTURABLE, CONTAINERS  # noqa: PLC0415

    model = make()
    if not all(type(m) in CAPTURABLE + CONTAINERS for m in model.named_modules().values()):
        return None
    model.to(dev)
    step = xpnet_impl(model, optimizer)
    graph = StepGraph(dev)
    with graph.on_stream(), graph.allocating():
        step.optimizer.device_scalars = DeviceScalars(dev.xp, dev.native)
        step.optimizer.device_scalars.set(step.optimizer.lr, 0)
        for i in range(2):  # warm-up: the optimizer's state and the pool's blocks; the second builds the capture's
            with graph.as_captured(i == 1):  # kernels (xpnet's product) before the capture, as xn.train's does
                step(x, t)
    graph.capture(lambda: step(x, t))

    def launch(x_, t_):
        graph.launch()
    launch.model = model
    return launch, graph.stream.synchronize


def xpnet_cells(make, optimizer, dev, x, t):
    """xpnet's side of one row on CuPy, without PyTorch: ``(impls, sync)`` for ``best_times``, "xpnet" the eager
    step (``impls["xpnet"][0].model`` its model) and "xpnet-graph" the captured one, left out, with a note printed,
    where the capture fails or a layer cannot be captured. ``x``, ``t``: the batch on the host."""
    model = make().to(dev)
    step = xpnet_impl(model, optimizer)
    step.model = model
    impls, sync = {"xpnet": (step, dev.asarray(x), dev.asarray(t))}, {"xpnet": dev.synchronize}
    try:
        captured = xpnet_graph_impl(make, optimizer, dev, dev.asarray(x), dev.asarray(t))
    except Exception as exc:  # noqa: BLE001 - a column that cannot run is skipped, saying why
        captured = None
        print(f"note: xpnet's captured step failed ({type(exc).__name__}: {exc}); its cell is skipped")
    if captured is not None:
        impls["xpnet-graph"], sync["xpnet-graph"] = (captured[0], None, None), captured[1]
    return impls, sync


def cuda_table(args, dev, torch, rows):
    """xpnet on CuPy against PyTorch eager, PyTorch's graph-captured step and (``--compile``) torch.compile;
    ``rows``: compare.py's ``(workload, title, make, batch, optimizer, x, t)``, the data on the host."""
    names = ["xpnet", "xpnet-graph", "torch", "torch-graph"] + (["torch-compile"] if args.compile else [])
    heads = {"xpnet": "xpnet (CuPy)", "xpnet-graph": "xpnet CUDA graph", "torch": "PyTorch eager",
             "torch-graph": "PyTorch CUDA graph",
             "torch-compile": "torch.compile reduce-overhead"}
    print("| workload | batch | optimizer | " + " | ".join(f"{heads[n]} s/epoch (x eager)" for n in names)
          + " | xpnet MiB/step (CuPy pool) | PyTorch eager MiB/step |")
    print("|---|---:|---|" + "---:|" * (len(names) + 2))
    for _, title, make, batch, optimizer, x, t in rows:
        tx, tt = torch.from_numpy(x).to("cuda"), torch.from_numpy(t).to("cuda")
        model = make()
        eager = torch_impl(torch, model, optimizer, "cuda")
        impls = {"torch": (eager, tx, tt)}
        graphed = torch_cuda.graphed(
            torch, lambda capturable: torch_impl(torch, model, optimizer, "cuda", capturable=capturable), tx, tt)
        if graphed is not None:
            impls["torch-graph"] = (graphed, tx, tt)
        if args.compile:
            compiled = torch_impl(torch, model, optimizer, "cuda", compile=True)
            try:
                compiled(tx, tt)
                impls["torch-compile"] = (compiled, tx, tt)
            except Exception as exc:  # noqa: BLE001 - a baseline that cannot run is skipped
                print(f"note: torch.compile failed ({type(exc).__name__}: {exc}); its column is skipped")
        torch_peak = torch_cuda.peak_bytes(torch, eager, tx, tt)
        sync = {name: torch.cuda.synchronize for name in impls}
        ours, our_sync = xpnet_cells(make, optimizer, dev, x, t)
        impls.update(ours)
        sync.update(our_sync)
        best = best_times(impls, args.steps, args.repeats, sync)
        peak = peak_memory(*impls["xpnet"], dev)
        per_epoch = {k: v * EPOCH / batch for k, v in best.items()}

        def cell(name):  # epoch seconds and the ratio to PyTorch eager
            if name not in per_epoch:
                return "-"
            return f"{per_epoch[name]:.3f} ({per_epoch[name] / per_epoch['torch']:.2f}x)"

        print(f"| {title} | {batch} | {optimizer} | " + " | ".join(cell(n) for n in names)
              + f" | {peak / 2**20:.1f} | {torch_peak / 2**20:.1f} |", flush=True)
    if args.lstm_steps:
        print()
        lstm_lm.report(torch, args.lstm_steps, args.repeats, *args.lstm_size, device="cuda")
