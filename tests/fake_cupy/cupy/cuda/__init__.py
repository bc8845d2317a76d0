"""The fake's ``cupy.cuda``: devices, a runtime that answers, and streams that never wait."""

import os
from types import SimpleNamespace

from . import device as _device
from .device import Device

runtime = SimpleNamespace(getDeviceCount=_device.getDeviceCount, getDevice=_device.getDevice,
                          setDevice=_device.setDevice,
                          deviceGetPCIBusId=lambda i: f"0000:{int(i):02x}:00.0",
                          cudaDevAttrMultiProcessorCount=16,
                          deviceGetAttribute=lambda attribute, i: int(os.environ.get("FAKE_CUPY_SMS", "132")),
                          is_hip=False)


class Stream:
    done = True
    ptr = 0

    def synchronize(self):
        pass


ExternalStream = Stream
_stream = Stream()


def get_current_stream():
    return _stream


def get_device_id() -> int:
    return _device.getDevice()
