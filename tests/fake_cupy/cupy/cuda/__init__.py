"""The fake's ``cupy.cuda``: devices, a runtime that answers, streams with capture, graphs, memory pools."""

import os
from types import SimpleNamespace

from . import device as _device
from . import memory, stream
from .device import Device
from .memory import MemoryPool, PinnedMemoryPool, get_allocator, set_allocator, using_allocator
from .stream import CUDARuntimeError, Event, ExternalStream, Graph, Stream, get_current_stream

runtime = SimpleNamespace(getDeviceCount=_device.getDeviceCount, getDevice=_device.getDevice,
                          setDevice=_device.setDevice,
                          deviceGetPCIBusId=lambda i: f"0000:{int(i):02x}:00.0",
                          cudaDevAttrMultiProcessorCount=16,
                          deviceGetAttribute=lambda attribute, i: int(os.environ.get("FAKE_CUPY_SMS", "132")),
                          is_hip=False, CUDARuntimeError=CUDARuntimeError,
                          streamCaptureModeGlobal=0, streamCaptureModeThreadLocal=1, streamCaptureModeRelaxed=2)


def get_device_id() -> int:
    return _device.getDevice()
