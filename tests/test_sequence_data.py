"""The book's seq2seq sets (generated), its files read its way, Penn Treebank from a folder or a local
HTTP server (checked by SHA-256), the offline text corpus, and TokenStream against the book's get_batch."""

import datetime
import hashlib
import re

import numpy as np
import pytest
from test_datasets import Server, dead_url, fake_disk_error

import xpnet as xn
from xpnet.datasets import ptb
from xpnet.testing import assert_placed


# -- the book's reference code, written from its source (dataset/sequence.py, common/trainer.py) --------

def book_load_data(lines, seed=1984):
    """sequence.load_data on a list of lines (the file's lines without their newlines)."""
    char_to_id = {}
    questions = [line[:line.find("_")] for line in lines]
    answers = [line[line.find("_"):] for line in lines]
    for q, a in zip(questions, answers):
        for ch in q + a:
            char_to_id.setdefault(ch, len(char_to_id))
    x = np.array([[char_to_id[c] for c in q] for q in questions])
    t = np.array([[char_to_id[c] for c in a] for a in answers])
    indices = np.arange(len(x))
    np.random.seed(seed)
    np.random.shuffle(indices)
    x, t = x[indices], t[indices]
    split_at = len(x) - len(x) // 10
    return (x[:split_at], t[:split_at]), (x[split_at:], t[split_at:]), char_to_id


def book_get_batch(xs, ts, batch_size, time_size, time_idx):
    """RnnlmTrainer.get_batch: returns the batch and the advanced time_idx."""
    batch_x = np.empty((batch_size, time_size), dtype="i")
    batch_t = np.empty((batch_size, time_size), dtype="i")
    data_size = len(xs)
    jump = data_size // batch_size
    offsets = [i * jump for i in range(batch_size)]
    for time in range(time_size):
        for i, offset in enumerate(offsets):
            batch_x[i, time] = xs[(offset + time_idx) % data_size]
            batch_t[i, time] = ts[(offset + time_idx) % data_size]
        time_idx += 1
    return batch_x, batch_t, time_idx


# -- addition and dates ---------------------------------------------------------------------------------

def test_addition_lines_are_in_the_books_format_and_right():
    lines = xn.datasets.addition_lines(3000, seed=5)
    pairs = set()
    for line in lines:
        assert len(line) == 12 and re.fullmatch(r"\d{1,3}\+\d{1,3} *_\d{1,4} *", line), line
        a, b = map(int, line[:7].split("+"))
        assert int(line[8:]) == a + b
        pairs.add((min(a, b), max(a, b)))
    assert len(pairs) == 3000  # no pair twice, in either order
    assert xn.datasets.addition_lines(3000, seed=5) == lines != xn.datasets.addition_lines(3000, seed=6)


DATE_FORMATS = ("%m/%d/%y", "%b %d, %Y", "%B %d, %Y", "%A, %B %d, %Y")


def test_date_lines_are_in_the_books_formats_and_right():
    lines = xn.datasets.date_lines(4000, seed=5)
    cases = []
    for line in lines:
        assert len(line) == 40 and line[29] == "_", line
        question, answer = line[:29].rstrip(), datetime.date.fromisoformat(line[30:])
        assert datetime.date(1970, 1, 1) <= answer <= datetime.date(2017, 12, 31)
        parsed = [(i, datetime.datetime.strptime(question.title(), f).date()) for i, f in enumerate(DATE_FORMATS)
                  if _parses(question.title(), f)]
        assert parsed and all(day == answer for _, day in parsed), line
        if "/" not in question:
            cases.append("upper" if question.isupper() else "lower" if question.islower() else "title")
    share = np.bincount([0 if "/" in q else 1 for q in lines], minlength=2) / len(lines)
    assert 0.2 < share[0] < 0.3  # short numeric dates, a quarter as in the book's file
    assert 0.45 < cases.count("title") / len(cases) < 0.55 and 0.2 < cases.count("upper") / len(cases) < 0.3
    assert any(re.match(r"[A-Za-z]+, ", q) for q in lines)  # weekdays
    assert xn.datasets.date_lines(50, seed=1) == xn.datasets.date_lines(50, seed=1)


def _parses(text, fmt):
    try:
        datetime.datetime.strptime(text, fmt)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("make", [xn.datasets.addition_lines, xn.datasets.date_lines])
def test_split_and_vocabulary_equal_the_books_load_data(make, tmp_path):
    lines = make(500, seed=2)
    (path := tmp_path / "data.txt").write_text("".join(line + "\n" for line in lines))
    data = xn.datasets.load_seq2seq_file(path)
    (x, t), (xt, tt), char_to_id = book_load_data(lines)
    for ours, ref in zip((*data.train, *data.test), (x, t, xt, tt)):
        np.testing.assert_array_equal(ours, ref)
        assert ours.dtype == np.int64
    assert data.char_to_id == char_to_id and list(data.char_to_id.values()) == list(range(len(char_to_id)))
    assert len(data.test[0]) == 50
    assert data.decode(np.concatenate([data.test[0][0], data.test[1][0]])) in lines


def test_full_size_sets_have_the_books_shapes():
    (x, t), (xt, tt), char_to_id, id_to_char = xn.datasets.addition()
    assert x.shape == (45000, 7) and t.shape == (45000, 5) and xt.shape == (5000, 7) and tt.shape == (5000, 5)
    assert sorted(char_to_id) == sorted("0123456789+ _") and np.all(t[:, 0] == char_to_id["_"])
    digits = np.array([len("".join(id_to_char[i] for i in row).split("+")[0]) for row in np.concatenate([x, xt])])
    assert 0.08 < np.mean(digits == 1) < 0.12 and 0.54 < np.mean(digits == 3) < 0.61  # the book's file: 0.097, 0.578
    data = xn.datasets.dates(n=2000)
    assert data.train[0].shape == (1800, 29) and data.train[1].shape == (1800, 11)


def test_bad_seq2seq_lines_are_refused():
    with pytest.raises(ValueError, match="line 2 has no '_'"):
        xn.datasets.seq2seq_from_lines(["1+1 _2", "1+2 3"])
    with pytest.raises(ValueError, match=r"every question must have one length \(pad with spaces\)"):
        xn.datasets.seq2seq_from_lines(["1+1 _2", "10+1 _11"])



def test_bad_line_counts_name_the_function_and_n():
    for call, n, message in [(xn.datasets.addition, 0, r"addition: n \(the number of lines\) must be an int >= 1 and "
                              r"at most 500,500, got 0"),
                             (xn.datasets.addition_lines, 500_501, "addition_lines: n .* at most 500,500, got 500501"),
                             (xn.datasets.dates, 2.5, r"dates: n \(the number of lines\) must be an int >= 1, got 2.5"),
                             (xn.datasets.date_lines, True, "date_lines: n .* got True")]:
        with pytest.raises(ValueError, match=message):
            call(n)
    assert len(xn.datasets.addition_lines(np.int64(3))) == 3

# -- Penn Treebank ----------------------------------------------------------------------------------------

PTB_TEXT = {"ptb.train.txt": " the cat sat \n a dog <unk> the cat \n", "ptb.valid.txt": " a cat \n",
            "ptb.test.txt": " dog the \n <unk> \n"}


@pytest.fixture
def small_ptb(monkeypatch, tmp_path):
    """Small PTB-format files with their hashes installed; no cache, system folder, mirror or proxy."""
    monkeypatch.delenv("XPNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(xn.datasets.mnist, "SYSTEM_DIRS", [str(tmp_path / "system")])
    monkeypatch.setattr(ptb, "MIRRORS", [])
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    data = {name: text.encode() for name, text in PTB_TEXT.items()}
    monkeypatch.setattr(ptb, "CHECKSUMS", {name: hashlib.sha256(b).hexdigest() for name, b in data.items()})
    return data


def _book_ptb(split):
    """ptb.load_vocab and ptb.load_data on PTB_TEXT."""
    word_to_id = {}
    for word in PTB_TEXT["ptb.train.txt"].replace("\n", "<eos>").strip().split():
        word_to_id.setdefault(word, len(word_to_id))
    words = PTB_TEXT[f"ptb.{split}.txt"].replace("\n", "<eos>").strip().split()
    return np.array([word_to_id[w] for w in words]), word_to_id


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_ptb_from_a_folder_equals_the_books_loader(small_ptb, tmp_path, split):
    for name, body in small_ptb.items():
        (tmp_path / "data" / "ptb").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "ptb" / name).write_bytes(body)
    corpus, word_to_id, id_to_word = xn.datasets.load_ptb(split, root=tmp_path / "data")
    ref, ref_vocab = _book_ptb(split)
    np.testing.assert_array_equal(corpus, ref)
    assert corpus.dtype == np.int64 and word_to_id == ref_vocab
    assert [id_to_word[i] for i in range(len(id_to_word))] == list(ref_vocab)


def test_ptb_downloads_once_checks_the_hash_and_then_reads_the_cache(small_ptb, monkeypatch):
    server = Server({f"/data/{name}": (body, False) for name, body in small_ptb.items()})
    try:
        monkeypatch.setattr(ptb, "MIRRORS", [dead_url(), server.url])  # the first mirror is down
        corpus, _, _ = xn.datasets.load_ptb("test")
        np.testing.assert_array_equal(corpus, _book_ptb("test")[0])
        assert sorted(server.requests) == ["/data/ptb.test.txt", "/data/ptb.train.txt"]
        monkeypatch.setattr(ptb, "MIRRORS", [dead_url()])
        np.testing.assert_array_equal(xn.datasets.load_ptb("test")[0], corpus)
        assert len(server.requests) == 2
    finally:
        server.close()


def test_ptb_download_with_a_wrong_hash_keeps_nothing(small_ptb, monkeypatch):
    server = Server({f"/data/{name}": (body + b"x", False) for name, body in small_ptb.items()})
    try:
        monkeypatch.setattr(ptb, "MIRRORS", [server.url])
        with pytest.raises(xn.datasets.DatasetChecksumError, match="ptb.train.txt: every download had a wrong"):
            xn.datasets.load_ptb()
        assert not xn.datasets.cache_dir("ptb").exists()  # no empty cache folder left, as MNIST's
    finally:
        server.close()


def test_ptb_a_disk_error_stops_the_download_naming_the_file(small_ptb, monkeypatch):
    """As MNIST's: a full disk was counted as the mirror failing, and the next mirror tried."""
    first, second = (Server({f"/data/{name}": (body, False) for name, body in small_ptb.items()}) for _ in "ab")
    try:
        monkeypatch.setattr(ptb, "MIRRORS", [first.url, second.url])
        fake_disk_error(monkeypatch, "fsync")
        with pytest.raises(OSError, match="No space left on device") as info:
            xn.datasets.load_ptb("train")
        assert not isinstance(info.value, xn.datasets.DatasetNotFoundError)
        assert info.value.filename == str(xn.datasets.cache_dir("ptb") / "ptb.train.txt")
        assert len(first.requests) == 1 and second.requests == []
    finally:
        first.close()
        second.close()


def test_ptb_local_file_with_a_wrong_hash_is_reported_and_kept(small_ptb, tmp_path):
    for name, body in small_ptb.items():
        (tmp_path / name).write_bytes(body)
    (tmp_path / "ptb.valid.txt").write_bytes(b" changed \n")
    with pytest.raises(xn.datasets.DatasetChecksumError, match="ptb.valid.txt: SHA-256 .* left as it is"):
        xn.datasets.load_ptb("valid", root=tmp_path)
    assert (tmp_path / "ptb.valid.txt").read_bytes() == b" changed \n"


def test_ptb_cached_file_is_checked_when_another_is_downloaded(small_ptb, monkeypatch):
    """A wrong training file in the cache was used unchecked when the split's file had to be downloaded."""
    cache = xn.datasets.cache_dir("ptb")
    cache.mkdir(parents=True)
    (cache / "ptb.train.txt").write_bytes(b" not the treebank \n")
    server = Server({f"/data/{name}": (body, False) for name, body in small_ptb.items()})
    try:
        monkeypatch.setattr(ptb, "MIRRORS", [server.url])
        with pytest.raises(xn.datasets.DatasetChecksumError, match="ptb.train.txt: SHA-256 .* left as it is"):
            xn.datasets.load_ptb("valid")
        assert server.requests == [] and (cache / "ptb.train.txt").read_bytes() == b" not the treebank \n"
    finally:
        server.close()


def test_ptb_offline_with_nothing_local_says_where_it_looked(small_ptb):
    with pytest.raises(xn.datasets.DatasetNotFoundError, match="(?s)Penn Treebank not found.*downloading was off"):
        xn.datasets.load_ptb(download=False)
    with pytest.raises(ValueError, match="load_ptb: split must be one of"):
        xn.datasets.load_ptb("dev")


# -- the offline text corpus ---------------------------------------------------------------------------

def test_python_docs_is_there_offline_and_round_trips_through_char_ids():
    text = xn.datasets.python_docs()
    assert len(text) > 100_000 and "assert" in text and text == xn.datasets.python_docs()
    ids, char_to_id, id_to_char = xn.datasets.char_ids(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),) and ids[0] == 0
    assert "".join(id_to_char[i] for i in ids[:2000]) == text[:2000]
    assert sorted(char_to_id.values()) == list(range(len(char_to_id)))


# -- TokenStream -------------------------------------------------------------------------------------------

def test_token_stream_equals_the_books_get_batch_across_epochs(dev):
    corpus = np.random.default_rng(0).integers(0, 50, 1000)
    stream = xn.datasets.TokenStream(xn.to_device(corpus, dev), batch_size=4, time_size=7)
    assert len(stream) == 999 // 28
    time_idx = 0
    for epoch in range(2):
        for x, t in stream.epoch(epoch):
            bx, bt, time_idx = book_get_batch(corpus[:-1], corpus[1:], 4, 7, time_idx)
            assert_placed(x, dev)
            np.testing.assert_array_equal(xn.to_numpy(x), bx)
            np.testing.assert_array_equal(xn.to_numpy(t), bt)
    assert [xn.to_numpy(x).tolist() for x, _ in stream.epoch(1)] == [xn.to_numpy(x).tolist()
                                                                      for x, _ in stream.epoch(1)]


def test_token_stream_uploads_its_positions_once_not_per_batch(monkeypatch, dev):
    """A batch's positions are computed on the ids' device: on a GPU an upload per batch from pageable host
    memory may wait for the queued steps (the training loop would wait each step)."""
    from xpnet.datasets import stream as stream_module

    uploads = []
    real = stream_module.to_device
    monkeypatch.setattr(stream_module, "to_device", lambda a, *args, **kw: uploads.append(a.shape) or real(a, *args,
                                                                                                          **kw))
    corpus = np.random.default_rng(1).integers(0, 50, 600)
    stream = xn.datasets.TokenStream(xn.to_device(corpus, dev), batch_size=3, time_size=5)
    batches = [xn.to_numpy(x) for e in range(3) for x, _ in stream.epoch(e)]
    assert len(batches) == 3 * len(stream) > 3 and uploads == [(15,)]
    np.testing.assert_array_equal(batches[-1], corpus[:-1][stream.positions(3 * len(stream) - 1)])


def test_token_stream_refuses_what_gives_no_batch():
    with pytest.raises(ValueError, match="TokenStream: 10 ids give no full batch of 4 rows x 3 steps"):
        xn.datasets.TokenStream(np.arange(10), 4, 3)
    with pytest.raises(ValueError, match="TokenStream: ids must be a 1-D integer array"):
        xn.datasets.TokenStream(np.zeros(100), 4, 3)
    with pytest.raises(ValueError, match="TokenStream: time_size must be an int >= 1"):
        xn.datasets.TokenStream(np.arange(100), 4, 0)


def test_token_stream_takes_a_list_of_ids():
    """A list was refused with 'list is not a supported array type', naming neither TokenStream nor ids."""
    corpus = np.random.default_rng(0).integers(0, 50, 100)
    stream, ref = xn.datasets.TokenStream(corpus.tolist(), 3, 5), xn.datasets.TokenStream(corpus, 3, 5)
    for (x, t), (rx, rt) in zip(stream.epoch(0), ref.epoch(0)):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(t, rt)
    with pytest.raises(ValueError, match="TokenStream: ids must be a 1-D integer array, got shape .* dtype float64"):
        xn.datasets.TokenStream([0.5] * 100, 3, 5)
