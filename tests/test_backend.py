"""Devices, moving arrays, the CUDA probe and the fallback rules."""

import importlib.util
import re
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet import backend
from xpnet.backend import libraries, registry


def test_cuda_available_never_raises_and_is_bool():
    assert isinstance(xn.cuda_available(), bool)


def test_cuda_available_false_when_import_breaks(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *a, **k):
        if name == "cupy":
            raise OSError("libcuda.so: cannot open shared object file")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", broken)
    monkeypatch.setattr(libraries, "_cupy_probed", False)
    monkeypatch.setattr(libraries, "_cupy", None)
    monkeypatch.setattr(libraries, "_cupy_error", None)
    assert xn.cuda_available() is False
    assert "libcuda.so" in backend.cuda_unavailable_reason()


def test_cpu_device():
    dev = xn.device("cpu")
    assert dev.name == "cpu" and dev.is_numpy
    assert xn.device(dev) is dev
    a = dev.xp.zeros((2,), dtype=dev.xp.float32)
    assert isinstance(a, np.ndarray)


def test_auto_without_cuda_is_cpu(no_cuda):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xn.device("auto").name == "cpu"


@pytest.mark.parametrize("spec", ["cuda", "cuda:1", "CUDA:0"])
def test_cuda_without_gpu_warns_once_with_reason_and_falls_back(no_cuda, spec):
    with pytest.warns(xn.XpnetDeviceWarning, match="cupy is not installed") as rec:
        dev = xn.device(spec)
    assert len(rec) == 1
    assert dev.name == "cpu"


def test_cuda_without_gpu_and_no_fallback_raises(no_cuda):
    with pytest.raises(RuntimeError, match="not usable: cupy is not installed"):
        xn.device("cuda", fallback=False)


def test_xpnet_device_env_forces_cpu(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xn.device("cuda").name == "cpu"
        assert xn.device("auto").name == "cpu"
    with pytest.raises(ValueError, match="whole number"):  # a typo is not hidden by the environment's device
        xn.device("cuda:x")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "tpu"])
def test_bad_device_spec(spec):
    with pytest.raises(ValueError, match="device"):
        xn.device(spec)


@pytest.mark.parametrize("spec,meant", [("gpu", "cuda"), ("GPU:1", "cuda:1"), ("mps", "torch:mps"),
                                        ("torch:gpu", "torch:cuda"), ("jax:cuda:0", "jax:gpu:0")])
def test_another_librarys_device_name_gets_a_did_you_mean(spec, meant):
    with pytest.raises(ValueError, match=re.escape(f"(did you mean {meant!r}?)")):
        xn.device(spec)


def test_xpnet_device_env_takes_the_library_strings(monkeypatch):
    """XPNET_DEVICE=torch:cpu sends "auto" and "cuda" there and leaves every other request alone."""
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    monkeypatch.setenv("XPNET_DEVICE", "torch:cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xn.device("cpu").name == "cpu"
        assert xn.device("auto").name == "torch:cpu" and xn.device("cuda:1").name == "torch:cpu"
    monkeypatch.setenv("XPNET_DEVICE", "jax:gpu:0")  # understood without importing JAX for "cpu"
    assert xn.device("cpu").name == "cpu"
    monkeypatch.setenv("XPNET_DEVICE", "gpu")
    with pytest.raises(ValueError, match=r"XPNET_DEVICE='gpu' .*'torch:cpu'.*\(did you mean 'cuda'\?\)"):
        xn.device("cpu")


def test_bad_device_type():
    with pytest.raises(TypeError, match="device"):
        xn.device(3)


def test_round_trip_to_device_and_back(dev):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = xn.to_device(host, dev)
    assert xn.backend.device_of(a) == dev
    assert xn.to_device(a, dev) is a  # already there: no copy
    back = xn.to_numpy(a)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)


def test_to_device_casts_dtype(dev):
    a = xn.to_device(np.arange(3), dev, dtype="float32")
    assert str(a.dtype).endswith("float32")


def test_strict_device1_refuses_hidden_host_copies():
    strict = pytest.importorskip("array_api_strict")
    dev = xn.Device(strict, strict.Device("device1"))
    a = xn.to_device(np.ones(3), dev)
    with pytest.raises((RuntimeError, ValueError)):
        a + strict.asarray(np.ones(3))  # CPU_DEVICE array: mixing must fail


def test_namespace_rejects_mixed_libraries():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="two namespaces"):
        xn.backend.namespace(np.ones(2), strict.ones(2))


def test_device_equality_and_names():
    strict = pytest.importorskip("array_api_strict")
    d1 = xn.Device(strict, strict.Device("device1"))
    assert d1 == xn.Device(strict, strict.Device("device1"))
    assert d1 != xn.Device(strict)
    assert d1.name == "array_api_strict:device1"
    assert not xn.Device(strict, strict.Device("no_float64")).supports_float64()


class _Owner:
    """What holds a device generator (a layer, in xpnet)."""


def test_uniform_draws_on_the_device_reproducibly(dev):
    like = xn.to_device(np.zeros((2, 3), np.float32), dev)
    a = backend.uniform(np.random.default_rng(5), (4, 5), like, owner=_Owner())
    b = backend.uniform(np.random.default_rng(5), (4, 5), like, owner=_Owner())
    assert xn.backend.device_of(a) == dev and tuple(a.shape) == (4, 5)
    np.testing.assert_array_equal(xn.to_numpy(a), xn.to_numpy(b))
    assert 0.0 <= xn.to_numpy(a).min() and xn.to_numpy(a).max() < 1.0


def test_fast_path_registry_can_be_switched_off(monkeypatch):
    xp = xn.device("cpu").xp
    monkeypatch.setattr(registry, "_FAST_PATHS", dict(registry._FAST_PATHS))
    monkeypatch.setattr(registry, "_resolved", {})

    def portable(x):
        return x

    @backend.register_fast_path("test-op", "numpy")
    def fast(x):
        return x

    assert backend.fast_path("test-op", xp) is fast
    assert backend.fast_path("test-op", xp, portable) is fast
    previous = backend.set_fast_paths(False)
    try:
        assert backend.fast_path("test-op", xp) is None
        assert backend.fast_path("test-op", xp, portable) is portable
    finally:
        backend.set_fast_paths(previous)


def test_a_fast_path_for_some_inputs_sends_the_others_to_the_portable_path(monkeypatch):
    xp = xn.device("cpu").xp
    monkeypatch.setattr(registry, "_FAST_PATHS", dict(registry._FAST_PATHS))
    monkeypatch.setattr(registry, "_resolved", {})
    monkeypatch.setattr(registry, "_guards", {})
    monkeypatch.setattr(registry, "_answers", {})
    backend.register_fast_path("test-op", "numpy", accepts=lambda x: x.dtype == np.float32)(lambda x: "fast")
    run = backend.fast_path("test-op", xp, lambda x: "portable")
    assert run(np.zeros(2, np.float32)) == "fast"
    assert run(np.zeros(2, np.float64)) == "portable"


def test_every_family_registers_what_the_table_lists():
    """The table in xpnet.backend.registry is the one place that says which module serves which op."""
    for library, families in registry.FAMILIES.items():
        for family, needs, ops in families:
            if needs is not None and importlib.util.find_spec(needs) is None:
                continue
            # jax.numpy is itself JAX's array-API namespace; the others are array-api-compat's wrappers
            xp = np if library == "numpy" else importlib.import_module(
                "jax.numpy" if library == "jax" else f"array_api_compat.{library}")
            for op in ops:
                backend.fast_path(op, xp)
            assert registry._loaded[family] is True, family
            assert {op for (op, lib), entries in registry._FAST_PATHS.items()
                    if lib == library and any(e[0] == family for e in entries)} == set(ops)


def test_isdtype_memo_answers_per_library_and_kind():
    strict = pytest.importorskip("array_api_strict")
    np_xp = xn.device("cpu").xp
    for _ in range(2):  # the second round is answered from the memo
        assert backend.isdtype(np_xp, np.dtype("float32"), "real floating")
        assert not backend.isdtype(np_xp, np.dtype("int64"), "real floating")
        assert backend.isdtype(np_xp, np.dtype("int64"), "integral")
        assert backend.isdtype(strict, strict.float64, "real floating")
        assert not backend.isdtype(strict, strict.int32, "real floating")
        assert backend.isdtype(strict, strict.int32, "integral")
