"""The command line: train and gradcheck, with one-line errors and exit code 2 for user mistakes."""

import errno
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from xpnet.cli import main


def test_train_spiral_writes_model_history_and_curves(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "spiral", "--model", "mlp", "--device", "cpu", "--epochs", "3",
                 "--batch-size", "30", "--optimizer", "adam", "--lr", "0.01", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "cpu" in printed and "test accuracy:" in printed
    assert (out / "model.npz").exists()
    history = json.loads((out / "history.json").read_text())
    assert len(history["epochs"]) == 3
    pytest.importorskip("matplotlib")
    assert (out / "curves.png").stat().st_size > 0


def test_the_run_is_a_record_and_the_test_set_is_called_test(tmp_path, capsys):
    import xpnet as xn

    argv = ["train", "--dataset", "spiral", "--device", "cpu", "--epochs", "2", "--optimizer", "momentum",
            "--seed", "3", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["config"] == {
        "xpnet_version": xn.__version__, "command": shlex.join(["xpnet", *argv]), "dataset": "spiral",
        "data_root": None, "train_samples": 900, "test_samples": 300, "model": "mlp",
        "layers": ["Linear(in_features=2, out_features=100, bias=True)", "ReLU()",
                   "Linear(in_features=100, out_features=3, bias=True)"],
        "parameters": 603, "loss": "SoftmaxCrossEntropy",
        "optimizer": {"name": "Momentum", **xn.optim.Momentum().hyperparams()}, "epochs": 2, "batch_size": 100,
        "seed": 3, "device": "cpu", "ranks": 1}
    # The test set is "test" in the epoch lines, in history.json and in the final line; never "val".
    assert set(record["epochs"][0]) == {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                        "seconds", "lr"}
    assert record["test"]["accuracy"] == pytest.approx(record["epochs"][-1]["test_accuracy"])
    assert "val" not in printed and printed.count("test_accuracy") == 2
    assert f"test accuracy: {record['test']['accuracy']:.4f}" in printed


def test_without_matplotlib_the_run_says_it_skipped_the_plot_and_how_to_get_it(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["train", "--dataset", "spiral", "--device", "cpu", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "xpnet: skipped curves.png: History.plot needs matplotlib: pip install" in captured.err
    assert "[plot]'" in captured.err and "curves.png" not in captured.out
    assert sorted(os.listdir(tmp_path)) == ["history.json", "model.npz"]


def test_help_shows_the_defaults_and_version_is_there(capsys):
    import xpnet as xn

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for default in ("(default: fashion-mnist)", "(default: mlp)", "(default: auto)", "(default: 5)",
                    "(default: 100)", "(default: adam)", "(default: 0)", "(default: runs/latest)", "adam 0.001"):
        assert default in text
    assert "(default: None)" not in text and "(default: False)" not in text
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"xpnet {xn.__version__}"


def test_saved_model_loads_and_predicts(tmp_path):
    import xpnet as xn

    main(["train", "--dataset", "spiral", "--device", "cpu", "--epochs", "1", "--out", str(tmp_path), "--quiet"])
    model = xn.load(tmp_path / "model.npz")
    x, _ = xn.datasets.spiral(5, 3, seed=0)
    assert model.predict(x).shape == (15, 3)


@pytest.mark.parametrize("argv,message", [
    (["train", "--device", "tpu", "--dataset", "spiral"], "device: expected 'cpu', 'cuda'"),
    (["train", "--device", "cuda:x", "--dataset", "spiral"], "'torch:mps', 'jax:cpu', 'jax:gpu[:N]', got 'cuda:x'"),
    (["train", "--device", "gpu", "--dataset", "spiral"], "got 'gpu' (did you mean 'cuda'?)"),
    (["gradcheck", "--device", "torch:gpu:1"], "got 'torch:gpu:1' (did you mean 'torch:cuda:1'?)"),
])
def test_bad_device_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path)] if argv[0] == "train" else [])) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "xpnet.Device" not in err  # a Python type means nothing on the command line
    assert len(err.strip().splitlines()) == 1


def test_unknown_dataset_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "cifar"])
    assert exc.value.code == 2
    assert "invalid choice: 'cifar'" in capsys.readouterr().err


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--dataset", "spiral", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "is not a writable folder" in err and "Traceback" not in err


def test_missing_data_exits_2(tmp_path, capsys, monkeypatch):
    from xpnet.datasets import mnist

    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", (), raising=False)
    monkeypatch.setattr(mnist, "MIRRORS", {name: ("http://127.0.0.1:9/",) for name in mnist.MIRRORS})
    (tmp_path / "empty").mkdir()
    assert main(["train", "--dataset", "mnist", "--data-root", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet: error: mnist not found") and "Traceback" not in err
    # The folders searched, and how to point at the files from the command line.
    lines = err.splitlines()
    assert f"  {tmp_path / 'empty'}" in lines and f"  {tmp_path / 'data' / 'mnist'}" in lines
    assert "--data-root <folder>" in err and "root=<folder>" not in err.replace("--data-root", "")


def test_a_data_root_that_is_not_a_folder_is_an_error(tmp_path, capsys):
    assert main(["train", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "typo"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"--data-root '{tmp_path / 'typo'}' is not a folder" in err and len(err.strip().splitlines()) == 1


def test_gradcheck_command_prints_a_passing_table(capsys):
    assert main(["gradcheck", "--model", "mlp", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "device: cpu" in printed and "0.W" in printed and "input" in printed


def test_python_dash_m_and_console_script_entry(tmp_path):
    env = {**os.environ, "XPNET_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "xpnet", "train", "--help"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and "--dataset" in done.stdout
    done = subprocess.run([sys.executable, "-m", "xpnet", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("xpnet ")


SPIRAL = ["train", "--dataset", "spiral", "--device", "cpu", "--quiet"]


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], r"--epochs: expected a finite number >= 1, got '0'"),
    (["--epochs", "-3"], r"--epochs: expected a finite number >= 1"),
    (["--batch-size", "0"], r"--batch-size: expected a finite number >= 1"),
    (["--batch-size", "2.5"], r"--batch-size: expected a whole number, got '2.5'"),
    (["--lr", "nan"], r"--lr: expected a finite number >= 0, got 'nan'"),
    (["--lr", "-0.1"], r"--lr: expected a finite number >= 0"),
    (["--seed", "-1"], r"--seed: expected a finite number >= 0"),
    (["--batch-size", "100000"], r"--batch-size 100000 is larger than the 900 training samples of spiral"),
    (["--lr", "1e30", "--optimizer", "sgd"], r"training stopped: "),
])
def test_user_errors_are_one_line_exit_2_and_leave_no_out_folder(tmp_path, capsys, args, message):
    """Issue 15, CLI: negative or zero numbers, a NaN learning rate, a batch larger than the data,
    --epochs 0 and a diverging run print one line (no traceback, no usage block), exit 2, and leave
    no --out folder (it used to be created first and left empty)."""
    out = tmp_path / "run"
    try:
        code = main(SPIRAL + args + ["--out", str(out)])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_full_disk_is_one_line_exit_2_and_leaves_nothing_half_written(tmp_path, capsys, monkeypatch):
    """Issue 15, CLI: a full disk (ENOSPC while writing history.json, after model.npz) prints one line,
    exits 2 and removes what the run wrote, and the --out folder it created."""
    import xpnet.cli as cli

    real = cli.atomic_write

    def full(path, mode="wb"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(cli, "atomic_write", full)
    out = tmp_path / "run"
    assert main(SPIRAL + ["--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write to --out {str(out)!r}: No space left on device" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    monkeypatch.setattr(cli, "atomic_write", real)
    assert main(SPIRAL + ["--epochs", "1", "--out", str(out)]) == 0


def test_an_idx_header_that_would_not_fit_in_memory_is_one_line(tmp_path, capsys):
    """Issue 15, CLI: an IDX file whose header declares 2**32-1 images fails as truncated from what the
    file holds, without allocating the declared size (it used to raise MemoryError, a traceback)."""
    import struct

    from xpnet.datasets import mnist

    data = tmp_path / "data"
    data.mkdir()
    for file in mnist.FILES:
        with open(data / file, "wb") as f:
            if "images" in file:
                f.write(struct.pack(">4B3I", 0, 0, 8, 3, 2**32 - 1, 28, 28) + bytes(784))
            else:
                f.write(struct.pack(">4BI", 0, 0, 8, 1, 2**32 - 1) + bytes(1))
    assert main(["train", "--dataset", "mnist", "--data-root", str(data), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _ctrl_c_in_epoch(monkeypatch, n):
    """Ctrl-C in the middle of epoch ``n`` (at its start: what an epoch had done is lost either way)."""
    from xpnet.training.trainer import Trainer

    run_epoch = Trainer.run_epoch

    def run(self, batches, epoch, *args):
        if epoch == n:
            raise KeyboardInterrupt
        return run_epoch(self, batches, epoch, *args)

    monkeypatch.setattr(Trainer, "run_epoch", run)


def test_ctrl_c_keeps_a_checkpoint_and_resume_ends_as_the_uninterrupted_run(tmp_path, capsys, monkeypatch):
    """Ctrl-C used to leave nothing of the run (and the earlier run's files without a word): --out keeps
    checkpoint.npz of the last complete epoch, the run says so with the command to continue, and --resume
    ends with the weights and history of a run that was never interrupted."""
    import xpnet as xn

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(SPIRAL + ["--epochs", "4", "--out", str(whole)]) == 0
    assert (whole / "model.npz").exists() and not (whole / "checkpoint.npz").exists()  # the run is in model.npz
    capsys.readouterr()
    _ctrl_c_in_epoch(monkeypatch, 3)
    argv = SPIRAL + ["--epochs", "4", "--out", str(cut)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"xpnet: Ctrl-C: {cut / 'checkpoint.npz'} holds the run after epoch 2 of 4" in err
    assert f"xpnet: continue it with: {shlex.join(['python', '-m', 'xpnet', *argv, '--resume'])}" in err
    assert os.listdir(cut) == ["checkpoint.npz"]
    assert len(xn.load(cut / "checkpoint.npz").named_params()) == 4
    monkeypatch.undo()

    assert main(argv) == 2  # a new run would overwrite what was saved
    assert "holds checkpoint.npz of an interrupted run: add --resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert not (cut / "checkpoint.npz").exists()
    saved, resumed = _arrays(whole / "model.npz"), _arrays(cut / "model.npz")
    assert saved.keys() == resumed.keys()
    for name in saved:
        np.testing.assert_array_equal(resumed[name], saved[name])
    epochs = [json.loads((d / "history.json").read_text())["epochs"] for d in (whole, cut)]
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in epochs[1]] == \
        [{k: v for k, v in e.items() if k != "seconds"} for e in epochs[0]]


def test_ctrl_c_says_when_the_files_in_out_are_an_earlier_runs(tmp_path, capsys, monkeypatch):
    assert main(SPIRAL + ["--epochs", "1", "--out", str(tmp_path)]) == 0
    before = _arrays(tmp_path / "model.npz")
    _ctrl_c_in_epoch(monkeypatch, 1)
    capsys.readouterr()
    assert main(SPIRAL + ["--epochs", "3", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted before the first epoch ended; nothing was saved" in err
    assert "model.npz, history.json" in err and f"in {tmp_path} are still those of an earlier run" in err
    assert not (tmp_path / "checkpoint.npz").exists()
    np.testing.assert_array_equal(_arrays(tmp_path / "model.npz")["0.W"], before["0.W"])


def test_resume_without_a_checkpoint_or_beyond_epochs_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    assert main(SPIRAL + ["--epochs", "1", "--out", str(tmp_path / "none"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume: there is no" in err and len(err.strip().splitlines()) == 1
    _ctrl_c_in_epoch(monkeypatch, 3)
    assert main(SPIRAL + ["--epochs", "4", "--out", str(tmp_path / "cut")]) == 130
    capsys.readouterr()
    assert main(SPIRAL + ["--epochs", "1", "--out", str(tmp_path / "cut"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume: " in err and "has already 2 epochs, more than epochs=1" in err
    assert len(err.strip().splitlines()) == 1 and (tmp_path / "cut" / "checkpoint.npz").exists()


def test_resume_of_a_finished_run_says_that_resume_continues_interrupted_runs_only(tmp_path, capsys):
    """--resume on an --out whose run finished said only that there is no checkpoint.npz and to leave
    --resume out, which would train a new model over the finished one."""
    out = tmp_path / "done"
    assert main(SPIRAL + ["--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(SPIRAL + ["--epochs", "2", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "the run in" in err and "finished (its model.npz is there)" in err and "xn.load(" in err
    # A new run does not train that model further: it starts a new one (over this one, in the same --out).
    assert "a new run (more --epochs, another --out) trains a new model from the start" in err
    assert len(err.strip().splitlines()) == 1 and sorted(os.listdir(out)) == ["curves.png", "history.json",
                                                                              "model.npz"]


def test_sigterm_writes_the_checkpoint_says_so_and_the_run_resumes(tmp_path, capsys):
    import signal

    out = tmp_path / "run"
    env = {**os.environ, "XPNET_DEVICE": "cpu"}
    p = subprocess.Popen([sys.executable, "-m", "xpnet", "train", "--dataset", "spiral", "--device", "cpu",
                          "--epochs", "500", "--batch-size", "10", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if line.startswith("epoch 2/"):
            p.send_signal(signal.SIGTERM)
            break
    text = "".join(lines) + p.stdout.read()
    assert p.wait(timeout=120) == -signal.SIGTERM, text
    done = int(re.search(r"xpnet: SIGTERM: .*checkpoint.npz holds the run after epoch (\d+) of 500", text).group(1))
    assert done >= 2 and "--resume" in text and os.listdir(out) == ["checkpoint.npz"]
    assert main(["train", "--dataset", "spiral", "--device", "cpu", "--quiet", "--epochs", str(done + 1),
                 "--batch-size", "10", "--out", str(out), "--resume"]) == 0
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == done + 1
