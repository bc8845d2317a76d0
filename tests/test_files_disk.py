"""Saves and loads respect what is on disk: symlinks, devices, FIFOs, permission bits, full disks, and
damaged files (xpnet/io/paths.py, atomic.py, npz.py).

Covers issue 27, "Files: a save respects what is on disk".
"""

from __future__ import annotations

import errno
import json
import os
import random
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xpnet as xn
from xpnet.io.atomic import TEMP_SUFFIX
from xpnet.io.npz import MAX_RECORD_DEPTH

posix_only = pytest.mark.skipif(os.name != "posix", reason="symlinks, FIFOs and devices as POSIX has them")


def model(seed=0):
    xn.init.seed(seed)
    return xn.Sequential(xn.layers.Linear(3, 4), xn.layers.ReLU(), xn.layers.Linear(4, 2))


def same_weights(a, b):
    return list(a.state()) == list(b.state()) and all(
        np.array_equal(xn.to_numpy(v), xn.to_numpy(b.state()[k])) for k, v in a.state().items())


def temps(*folders):
    return [f for folder in folders for f in os.listdir(folder) if f.endswith(TEMP_SUFFIX)]


@posix_only
def test_a_save_through_a_symlink_replaces_its_target(tmp_path):
    """A save to a symlink replaced the link with a file and left the target stale; now the target is
    replaced (atomically, in its own folder) and the link stays."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "store").mkdir()
    target, link = tmp_path / "store" / "m.npz", tmp_path / "runs" / "latest.npz"
    model(0).save(target)
    os.symlink(os.path.join("..", "store", "m.npz"), link)
    model(1).save(link)
    assert os.path.islink(link) and os.readlink(link) == os.path.join("..", "store", "m.npz")
    assert same_weights(xn.load(target), model(1))
    assert temps(tmp_path / "runs", tmp_path / "store") == []


@posix_only
def test_a_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.npz"
    os.symlink(tmp_path / "new.npz", link)
    model().save(link)
    assert os.path.islink(link) and same_weights(xn.load(tmp_path / "new.npz"), model())


def _char_device(tmp_path):
    """A character device to save onto: as root a node of our own like /dev/null (so that a broken save
    replaces nothing that matters), else /dev/null itself, which a user cannot replace."""
    if os.geteuid() != 0:
        return "/dev/null"
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    return str(node)


@posix_only
@pytest.mark.parametrize("what", ["fifo", "folder", "device", "link to fifo"])
def test_a_save_refuses_anything_but_a_regular_file(tmp_path, what):
    """Saving onto /dev/null or /dev/full as root replaced the device with a regular file; a FIFO or a
    folder there is refused alike, before anything is written."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "folder").mkdir()
    os.symlink(fifo, tmp_path / "link")
    path = _char_device(tmp_path) if what == "device" else {"fifo": fifo, "folder": tmp_path / "folder",
                                                            "link to fifo": tmp_path / "link"}[what]
    kind = {"folder": "a folder", "device": "a character device"}.get(what, r"a FIFO \(named pipe\)")
    before = os.stat(path, follow_symlinks=False)
    with pytest.raises(xn.XpnetFileError, match=f"cannot save to .*: it is {kind}, not a regular file"):
        model().save(path)
    after = os.stat(path, follow_symlinks=False)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert temps(tmp_path) == []


@posix_only
@pytest.mark.parametrize("mode", [0o444, 0o640, 0o600, 0o664], ids=oct)
def test_a_save_keeps_the_existing_files_permission_bits(tmp_path, mode):
    """Saving over a file of mode 0444 or 0640 left it 0644 (the umask's mode); the bits stay now."""
    path = tmp_path / "m.npz"
    model(0).save(path)
    os.chmod(path, mode)
    model(1).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert same_weights(xn.load(path), model(1))


@posix_only
def test_a_folder_that_refuses_chmod_still_takes_the_save_and_no_descriptor_leaks(tmp_path, monkeypatch):
    """A FAT stick or an SMB share refuses chmod (EPERM) where a plain open() writes: the save failed, leaking
    the temporary file's descriptor each time; the file now takes the mode its filesystem gives."""
    path = tmp_path / "m.npz"

    def refuse(target, mode, **kwargs):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), target)

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse, raising=False)
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for seed in (0, 1):
        model(seed).save(path)
    monkeypatch.undo()
    assert same_weights(xn.load(path), model(1)) and temps(tmp_path) == []
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


def test_a_full_disk_names_the_file_being_saved_and_keeps_the_old_one(tmp_path, monkeypatch):
    """ENOSPC (here from the fsync, as on a full disk) names the target, never the temporary file, and
    the previous file stays whole."""
    path = tmp_path / "m.npz"
    model(0).save(path)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        model(1).save(path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert str(path) in str(info.value) and TEMP_SUFFIX not in str(info.value)
    monkeypatch.undo()
    assert same_weights(xn.load(path), model(0)) and temps(tmp_path) == []


def test_a_missing_folder_names_the_file_being_saved(tmp_path):
    path = tmp_path / "nowhere" / "m.npz"
    with pytest.raises(FileNotFoundError) as info:
        model().save(path)
    assert info.value.filename == str(path)


def test_paths_may_be_bytes_and_nothing_else(tmp_path):
    """m.save(b"path") failed inside the temporary-file cleanup; a number was taken as a file descriptor."""
    path = os.fsencode(tmp_path / "m.npz")
    model().save(path)
    assert same_weights(xn.load(path), model())
    for bad in (3, None, 2.5):
        with pytest.raises(TypeError, match=f"path must be a str, bytes or os.PathLike.*got {type(bad).__name__}"):
            model().save(bad)
        with pytest.raises(TypeError, match="path must be a str, bytes or os.PathLike"):
            xn.load(bad)


NON_REGULAR = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # /dev/zero used to be read until memory ran out
import xpnet as xn
for path in sys.argv[1:]:
    for read in (xn.load, xn.book.read_book_params):
        try:
            read(path)
            print("loaded")
        except Exception as exc:
            print(type(exc).__name__, exc)
"""


@posix_only
def test_loading_refuses_fifos_and_devices_before_opening_them(tmp_path):
    """xn.load on a FIFO with no writer blocked forever, on /dev/zero it read until the OOM killer came;
    both readers (model files and the book's pickles) refuse anything but a regular file, at once. Run
    in a child process with a memory limit and a time limit, so that a regression fails, not hangs."""
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(NON_REGULAR), str(fifo), "/dev/zero", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert len(lines) == 6, out.stderr
    kinds = [(fifo, "a FIFO (named pipe)"), ("/dev/zero", "a character device"), (tmp_path, "a folder")]
    for i, line in enumerate(lines):
        path, kind = kinds[i // 2]
        start = f"XpnetFileError '{path}' is not " if i % 2 == 0 else f"ValueError read_book_params: '{path}' is not "
        assert line.startswith(start) and line.endswith(f"it is {kind}, not a regular file"), line


def _flip(data, rng, bits):
    data = bytearray(data)
    for _ in range(bits):
        k = rng.randrange(len(data) * 8)
        data[k // 8] ^= 1 << (k % 8)
    return bytes(data)


def test_every_bit_flip_loads_the_same_weights_or_names_the_file(tmp_path):
    """31 of 500 single-bit flips escaped as raw zipfile errors (BadZipFile without a path, "is
    encrypted", "zip file version", OSError 22). Now each damaged file loads the very weights saved
    (the flip hit bytes nothing reads) or raises XpnetFileError naming it."""
    good, path = tmp_path / "good.npz", tmp_path / "flipped.npz"
    model().save(good)
    data, rng, outcomes = good.read_bytes(), random.Random(27), {"same": 0, "refused": 0}
    for i in range(400):
        path.write_bytes(_flip(data, rng, 1 if i < 300 else rng.choice([2, 8])))
        try:
            loaded = xn.load(path)
        except xn.XpnetFileError as exc:
            assert str(path) in str(exc)
            outcomes["refused"] += 1
        else:
            assert same_weights(loaded, model()), f"flip {i} loaded other weights"
            outcomes["same"] += 1
    assert outcomes["refused"] > 300


def test_every_bit_flip_of_a_checkpoint_loads_or_names_the_file(tmp_path):
    """The same for a full training checkpoint (its record holds nested history and callback state)."""
    x, t = xn.datasets.spiral(10, 3, seed=0)
    good, path = tmp_path / "run.npz", tmp_path / "flipped.npz"
    xn.init.seed(0)
    spiral_model = xn.Sequential(xn.layers.Linear(2, 4), xn.layers.ReLU(), xn.layers.Dropout(0.1),
                                 xn.layers.Linear(4, 3))
    xn.train(spiral_model, (x, t), loss="cross_entropy", optimizer="adam", epochs=1, batch_size=10, progress=False,
             callbacks=[xn.callbacks.EarlyStopping(monitor="train_loss"),
                        xn.callbacks.ModelCheckpoint(good, full=True)])
    data, rng = good.read_bytes(), random.Random(28)
    for _ in range(150):
        path.write_bytes(_flip(data, rng, 1))
        try:
            xn.training.checkpoint.load_checkpoint(path)
        except xn.XpnetFileError as exc:
            assert str(path) in str(exc)


def test_a_deeply_nested_record_is_refused(tmp_path):
    """A model record of 100k nested [ gave a RecursionError; the depth is capped."""
    path = tmp_path / "deep.npz"
    for depth in (100_000, MAX_RECORD_DEPTH + 1):
        record = "[" * depth + "]" * depth
        np.savez(path, __xpnet_model__=np.asarray(record))
        with pytest.raises(xn.XpnetFileError, match=f"nests lists or objects more than {MAX_RECORD_DEPTH} deep"):
            xn.load(path)
    np.savez(path, __xpnet_model__=np.asarray(json.dumps({"format": 1, "layers": [[[["Linear"]]]]})))
    with pytest.raises(xn.XpnetFileError, match=r"field layers\[0\] is \[\[\['Linear'\]\]\], expected"):
        xn.load(path)  # a shallow record goes on to the usual checks
