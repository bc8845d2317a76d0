"""No step of an epoch waits for the GPU, for the models the README, docs and examples train with ``xn.train`` on a
device (``benchmarks/launches.py`` builds them), and what a step copied from the host each time is made once.

On the fake CuPy (``tests/fake_cupy``), which counts each wait (``cupy.cuda.stream.host_waits``) and upload, and
records where each happened with ``FAKE_CUPY_WAIT_TRACE=1``; on a GPU (``gpu`` tests), by a kernel that spins
until the host has enqueued the epoch's last step (as tests/test_batches.py's).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_cuda
from test_batches import _NEEDS_CUPYX, _WAIT_FOR_HOST
from test_cupy_rules import FAKE, last_json, run_with_fake_cupy

import xpnet as xn

LAUNCHES = Path(__file__).resolve().parents[1] / "benchmarks" / "launches.py"


def _launches_module():
    spec = importlib.util.spec_from_file_location("launches", LAUNCHES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_on_the_fake_cupy_no_step_after_an_epochs_first_waits_for_the_gpu(tmp_path):
    """Every model of benchmarks/launches.py (a CNN with a per-step schedule, BatchNorm over (N, C, L) with
    GroupNorm and InstanceNorm, Residual blocks with on-device augmentation and a per-step EMA, a frozen backbone,
    LSTM and GRU language models over a TokenStream with clip_grad_norm, tied weights and accumulation, a
    Transformer encoder classifier under a key-padding mask and an encoder-decoder under a causal one, both models
    of one's own, EmbeddingBag, a residual model of one's own, the book's seq2seq models) trains 2 epochs on
    "cuda": after
    each epoch's first step no step waits (an Embedding of a model of one's own read its range check back every
    step), the first step waits only for the one read of an ids array's range an epoch (``xpnet/backend/rows.py``),
    and the second epoch copies nothing from the host (EmbeddingBag uploaded its last offset every step)."""
    environment = {**os.environ, "FAKE_CUPY_WAIT_TRACE": "1",
                   "PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")])}
    environment.pop("XPNET_DEVICE", None)
    proc = subprocess.run([sys.executable, str(LAUNCHES), "--json"], capture_output=True, text=True, env=environment,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in map(json.loads, proc.stdout.splitlines()[:-1])}
    assert set(rows) == set(_launches_module().MODELS)
    for name, row in rows.items():
        assert set(row["waits_after_first_step"]) == {0}, (name, row["wait_stacks"])
        assert all("backend/rows.py" in stack for stack in row["wait_stacks"]), (name, row["wait_stacks"])
        # RandomShiftFlip draws on the host from (seed, epoch, step): one copy a step (it made three)
        assert row["uploads_per_epoch"][-1] == (row["steps"] if name == "augmented" else 0), name
    assert rows["transformer"]["waits_per_epoch"] == [1, 1]  # its Embedding's ids: one read of their range an epoch


def test_on_the_fake_cupy_what_still_waits_is_caught_and_named(tmp_path):
    """The counts can fail: ids made on the device inside the forward (not a batch as it came) are still checked
    in every forward, a wait a step that FAKE_CUPY_WAIT_TRACE=1 traces to Embedding.check_range. And a packed
    sequence's mask and reverse order, and an EmbeddingBag's layout, are made once per lengths or shape: a second
    forward and backward copies nothing from the host and waits for nothing (pad_packed_sequence sent the lengths
    to the device to read them back). The fused cross-entropy launches no count of the labels it is vouched for,
    and attention's dropout of its weights takes Dropout's fused kernel, the same numbers as the portable mask."""
    out = last_json(run_with_fake_cupy("""
    import json, numpy as np, cupy, xpnet as xn
    L, st = xn.layers, cupy.cuda.stream

    class Shifted(xn.Model):
        def __init__(self):
            super().__init__()
            self.embed, self.out = L.Embedding(10, 4), L.Linear(4, 3)
        def forward(self, ids, train=True):
            return self.out.forward(self.embed.forward(ids % 10, train).mean(axis=1), train)
        def backward(self, dy):
            self.embed.backward(cupy.broadcast_to(self.out.backward(dy)[:, None, :] / 5, (dy.shape[0], 5, 4)))

    rng = np.random.default_rng(0)
    before = st.host_waits
    xn.train(Shifted(), (rng.integers(0, 10, (32, 5)), rng.integers(0, 3, 32)), loss="cross_entropy",
             optimizer="adam", epochs=1, batch_size=8, device="cuda", progress=False)
    traced = [s for s in st.wait_stacks if "check_range" in s and "embedding.py" in s]

    gru = L.GRU(3, 4, bidirectional=True, return_state=True).to("cuda")
    bag = L.EmbeddingBag(10, 4, mode="max", padding_idx=0).to("cuda")
    x = xn.to_device(rng.standard_normal((5, 3, 3)).astype(np.float32), "cuda")
    ids = xn.to_device(rng.integers(0, 10, (3, 4)), "cuda")
    repeats = []
    for _ in range(2):
        waits, uploads = st.host_waits, st.uploads
        out, h = gru(L.pack_padded_sequence(x, [5, 3, 2]))
        y, lengths = L.pad_packed_sequence(out)
        gru.backward(y * 0 + 1, h * 0)
        bag.backward(bag(ids) * 0 + 1)
        repeats.append([st.host_waits - waits, st.uploads - uploads])
    loss, y = xn.losses.SoftmaxCrossEntropy(), xn.to_device(rng.standard_normal((6, 4)).astype(np.float32), "cuda")
    t, fused = xn.to_device(rng.integers(0, 4, 6), "cuda"), []
    for vouched in (False, True):
        with loss.none_ignored(vouched):
            counts = st.launches["xpnet_count_valid"]
            fused.append([loss.forward(y, t).get().tolist(), loss.backward().get().tolist(),
                          st.launches["xpnet_count_valid"] - counts])
    attended = []
    q = xn.to_device(rng.standard_normal((2, 3, 4)).astype(np.float32), "cuda")
    for fast in (False, True):
        previous = xn.backend.set_fast_paths(fast)
        xn.init.seed(3)
        mha = xn.layers.MultiheadAttention(4, 2, dropout=0.5).to("cuda")
        # the fused Dropout kernel: as one block that moves its draw count on itself (a small draw), or a grid
        fused_dropouts = st.launches["xpnet_dropout_forward"] + st.launches["xpnet_dropout_forward_counted"]
        out, weights = mha.forward(q, q, q, average_attn_weights=False)
        attended.append([out.get().tolist(), [d.get().tolist() for d in mha.backward(out * 0 + 1)],
                         st.launches["xpnet_dropout_forward"] + st.launches["xpnet_dropout_forward_counted"]
                         - fused_dropouts])
        xn.backend.set_fast_paths(previous)
    print(json.dumps({"traced": len(traced), "repeats": repeats, "lengths": [str(lengths.dtype), lengths.tolist()],
                      "fused": fused, "attended": attended}))
    """, tmp_path, FAKE_CUPY_WAIT_TRACE="1"))
    # attention's dropout through the fused Dropout kernel (it took the portable mask, six launches): the same mask
    # (its softmax, a CuPy kernel of its own with the fast paths on, rounds within float32's few ulps)
    (portable, fast) = out["attended"]
    np.testing.assert_allclose(fast[0], portable[0], rtol=1e-5, atol=1e-6)
    for d_fast, d_portable in zip(fast[1], portable[1]):
        np.testing.assert_allclose(d_fast, d_portable, rtol=1e-5, atol=1e-6)
    assert [a[2] for a in out["attended"]] == [0, 1]
    # labels vouched for (xn.train checks them once): the fused loss takes their count from the host, same bits
    assert out["fused"][0][:2] == out["fused"][1][:2] and [f[2] for f in out["fused"]] == [1, 0]
    assert out["traced"] >= 4  # one a step of the epoch's 4
    assert out["repeats"][1] == [1, 0]  # the bag's range check of ids that are no batch; its longest bag is T
    assert out["lengths"] == ["int64", [5, 3, 2]]


def test_a_batch_of_a_checked_array_is_refused_where_it_holds_a_bad_id_as_before():
    """Embedding's range check of a BatchIterator batch reads its array's range once an epoch; where that array
    holds an id out of range, each batch is checked as before: the batch holding it is refused, with the same
    message, and the batches before it pass."""
    ids = np.arange(40).reshape(20, 2) % 10
    ids[13, 1] = 10
    embed = xn.layers.Embedding(10, 3)
    batches = xn.datasets.BatchIterator(ids, batch_size=4, seed=1)
    holding = [13 in batch for batch in np.split(batches.permutation(0), [4, 8, 12, 16])].index(True)
    for i, (batch,) in enumerate(batches.epoch(0)):
        if i == holding:
            with pytest.raises(ValueError, match=r"Embedding: ids must lie in \[0, 10\), got values in") as got:
                embed.forward(batch)
            with pytest.raises(ValueError) as unbatched:  # a copy: not a batch, checked on its own as before
                embed.forward(batch.copy())
            assert str(got.value) == str(unbatched.value)
            break
        embed.forward(batch)
    for (batch,) in xn.datasets.BatchIterator(ids % 10, batch_size=4, seed=1).epoch(0):
        embed.forward(batch)


def test_embedding_bags_kept_layout_gives_what_a_fresh_layer_gives():
    """EmbeddingBag keeps the layout of (B, T) bags per shape: forwards of other shapes in between, the outputs
    and gradients equal those of a layer of the same weights seeing each shape first."""
    rng = np.random.default_rng(0)
    for mode in ("mean", "max"):
        kept = xn.layers.EmbeddingBag(12, 3, mode=mode, padding_idx=0)
        for shape in [(3, 4), (2, 5), (3, 4)]:
            ids, dy = rng.integers(0, 12, shape), rng.standard_normal((shape[0], 3)).astype(np.float32)
            fresh = xn.layers.EmbeddingBag(12, 3, mode=mode, padding_idx=0)
            fresh.params["W"] = kept.params["W"].copy()
            np.testing.assert_array_equal(kept.forward(ids), fresh.forward(ids))
            kept.backward(dy)
            fresh.backward(dy)
            np.testing.assert_array_equal(kept.grads["W"], fresh.grads["W"])


def test_batchnorm_over_sequences_trains_where_a_last_single_sample_has_several_steps():
    """xn.train's check for a single-sample batch read BatchNorm's input as (N, C, H, W) and failed on (N, C, L)
    with an IndexError; now a last batch of one sample trains where L > 1 and is refused where L = 1, as
    PyTorch's BatchNorm1d trains and refuses."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")
    norm = torch.nn.BatchNorm1d(4)
    norm(torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        norm(torch.zeros(1, 4, 1))
    rng = np.random.default_rng(0)
    for steps in (3, 1):
        model = xn.Sequential(xn.layers.Conv1d(2, 4, 1), xn.layers.BatchNorm(4), xn.layers.Flatten(),
                              xn.layers.Linear(4 * steps, 3))
        data = (rng.standard_normal((9, 2, steps)).astype(np.float32), rng.integers(0, 3, 9))
        kwargs = {"loss": "cross_entropy", "optimizer": "sgd", "epochs": 1, "batch_size": 4, "progress": False}
        if steps == 1:
            with pytest.raises(ValueError, match=r"last batch holds a single sample.*BatchNorm"):
                xn.train(model, data, **kwargs)
        else:
            xn.train(model, data, **kwargs)


def _spin_after_each_first_step(monkeypatch):
    """As tests/test_batches.py's spinner, queued once an epoch's first step is enqueued (its second batch
    asked for), for BatchIterator and TokenStream: the list gets, at each epoch's end, whether the stream was
    still busy (no later step waited for the GPU)."""
    import cupy  # noqa: PLC0415
    import cupyx  # noqa: PLC0415

    kernel = cupy.RawKernel(_WAIT_FOR_HOST, "wait_for_host")
    flag = cupyx.empty_pinned((1,), dtype=np.int32)
    busy_at_end: list[bool] = []
    for cls in (xn.datasets.BatchIterator, xn.datasets.TokenStream):
        original = cls.epoch

        def epoch(self, e, original=original):
            batches = original(self, e)
            yield next(batches)
            spinning = False
            try:
                for batch in batches:
                    if not spinning:
                        flag[0] = 0
                        kernel((1,), (1,), (np.uint64(flag.ctypes.data), np.int64(2 * 10**10)))
                        spinning = True
                    yield batch
            finally:
                if spinning:
                    busy_at_end.append(not cupy.cuda.get_current_stream().done)
                    flag[0] = 1
                    cupy.cuda.get_current_stream().synchronize()

        monkeypatch.setattr(cls, "epoch", epoch)
    return busy_at_end


@pytest.mark.gpu
def test_after_an_epochs_first_step_no_step_waits_for_the_gpu(monkeypatch):
    """On CuPy, for the models of benchmarks/launches.py: a spinner queued after each epoch's first step still
    runs when the last step has been enqueued. A first, unwatched run loads every kernel (lazy module loading,
    issue 23, 6). Not the augmented model: RandomShiftFlip copies its draws from the host each step, and CuPy stages
    such a copy in pinned memory, whose allocation (cudaHostAlloc) may synchronize the device while earlier blocks
    wait behind the spinner."""
    require_cuda()
    pytest.importorskip("cupyx", reason=_NEEDS_CUPYX)
    launches = _launches_module()
    busy = {}
    for name in [name for name in launches.MODELS if name != "augmented"]:
        launches.measure(name)
        with monkeypatch.context() as patch:
            busy_at_end = _spin_after_each_first_step(patch)
            launches.measure(name)
        busy[name] = busy_at_end
    assert busy == {name: [True] * len(busy[name]) for name in busy} and all(busy.values()), busy


def test_kept_causal_masks_give_what_a_fresh_layer_gives():
    """MultiheadAttention and ScaledDotProductAttention keep the causal mask of ``is_causal=True`` per query
    shape: forwards of other query and key lengths in between, the outputs and input gradients equal those of a
    layer of the same weights seeing each shape first."""
    rng = np.random.default_rng(0)
    kept_mha, kept_sdpa = xn.layers.MultiheadAttention(4, 2), xn.layers.ScaledDotProductAttention()
    for queries, keys in ((3, 4), (3, 5), (2, 5), (3, 4)):
        q = rng.standard_normal((2, queries, 4)).astype(np.float32)
        kv = rng.standard_normal((2, keys, 4)).astype(np.float32)
        fresh_mha, fresh_sdpa = xn.layers.MultiheadAttention(4, 2), xn.layers.ScaledDotProductAttention()
        fresh_mha.load_state_dict(kept_mha.state_dict())
        for kept, fresh in ((kept_mha, fresh_mha), (kept_sdpa, fresh_sdpa)):
            outs = [layer.forward(q, kv, kv, is_causal=True) for layer in (kept, fresh)]
            outs = [out[0] if isinstance(out, tuple) else out for out in outs]
            np.testing.assert_array_equal(outs[0], outs[1])
            grads = [layer.backward(np.ones_like(out)) for layer, out in zip((kept, fresh), outs)]
            for a, b in zip(*grads):
                np.testing.assert_array_equal(a, b)


def test_add_at_adds_into_the_view_as_the_indexed_update_does():
    """backend.add_at with a basic index adds into the view (one kernel on CuPy instead of the add and a copy of the
    view back); the same array as ``a[index] += value``, also where the index is an integer array (the old path)."""
    rng = np.random.default_rng(0)
    a, value = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 2, 5))
    for index, v in (((slice(None), slice(1, 3)), value), ((1, slice(None), 2), value[1, :, 0].repeat(2)),
                     ((..., slice(0, 5, 2)), value[:, :, :3].repeat(2, axis=1)),
                     ((np.array([0, 2]),), value[:2].repeat(2, axis=1))):
        expected = a.copy()
        expected[index] += v
        got = xn.backend.add_at(a.copy(), index, v)
        np.testing.assert_array_equal(got, expected)
