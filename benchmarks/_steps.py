"""One training step of xpnet and of PyTorch from the same weights, and how a step is timed and
measured: shared by ``compare.py``'s table, its CUDA table (``compare_cuda.py``) and ``profile_step.py``."""

from __future__ import annotations

import time
import tracemalloc

import xpnet as xn

EPOCH = 60_000
LR = {"sgd": 0.01, "adam": 1e-3}


def torch_impl(torch, model, optimizer, device, capturable=False, compile=False):
    """The same architecture in torch.nn, starting from xpnet's weights. ``capturable``: Adam safe to
    capture in a CUDA graph; ``compile``: the network through torch.compile(mode="reduce-overhead")."""
    layers = []
    for layer in model:
        if isinstance(layer, xn.layers.Linear):
            lin = torch.nn.Linear(layer.in_features, layer.out_features)
            lin.weight.data = torch.from_numpy(xn.to_numpy(layer.params["W"]).T.copy())
            lin.bias.data = torch.from_numpy(xn.to_numpy(layer.params["b"]).copy())
            layers.append(lin)
        elif isinstance(layer, xn.layers.Conv2d):
            w = xn.to_numpy(layer.params["W"]).copy()
            conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride=layer.stride, padding=layer.padding)
            conv.weight.data = torch.from_numpy(w)
            conv.bias.data = torch.from_numpy(xn.to_numpy(layer.params["b"]).copy())
            layers.append(conv)
        elif isinstance(layer, xn.layers.BatchNorm):
            layers.append(torch.nn.BatchNorm2d(layer.num_features))
        elif isinstance(layer, xn.layers.Dropout):
            layers.append(torch.nn.Dropout(layer.p))
        elif isinstance(layer, xn.layers.ReLU):
            layers.append(torch.nn.ReLU())
        elif isinstance(layer, xn.layers.MaxPool2d):
            layers.append(torch.nn.MaxPool2d(2))
        elif isinstance(layer, xn.layers.Flatten):
            layers.append(torch.nn.Flatten())
    net = torch.nn.Sequential(*layers).to(device)
    opt = (torch.optim.SGD(net.parameters(), lr=LR["sgd"]) if optimizer == "sgd"
           else torch.optim.Adam(net.parameters(), lr=LR["adam"], capturable=capturable))
    forward = torch.compile(net, mode="reduce-overhead") if compile else net

    def step(x, t):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(forward(x), t).backward()
        opt.step()
    return step


def xpnet_impl(model, optimizer):
    loss = xn.losses.SoftmaxCrossEntropy()
    opt = xn.optim.SGD(LR["sgd"]) if optimizer == "sgd" else xn.optim.Adam(LR["adam"])

    def step(x, t):
        loss.forward(model.forward(x), t, check=False)
        model.backward(loss.backward(), input_grad=False)
        opt.step(model)
    step.optimizer = opt
    return step


def best_times(impls, steps, repeats, sync):
    """Best-of-``repeats`` seconds per step for each implementation, interleaved. Each round starts one
    implementation later than the round before, so that none always runs right after the same one (what
    one leaves behind, its allocator's freed memory or its threads still spinning, slows the next: two
    columns of one xpnet net differed by 5-9 % in a fixed order)."""
    for name, (step, x, t) in impls.items():
        step(x, t)
        sync[name]()
    best = {name: float("inf") for name in impls}
    names = list(impls)
    for round_ in range(repeats):
        first = round_ % len(names)
        for name in names[first:] + names[:first]:
            step, x, t = impls[name]
            start = time.perf_counter()
            for _ in range(steps):
                step(x, t)
            sync[name]()
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return best


def peak_memory(step, x, t, dev):
    """Bytes one step needs at its peak: traced host allocations on NumPy; on CuPy the bytes its
    memory pool holds after one step from an emptied pool (the pool keeps what the step freed)."""
    if dev.is_cupy:
        import cupy  # noqa: PLC0415 - only on --device cuda

        pool = cupy.get_default_memory_pool()
        dev.synchronize()
        pool.free_all_blocks()
        held_before = pool.total_bytes()
        step(x, t)
        dev.synchronize()
        return pool.total_bytes() - held_before
    if not dev.is_numpy:
        return float("nan")
    tracemalloc.start()
    step(x, t)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak
