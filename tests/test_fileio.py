"""Saved files: permissions, durability, no leftovers, SIGTERM during a save and during training.

Covers issue 15, "Files: what loads is what was saved" (umask, fsync, stray temporary files, SIGTERM).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import xpnet as xn
from xpnet.io import atomic
from xpnet.io.atomic import TEMP_SUFFIX, host_tag

posix_only = pytest.mark.skipif(os.name != "posix", reason="umask, signals and folder fsync are POSIX")


def model():
    xn.init.seed(0)
    return xn.Sequential(xn.layers.Linear(3, 4))


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_saved_files_honour_the_umask(tmp_path, mask):
    """Issue 15, Files: a saved file gets the mode open() would give (mkstemp made every file 0600)."""
    old = os.umask(mask)
    try:
        model().save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o666 & ~mask


@posix_only
def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """Issue 15, Files: the rename is made durable by an fsync of the folder, after the file's own."""
    synced = []
    real = os.fsync

    def record(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), os.path.exists(tmp_path / "m.npz")))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    model().save(tmp_path / "m.npz")
    assert synced == [(False, False), (True, True)]


SLOW_SAVE = """
import os, signal, sys, time
import numpy as np
import xpnet as xn

# Ctrl-C raises KeyboardInterrupt, as in any Python started from a terminal, even where the test runner was
# started in the background (there SIGINT is ignored, and children inherit that).
signal.signal(signal.SIGINT, signal.default_int_handler)

real = np.savez
def slow(f, **arrays):
    f.write(b"partial")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
np.savez = slow
xn.init.seed(0)
xn.Sequential(xn.layers.Linear(3, 4)).save(sys.argv[1])
"""


def _start(script, *args):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc


def _temps(folder):
    return [f for f in os.listdir(folder) if f.endswith(TEMP_SUFFIX)]


@posix_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_during_a_save_cleans_up_like_ctrl_c(tmp_path, sig):
    """Issue 15, Files: SIGTERM in the middle of a save removes the temporary file (as Ctrl-C does) and
    the process still ends by SIGTERM; the previous file stays (SIGTERM used to leave the file behind)."""
    path = tmp_path / "m.npz"
    model().save(path)
    before = path.read_bytes()
    proc = _start(SLOW_SAVE, path)
    assert proc.stdout.readline() == "writing\n"
    assert len(_temps(tmp_path)) == 1
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == -sig
    assert _temps(tmp_path) == [] and path.read_bytes() == before


@posix_only
def test_leftovers_of_a_killed_save_are_removed_by_the_next_save(tmp_path):
    """Issue 15, Files: a SIGKILLed save leaves a recognisable .<name>.<pid>.*.xpnet-tmp file beside the
    target, and the next save to that path removes it (they used to pile up as .tmp-*.npz)."""
    path = tmp_path / "m.npz"
    proc = _start(SLOW_SAVE, path)
    assert proc.stdout.readline() == "writing\n"
    proc.kill()
    proc.wait(timeout=30)
    (left,) = _temps(tmp_path)
    assert left.startswith(f".m.npz.{proc.pid}.{host_tag()}.")
    other = tmp_path / f".other.npz.{proc.pid}.{host_tag()}.x{TEMP_SUFFIX}"  # another target's: not ours to remove
    other.write_bytes(b"")
    model().save(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.npz", other.name])
    np.testing.assert_array_equal(xn.load(path).state()["0.W"], model().state()["0.W"])


def test_a_host_name_is_tagged_without_dots_and_long_ones_stay_apart(monkeypatch):
    """A temporary file's claim names the host between dots: a host's own dots become underscores, and a name
    longer than 24 characters is cut with a hash of the whole, so that two long names differing at the end
    (nodes of one cluster) stay two claims."""
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a.cluster")
    assert host_tag() == "node-a_cluster"
    tags = set()
    for node in ("001", "002"):
        monkeypatch.setattr(socket, "gethostname", lambda: f"compute.example-university.edu.node{node}")
        tags.add(host_tag())
    assert len(tags) == 2 and all(len(t) == 24 and "." not in t for t in tags)


@pytest.mark.skipif(not atomic.space_tag(), reason="no pid namespace to read (/proc/self/ns/pid)")
def test_a_temporary_file_of_another_container_of_one_host_name_is_left_while_written(tmp_path, monkeypatch):
    """Two containers of one host name (docker run --network host) sharing a volume each number their processes
    from 1: a claim that named the host only made a live writer in one container look like a killed writer of
    the other, whose pid runs nowhere there, and its file was removed mid-write. A claim names the pid namespace
    too (faked here as another namespace's): a file of this one whose pid is gone is removed, the other's is left
    while it is fresh."""
    real = os.readlink

    def other_namespace(path, *args, **kwargs):
        return "pid:[4026599999]" if os.fspath(path) == "/proc/self/ns/pid" else real(path, *args, **kwargs)

    gone = f".{2**22 + 1}."  # a pid no process has here
    monkeypatch.setattr(os, "readlink", other_namespace)
    theirs = tmp_path / (atomic.temp_prefix("m.npz").replace(f".{os.getpid()}.", gone) + "x" + TEMP_SUFFIX)
    monkeypatch.undo()
    ours = tmp_path / (atomic.temp_prefix("m.npz").replace(f".{os.getpid()}.", gone) + "y" + TEMP_SUFFIX)
    theirs.write_bytes(b"")
    ours.write_bytes(b"")
    assert atomic.remove_leftovers(tmp_path / "m.npz") == [str(ours)]
    assert theirs.exists()


def test_the_age_of_another_hosts_file_is_read_by_the_folders_clock(tmp_path, monkeypatch):
    """An NFS server stamps the files: a machine whose clock ran more than STALE_AFTER_S ahead of the server's
    took another host's live file (just written) for a stale one and removed it. Its age is now read against a
    file made in the folder: here this machine's clock is an hour ahead, the fresh file stays and the one with no
    write for STALE_AFTER_S + 60 s (by the folder's clock) goes, and nothing else is left in the folder."""
    name = f".m.npz.{2**22 + 1}.other-host."
    fresh, stale = tmp_path / f"{name}x{TEMP_SUFFIX}", tmp_path / f"{name}y{TEMP_SUFFIX}"
    fresh.write_bytes(b"")
    stale.write_bytes(b"")
    old = os.stat(stale).st_mtime - atomic.STALE_AFTER_S - 60
    os.utime(stale, (old, old))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    assert atomic.remove_leftovers(tmp_path / "m.npz") == [str(stale)]
    assert os.listdir(tmp_path) == [fresh.name]

def test_leftovers_are_never_checked_with_os_kill_on_windows(tmp_path, monkeypatch):
    """On Windows os.kill(pid, 0) is no liveness check: 0 is CTRL_C_EVENT, sent to the console process group
    ``pid``, and a pid that leads none raises OSError (WinError 87), which failed every later save to the path.
    Here os.name is "nt" and os.kill records its calls: the save goes on, never calling it."""
    left = tmp_path / f".m.npz.{2**22 + 1}.{host_tag()}.x{TEMP_SUFFIX}"
    left.write_bytes(b"")
    calls = []
    monkeypatch.setattr(os, "kill", lambda *args: calls.append(args))
    monkeypatch.setattr(os, "name", "nt")
    model().save(tmp_path / "m.npz")
    monkeypatch.undo()
    assert calls == [] and (tmp_path / "m.npz").is_file()


def test_a_leftover_that_cannot_be_removed_does_not_stop_the_save(tmp_path, monkeypatch):
    """Removing leftovers is tidying: another user's in a group folder (EPERM) failed the save itself."""
    left = tmp_path / f".m.npz.{2**22 + 1}.{host_tag()}.x{TEMP_SUFFIX}"
    left.write_bytes(b"")
    real = os.unlink

    def unlink(path, *args, **kwargs):
        if os.fspath(path) == str(left):
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), os.fspath(path))
        real(path, *args, **kwargs)

    def gone(pid, sig):
        raise ProcessLookupError

    monkeypatch.setattr(os, "kill", gone)
    monkeypatch.setattr(os, "unlink", unlink)
    model().save(tmp_path / "m.npz")
    monkeypatch.undo()
    assert (tmp_path / "m.npz").is_file() and left.exists()



@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError], ids=["ctrl-c", "full-disk"])
def test_a_temporary_file_that_cannot_be_removed_does_not_hide_why_the_save_stopped(tmp_path, monkeypatch, error):
    """A save stopped (Ctrl-C; ENOSPC, named with the path saved) removes its temporary file; an EIO there
    replaced what stopped it: Ctrl-C (or SIGTERM, which must go on to end the process) became an OSError naming
    the temporary file. What stopped the save comes out; the old file stays."""
    path = tmp_path / "m.npz"
    path.write_bytes(b"old")
    real = os.unlink

    def unlink(name, *args, **kwargs):
        if os.fspath(name).endswith(TEMP_SUFFIX):
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(name))
        real(name, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(error) as info, xn.io.atomic.atomic_write(path) as f:
        f.write(b"new")
        raise KeyboardInterrupt if error is KeyboardInterrupt else OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.undo()
    if error is OSError:
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == b"old"

TRAIN = """
import os, signal, sys, time
import numpy as np
import xpnet as xn

if sys.argv[2] == "slow-second-save":  # a big checkpoint on a slow disk: SIGTERM comes while it is written
    real, calls = np.savez, []
    def savez(f, **arrays):
        calls.append(1)
        if len(calls) == 2:
            print("saving", flush=True)
        real(f, **arrays)
        if len(calls) == 2:
            time.sleep(1.0)
    np.savez = savez

x, t = xn.datasets.spiral(100, 3, seed=0)
xn.init.seed(0)
model = xn.Sequential(xn.layers.Linear(2, 64), xn.layers.ReLU(), xn.layers.Dropout(0.2, seed=1),
                      xn.layers.Linear(64, 3))


class SigtermAtEpoch3(xn.callbacks.Callback):  # arrives before the first step of epoch 3
    def on_epoch_begin(self, epoch):
        if epoch == 3 and sys.argv[2] == "mid-epoch":
            os.kill(os.getpid(), signal.SIGTERM)


print("start", flush=True)
xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=100000, batch_size=10,
         seed=3, progress=False, callbacks=[xn.callbacks.ModelCheckpoint(sys.argv[1], full=True), SigtermAtEpoch3()])
"""


@posix_only
def test_sigterm_during_training_writes_the_last_checkpoint_and_exits_as_sigterm(tmp_path):
    """Issue 15, Files: SIGTERM in xn.train (sent by the process to itself as epoch 3 begins) stops at
    the end of the current step, writes the state of the last complete epoch (2) to the
    ModelCheckpoint(full=True) path, and ends the process by SIGTERM; the checkpoint is exactly that
    epoch's (the step under way is undone), so resuming is exact. On the old code the process died at
    once with the same file on disk: this test guards the rollback; the next one fails there."""
    assert _sigterm_training(tmp_path, "mid-epoch") == 2


@posix_only
def test_sigterm_while_a_checkpoint_is_written_finishes_it_then_exits_as_sigterm(tmp_path):
    """Issue 15, Files: SIGTERM that comes while xn.train writes a checkpoint lets that write finish
    (it used to kill the process mid-write, leaving the temporary file and the older checkpoint)."""
    assert _sigterm_training(tmp_path, "slow-second-save") == 2


def _sigterm_training(tmp_path, how):
    path = tmp_path / "run.npz"
    proc = _start(TRAIN, path, how)
    assert proc.stdout.readline() == "start\n"
    if how == "slow-second-save":
        assert proc.stdout.readline() == "saving\n"
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, err
    assert _temps(tmp_path) == []
    saved = xn.training.checkpoint.load_checkpoint(path)
    epochs = saved["meta"]["epoch"]
    assert epochs >= 1 and len(saved["meta"]["history"]["epochs"]) == epochs

    x, t = xn.datasets.spiral(100, 3, seed=0)
    xn.init.seed(0)
    same = xn.Sequential(xn.layers.Linear(2, 64), xn.layers.ReLU(), xn.layers.Dropout(0.2, seed=1),
                         xn.layers.Linear(64, 3))
    xn.train(same, (x, t), loss="cross_entropy", optimizer=xn.optim.Adam(0.01), epochs=epochs, batch_size=10,
             seed=3, progress=False)
    for k, v in same.state().items():
        np.testing.assert_array_equal(saved["model"][k], v)
    return epochs
