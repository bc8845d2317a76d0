"""Low-level collectives, run by tests/test_distributed.py as ``mpiexec -n N python collectives.py [cuda]``.

With ``cuda`` the checks also run on CuPy arrays on ``comm.device("cuda")``.

Every check is an assert; a failure ends the job through the abort hook with the traceback.
The last line each rank prints is ``collectives ok: rank r of N``.
"""

import sys

import numpy as np
import array_api_strict as strict
from mpi4py import MPI

import xpnet as xn
from xpnet.backend import device_of

comm = xn.distributed.init()
rank, size = comm.rank, comm.size
DEVICES = [(xn.device("cpu"), "float64"), (xn.Device(strict, strict.Device("device1")), "float32")]
if "cuda" in sys.argv[1:]:
    DEVICES += [(comm.device("cuda", fallback=False), "float32"), (comm.device("cuda"), "float64")]


def make_model(dev, dtype, seed, hidden=4):
    xn.init.seed(seed)
    layers = [xn.layers.Linear(3, hidden), xn.layers.ReLU(), xn.layers.Linear(hidden, 2), xn.layers.BatchNorm(2)]
    return xn.Sequential(*layers).to(dev, dtype)


def on_host(named):
    return {k: xn.to_numpy(v).copy() for k, v in named.items()}


def fill_grads(model, rng, dtype):
    """Gradients drawn from ``rng`` (the same on every rank that replays it); returns them on the host."""
    drawn = {}
    for i, layer in enumerate(model.layers):
        layer.grads = {}
        for key, p in layer.params.items():
            g = rng.normal(size=tuple(p.shape)).astype(dtype)
            drawn[f"{i}.{key}"] = g
            layer.grads[key] = xn.to_device(g, device_of(p))
    return drawn


def assert_placed_like(arrays, dev, dtype):
    for name, a in arrays.items():
        assert device_of(a) == dev, f"{name} moved from {dev} to {device_of(a)}"
        assert str(a.dtype).endswith(dtype), f"{name} changed dtype to {a.dtype}"


def check_topology():
    assert comm.is_root == (rank == 0)
    assert (comm.local_rank, comm.local_size) == (rank, size)  # one node
    assert xn.distributed.init() is comm
    assert comm.bcast_object({"from": rank}, root=size - 1) == {"from": size - 1}
    comm.barrier()


def check_broadcast_params(dev, dtype):
    model = make_model(dev, dtype, seed=rank)
    model.layers[3].buffers["running_mean"] = dev.asarray(np.full(2, rank), dtype=dtype)
    comm.broadcast_params(model, root=size - 1)
    expected = make_model(dev, dtype, seed=size - 1)
    expected.layers[3].buffers["running_mean"] = dev.asarray(np.full(2, size - 1), dtype=dtype)
    expected = on_host(expected.state())
    for theirs in comm.mpi_comm.allgather(on_host(model.state())):
        assert theirs.keys() == expected.keys()
        for k in expected:
            np.testing.assert_array_equal(theirs[k], expected[k], err_msg=k)
    assert_placed_like(model.state(), dev, dtype)


def check_allreduce_grads(dev, dtype, counts, stale_rank=None):
    """Grads of rank r drawn from seed 100 + r; ``stale_rank`` (count 0) holds NaN or no gradients."""
    model = make_model(dev, dtype, seed=0)
    drawn = [fill_grads(make_model(dev, dtype, seed=0), np.random.default_rng(100 + r), dtype) for r in range(size)]
    fill_grads(model, np.random.default_rng(100 + rank), dtype)
    if rank == stale_rank:
        model.layers[0].grads = {k: v * np.nan for k, v in model.layers[0].grads.items()}
        model.layers[2].grads = {}
    comm.allreduce_grads(model, count=counts[rank])
    got = on_host(model.named_grads())
    tol = 1e-12 if dtype == "float64" else 2e-6
    for name in drawn[0]:
        expected = sum(c * d[name].astype(np.float64) for c, d in zip(counts, drawn)) / sum(counts)
        np.testing.assert_allclose(got[name], expected, rtol=tol, atol=tol, err_msg=name)
    for theirs in comm.mpi_comm.allgather(got):
        for name in got:
            np.testing.assert_array_equal(theirs[name], got[name], err_msg=f"{name} differs between ranks")
    assert_placed_like(model.named_grads(), dev, dtype)


def check_reductions(dev, dtype):
    xp = dev.xp
    host = np.array([rank, 1.0, 2.0 * rank], dtype=dtype)
    a = dev.asarray(host)
    total = comm.allreduce_sum(a)
    np.testing.assert_array_equal(xn.to_numpy(total), [size * (size - 1) / 2, size, size * (size - 1)])
    np.testing.assert_array_equal(xn.to_numpy(a), host)  # the input is left alone
    assert_placed_like({"sum": total}, dev, dtype)
    mean = comm.allreduce_mean(a)
    np.testing.assert_allclose(xn.to_numpy(mean), [(size - 1) / 2, 1.0, size - 1.0])
    assert_placed_like({"mean": mean}, dev, dtype)
    count = xp.asarray(rank + 1, dtype=xp.int64, device=dev.native)
    summed = comm.allreduce_sum(count)
    assert summed.shape == () and int(summed) == size * (size + 1) // 2 and device_of(summed) == dev
    try:
        comm.allreduce_mean(count)
    except TypeError as exc:
        assert "allreduce_sum" in str(exc)
    else:
        raise AssertionError("allreduce_mean accepted an integer array")


def check_numbers():
    assert comm.allreduce_sum(rank) == size * (size - 1) // 2
    total = comm.allreduce_sum(np.int64(rank))
    assert type(total) is int and total == size * (size - 1) // 2
    mean = comm.allreduce_mean(rank)
    assert isinstance(mean, float) and mean == (size - 1) / 2


def check_scalars_of_either_kind(dev):
    """A rank that saw no data sums a 0-d array where the others sum NumPy scalars (what the trainer's
    counts are): every rank gets the sum, each in the kind it passed. This ended the job in MPICH's
    "Message truncated" (exit 142)."""
    xp, last = dev.xp, rank == size - 1
    count = xp.zeros((), dtype=xp.int64, device=dev.native) if last else np.int64(rank + 1)
    total = comm.allreduce_sum(count)
    assert int(total) == size * (size - 1) // 2, total
    assert (total.shape == () and device_of(total) == dev) if last else type(total) is int
    loss = xp.zeros((), dtype=xp.float32, device=dev.native) if last else np.float32(rank + 0.25)
    total = comm.allreduce_sum(loss)
    assert float(total) == sum(r + 0.25 for r in range(size - 1)), total
    assert (total.dtype == xp.float32 and device_of(total) == dev) if last else type(total) is float


class CountingComm:
    """An mpi4py communicator that counts the Allreduce calls going through it."""

    def __init__(self, inner):
        self.inner, self.allreduces = inner, 0

    def Allreduce(self, *args, **kwargs):
        self.allreduces += 1
        return self.inner.Allreduce(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def check_one_message_per_step():
    counting = CountingComm(MPI.COMM_WORLD)
    counted = xn.distributed.init(counting)
    calls = []
    for depth in (1, 6):
        xn.init.seed(0)
        model = xn.Sequential(*[xn.layers.Linear(4, 4) for _ in range(depth)]).to("cpu", "float64")
        fill_grads(model, np.random.default_rng(rank), "float64")
        counted.allreduce_grads(model, count=1)  # the first call also checks the model
        before = counting.allreduces
        counted.allreduce_grads(model, count=1)
        calls.append(counting.allreduces - before)
    assert calls[0] == calls[1] <= 2, f"Allreduce calls per step with 2 and 12 parameters: {calls}"


def expect_error(kind, fragments, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except kind as exc:
        for f in fragments:
            assert f in str(exc), f"{f!r} not in: {exc}"
    else:
        raise AssertionError(f"{fn.__name__} did not raise {kind.__name__}")


def check_errors():
    model = make_model(xn.device("cpu"), "float64", seed=0)
    expect_error(ValueError, ["every rank passed count=0"], comm.allreduce_grads, model, count=0)
    comm.allreduce_grads(model, count=0, empty_ok=True)  # zeros: grads kept a Grads, whose missing key says why
    expect_error(KeyError, ["Linear.grads['weight']", "PyTorch's 'weight' is 'W' here"],
                 model.layers[0].grads.__getitem__, "weight")
    expect_error(ValueError, ["count must be an int >= 0"], comm.allreduce_grads, model, count=-1)
    expect_error(ValueError, ["root must be a rank"], comm.broadcast_params, model, root=size)
    if size == 1:
        return
    wider = make_model(xn.device("cpu"), "float64", seed=0, hidden=5 if rank == 1 else 4)
    expect_error(ValueError, ["different models", "rank 1", "'0.W'", "(3, 5)"], comm.broadcast_params, wider)
    other_dtype = make_model(xn.device("cpu"), "float32" if rank == size - 1 else "float64", seed=0)
    expect_error(ValueError, ["different models", f"rank {size - 1}", "float32"],
                 comm.allreduce_grads, other_dtype, count=1)
    last = rank == size - 1
    expect_error(ValueError, ["allreduce_sum: the ranks passed different kinds of value",
                              f"rank {size - 1}: a float64 array (3,)"], comm.allreduce_sum, np.ones(3 if last else 2))
    expect_error(ValueError, [f"rank {size - 1}: a real number (or 0-d array)"],
                 comm.allreduce_sum, 0.5 if last else 1)
    expect_error(TypeError, [f"allreduce_sum: rank {size - 1}: expected a Python number or an array, got str"],
                 comm.allreduce_sum, "1" if last else 1)
    comm.barrier()  # every rank got here: no rank hangs after a mismatch


check_topology()
check_numbers()
for dev, dtype in DEVICES:
    check_scalars_of_either_kind(dev)
    check_broadcast_params(dev, dtype)
    check_allreduce_grads(dev, dtype, counts=[2 * r + 3 for r in range(size)])
    check_allreduce_grads(dev, dtype, counts=[0 if r == 1 else r + 2 for r in range(size)], stale_rank=1)
    check_reductions(dev, dtype)
check_one_message_per_step()
check_errors()

def nccl_importable():
    try:
        from cupy.cuda import nccl
    except Exception:
        return False
    return bool(getattr(nccl, "available", False))


# What this rank sees, for the test to say which transport it should have chosen.
seen = f"NCCL importable {nccl_importable()}, {xn.backend.cuda_device_count()} GPU(s)" if "cuda" in sys.argv[1:] else ""
print(f"collectives ok: rank {rank} of {size}, CuPy arrays through {comm.cupy_transport}; {seen}", flush=True)
