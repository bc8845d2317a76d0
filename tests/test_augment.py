"""xn.datasets.RandomShiftFlip: equal to a per-sample NumPy reference on every device, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backend import device_of
from xpnet.datasets import RandomShiftFlip, shift_flip_params


def reference(x, max_shift, flip, seed, epoch, step, planted=0):
    """Per sample: mirror left-right if drawn, pad by max_shift with zeros, crop at the drawn offset."""
    dy, dx, flips = shift_flip_params(x.shape[0], max_shift, flip, seed, epoch, step)
    s, (h, w) = max_shift, x.shape[-2:]
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        img = x[b, ..., :, ::-1] if flips[b] else x[b]
        pad = np.zeros(img.shape[:-2] + (h + 2 * s, w + 2 * s), dtype=x.dtype)
        pad[..., s:s + h, s:s + w] = img
        oy, ox = s - dy[b], s - (dx[b] + planted if b == 0 else dx[b])
        out[b] = pad[..., oy:oy + h, ox:ox + w]
    return out


def images(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("max_shift,flip,shape", [(2, True, (64, 1, 6, 7)), (1, False, (33, 5, 4)),
                                                  (0, True, (16, 2, 3, 5)), (3, True, (40, 1, 8, 8))])
def test_equals_the_per_sample_numpy_reference(dev, max_shift, flip, shape):
    x = images(shape)
    t = RandomShiftFlip(max_shift, flip=flip, seed=5)
    got = t(xn.to_device(x, dev), 3, 11)
    assert device_of(got) == dev
    assert tuple(got.shape) == shape and xn.to_numpy(got).dtype == np.float32
    np.testing.assert_array_equal(xn.to_numpy(got), reference(x, max_shift, flip, 5, 3, 11))


def test_a_wrong_shift_in_the_reference_is_caught():
    x = images((64, 1, 6, 6))
    got = RandomShiftFlip(2, seed=1)(x, 1, 0)
    assert not np.array_equal(got, reference(x, 2, True, 1, 1, 0, planted=1))


def test_same_seed_epoch_step_same_batch_and_others_differ(dev):
    x = xn.to_device(images((50, 1, 9, 9)), dev)
    t = RandomShiftFlip(2, seed=0)
    first = xn.to_numpy(t(x, 2, 7))
    np.testing.assert_array_equal(xn.to_numpy(RandomShiftFlip(2, seed=0)(x, 2, 7)), first)
    for other in (t(x, 2, 8), t(x, 3, 7), RandomShiftFlip(2, seed=1)(x, 2, 7)):
        assert not np.array_equal(xn.to_numpy(other), first)


def test_draws_cover_every_shift_and_both_flips():
    dy, dx, flips = shift_flip_params(1000, 2, True, 0, 1, 0)
    assert set(dy) == set(dx) == {-2, -1, 0, 1, 2}
    assert 400 < flips.sum() < 600


def test_bad_arguments_and_flat_inputs_are_named():
    with pytest.raises(ValueError, match="max_shift must be an int >= 0"):
        RandomShiftFlip(-1)
    with pytest.raises(TypeError, match="flip must be True or False"):
        RandomShiftFlip(flip=1)
    with pytest.raises(ValueError, match=r"images of shape \(N, ..., H, W\), got shape \(4, 784\)"):
        RandomShiftFlip()(images((4, 784)), 1, 0)
    with pytest.raises(ValueError, match="smaller than the image side"):
        RandomShiftFlip(3)(images((4, 1, 3, 3)), 1, 0)


def test_numpy_bools_are_flags_as_everywhere_else():
    """flip=np.True_ (a flag computed with NumPy, args.flip == 1 on an array) was refused here alone: every
    other flag of xpnet takes NumPy's bools (xpnet._user.flag)."""
    t = RandomShiftFlip(max_shift=0, flip=np.True_, seed=0)
    assert t.flip is True and repr(t) == "RandomShiftFlip(max_shift=0, flip=True, seed=0)"
    assert RandomShiftFlip(flip=np.False_).flip is False
