"""Every example runs (with small sizes) and prints what a reader of its docstring expects."""

import importlib.util
import pathlib
import re
import runpy

import numpy as np
import pytest

import xpnet as xn
from xpnet import backend

from conftest import require_cuda

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py") if "ArgumentParser(" in p.read_text()))
def test_help_describes_the_example_in_whole_sentences(name, capsys):
    """--help showed the docstring's first line only, cut mid-sentence ("... with its two"): now its first
    paragraph."""
    with pytest.raises(SystemExit) as exit_:
        _load(name).main(["--help"])
    assert exit_.value.code == 0
    first = "".join(_load(name).__doc__.split("\n\n")[0].split())  # argparse rewraps it, at hyphens too
    assert first.endswith(".") and first in "".join(capsys.readouterr().out.split())


def test_cpu_fallback_warns_and_trains_on_the_cpu(no_cuda, capsys):
    with pytest.warns(backend.XpnetDeviceWarning, match="cupy is not installed"):
        runpy.run_path(str(EXAMPLES / "cpu_fallback.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "trained on cpu" in out
    assert float(out.rsplit("train accuracy", 1)[1]) > 0.9


def test_gradient_check_example_passes(capsys):
    _load("gradient_check").main(["--device", "cpu"])
    out = capsys.readouterr().out
    assert "backprop agrees with numerical gradients" in out and "0.W" in out


def test_two_layer_net_learns(fashion_mnist, capsys):
    _load("two_layer_net").main(["--device", "cpu", "--epochs", "2", "--limit", "3000"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2
    assert float(lines[-1].rsplit("test acc", 1)[1]) > 0.6


def test_deep_mlp_learns(fashion_mnist, capsys):
    _load("deep_mlp").main(["--device", "cpu", "--epochs", "1", "--limit", "2000", "--hidden", "32", "32",
                            "--dropout", "0.1"])
    out = capsys.readouterr().out
    assert "Dropout" in out
    assert float(out.rsplit("final test accuracy:", 1)[1]) > 0.5


def test_cnn_example_learns(fashion_mnist, capsys):
    _load("cnn_fashion_mnist").main(["--device", "cpu", "--epochs", "1", "--limit", "1000"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "(N, 30, 12, 12)" in "\n".join(lines)  # the summary, with output shapes
    # Each epoch is printed once, with its test figures.
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1/1"]
    assert all("test_accuracy" in line for line in lines if line.startswith("epoch"))
    assert float(lines[-1].split("final test accuracy:")[1]) > 0.5


def test_fashion_mnist_mlp_recipe_learns(fashion_mnist, capsys):
    _load("fashion_mnist_mlp").main(["--device", "cpu", "--epochs", "2", "--limit", "2000", "--hidden", "64"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert "BatchNorm" in out and "Dropout" in out
    # Progress as the command line shows it: where it runs, then each epoch "of N" with its test figures.
    assert "xpnet: training on cpu: 2000 samples, 20 steps per epoch, epochs 1..2" in out
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert float(lines[-1].split("test_accuracy")[1].split()[0]) > 0.6
    assert "2 epochs in" in out


def test_fashion_mnist_cnn_recipe_learns(fashion_mnist, capsys):
    _load("fashion_mnist_cnn").main(["--device", "cpu", "--epochs", "1", "--limit", "1000", "--channels", "8", "16"])
    out = capsys.readouterr().out
    last = [line for line in out.splitlines() if line.startswith("epoch")][-1]
    assert "Conv2d" in out and "BatchNorm" in out and last.startswith("epoch 1/1 ")
    assert "training batches augmented by RandomShiftFlip(max_shift=0, flip=True" in out
    assert float(last.split("test_accuracy")[1].split()[0]) > 0.5


def test_fashion_mnist_resnet_recipe_learns_and_saves(fashion_mnist, capsys, tmp_path):
    example = _load("fashion_mnist_resnet")
    example.main(["--device", "cpu", "--epochs", "1", "--limit", "2000", "--batch-size", "50",
                  "--channels", "8", "16", "16", "--save", str(tmp_path / "resnet.npz")])
    out = capsys.readouterr().out
    last = [line for line in out.splitlines() if line.startswith("epoch")][-1]
    assert out.startswith("parameters: ") and last.startswith("epoch 1/1 ") and "1 epochs in" in out
    assert float(last.split("test_accuracy")[1].split()[0]) > 0.4  # 0.58 seen: 40 steps of a network of 10,082 weights
    loaded = xn.load(tmp_path / "resnet.npz")  # the example's own class, built again from its arguments
    assert type(loaded).__name__ == "ResNet" and len(loaded.stages) == 3 and loaded.fc.in_features == 16


def test_finetune_example_trains_the_head_alone_then_everything(fashion_mnist, capsys, tmp_path):
    _load("finetune_fashion_mnist").main(["--device", "cpu", "--source-limit", "2000", "--target-limit", "300",
                                          "--pretrain-epochs", "1", "--head-epochs", "3", "--channels", "4", "8",
                                          "--save", str(tmp_path / "pretrained.npz")])
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("head only"))
    # Only the fresh head trains (8 x 7 x 7 -> 5: 1,965 weights), and the frozen backbone leaves it bit for bit.
    assert "backbone frozen (1,965 of 2,325 parameters train)" in lines[head]
    assert lines[head + 1].startswith("  backbone parameters changed: 0 of 8; BatchNorm running statistics changed: ")
    assert float(lines[head].split("test accuracy on 5-9 ")[1].split(",")[0]) > 0.6  # 5 classes: chance 0.2; 0.85 seen
    finetuned = next(line for line in lines if line.startswith("then everything"))
    assert finetuned.endswith("backbone parameters changed: 8 of 8")  # unfrozen, it trains: the check can see it
    scratch = next(line for line in lines if line.startswith("from scratch"))
    assert 0.2 < float(scratch.split("test accuracy on 5-9 ")[1].split(",")[0]) <= 1
    loaded = xn.load(tmp_path / "pretrained.npz")  # the pre-trained model, the example's class built again
    assert type(loaded).__name__ == "SmallCNN" and loaded.head.out_features == 5

def test_attention_dates_example_runs(capsys):
    _load("attention_dates").main(["--device", "cpu", "--epochs", "1", "--n", "600", "--hidden", "32"])
    out = capsys.readouterr().out
    assert "AttentionDecoder" in out and "(N, 10, 59)" in out  # the summary, ids in
    assert "train_perplexity" in out and "epoch 1: exact-match answers" in out and "of 60" in out
    assert "exact-match answers after each epoch:" in out


def test_transformer_dates_example_runs(capsys):
    _load("transformer_dates").main(["--device", "cpu", "--epochs", "1", "--n", "600", "--d-model", "16",
                                     "--layers", "1"])
    out = capsys.readouterr().out
    assert out.startswith("parameters: ") and "train_perplexity" in out
    assert "epoch 1: exact-match answers" in out and "of 60" in out


def test_transformer_dates_answers_as_predict_would_on_a_second_device():
    """The example's greedy decoding (the questions encoded once, on the model's device) gives the answers of
    model.predict run again on the whole answer so far at every step."""
    strict = pytest.importorskip("array_api_strict")
    example = _load("transformer_dates")
    data = xn.datasets.dates(200)
    x, t = data.test
    xn.init.seed(1)
    model = example.DateTransformer(len(data.char_to_id), d_model=16, layers=1).to(
        xn.Device(strict, strict.Device("device1")))
    so_far = t[:, :1]
    for _ in range(4):
        scores = xn.to_numpy(model.predict(x, so_far))
        so_far = np.concatenate([so_far, np.argmax(scores[:, -1], axis=-1)[:, None]], axis=1)
    np.testing.assert_array_equal(model.answer(x, t[:, 0], 4), so_far[:, 1:])


def test_seq2seq_addition_example_runs(capsys):
    _load("seq2seq_addition").main(["--device", "cpu", "--epochs", "1", "--n", "600"])
    out = capsys.readouterr().out
    assert "PeekySeq2seq" in out and "questions reversed" in out and "epoch 1: exact-match answers" in out
    assert " = " in out and "exact-match answers after epoch 1:" in out


def test_char_lm_example_refuses_an_unknown_prompt_before_training(capsys, monkeypatch):
    """It trained fully, then dropped the prompt's unknown characters (all of them: a crash in generate)."""
    monkeypatch.setattr(xn, "train", lambda *a, **k: pytest.fail("trained before checking the prompt"))
    for prompt, message in [("é", r"--prompt 'é': characters not in the text, so unknown to the model \(its "
                                   r"\d+-character vocabulary\): 'é'"),
                            ("Th€é ", r"vocabulary\): 'é€'"), ("", "--prompt '': give at least one character")]:
        with pytest.raises(SystemExit) as exit_:
            _load("char_lm").main(["--limit", "6000", "--prompt", prompt])
        assert exit_.value.code == 2
        assert re.search(message, capsys.readouterr().err)


def test_docs_show_the_line_char_lm_prints_before_its_sample(capsys):
    """docs/sequences.md's output block said 'trained in 258s; ...' where the script prints 'trained on cpu in ...'."""
    _load("char_lm").main(["--device", "cpu", "--epochs", "1", "--limit", "3000", "--hidden", "8", "--embed", "8",
                           "--time-size", "8", "--batch-size", "4"])
    printed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("trained"))
    doc = (EXAMPLES.parent / "docs" / "sequences.md").read_text(encoding="utf-8")  # the examples, as they ran
    block = doc.split("`python examples/char_lm.py`", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    shown = next(line for line in block.splitlines() if line.startswith("trained"))
    assert re.fullmatch(re.sub(r"\d+", r"\\d+", re.escape(printed)), shown), (printed, shown)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_char_lm_example_runs(device, capsys):
    """The same script on the CPU and on a GPU (CuPy), where it trains on the GPU, not a fallback."""
    if device == "cuda":
        require_cuda()
    _load("char_lm").main(["--device", device, "--epochs", "1", "--limit", "6000", "--hidden", "16",
                           "--time-size", "16", "--batch-size", "8"])
    out = capsys.readouterr().out
    assert f"trained on {device}" in out
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 1 and "train_perplexity" in lines[0] and "val_perplexity" in lines[0]
    sample = out.split("a sample at temperature 0.7:\n", 1)[1]
    assert sample.startswith("The ") and len(sample.rstrip("\n")) >= 404
