"""MNIST and Fashion-MNIST: found on disk, or downloaded once into the user cache, always checksummed.

Where the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each gzipped ``.gz`` or raw) are looked for, first folder holding all four wins:

1. ``root`` and ``root/<name>`` (a ``root`` that is not a folder is an error, not passed over);
2. ``$XPNET_DATA/<name>`` and ``$XPNET_DATA`` (several folders may be joined with ``os.pathsep``);
3. the user cache ``$XDG_CACHE_HOME/xpnet/<name>`` (``~/.cache/xpnet/<name>``);
4. system folders ``/usr/local/share/datasets/<name>`` and ``/usr/share/datasets/<name>`` (Debian's
   ``dataset-fashion-mnist`` package installs ``/usr/share/datasets/fashion-mnist``).

``<name>`` is ``mnist`` or ``fashion-mnist``. When none has them, the missing files are downloaded from
``MIRRORS`` into the user cache.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._user import flag
from .download import DiskError, cache_folder, fetch_verified, file_sha256
from .idx import IDXFormatError, read_idx

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


class Checksum(NamedTuple):
    """SHA-256 of the official ``.gz`` file and of its uncompressed content.

    A file passes when either matches, so a raw file, the official ``.gz`` and a re-gzipped copy
    (Debian's ``dataset-fashion-mnist`` ships one) are all accepted.
    """

    gz: str
    raw: str


# The .gz hashes are those tensorflow-datasets records for the official files (url_checksums/mnist.txt,
# url_checksums/fashion_mnist.txt); the raw hashes are of their uncompressed content.
CHECKSUMS: dict[str, dict[str, Checksum]] = {
    "mnist": {
        TRAIN_IMAGES: Checksum("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                               "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        TRAIN_LABELS: Checksum("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                               "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        TEST_IMAGES: Checksum("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        TEST_LABELS: Checksum("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "fashion-mnist": {
        TRAIN_IMAGES: Checksum("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                               "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        TRAIN_LABELS: Checksum("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                               "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        TEST_IMAGES: Checksum("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                              "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        TEST_LABELS: Checksum("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                              "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
}

# Base URLs tried in order; each serves "<file>.gz".
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}

SYSTEM_DIRS = ["/usr/local/share/datasets", "/usr/share/datasets"]
APT_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}
_log = logging.getLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are on none of the searched folders and could not be downloaded."""


class DatasetChecksumError(RuntimeError):
    """A dataset file's SHA-256 differs from the published one."""


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot: bool = False,
               root: str | os.PathLike | None = None, *, one_hot_label: bool | None = None):
    """MNIST handwritten digits as ``((x_train, y_train), (x_test, y_test))`` NumPy arrays.

    x: (N, 784) if ``flatten`` else (N, 1, 28, 28); float32 in [0, 1] if ``normalize`` else uint8 0..255.
    y: (N,) int64 class indices, or (N, 10) float32 one-hot if ``one_hot`` (``one_hot_label``, the
    book's name, also works). N is 60000 / 10000. See the module docstring for where the files are looked for.
    """
    return _load("mnist", normalize, flatten, _one_hot("load_mnist", one_hot, one_hot_label), root)


def load_fashion_mnist(normalize: bool = True, flatten: bool = True, one_hot: bool = False,
                       root: str | os.PathLike | None = None, *, one_hot_label: bool | None = None):
    """Fashion-MNIST (Zalando's 10 clothing classes), same layout and options as :func:`load_mnist`."""
    return _load("fashion-mnist", normalize, flatten, _one_hot("load_fashion_mnist", one_hot, one_hot_label), root)


def _one_hot(who: str, one_hot: bool, one_hot_label: bool | None) -> bool:
    """``one_hot``, or the book's ``one_hot_label`` in its place (both given must agree), each True or False."""
    one_hot = flag(one_hot, who, "one_hot")
    if one_hot_label is None:
        return one_hot
    one_hot_label = flag(one_hot_label, who, "one_hot_label")
    if one_hot and not one_hot_label:
        raise ValueError(f"{who}: one_hot=True and one_hot_label=False disagree; one_hot_label is the book's "
                         "name for one_hot, pass one of them")
    return one_hot_label


def cache_dir(name: str) -> Path:
    """The user cache folder for dataset ``name``: ``$XDG_CACHE_HOME/xpnet/<name>`` or ``~/.cache/xpnet/<name>``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xpnet" / name


def search_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset ``name``, in order (see the module docstring)."""
    dirs = []
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"{name}: root must be a folder path (str or os.PathLike), got {type(root).__name__}")
        if not os.path.isdir(root):  # a typo must not quietly load the copy found elsewhere
            what = "is not a folder" if os.path.exists(root) else "does not exist"
            raise ValueError(f"{name}: root {os.fspath(root)!r} {what}; give the folder that holds the "
                             f"{name} files, or leave root out to search the usual places")
        dirs += [Path(root), Path(root) / name]
    for entry in os.environ.get("XPNET_DATA", "").split(os.pathsep):
        if entry:
            dirs += [Path(entry) / name, Path(entry)]
    dirs.append(cache_dir(name))
    dirs += [Path(d) / name for d in SYSTEM_DIRS]
    return dirs


def find_files(name: str, root: str | os.PathLike | None = None, download: bool = True) -> dict[str, Path]:
    """Paths of the four IDX files of dataset ``name``: from the first searched folder holding all four,
    else the user cache after downloading the missing ones (verified before they get their final name).

    Raises DatasetNotFoundError when neither works, DatasetChecksumError when every mirror served a file
    with the wrong checksum.
    """
    _check_name(name)
    dirs = search_dirs(name, root)
    for folder in dirs:
        found = {f: _file_in(folder, f) for f in FILES}
        if all(found.values()):
            return found
    if not download:
        raise DatasetNotFoundError(_not_found_message(name, dirs, []))
    return _download_missing(name, dirs)


def _load(name, normalize, flatten, one_hot, root):
    who = "load_mnist" if name == "mnist" else "load_fashion_mnist"
    normalize, flatten, one_hot = (flag(v, who, arg) for v, arg in ((normalize, "normalize"), (flatten, "flatten"),
                                                                    (one_hot, "one_hot")))
    paths = find_files(name, root)
    splits = []
    for images_file, labels_file in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        images = _read_verified(name, images_file, paths[images_file], shape=(None, 28, 28))
        labels = _read_verified(name, labels_file, paths[labels_file], shape=(len(images),))
        if labels.size and labels.max() > 9:
            raise IDXFormatError(f"{paths[labels_file]}: labels must be 0..9, found {int(labels.max())}")
        splits.append((_format_images(images, normalize, flatten), _format_labels(labels, one_hot)))
    return tuple(splits)


def _format_images(images: np.ndarray, normalize: bool, flatten: bool) -> np.ndarray:
    x = images.reshape(len(images), 784) if flatten else images.reshape(len(images), 1, 28, 28)
    if normalize:
        x = np.divide(x, np.float32(255), dtype=np.float32)
    return x


def _format_labels(labels: np.ndarray, one_hot: bool) -> np.ndarray:
    if one_hot:
        return np.eye(10, dtype=np.float32)[labels]
    return labels.astype(np.int64)


def _read_verified(name: str, file: str, path: Path, shape) -> np.ndarray:
    """Read ``path`` as uint8 IDX of ``shape``; raise DatasetChecksumError (touching nothing) unless its
    content or its bytes match the published SHA-256."""
    hasher = hashlib.sha256()
    try:
        data = read_idx(path, np.uint8, shape, hasher=hasher)
    except IDXFormatError as e:
        raise IDXFormatError(f"{e}; this is not a valid {name} {file} file, replace it") from None
    expected = CHECKSUMS[name][file]
    content = hasher.hexdigest()
    if content != expected.raw and file_sha256(path) != expected.gz:
        other = [n for n, table in CHECKSUMS.items() if n != name and table.get(file, expected).raw == content]
        hint = f" It is the {other[0]} file." if other else ""
        raise DatasetChecksumError(
            f"{path}: SHA-256 mismatch for {name} {file}: its content hashes to {content}, expected "
            f"{expected.raw} (or {expected.gz} for the official .gz file).{hint} The file was left as it is; "
            f"replace or delete it.")
    return data


def _file_in(folder: Path, file: str) -> Path | None:
    # Raw first: it loads without decompressing. The last spelling is the Kaggle copies' one.
    for candidate in (file, file + ".gz", file.replace("-idx", ".idx"), file.replace("-idx", ".idx") + ".gz"):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _download_missing(name: str, dirs: list[Path]) -> dict[str, Path]:
    paths = {}
    with cache_folder(cache_dir(name), lambda why: DatasetNotFoundError(_not_found_message(name, dirs, [why]))) \
            as folder:
        for file in FILES:
            paths[file] = _file_in(folder, file) or _download(name, file, folder / (file + ".gz"), dirs)
    return paths


def _download(name: str, file: str, dest: Path, dirs: list[Path]) -> Path:
    expected = CHECKSUMS[name][file]
    failures, mismatches = [], []
    for mirror in MIRRORS[name]:
        url = mirror.rstrip("/") + "/" + file + ".gz"
        _log.info("downloading %s to %s", url, dest)
        try:
            got = _fetch_verified(url, dest, expected)
        except DiskError:  # the disk's failure, not the mirror's: no other mirror would mend it
            raise
        except (OSError, http.client.HTTPException) as e:
            failures.append(f"{url}: {e}")
            continue
        if got is None:
            return dest
        failures.append(f"{url}: SHA-256 {got}, expected {expected.gz} (discarded)")
        mismatches.append(url)
    if mismatches:
        raise DatasetChecksumError(
            f"{name} {file}.gz: every download had a wrong checksum or failed, nothing was kept:\n  "
            + "\n  ".join(failures))
    raise DatasetNotFoundError(_not_found_message(name, dirs, failures))


def _fetch_verified(url: str, dest: Path, expected: Checksum) -> str | None:
    """Download ``url`` into ``dest`` when its bytes match the official .gz's SHA-256 or its content the raw
    one; return None then, else the SHA-256 it had (nothing kept)."""
    return fetch_verified(url, dest, lambda got, tmp: got == expected.gz or _content_sha256(tmp) == expected.raw)


def _content_sha256(path) -> str | None:
    hasher = hashlib.sha256()
    try:
        read_idx(path, hasher=hasher)
    except IDXFormatError:
        return None
    return hasher.hexdigest()


def _not_found_message(name: str, dirs: list[Path], failures: list[str]) -> str:
    how = f"apt-get install {APT_PACKAGES[name]}, " if name in APT_PACKAGES else ""
    lines = [f"{name} not found: no searched folder holds its four IDX files and "
             f"{'downloading them failed' if failures else 'downloading was off'} "
             f"(get them with {how}XPNET_DATA=<folder>, root=<folder>, or network access)",
             f"Looked for {', '.join(f + '[.gz]' for f in FILES)} in:"]
    lines += [f"  {d}" for d in dirs]
    if failures:
        lines.append("and downloading them failed:")
        lines += [f"  {f}" for f in failures]
    lines.append("To get them, any of:")
    if name in APT_PACKAGES:
        lines.append(f"  sudo apt-get install {APT_PACKAGES[name]}   (Debian/Ubuntu: /usr/share/datasets/{name})")
    lines.append(f"  put the four files in $XPNET_DATA/{name}/ or pass root=<folder>")
    lines.append(f"  connect to the network: they are downloaded once into {cache_dir(name)}")
    return "\n".join(lines)


def _check_name(name: str) -> None:
    if name not in CHECKSUMS:
        raise ValueError(f"dataset name must be one of {sorted(CHECKSUMS)}, got {name!r}")
