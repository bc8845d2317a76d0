"""The command line: train and gradcheck, with one-line errors and exit code 2 for user mistakes."""

import json
import os
import subprocess
import sys

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


def test_saved_model_loads_and_predicts(tmp_path):
    import xpnet as xn

    main(["train", "--dataset", "spiral", "--device", "cpu", "--epochs", "1", "--out", str(tmp_path), "--quiet"])
    model = xn.load(tmp_path / "model.npz")
    x, _ = xn.datasets.spiral(5, 3, seed=0)
    assert model.predict(x).shape == (15, 3)


@pytest.mark.parametrize("argv,message", [
    (["train", "--device", "tpu", "--dataset", "spiral"], "device: expected 'cpu', 'cuda'"),
    (["train", "--device", "cuda:x", "--dataset", "spiral"], "'cuda:N' with N a whole number"),
])
def test_bad_device_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
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
    assert main(["train", "--dataset", "mnist", "--data-root", str(tmp_path / "none"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "xpnet: error:" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_gradcheck_command_prints_a_passing_table(capsys):
    assert main(["gradcheck", "--model", "mlp", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "device: cpu" in printed and "0.W" in printed and "input" in printed


def test_python_dash_m_and_console_script_entry(tmp_path):
    env = {**os.environ, "XPNET_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "xpnet", "train", "--help"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and "--dataset" in done.stdout
