"""StaticBatches (the input side of a captured step) and the rule that an epoch never reads the device.

Issue 14's groundwork for CUDA-graph capture: the full batches of an epoch gathered on the device into
buffers made once, driven by a device-side step counter, equal to BatchIterator's batches; and a
training epoch that never waits for the device between its first and last step.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pytest
from conftest import require_cuda
from test_cupy_rules import last_json, run_with_fake_cupy

import xpnet as xn
from xpnet.datasets import BatchIterator, StaticBatches


def _data(n: int = 53, d: int = 3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, 4, n).astype(np.int64)


@pytest.mark.parametrize(("n", "batch_size", "size"), [(53, 8, 1), (48, 8, 1), (53, 10, 3), (7, 7, 2)])
def test_static_batches_equal_the_full_batches_of_batch_iterator(dev, n, batch_size, size):
    """Issue 14: each gather() fills the same buffers with what BatchIterator yields, for every rank."""
    x, t = _data(n)
    xd, td = xn.to_device(x, dev), xn.to_device(t, dev)
    if xn.backend.update_rule(dev.xp) != "in place":  # JAX: no buffers to fill, refused by name
        with pytest.raises(xn.backend.XpnetBackendError, match="StaticBatches: fills buffers in place"):
            StaticBatches(BatchIterator(xd, td, batch_size=batch_size, seed=4))
        return
    for rank in range(size):
        batches = BatchIterator(xd, td, batch_size=batch_size, seed=4, rank=rank, size=size)
        static = StaticBatches(batches)
        assert len(static) == n // batch_size
        for epoch in (1, 2):
            static.load_epoch(epoch)
            eager = list(batches.epoch(epoch))[: len(static)]
            for xb, tb in eager:
                got = static.gather()
                assert got[0] is static.buffers[0] and got[1] is static.buffers[1]
                np.testing.assert_array_equal(xn.to_numpy(got[0]), xn.to_numpy(xb))
                np.testing.assert_array_equal(xn.to_numpy(got[1]), xn.to_numpy(tb))
                assert xn.backend.same_device(got[0], xd)


def test_gather_past_the_epochs_full_batches_names_the_range():
    """NumPy would raise its raw IndexError from take (CuPy's take wraps round silently)."""
    x, t = _data(53)
    static = StaticBatches(BatchIterator(x, t, batch_size=8, seed=4))
    static.load_epoch(1)
    for _ in range(len(static)):
        static.gather()
    with pytest.raises(IndexError, match=r"StaticBatches.gather: the epoch has 6 full batch\(es\) \(gather calls 1 "
                                         r"to 6 after load_epoch\), and this is call 7; call load_epoch"):
        static.gather()
    static.load_epoch(2)  # a new epoch starts the count again
    assert static.gather() is static.buffers


def test_static_batches_refuse_unshuffled_batches():
    x, t = _data()
    with pytest.raises(ValueError, match="shuffle=True"):
        StaticBatches(BatchIterator(x, t, batch_size=8, shuffle=False))


# ----------------------------------------------------------------------------------------------
# No host synchronisation inside an epoch
# ----------------------------------------------------------------------------------------------

_HOST_READS = ("__bool__", "__int__", "__float__", "__index__", "__complex__", "__array__", "__dlpack__",
               "to_device")


@contextlib.contextmanager
def _strict_reads_counted(monkeypatch):
    """Count every way an array_api_strict array can hand a value to the host, while ``flag[0]``."""
    strict = pytest.importorskip("array_api_strict")
    array_type = type(strict.asarray(0))
    flag, reads = [False], []
    for name in _HOST_READS:
        original = getattr(array_type, name)

        @functools.wraps(original)
        def counted(self, *args, _name=name, _original=original, **kwargs):
            if flag[0]:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(array_type, name, counted)
    yield flag, reads


def _inside_epochs(monkeypatch, flag):
    """Set ``flag[0]`` from an epoch's first batch to the end of its last step (the loop body runs
    between the generator's yields)."""
    original = BatchIterator.epoch

    def epoch(self, e):
        flag[0] = True
        try:
            yield from original(self, e)
        finally:
            flag[0] = False

    monkeypatch.setattr(BatchIterator, "epoch", epoch)


def _model(dropout: bool):
    xn.init.seed(0)
    layers = [xn.layers.Linear(3, 16), xn.layers.ReLU()]
    if dropout:
        layers.append(xn.layers.Dropout(0.2))
    return xn.Sequential(*layers, xn.layers.Linear(16, 4))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_epoch_never_reads_the_device(monkeypatch, optimizer):
    """Issue 14: between an epoch's first and last step xn.train reads nothing back from the device
    (array_api_strict "device1" counts every conversion to a host value); the loss and accuracy are
    read once per epoch, after the last step."""
    strict = pytest.importorskip("array_api_strict")
    dev = xn.Device(strict, strict.Device("device1"))
    x, t = _data(64)
    opt = {"sgd": lambda: xn.optim.SGD(0.1), "adam": lambda: xn.optim.Adam(1e-2)}[optimizer]
    with _strict_reads_counted(monkeypatch) as (flag, reads):
        _inside_epochs(monkeypatch, flag)
        xn.train(_model(dropout=True), (x, t), loss="cross_entropy", optimizer=opt(), epochs=2, batch_size=8,
                 device=dev, progress=False, validation=(x[:16], t[:16]))
    assert reads == [], f"host reads inside an epoch: {reads}"


def test_the_read_counter_sees_a_read_inside_an_epoch(monkeypatch):
    """The check above can fail: a callback-free loss that reads a value each step is caught."""
    strict = pytest.importorskip("array_api_strict")
    dev = xn.Device(strict, strict.Device("device1"))
    x, t = _data(64)
    loss = xn.losses.SoftmaxCrossEntropy()
    forward = loss.forward

    def reading_forward(*args, **kwargs):
        value = forward(*args, **kwargs)
        float(value)
        return value

    monkeypatch.setattr(loss, "forward", reading_forward)
    with _strict_reads_counted(monkeypatch) as (flag, reads):
        _inside_epochs(monkeypatch, flag)
        xn.train(_model(dropout=False), (x, t), loss=loss, optimizer=xn.optim.SGD(0.1), epochs=1, batch_size=8,
                 device=dev, progress=False)
    assert reads.count("__float__") == 8


def test_on_the_fake_cupy_no_step_of_an_epoch_waits_for_the_gpu(tmp_path):
    """The fake CuPy counts each time the host would wait for a GPU (a copy to the host, also CuPy's own count of a
    boolean mask's entries, a synchronize): none between an epoch's first batch and its last step, for
    classification with Dropout and Adam, for the regression losses (array-api-compat's sign on CuPy counted a
    mask each step in L1's and SmoothL1's backward) and with SpectralNorm (its clip, four a step); a loss that reads
    its value each step is caught."""
    out = last_json(run_with_fake_cupy("""
    import json, numpy as np, cupy, xpnet as xn
    from xpnet.datasets import BatchIterator
    waits, original = [], BatchIterator.epoch

    def epoch(self, e):
        batches = original(self, e)
        first = next(batches)
        start = cupy.cuda.stream.host_waits
        try:
            yield first
            yield from batches
        finally:
            waits.append(cupy.cuda.stream.host_waits - start)

    BatchIterator.epoch = epoch
    rng = np.random.default_rng(0)
    x, t, y = rng.standard_normal((64, 3), dtype=np.float32), rng.integers(0, 4, 64), rng.standard_normal((64, 4))

    class Reading(xn.losses.MeanSquaredError):
        def forward(self, y, t, check=True):
            value = super().forward(y, t, check)
            float(value)
            return value

    found = {}
    for name, loss, target in [("cross_entropy", "cross_entropy", t), ("l1", "l1", y), ("smooth_l1", "smooth_l1", y),
                               ("huber", "huber", y), ("spectral_norm", "cross_entropy", t), ("reading", Reading(), y)]:
        xn.init.seed(0)
        first = xn.layers.Linear(3, 16)
        model = xn.Sequential(xn.layers.SpectralNorm(first) if name == "spectral_norm" else first, xn.layers.ReLU(),
                              xn.layers.Dropout(0.2), xn.layers.Linear(16, 4))
        waits.clear()
        xn.train(model, (x, target if loss == "cross_entropy" else target.astype(np.float32)), loss=loss,
                 optimizer=xn.optim.Adam(1e-2), epochs=2, batch_size=8, device="cuda", progress=False)
        found[name] = list(waits)
    print(json.dumps(found))
    """, tmp_path))
    assert out.pop("reading") == [8, 8]  # each of the 8 steps of an epoch
    assert out == {name: [0, 0] for name in out}, out

_WAIT_FOR_HOST = r"""
extern "C" __global__ void wait_for_host(unsigned long long flag_address, long long max_cycles) {
    volatile int* flag = (volatile int*)flag_address;
    long long start = clock64();
    while (*flag == 0 && clock64() - start < max_cycles) { }
}
"""


def _spin_after_each_first_batch(monkeypatch, batches_class):
    """Patch ``batches_class.epoch``: right after each epoch's first batch, queue a kernel that spins until
    the host raises a flag (in pinned host memory, which the GPU reads directly), and raise the flag only
    when the epoch's last step has been enqueued. Returns the list that gets, at each epoch's end,
    whether the stream was still busy (the spinner still running: no step waited for the GPU)."""
    import cupy  # noqa: PLC0415
    import cupyx  # noqa: PLC0415

    kernel = cupy.RawKernel(_WAIT_FOR_HOST, "wait_for_host")
    flag = cupyx.empty_pinned((1,), dtype=np.int32)
    busy_at_end: list[bool] = []
    original = batches_class.epoch

    def epoch(self, e):
        batches = original(self, e)
        first = next(batches)  # an epoch's one upload (a permutation, a stream's positions) is here, before
        flag[0] = 0
        kernel((1,), (1,), (np.uint64(flag.ctypes.data), np.int64(2 * 10**10)))
        try:
            yield first
            yield from batches
        finally:
            busy_at_end.append(not cupy.cuda.get_current_stream().done)
            flag[0] = 1
            cupy.cuda.get_current_stream().synchronize()

    monkeypatch.setattr(batches_class, "epoch", epoch)
    return busy_at_end


_NEEDS_CUPYX = "needs CUDA itself (a raw kernel and pinned memory): the fake CuPy of tests/fake_cupy has no cupyx"


@pytest.mark.gpu
def test_an_epoch_never_waits_for_the_gpu(monkeypatch):
    """Issue 14, on CuPy: right after an epoch's first batch is gathered, a kernel that spins until the
    host raises a flag is queued (:func:`_spin_after_each_first_batch`). The host then enqueues every
    step and only afterwards raises the flag. A step that waited for the GPU (a read such as float(x), a
    synchronize) would have waited for the spinning kernel until it gave up (about 10 s), leaving the
    stream idle: the stream still busy when the last step is enqueued proves that no step waited. A
    first, unwatched run loads every kernel first: CUDA 12.2+ loads modules lazily, and a first launch
    may wait for the context while the spinner runs (issue 23, 6)."""
    dev = require_cuda()
    pytest.importorskip("cupyx", reason=_NEEDS_CUPYX)
    x, t = _data(640)
    xn.train(_model(dropout=True), (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(1e-2), epochs=1,
             batch_size=32, device=dev, progress=False)
    busy_at_end = _spin_after_each_first_batch(monkeypatch, BatchIterator)
    xn.train(_model(dropout=True), (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(1e-2), epochs=2,
             batch_size=32, device=dev, progress=False)
    assert busy_at_end == [True, True]


@pytest.mark.gpu
def test_an_epoch_over_a_token_stream_never_waits_for_the_gpu(monkeypatch):
    """As the test above, for a language model over a TokenStream (truncated BPTT, stateful LSTMs): no step
    of an epoch waits for the GPU (the stream's batches once uploaded their positions per step, and the
    Embedding read its range check back each step)."""
    dev = require_cuda()
    pytest.importorskip("cupyx", reason=_NEEDS_CUPYX)
    ids = xn.to_device(np.random.default_rng(0).integers(0, 20, 4000), dev)

    def run(epochs):
        xn.init.seed(0)
        model = xn.models.LanguageModel(20, 16, 32, num_layers=2, dropout=0.1)
        xn.train(model, xn.datasets.TokenStream(ids, 8, 10), loss="cross_entropy", optimizer=xn.optim.Adam(1e-2),
                 epochs=epochs, device=dev, progress=False)

    run(1)  # loads every kernel first (lazy module loading, issue 23, 6)
    busy_at_end = _spin_after_each_first_batch(monkeypatch, xn.datasets.TokenStream)
    run(2)
    assert busy_at_end == [True, True]





def test_a_for_loop_over_the_iterator_itself_says_to_ask_for_an_epoch():
    """A DataLoader habit, `for xb, yb in batches`, got Python's bare 'not iterable'."""
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    batches = xn.datasets.BatchIterator(x, np.arange(10), batch_size=4)
    with pytest.raises(TypeError, match=r"for xb, yb in batches.epoch\(epoch\)"):
        for _ in batches:
            pass
    assert [len(xb) for xb, _ in batches.epoch(1)] == [4, 4, 2]
    stream = xn.datasets.TokenStream(np.arange(50), batch_size=2, time_size=5)
    with pytest.raises(TypeError, match=r"for xs, ts in stream.epoch\(epoch\)"):
        list(stream)
    assert len(list(stream.epoch(1))) == len(stream)
