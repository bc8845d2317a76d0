"""The fake's streams and stream capture (``cupy/cuda/stream.pyx``, ``graph.pyx`` of CuPy 14; CUDA's
stream-capture rules).

Work runs at once (nothing is queued), except on a stream that is capturing: there a kernel is
recorded, not run, as CUDA records it (``cupy._dispatch._kernel``); its new output arrays hold garbage (NaN or
all-ones bits) until the graph is launched. ``end_capture()`` returns a :class:`Graph` whose
``launch()`` runs the records in order on the same arrays, never the Python that made them: a Python
number given to a kernel at capture time stays that number in every launch.

What CUDA refuses on a capturing stream raises as CuPy raises it, and, as in CUDA, invalidates the
capture (``end_capture`` then raises): synchronising the stream or the device. A device-to-host copy
(``get``, ``float``/``int``/``bool``, ``item``...) and a host-to-device one CuPy refuses with a
``RuntimeError`` before calling CUDA, so the capture goes on (``cupy/cuda/memory.pyx``). cuBLAS, cuSOLVER
and the legacy cuRAND calls raise CuPy's ``NotImplementedError`` (``cupy_backends/cuda/libs/*.pyx``:
``setStream``).
"""

import collections
import itertools
import os
import traceback

from . import device as _device

_pointers = itertools.count(0x1000)
_stacks: dict[int, list] = {}  # device id -> its streams made current by ``with``/``use`` (the last one is current)
_active: dict[int, "Stream"] = {}  # ptr -> a stream capturing now
# How many times the host waited for the GPU: a device-to-host copy (also CuPy's own, sizing a boolean mask), a
# synchronize. Nothing here runs late, so tests count these to find a step that would wait on a GPU. With
# FAKE_CUPY_WAIT_TRACE=1 each wait also appends the Python stack that made it to ``wait_stacks`` (where to look).
host_waits = 0
wait_stacks: list[str] = []
# What a GPU would be asked to do (the fake's own counters, for tests and benchmarks/launches.py): ``launches``
# counts each kernel by name (every call of ``cupy._dispatch._kernel``, run or recorded: ufuncs, functions that are
# not views, ElementwiseKernel/ReductionKernel/RawKernel calls; ``zeros``/``empty``/``full``... too, as CuPy fills
# or memsets them), ``uploads`` each host-to-device copy (``asarray``/``array`` of host data); with
# FAKE_CUPY_UPLOAD_TRACE=1 an upload appends its stack to ``upload_stacks``.
launches: collections.Counter = collections.Counter()
uploads = 0
upload_stacks: list[str] = []


def _stack() -> str:
    return "".join(traceback.format_stack()[:-2])


def waited():
    global host_waits
    host_waits += 1
    if os.environ.get("FAKE_CUPY_WAIT_TRACE") == "1":
        wait_stacks.append(_stack())


def launched(name):
    launches[name] += 1


def uploaded():
    global uploads
    uploads += 1
    if os.environ.get("FAKE_CUPY_UPLOAD_TRACE") == "1":
        upload_stacks.append(_stack())


class CUDARuntimeError(RuntimeError):
    """``cupy_backends.cuda.api.runtime.CUDARuntimeError``: "<error name>: <error string>"."""

    def __init__(self, name, text):
        self.status = name
        super().__init__(f"{name}: {text}")


UNSUPPORTED = ("cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is capturing")
INVALIDATED = ("cudaErrorStreamCaptureInvalidated", "operation failed due to a previous error during capture")


class _Record:
    """One kernel of a capture: ``run()`` recomputes it on the memory of its arrays as it is then;
    ``targets`` are the memory of the new arrays it made at capture time (None where a result is a view
    or one of its in-place outputs), into which each launch copies what ``run`` returns."""

    def __init__(self, name, run, targets):
        self.name, self.run, self.targets = name, run, targets


class _Capture:
    def __init__(self, stream):
        self.stream, self.records, self.allocations, self.invalid = stream, [], [], None


class Stream:
    """``cupy.cuda.Stream(null=False, non_blocking=False, ptds=False, priority=None)``."""

    null = None
    ptds = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        if null:
            self.ptr, self.device_id = 0, -1
        elif ptds:
            self.ptr, self.device_id = 2, -1
        else:
            self.ptr, self.device_id = next(_pointers), _device.getDevice()
        self.non_blocking = bool(non_blocking) and not null and not ptds
        self._capture = None

    def __eq__(self, other):
        return isinstance(other, Stream) and self.ptr == other.ptr

    def __hash__(self):
        return self.ptr

    def __repr__(self):
        return f"<Stream {self.ptr} (device {self.device_id})>"

    def _device_id(self):
        return _device.getDevice() if self.device_id == -1 else self.device_id

    def __enter__(self):
        if self.device_id not in (-1, _device.getDevice()):
            raise RuntimeError(f"This stream ({self.ptr}) belongs to device {self.device_id} while the current "
                               f"device is {_device.getDevice()}")
        _stacks.setdefault(self._device_id(), []).append(self)
        return self

    def __exit__(self, *args):
        _stacks[self._device_id()].pop()

    def use(self):
        stack = _stacks.setdefault(self._device_id(), [])
        if stack:
            stack[-1] = self
        else:
            stack.append(self)
        return self

    @property
    def is_non_blocking(self):
        return self.non_blocking

    @property
    def done(self):
        return True

    def synchronize(self):
        if self._capture is not None:
            _refuse(self._capture)
        waited()

    def record(self, event=None):
        return event if event is not None else Event()

    def wait_event(self, event):
        pass

    def begin_capture(self, mode=None):
        if self.ptr in (0, 1):
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if self._capture is not None:
            raise CUDARuntimeError("cudaErrorIllegalState", "the operation cannot be performed in the present state")
        self._capture = _Capture(self)
        _active[self.ptr] = self

    def end_capture(self):
        capture, self._capture = self._capture, None
        _active.pop(self.ptr, None)
        if capture is None:
            raise CUDARuntimeError("cudaErrorIllegalState", "the operation cannot be performed in the present state")
        if capture.invalid is not None:
            raise CUDARuntimeError(*INVALIDATED)
        graph = Graph.__new__(Graph)
        graph._records, graph._allocations = capture.records, capture.allocations
        return graph

    def is_capturing(self):
        if self._capture is not None and self._capture.invalid is not None:
            raise RuntimeError("the stream was capturing, but an error has invalidated the capture sequence")
        return self._capture is not None


Stream.null = Stream(null=True)
Stream.ptds = Stream(ptds=True)
ExternalStream = Stream


class Event:
    """CuPy's ``Event(block=False, disable_timing=False, interprocess=False)``; the fake's kernels have run
    when they return, so an event is always done."""

    done = True

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        waited()


def get_current_stream(device_id=-1):
    stack = _stacks.get(_device.getDevice() if device_id == -1 else device_id)
    return stack[-1] if stack else Stream.null


def capturing():
    """The capture under way on the current stream, or None (what a kernel launched now joins)."""
    return get_current_stream()._capture


def captures_on(device_id):
    """Every capture under way on GPU ``device_id``."""
    return [s._capture for s in _active.values() if s._device_id() == device_id]


def _refuse(capture):
    """A synchronous call on a capturing stream: CUDA's error, and the capture is invalidated."""
    capture.invalid = UNSUPPORTED
    raise CUDARuntimeError(*UNSUPPORTED)


class Graph:
    """``cupy.cuda.Graph``: made by ``Stream.end_capture()`` only."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("currently this class cannot be initiated by the user and must be created via "
                                  "stream capture")

    def launch(self, stream=None):
        """Run the recorded kernels in order, on the arrays they had at capture time."""
        from cupy._dispatch import _freed_into_shared_pool
        freed = _freed_into_shared_pool(self._allocations)
        if freed:
            raise RuntimeError(f"fake CuPy: this graph writes into {len(freed)} array(s) made during the capture from "
                               f"the shared memory pool and freed since ({', '.join(freed[:3])}); on a GPU that "
                               "memory now belongs to other arrays, which the launch overwrites. Capture under a "
                               "pool of the graph's own: with cupy.cuda.using_allocator(pool.malloc)")
        target = get_current_stream() if stream is None else stream
        if target._capture is not None:
            raise NotImplementedError("fake CuPy: launching a graph inside another capture is not emulated")
        from cupy._dispatch import _leaves
        for record in self._records:
            for target, value in zip(record.targets, list(_leaves(record.run()))):
                if target is not None:
                    target[...] = value

    def upload(self, stream=None):
        pass

    def __len__(self):
        return len(self._records)

    @property
    def kernels(self):
        """The names of the recorded kernels, in order (the fake's own, for tests)."""
        return [r.name for r in self._records]


