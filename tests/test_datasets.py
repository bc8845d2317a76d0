"""Datasets: the IDX reader, where MNIST-style files are found, downloads (from a local server only), toys.

Every test runs with XPNET_DATA unset, the user cache and HOME under tmp_path, no system folders and no
mirrors unless it sets them, so nothing here reads ~/.cache or touches the network. The one test that reads
the real Fashion-MNIST (marked ``data``) looks only at the system folders.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.server
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet.datasets import mnist
from xpnet.datasets.mnist import FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, Checksum

DTYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array)
    header = struct.pack(">BBBB", 0, 0, DTYPE_CODES[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_dataset(seed: int = 0, n_train: int = 12, n_test: int = 5) -> dict:
    """A small MNIST-shaped dataset: the arrays, the four files' raw and gzipped bytes, and their Checksums."""
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: rng.permutation(np.arange(n_train) % 10).astype(np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        TEST_LABELS: rng.permutation(np.arange(n_test) % 10).astype(np.uint8),
    }
    raw = {f: idx_bytes(a) for f, a in arrays.items()}
    gz = {f: gzip.compress(b, mtime=0) for f, b in raw.items()}
    checksums = {f: Checksum(gz=sha256(gz[f]), raw=sha256(raw[f])) for f in FILES}
    return {"arrays": arrays, "raw": raw, "gz": gz, "checksums": checksums}


def write_dataset(folder: Path, data: dict, gzipped: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        if gzipped:
            (folder / (f + ".gz")).write_bytes(data["gz"][f])
        else:
            (folder / f).write_bytes(data["raw"][f])
    return folder


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No XPNET_DATA, cache and HOME in tmp_path, no system folders, no mirrors, no proxies."""
    monkeypatch.delenv("XPNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", [str(tmp_path / "system")])
    for name in mnist.MIRRORS:
        monkeypatch.setitem(mnist.MIRRORS, name, [])
    return tmp_path


@pytest.fixture
def tiny(monkeypatch):
    """The tiny dataset, with its checksums installed as MNIST's."""
    data = tiny_dataset()
    monkeypatch.setitem(mnist.CHECKSUMS, "mnist", data["checksums"])
    return data


def cache_of(name: str = "mnist") -> Path:
    return mnist.cache_dir(name)


# --- IDX reader ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPE_CODES))
@pytest.mark.parametrize("gzipped", [False, True], ids=["raw", "gzip"])
def test_read_idx_round_trips_every_dtype(tmp_path, dtype, gzipped):
    a = np.random.default_rng(1).integers(0, 120, (3, 4, 5)).astype(dtype)
    if a.dtype.kind == "f":
        a /= 7
    data = idx_bytes(a)
    # The names lie on purpose: gzip is told by the magic bytes, not the extension.
    path = tmp_path / ("file.raw" if gzipped else "file.gz")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    hasher = hashlib.sha256()
    out = xn.datasets.read_idx(path, hasher=hasher)
    np.testing.assert_array_equal(out, a)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    assert hasher.hexdigest() == sha256(data)


def corrupt_variants(a: np.ndarray) -> dict[str, tuple[bytes, str]]:
    good = idx_bytes(a)
    return {
        "data-truncated": (good[:-7], "truncated"),
        "header-truncated": (good[:10], "truncated"),
        "empty": (b"", "truncated"),
        "trailing-bytes": (good + b"\x00", "bytes after"),
        "bad-magic": (b"\x01\x02" + good[2:], "not an IDX file"),
        "bad-dtype-code": (good[:2] + b"\x07" + good[3:], "not an IDX file"),
        "gzip-truncated": (gzip.compress(good)[:-20], "gzip"),
    }


@pytest.mark.parametrize("variant", ["data-truncated", "header-truncated", "empty", "trailing-bytes", "bad-magic",
                                     "bad-dtype-code", "gzip-truncated"])
def test_read_idx_names_the_file_on_corrupt_input(tmp_path, variant):
    data, message = corrupt_variants(np.arange(2 * 28 * 28).reshape(2, 28, 28).astype(np.uint8))[variant]
    path = tmp_path / f"{variant}-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(xn.datasets.IDXFormatError, match=message) as info:
        xn.datasets.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_checks_the_expected_dtype_and_shape(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(np.zeros((4, 27, 28), np.uint8)))
    with pytest.raises(xn.datasets.IDXFormatError, match=r"shape \(4, 27, 28\).*expected \('N', 28, 28\)"):
        xn.datasets.read_idx(path, np.uint8, (None, 28, 28))
    with pytest.raises(xn.datasets.IDXFormatError, match="expected \\('N',\\)"):
        xn.datasets.read_idx(path, np.uint8, (None,))
    with pytest.raises(xn.datasets.IDXFormatError, match="holds uint8.*expected float32"):
        xn.datasets.read_idx(path, np.float32)
    assert xn.datasets.read_idx(path, np.uint8, (4, None, 28)).shape == (4, 27, 28)


# --- loading from local folders --------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot", [False, True])
def test_load_mnist_options(isolated, tiny, normalize, flatten, one_hot):
    root = write_dataset(isolated / "root", tiny)
    splits = xn.datasets.load_mnist(normalize=normalize, flatten=flatten, one_hot=one_hot, root=root)
    for (x, y), (images, labels) in zip(splits, [(TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)]):
        images, labels = tiny["arrays"][images], tiny["arrays"][labels]
        n = len(images)
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        if normalize:
            assert x.dtype == np.float32
            np.testing.assert_allclose(x.reshape(images.shape), images / 255.0, rtol=1e-6)
        else:
            assert x.dtype == np.uint8
            np.testing.assert_array_equal(x.reshape(images.shape), images)
        if one_hot:
            assert y.dtype == np.float32 and y.shape == (n, 10)
            np.testing.assert_array_equal(y.argmax(axis=1), labels)
            np.testing.assert_array_equal(y.sum(axis=1), np.ones(n))
        else:
            assert y.dtype == np.int64 and y.shape == (n,)
            np.testing.assert_array_equal(y, labels)


def test_load_mnist_takes_the_books_one_hot_label(isolated, tiny):
    """The book's ch05 script calls load_mnist(normalize=True, one_hot_label=True)."""
    root = write_dataset(isolated / "root", tiny)
    (_, y), _ = xn.datasets.load_mnist(normalize=True, one_hot_label=True, root=root)
    (_, expected), _ = xn.datasets.load_mnist(one_hot=True, root=root)
    np.testing.assert_array_equal(y, expected)
    assert y.shape == (len(expected), 10)
    (_, y), _ = xn.datasets.load_mnist(one_hot_label=False, root=root)
    assert y.ndim == 1
    with pytest.raises(ValueError, match="one_hot_label is the book's name for one_hot"):
        xn.datasets.load_mnist(one_hot=True, one_hot_label=False, root=root)


@pytest.mark.parametrize("load", [xn.datasets.load_mnist, xn.datasets.load_fashion_mnist])
@pytest.mark.parametrize("value", ["no", 0, 1])
def test_one_hot_label_is_a_flag_as_one_hot_is(isolated, load, value):
    """one_hot_label="no" (or 1) was taken as bool(value), one-hot labels for "no", where one_hot="no" is an
    error: a flag is True or False only, whichever name gives it (checked before any file is looked for)."""
    with pytest.raises(TypeError, match=rf"{load.__name__}: one_hot_label must be True or False, got {value!r}"):
        load(one_hot_label=value, root=isolated)


def test_raw_gzipped_and_dotted_file_names_are_all_found(isolated, tiny):
    root = isolated / "root"
    root.mkdir()
    (root / (TRAIN_IMAGES + ".gz")).write_bytes(tiny["gz"][TRAIN_IMAGES])
    (root / TRAIN_LABELS).write_bytes(tiny["raw"][TRAIN_LABELS])
    (root / "t10k-images.idx3-ubyte").write_bytes(tiny["raw"][TEST_IMAGES])
    # A re-gzipped copy (other header) matches by content, as Debian's dataset-fashion-mnist files do.
    (root / (TEST_LABELS + ".gz")).write_bytes(gzip.compress(tiny["raw"][TEST_LABELS], mtime=123))
    (x, y), (xt, yt) = xn.datasets.load_mnist(normalize=False, root=root)
    np.testing.assert_array_equal(x.reshape(-1, 28, 28), tiny["arrays"][TRAIN_IMAGES])
    np.testing.assert_array_equal(yt, tiny["arrays"][TEST_LABELS])


def test_search_order(isolated, tiny, monkeypatch):
    data_env = isolated / "xpnet-data"
    places = [
        isolated / "root",
        data_env / "mnist",
        data_env,
        cache_of("mnist"),
        isolated / "system" / "mnist",
    ]
    for folder in places:
        write_dataset(folder, tiny)
    monkeypatch.setenv("XPNET_DATA", os.pathsep.join([str(isolated / "empty"), str(data_env)]))
    for i, folder in enumerate(places):
        root = places[0] if i == 0 else None
        found = xn.datasets.find_files("mnist", root=root, download=False)
        assert set(found) == set(FILES)
        assert {p.parent for p in found.values()} == {folder}
        for f in FILES:
            (folder / (f + ".gz")).unlink()
    with pytest.raises(xn.datasets.DatasetNotFoundError):
        xn.datasets.find_files("mnist", download=False)


def test_a_folder_with_only_some_files_is_passed_over(isolated, tiny, monkeypatch):
    monkeypatch.setenv("XPNET_DATA", str(isolated / "partial"))
    write_dataset(isolated / "partial", tiny)
    (isolated / "partial" / (TEST_LABELS + ".gz")).unlink()
    write_dataset(isolated / "system" / "mnist", tiny)
    found = xn.datasets.find_files("mnist", download=False)
    assert {p.parent for p in found.values()} == {isolated / "system" / "mnist"}


def test_user_file_with_wrong_checksum_is_reported_and_kept(isolated, tiny):
    root = write_dataset(isolated / "root", tiny)
    other = tiny_dataset(seed=5)
    bad = root / (TRAIN_LABELS + ".gz")
    bad.write_bytes(other["gz"][TRAIN_LABELS])
    with pytest.raises(xn.datasets.DatasetChecksumError) as info:
        xn.datasets.load_mnist(root=root)
    message = str(info.value)
    assert str(bad) in message
    assert other["checksums"][TRAIN_LABELS].raw in message and tiny["checksums"][TRAIN_LABELS].raw in message
    assert bad.read_bytes() == other["gz"][TRAIN_LABELS]


def test_labels_out_of_range_and_mismatched_counts_are_rejected(isolated, tiny, monkeypatch):
    root = write_dataset(isolated / "root", tiny)
    for labels, message in [(np.full(12, 10, np.uint8), "labels must be 0..9"),
                            (np.zeros(11, np.uint8), r"shape \(11,\).*expected \(12,\)")]:
        raw = idx_bytes(labels)
        monkeypatch.setitem(mnist.CHECKSUMS["mnist"], TRAIN_LABELS, Checksum(gz="-", raw=sha256(raw)))
        (root / (TRAIN_LABELS + ".gz")).write_bytes(gzip.compress(raw))
        with pytest.raises(xn.datasets.IDXFormatError, match=message) as info:
            xn.datasets.load_mnist(root=root)
        assert TRAIN_LABELS in str(info.value)


def test_unknown_dataset_name_is_rejected(isolated):
    with pytest.raises(ValueError, match="'cifar'"):
        xn.datasets.find_files("cifar")


# --- downloads from a local HTTP server --------------------------------------------------------------


class Server:
    """An HTTP server on 127.0.0.1 serving ``routes``: path -> (body, truncate). Truncated replies announce
    a Content-Length larger than the body, send half of it and close the connection."""

    def __init__(self, routes: dict[str, tuple[bytes, bool]]):
        self.routes, self.requests = routes, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, truncate = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (1000 if truncate else 0)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if truncate else body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve():
    servers = []

    def start(routes):
        servers.append(Server(routes))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def routes_for(data: dict, **overrides) -> dict[str, tuple[bytes, bool]]:
    routes = {f"/data/{f}.gz": (data["gz"][f], False) for f in FILES}
    routes.update({f"/data/{f}.gz": v for f, v in overrides.items()})
    return routes


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_then_load_from_cache(isolated, tiny, serve, monkeypatch):
    server = serve(routes_for(tiny))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [server.url])
    (x, y), (xt, yt) = xn.datasets.load_mnist(normalize=False, flatten=False)
    np.testing.assert_array_equal(x[:, 0], tiny["arrays"][TRAIN_IMAGES])
    np.testing.assert_array_equal(yt, tiny["arrays"][TEST_LABELS])
    assert sorted(p.name for p in cache_of().iterdir()) == sorted(f + ".gz" for f in FILES)
    assert sorted(server.requests) == sorted(f"/data/{f}.gz" for f in FILES)

    # Second run: from the cache, no requests.
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [dead_url()])
    (x2, _), _ = xn.datasets.load_mnist(normalize=False, flatten=False)
    np.testing.assert_array_equal(x2, x)
    assert len(server.requests) == len(FILES)


def test_download_with_wrong_checksum_keeps_nothing(isolated, tiny, serve, monkeypatch):
    other = tiny_dataset(seed=9)
    server = serve(routes_for(tiny, **{TRAIN_IMAGES: (other["gz"][TRAIN_IMAGES], False)}))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [server.url])
    with pytest.raises(xn.datasets.DatasetChecksumError) as info:
        xn.datasets.load_mnist()
    message = str(info.value)
    assert TRAIN_IMAGES in message
    assert sha256(other["gz"][TRAIN_IMAGES]) in message and tiny["checksums"][TRAIN_IMAGES].gz in message
    assert not cache_of().exists()  # issue 15, CLI: no empty cache folder left by a failed run


def test_interrupted_download_leaves_nothing_a_later_run_would_use(isolated, tiny, serve, monkeypatch):
    server = serve(routes_for(tiny, **{TRAIN_LABELS: (tiny["gz"][TRAIN_LABELS], True)}))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [server.url])
    with pytest.raises(xn.datasets.DatasetNotFoundError, match="IncompleteRead"):
        xn.datasets.load_mnist()
    assert sorted(p.name for p in cache_of().iterdir()) == [TRAIN_IMAGES + ".gz"]
    with pytest.raises(xn.datasets.DatasetNotFoundError):
        xn.datasets.find_files("mnist", download=False)

    # A later run fetches only what is missing and gets the right data.
    server.routes.update(routes_for(tiny))
    server.requests.clear()
    (_, y), _ = xn.datasets.load_mnist()
    np.testing.assert_array_equal(y, tiny["arrays"][TRAIN_LABELS])
    assert sorted(server.requests) == sorted(f"/data/{f}.gz" for f in FILES[1:])


@pytest.mark.parametrize("first", ["unreachable", "404", "wrong-data", "truncated"])
def test_falls_back_to_the_next_mirror(isolated, tiny, serve, monkeypatch, first):
    other = tiny_dataset(seed=3)
    good = serve(routes_for(tiny))
    if first == "unreachable":
        first_url = dead_url()
    else:
        body = {"404": {}, "wrong-data": {f: (other["gz"][f], False) for f in FILES},
                "truncated": {f: (tiny["gz"][f], True) for f in FILES}}[first]
        first_url = serve(routes_for(tiny, **body) if body else {}).url
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [first_url, good.url])
    (x, _), _ = xn.datasets.load_mnist(normalize=False)
    np.testing.assert_array_equal(x.reshape(-1, 28, 28), tiny["arrays"][TRAIN_IMAGES])
    assert len(good.requests) == len(FILES)
    assert sorted(p.name for p in cache_of().iterdir()) == sorted(f + ".gz" for f in FILES)


def fake_disk_error(monkeypatch, where: str) -> int:
    """Make the disk fail a download: ENOSPC from the part file's fsync (a full disk, as NFS reports it) or
    EROFS from making it (a read-only folder: chmod binds no root); returns the errno."""
    import tempfile

    code = errno.ENOSPC if where == "fsync" else errno.EROFS
    if where == "fsync":
        real = os.fsync

        def fsync(fd):
            if stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(code, os.strerror(code))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    else:
        def mkstemp(*args, dir=None, **kwargs):
            raise OSError(code, os.strerror(code), dir)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return code


@pytest.mark.parametrize("where", ["fsync", "mkstemp"], ids=["full-disk", "read-only-folder"])
def test_a_disk_error_stops_the_download_naming_the_file(isolated, tiny, serve, monkeypatch, where):
    """ENOSPC writing the part file (or EROFS making it) was counted as the mirror failing: every mirror was
    tried and the load ended in DatasetNotFoundError blaming the network. The disk's error is raised at once,
    naming the file being downloaded, and no other mirror is asked."""
    first, second = serve(routes_for(tiny)), serve(routes_for(tiny))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [first.url, second.url])
    code = fake_disk_error(monkeypatch, where)
    with pytest.raises(OSError) as info:
        xn.datasets.find_files("mnist")
    assert not isinstance(info.value, xn.datasets.DatasetNotFoundError)
    assert info.value.errno == code and info.value.filename == str(cache_of() / (TRAIN_IMAGES + ".gz"))
    assert os.strerror(code) in str(info.value)
    assert second.requests == [] and len(first.requests) == (where == "fsync")
    assert not cache_of().exists()


def test_an_unreadable_file_from_a_mirror_is_not_taken_for_a_disk_error(isolated, tiny, serve, monkeypatch):
    """Checking a downloaded file reads it; an OSError there without an errno (gzip's BadGzipFile, faked here as
    the content check's) is the mirror's broken file, not the disk's failure: the next mirror is tried."""
    def unreadable(path):
        raise gzip.BadGzipFile("Not a gzipped file")

    other = tiny_dataset(seed=3)
    good = serve(routes_for(tiny))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [serve(routes_for(tiny, **{f: (other["gz"][f], False) for f in FILES}))
                                                 .url, good.url])
    monkeypatch.setattr(mnist, "_content_sha256", unreadable)
    xn.datasets.find_files("mnist")
    assert len(good.requests) == len(FILES)


def test_a_disk_error_removing_a_discarded_download_stops_the_load_naming_the_file(isolated, tiny, serve,
                                                                                     monkeypatch):
    """The part file of a download with a wrong checksum is removed; an EIO there escaped the disk-error wrapper
    and was counted as the mirror's failure (the next mirror asked, the error naming the part file). It is the
    disk's: raised at once, naming the file being downloaded."""
    other = tiny_dataset(seed=3)
    wrong, good = serve(routes_for(tiny, **{f: (other["gz"][f], False) for f in FILES})), serve(routes_for(tiny))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [wrong.url, good.url])
    real = os.unlink

    def unlink(path, *args, **kwargs):
        if os.fspath(path).endswith(".part"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(OSError) as info:
        xn.datasets.find_files("mnist")
    assert info.value.errno == errno.EIO and info.value.filename == str(cache_of() / (TRAIN_IMAGES + ".gz"))
    assert good.requests == []

    def interrupted(sha, tmp):
        raise KeyboardInterrupt

    from xpnet.datasets import download

    dest = cache_of() / "file.gz"  # Ctrl-C under way: it goes on, the failed tidy-up does not replace it
    with pytest.raises(KeyboardInterrupt):
        download.fetch_verified(good.url + TRAIN_IMAGES + ".gz", dest, interrupted)

@pytest.mark.skipif(os.name != "posix", reason="folder fsync is POSIX")
def test_a_download_fsyncs_its_folder_after_the_rename(isolated, tiny, serve, monkeypatch):
    """A downloaded file was renamed into the cache with no fsync of the folder: a power loss could lose the
    rename, as for saves before issue 15. Each file's fsync comes before its rename, the folder's after it."""
    synced = []
    real = os.fsync

    def record(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), (cache_of() / (TRAIN_IMAGES + ".gz")).exists()))
        real(fd)

    monkeypatch.setitem(mnist.MIRRORS, "mnist", [serve(routes_for(tiny)).url])
    monkeypatch.setattr(os, "fsync", record)
    xn.datasets.find_files("mnist")
    assert synced == [(False, False), (True, True)] + [(False, True), (True, True)] * 3


@pytest.mark.skipif(os.name != "posix", reason="umask is POSIX")
def test_a_downloaded_file_gets_the_mode_open_would_give(isolated, tiny, serve, monkeypatch):
    """The cache's files were 0600 (mkstemp's mode, renamed into place), unlike any file written with open()."""
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [serve(routes_for(tiny)).url])
    mask = os.umask(0o022)
    try:
        xn.datasets.find_files("mnist")
    finally:
        os.umask(mask)
    assert {oct(p.stat().st_mode & 0o777) for p in cache_of().iterdir()} == {oct(0o644)}


def _raw_server(reply):
    """An HTTP server on 127.0.0.1 whose every GET is answered by ``reply(handler)``; close it with shutdown()."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            reply(self)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "no-length"])
def test_a_download_larger_than_any_dataset_file_is_dropped_as_it_comes(isolated, monkeypatch, announced):
    """A mirror that never ends its reply (a misconfigured proxy) filled the disk: a transfer stops, keeping
    nothing, once it passes the limit (lowered here to 100 bytes), or before, where its length says it would."""
    from xpnet.datasets import download

    def reply(handler):
        handler.send_response(200)
        if announced:
            handler.send_header("Content-Length", "300")
        handler.end_headers()
        handler.wfile.write(b"x" * 300)
        handler.close_connection = True

    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 100)
    httpd, url = _raw_server(reply)
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [url])
    try:
        with pytest.raises(xn.datasets.DatasetNotFoundError, match=r"more than 100 bytes"):
            xn.datasets.find_files("mnist")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not cache_of().exists()


def test_a_content_length_that_is_no_number_is_named_with_the_url(isolated, monkeypatch):
    """A reply whose Content-Length was no number ended the load with a bare ValueError (int('12x')), naming
    neither the URL nor the header, and the next mirror was never tried."""
    def reply(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "12x")
        handler.end_headers()
        handler.wfile.write(b"x" * 12)
        handler.close_connection = True

    httpd, url = _raw_server(reply)
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [url, dead_url()])
    try:
        with pytest.raises(xn.datasets.DatasetNotFoundError,
                           match=rf"{url}{TRAIN_IMAGES}.gz: its reply's Content-Length is '12x', not a number"):
            xn.datasets.find_files("mnist")
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.skipif(os.name != "posix", reason="pids as POSIX has them")
def test_parts_left_by_killed_downloads_are_removed_by_the_next(isolated, tiny, serve, monkeypatch):
    """A SIGKILLed download left its .part in the cache, one per run, never removed: the next download of the
    file removes those of processes no longer running (2**22 + 1 is above any Linux pid), never a running one's."""
    from xpnet.io.atomic import host_tag

    folder = cache_of()
    folder.mkdir(parents=True)
    dead, live = (folder / f".{TRAIN_IMAGES}.gz.{pid}.{host_tag()}.x.part" for pid in (2**22 + 1, os.getpid()))
    dead.write_bytes(b"")
    live.write_bytes(b"")
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [serve(routes_for(tiny)).url])
    xn.datasets.find_files("mnist")
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, *(f + ".gz" for f in FILES)])


@pytest.mark.skipif(os.name != "posix", reason="pids as POSIX has them")
def test_a_part_of_another_host_is_removed_only_once_stale(isolated, tiny, serve, monkeypatch):
    """Two nodes sharing the cache folder (an NFS home under mpiexec) each took the other's .part for a killed
    download's, its pid running on no process here, and removed it mid-transfer. A part names its host now: this
    host's is judged by its pid, another host's (node-b's here, the host faked as node-a) is left while anything
    writes to it, and removed once it had no write for STALE_AFTER_S seconds."""
    from xpnet.io import atomic

    monkeypatch.setattr(socket, "gethostname", lambda: "node-a.cluster")
    folder = cache_of()
    folder.mkdir(parents=True)
    name = f".{TRAIN_IMAGES}.gz.{2**22 + 1}"  # a pid no process has here
    live_there, stale_there, gone_here = (folder / f"{name}.{host}.{r}.part" for host, r in
                                          (("node-b_cluster", "x"), ("node-b_cluster", "y"), ("node-a_cluster", "z")))
    for part in (live_there, stale_there, gone_here):
        part.write_bytes(b"")
    old = time.time() - atomic.STALE_AFTER_S - 60
    os.utime(stale_there, (old, old))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", [serve(routes_for(tiny)).url])
    xn.datasets.find_files("mnist")
    assert sorted(p.name for p in folder.iterdir()) == sorted([live_there.name, *(f + ".gz" for f in FILES)])


STALLED_DOWNLOAD = """
import sys
import xpnet as xn
from xpnet.datasets import mnist

mnist.MIRRORS["mnist"], mnist.SYSTEM_DIRS = [sys.argv[1]], []
xn.datasets.find_files("mnist")
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM as POSIX has it")
def test_sigterm_during_a_download_removes_the_partial_file(isolated):
    """SIGTERM (a batch scheduler's) mid-transfer killed the process with its .part file left in the cache, one
    per run; it is removed now, as for Ctrl-C, and the process still ends by SIGTERM."""
    from xpnet.io.atomic import host_tag

    sent, done = threading.Event(), threading.Event()

    def stall(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"\x1f\x8b" + b"\0" * 98)
        handler.wfile.flush()
        sent.set()
        done.wait(30)

    httpd, url = _raw_server(stall)
    env = {**os.environ, "XDG_CACHE_HOME": str(isolated / "cache"), "no_proxy": "*"}
    proc = subprocess.Popen([sys.executable, "-c", STALLED_DOWNLOAD, url], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert sent.wait(60)
        (part,) = cache_of().glob("*.part")  # the transfer under way, its part named with its pid and host
        assert part.name.startswith(f".{TRAIN_IMAGES}.gz.{proc.pid}.{host_tag()}.")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        done.set()
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == -signal.SIGTERM, err
    assert not cache_of().exists() or list(cache_of().iterdir()) == []


def test_offline_with_nothing_local_gives_one_clear_error(isolated, monkeypatch):
    monkeypatch.setitem(mnist.MIRRORS, "fashion-mnist", [dead_url()])
    monkeypatch.setenv("XPNET_DATA", str(isolated / "mine"))
    with pytest.raises(xn.datasets.DatasetNotFoundError) as info:
        xn.datasets.load_fashion_mnist()
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for folder in xn.datasets.search_dirs("fashion-mnist"):
        assert str(folder) in message
    assert "apt-get install dataset-fashion-mnist" in message and "XPNET_DATA" in message
    assert "127.0.0.1" in message
    assert not cache_of("fashion-mnist").exists()  # issue 15, CLI: no empty cache folder left by a failed run


# --- the real Fashion-MNIST ----------------------------------------------------------------------


@pytest.mark.data
def test_real_fashion_mnist_from_the_system_folder(isolated, monkeypatch):
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", ["/usr/local/share/datasets", "/usr/share/datasets"])
    try:
        xn.datasets.find_files("fashion-mnist", download=False)
    except xn.datasets.DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not in /usr/share/datasets (apt-get install dataset-fashion-mnist)")

    (x, y), (xt, yt) = xn.datasets.load_fashion_mnist()
    assert x.shape == (60000, 784) and xt.shape == (10000, 784)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), np.full(10, 1000))

    (x4, y4), (xt4, yt4) = xn.datasets.load_fashion_mnist(normalize=False, flatten=False, one_hot=True)
    assert x4.shape == (60000, 1, 28, 28) and x4.dtype == np.uint8 and xt4.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(x4[:1000].reshape(1000, 784) / np.float32(255), x[:1000])
    assert y4.shape == (60000, 10) and y4.dtype == np.float32
    np.testing.assert_array_equal(y4.argmax(axis=1), y)
    np.testing.assert_array_equal(yt4.sum(axis=0), np.full(10, 1000))


# --- toys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda seed: xn.datasets.spiral(30, 3, seed),
    lambda seed: xn.datasets.xor(50, seed),
    lambda seed: xn.datasets.blobs(40, 4, seed),
], ids=["spiral", "xor", "blobs"])
def test_toys_are_host_float32_and_int64_and_seeded(make):
    x, t = make(0)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2
    assert isinstance(t, np.ndarray) and t.dtype == np.int64 and t.shape == (len(x),)
    x_again, t_again = make(0)
    np.testing.assert_array_equal(x, x_again)
    np.testing.assert_array_equal(t, t_again)
    assert not np.array_equal(make(1)[0], x)


def test_xor_labels_follow_the_corners():
    x, t = xn.datasets.xor(103, seed=2, noise=0.0)
    assert set(map(tuple, x.tolist())) == {(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)}
    np.testing.assert_array_equal(t, (x[:, 0] * x[:, 1] < 0).astype(np.int64))
    assert abs(int(t.sum()) - 103 // 2) <= 1
    x_noisy, t_noisy = xn.datasets.xor(103, seed=2, noise=0.1)
    np.testing.assert_array_equal(t_noisy, t)
    assert np.all(np.sign(x_noisy) == x)  # 10 standard deviations from the axes
    with pytest.raises(ValueError, match="noise"):
        xn.datasets.xor(10, noise=-1)


def test_blobs_sit_at_their_centers():
    centers = np.array([[0.0, 0.0, 0.0], [5.0, -5.0, 1.0]])
    x, t = xn.datasets.blobs(2000, centers, seed=1, std=0.5, dtype="float64")
    assert x.shape == (2000, 3) and x.dtype == np.float64
    np.testing.assert_array_equal(np.bincount(t), [1000, 1000])
    for c in range(2):
        # The sample mean of 1000 points is within 5 standard errors of the center.
        np.testing.assert_allclose(x[t == c].mean(axis=0), centers[c], atol=5 * 0.5 / np.sqrt(1000))
        np.testing.assert_allclose(x[t == c].std(axis=0), 0.5, rtol=0.1)
    x, t = xn.datasets.blobs(10, 3, seed=0, dim=5, box=2.0)
    assert x.shape == (10, 5) and set(t.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="centers"):
        xn.datasets.blobs(10, np.zeros(3))
    with pytest.raises(ValueError, match="n >= number of centers"):
        xn.datasets.blobs(2, 3)
