"""The reference Philox of ``tests/cupy_random_checks.py`` (against which xpnet's CUDA kernels are checked,
in ``tests/test_cupy_layers.py``) gives the known answers of the Random123 distribution."""

from __future__ import annotations

import numpy as np
import pytest

import cupy_random_checks as checks


@pytest.mark.parametrize("counter, key, words", [
    # Random123's kat_vectors, philox4x32 with 10 rounds: counter words, key words -> output words.
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_the_reference_philox_gives_random123s_known_answers(counter, key, words):
    got = checks.philox4x32_10(np.array([counter], dtype=np.uint32), key)
    assert [int(w) for w in got[0]] == list(words)
