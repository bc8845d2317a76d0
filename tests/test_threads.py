"""xpnet.backend.threads: NumPy's BLAS thread count chosen by timing, restored afterwards, never
against a choice the user made."""

import pytest

import xpnet as xn
from xpnet.backend import threads

pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")


class FakeBlas:
    """A threadpoolctl controller stand-in: records every count it is given."""

    user_api = "blas"

    def __init__(self, n, path="/fake/libopenblas.so"):
        self.num_threads, self.filepath, self.calls = n, path, []

    def set_num_threads(self, n):
        self.calls.append(n)
        self.num_threads = n


@pytest.fixture
def blas(monkeypatch):
    fake = FakeBlas(4)
    monkeypatch.setattr(threads, "_numpy_blas", lambda: [fake])
    monkeypatch.setattr(threads, "_started_with", {})
    monkeypatch.setattr(threads, "_last_chosen", {})
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", threads.ENV):
        monkeypatch.delenv(k, raising=False)
    return fake


def _run_steps(tuner, clock, monkeypatch, seconds_for):
    """Run a round's steps until the tuner has chosen, a step taking ``seconds_for[n]`` seconds at n threads
    (the untimed first step 1 s). Returns the thread counts of the timed steps."""
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock[0])
    tuner.round()
    timed = []
    for _ in range(2 * threads._TRIAL_STEPS + 1):
        tuner.begin()
        if tuner._n is not None:
            timed.append(tuner._n)
        clock[0] += seconds_for.get(tuner._n, 0.0) if tuner._n is not None else 1.0
        tuner.end()
    return timed


@pytest.mark.parametrize("seconds_for,expected", [({1: 0.05, 4: 0.01}, 4),   # idle: more threads win
                                                  ({1: 0.01, 4: 0.50}, 1)])  # loaded: the cliff
def test_auto_runs_the_rest_of_the_round_with_the_faster_count(blas, monkeypatch, seconds_for, expected):
    with threads.blas_threads("auto") as tuner:
        assert tuner.candidates == (1, 4)
        _run_steps(tuner, [0.0], monkeypatch, seconds_for)
        assert tuner.chosen == expected and blas.num_threads == expected
        assert set(blas.calls[:-1]) == {1, 4}  # both were timed
        tuner.begin()  # after the trials a step changes nothing
        tuner.end()
        assert blas.num_threads == expected
    assert blas.num_threads == 4  # the user's count back


def test_a_clear_winner_is_taken_after_one_step_of_each_and_a_close_call_after_all(blas, monkeypatch):
    with threads.blas_threads("auto") as tuner:
        assert _run_steps(tuner, [0.0], monkeypatch, {1: 0.01, 4: 0.5}) == [1, 4]  # the cliff: one slow step
        assert tuner.chosen == 1
        timed = _run_steps(tuner, [0.0], monkeypatch, {1: 0.010, 4: 0.009})  # close: every trial step
        assert sorted(timed) == [1, 1, 1, 4, 4, 4] and tuner.chosen == 4


def test_the_rounds_first_step_is_not_timed(blas, monkeypatch):
    """First-call costs (a compile, a first allocation) fall on the first step: it must not decide."""
    clock = [0.0]
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock[0])
    with threads.blas_threads("auto") as tuner:
        tuner.round()
        tuner.begin()
        assert tuner._n is None and blas.num_threads == 4  # untimed, at the count it has
        clock[0] += 100.0
        tuner.end()
        assert all(not t for t in tuner._times.values())


def test_each_round_measures_again(blas, monkeypatch):
    clock = [0.0]
    with threads.blas_threads() as tuner:
        _run_steps(tuner, clock, monkeypatch, {1: 0.01, 4: 0.5})
        assert tuner.chosen == 1
        _run_steps(tuner, clock, monkeypatch, {1: 0.05, 4: 0.01})  # the load went away
        assert tuner.chosen == 4


@pytest.mark.parametrize("seconds_for,expected", [({1: 0.05, 4: 0.01}, 4), ({1: 0.01, 4: 0.50}, 1)])
def test_predict_runs_with_the_count_the_last_measurement_chose(blas, monkeypatch, seconds_for, expected):
    model = xn.Sequential(xn.layers.Linear(2, 3))
    with threads.blas_threads("auto", measure=False):
        assert blas.num_threads == 4  # nothing measured yet: the BLAS's own count
    with threads.blas_threads("auto") as tuner:
        _run_steps(tuner, [0.0], monkeypatch, seconds_for)
    seen = []
    model.layers[0].forward = lambda x, train=True: seen.append(blas.num_threads) or x  # one batch, no trials
    model.predict(xn.datasets.spiral(5, 3, seed=0)[0])
    assert seen == [expected] and blas.num_threads == 4


@pytest.mark.parametrize("env", ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_thread_count_the_user_set_in_the_environment_is_left_alone(blas, monkeypatch, env):
    monkeypatch.setenv(env, "4")
    with threads.blas_threads() as tuner:
        tuner.round()
        tuner.begin()
        tuner.end()
    assert blas.calls == []


def test_a_count_the_user_set_at_run_time_is_left_alone(blas, monkeypatch):
    with threads.blas_threads():
        pass  # xpnet sees the BLAS's own count (4) once
    blas.num_threads = 2  # the user's threadpool_limits(2)
    blas.calls.clear()
    with threads.blas_threads() as tuner:
        _run_steps(tuner, [0.0], monkeypatch, {2: 0.1})
    assert blas.calls == []


@pytest.mark.parametrize("setting", [1, 3, "2"])
def test_a_fixed_count_is_used_and_the_old_one_restored(blas, monkeypatch, setting):
    with threads.blas_threads(setting) as tuner:
        assert blas.num_threads == int(setting) and tuner.candidates == (int(setting),)
    assert blas.num_threads == 4


def test_the_environment_variable_sets_the_default(blas, monkeypatch):
    monkeypatch.setenv(threads.ENV, "1")
    with threads.blas_threads():
        assert blas.num_threads == 1
    monkeypatch.setenv(threads.ENV, "off")
    blas.calls.clear()
    with threads.blas_threads():
        pass
    assert blas.calls == []


@pytest.mark.parametrize("bad", [0, -1, 1.5, "many", True])
def test_bad_settings_are_refused_naming_the_argument(blas, monkeypatch, bad):
    with pytest.raises(ValueError, match="blas_threads must be 'auto', 'off' or a thread count"):
        threads.blas_threads(bad)
    monkeypatch.setenv(threads.ENV, str(bad))
    with pytest.raises(ValueError, match="XPNET_BLAS_THREADS must be"):
        threads.blas_threads()


def test_only_the_cpus_numpy_is_tuned(blas):
    strict = pytest.importorskip("array_api_strict")
    with threads.blas_threads("auto", xn.Device(strict, strict.Device("device1"))) as tuner:
        tuner.round()
    assert blas.calls == []


def test_xn_train_evaluate_and_predict_restore_the_count_they_found(blas):
    x, t = xn.datasets.spiral(50, 3, seed=0)
    for setting in ("auto", 1, "off"):
        xn.init.seed(0)
        model = xn.Sequential(xn.layers.Linear(2, 16), xn.layers.ReLU(), xn.layers.Linear(16, 3))
        xn.train(model, (x, t), loss="cross_entropy", optimizer=xn.optim.SGD(0.1), epochs=2, batch_size=10,
                 device="cpu", progress=False, blas_threads=setting)
        assert blas.num_threads == 4
        xn.evaluate(model, (x, t), loss="cross_entropy", batch_size=10, blas_threads=setting)
        model.predict(x, batch_size=10, blas_threads=setting)
        assert blas.num_threads == 4
    assert set(blas.calls) == {1, 4}  # auto tried both; 1 was fixed; off touched nothing


def test_numpy_blas_threads_reads_numpys_own_blas_as_it_is_set():
    """What MKL's products and the softmax's split follow: NumPy's BLAS count, with threadpoolctl's limits."""
    from threadpoolctl import threadpool_limits

    own = threads._own_blas()
    if own is None:
        pytest.skip("threadpoolctl finds no BLAS for NumPy here")
    if any("numpy.libs" in c.filepath for c in threads._numpy_blas()):  # NumPy's wheel, SciPy's BLAS beside it
        assert "numpy.libs" in own.filepath
    with threadpool_limits(1, user_api="blas"):
        assert threads.numpy_blas_threads() == 1
    assert threads.numpy_blas_threads() == own.get_num_threads() >= 1
