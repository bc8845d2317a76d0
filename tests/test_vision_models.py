"""xn.models' torchvision architectures without torch: torchvision's init, what its weights= argument becomes,
fine-tuning (a new head, frozen BatchNorm, saved and loaded), and a training step on another device equal to NumPy's
(their equality with torchvision itself: tests/test_resnet.py, tests/test_mobilenet.py,
tests/test_vgg.py)."""

import math

import numpy as np
import pytest
from conftest import DEVICE_MAKERS
from vision_checks import close

import xpnet as xn
from xpnet.layers import BatchNorm, FrozenBatchNorm2d, Linear
from xpnet.models.files import architecture
from xpnet.models.vgg import cfgs, make_layers, pytorch_linear


@pytest.mark.parametrize("block, last", [("BasicBlock", "bn2"), ("Bottleneck", "bn3")])
def test_resnets_take_torchvisions_init(block, last):
    xn.init.seed(0)
    model = xn.models.ResNet(block, [1, 2, 1, 2], zero_init_residual=True)
    params = model.named_params()
    w = params["layer4.1.conv2.W"]  # kaiming_normal_(mode='fan_out', nonlinearity='relu')
    assert np.std(w) == pytest.approx(math.sqrt(2 / (w.shape[0] * 9)), rel=0.02)
    assert np.max(np.abs(params["fc.W"])) <= 1 / math.sqrt(params["fc.W"].shape[0])  # nn.Linear's own init
    gammas = {k: bool(np.all(v == 0)) for k, v in params.items() if k.endswith("gamma")}
    assert {k for k, zero in gammas.items() if zero} == {k for k in gammas if k.endswith(f"{last}.gamma")
                                                        and k.startswith("layer") and "downsample" not in k}
    assert all(np.all(v == 1) for k, v in params.items() if k.endswith("gamma") and not gammas[k])


def test_torchvisions_weights_argument_says_to_load_a_state_dict():
    with pytest.raises(ValueError, match=r"downloads no weights.*model = xn.models.resnet18\(\); "
                                         r"xn.load_torch_state_dict\(model, 'resnet18-<hash>.pth'\)"):
        xn.models.resnet18(weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="downloads no weights"):
        xn.models.resnet50(pretrained=True)
    with pytest.raises(ValueError, match=r"downloads no weights.*torchvision.models.vgg16_bn\(weights=...\)"):
        xn.models.vgg16_bn(pretrained=True)
    with pytest.raises(ValueError, match="downloads no weights"):
        xn.models.alexnet(weights="DEFAULT")


@pytest.mark.parametrize("build, error, message", [
    (lambda: xn.models.resnext50_32x4d(groups=16), ValueError,
     r"^xn.models.resnext50_32x4d: groups is 32 in resnext50_32x4d, got groups=16; for another, build "
     r"xn.models.ResNet\('Bottleneck', \[3, 4, 6, 3\], groups=...\)$"),
    (lambda: xn.models.wide_resnet101_2(weights="DEFAULT"), ValueError, "downloads no weights"),
    (lambda: xn.models.ResNet("BasicBlock", [1, 1, 1, 1], groups=32, width_per_group=4), ValueError,
     r"^BasicBlock: groups=1 and base_width=64 only .*got groups=32 and base_width=4; ResNeXt and wide ResNets are "
     r"built of Bottleneck$"),
    (lambda: xn.models.resnet18(replace_stride_with_dilation=[False, False, True]), NotImplementedError,
     r"^BasicBlock: dilation > 1 is not supported \(as in torchvision\), got 2; .* needs Bottleneck$"),
    (lambda: xn.models.resnet50(replace_stride_with_dilation=[True, True]), ValueError,
     r"^ResNet: replace_stride_with_dilation must be None or 3 flags \(True or False\) for layer2, layer3 and "
     r"layer4, got \[True, True\]$"),
    (lambda: xn.models.resnet50(norm_layer=FrozenBatchNorm2d), ValueError,
     r"^ResNet: norm_layer must be None .* build the model, then xn.freeze_batch_norm\(model\)$"),
    (lambda: make_layers("A"), ValueError,
     r"^make_layers: cfg must list channel counts \(ints >= 1\) and 'M' \(a 2x2 max pool\), as "
     r"xpnet.models.vgg.cfgs\['A'\], got 'A'$"),
    (lambda: xn.models.VGG(cfgs["A"]), TypeError,
     r"^VGG: features must be an xpnet layer or model \(xpnet.models.vgg.make_layers\(cfg, batch_norm\)\), got list$"),
], ids=["builder-fixed-groups", "weights", "basic-groups", "basic-dilation", "dilation-flags", "norm_layer",
        "vgg-cfg-name", "vgg-cfg-as-features"])
def test_what_torchvision_refuses_or_xpnet_does_not_take_is_refused_at_once(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_fine_tune_a_new_head_with_frozen_batch_norm(tmp_path):
    xn.init.seed(0)
    model = xn.models.resnet18()
    model.fc = Linear(512, 10)
    xn.freeze_batch_norm(model)
    named = model.named_modules()
    assert not any(isinstance(m, BatchNorm) for m in named.values())
    assert isinstance(named["layer2.0.downsample.1"], FrozenBatchNorm2d)
    rng = np.random.default_rng(0)
    x, t = rng.random((4, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, 4)
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    history = xn.train(model, (x, t), loss=xn.losses.SoftmaxCrossEntropy(), optimizer=xn.optim.SGD(0.01), epochs=1,
                       batch_size=4, device="cpu", progress=False)
    assert math.isfinite(history.epochs[-1]["train_loss"])
    after = model.state_dict()
    assert not np.array_equal(after["fc.W"], before["fc.W"])
    assert np.array_equal(after["bn1.running_mean"], before["bn1.running_mean"])

    xn.save(model, tmp_path / "tuned.npz")
    np.testing.assert_array_equal(xn.load(tmp_path / "tuned.npz").predict(x), model.predict(x))


def test_mobilenet_v2_takes_torchvisions_init_and_saves_a_new_head(tmp_path):
    xn.init.seed(0)
    model = xn.models.mobilenet_v2()
    w = model.named_params()["features.18.0.W"]  # kaiming_normal_(mode='fan_out'): fan_out = 1280
    assert np.std(w) == pytest.approx(math.sqrt(2 / 1280), rel=0.02)
    assert np.std(model.named_params()["classifier.1.W"]) == pytest.approx(0.01, rel=0.02)
    model.classifier[1] = Linear(1280, 10)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    xn.save(model, tmp_path / "tuned.npz")
    np.testing.assert_array_equal(xn.load(tmp_path / "tuned.npz").predict(x), model.predict(x))


def test_vgg_takes_torchvisions_init_and_alexnet_pytorchs_own():
    xn.init.seed(0)
    model = xn.models.VGG(make_layers([16, 64, "M"], batch_norm=True), num_classes=3)
    params = model.named_params()
    w = params["features.3.W"]  # kaiming_normal_(mode='fan_out', nonlinearity='relu'): fan_out = 64 * 3 * 3
    assert np.std(w) == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)
    assert np.std(params["classifier.6.W"]) == pytest.approx(0.01, rel=0.03)
    assert all(np.all(v == 0) for k, v in params.items() if k.endswith((".b", ".beta")))
    assert all(np.all(v == 1) for k, v in params.items() if k.endswith(".gamma"))
    # PyTorch's own init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias: make_layers' convolutions (VGG's
    # init_weights=False keeps them) and AlexNet's layers
    for layer, fan_in in [(make_layers([64])[0], 3 * 3 * 3), (pytorch_linear(64, 64), 64)]:
        for v in layer.params.values():
            assert 0.8 / math.sqrt(fan_in) < np.max(np.abs(v)) <= 1 / math.sqrt(fan_in)


@pytest.mark.parametrize("arch", ["vgg11", "alexnet"])
def test_vgg_and_alexnet_with_a_new_head_are_saved_to_be_built_again(arch):
    with xn.init.skip_init():
        model = getattr(xn.models, arch)()
    model.classifier[6] = Linear(4096, 10)
    # what xn.save writes before any array, refused where xn.load would not build this head again
    assert architecture(model)["model"]["config"]["num_classes"] == 10


@pytest.mark.parametrize("build", [lambda: xn.models.ResNet("BasicBlock", [1, 1, 1, 1], num_classes=3),
                                   lambda: xn.models.mobilenet_v2(num_classes=3, width_mult=0.1, dropout=0.0)],
                         ids=["resnet", "mobilenet_v2"])
@pytest.mark.parametrize("dev_id", [pytest.param("strict-device1", id="strict-device1"),
                                    pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)])
def test_trains_on_another_device(dev_id, build):
    """The same step on array-api-strict's second device (no NumPy inside) and on CuPy. JAX and PyTorch run the same
    layers, each tested there; their CPU convolutions take tens of seconds for a ResNet."""
    dev = DEVICE_MAKERS[dev_id]()
    xn.init.seed(0)
    model = build().to(dtype="float64")
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 3, 32, 32)), rng.standard_normal((2, 3))
    y_cpu, dx_cpu = model.forward(x), model.backward(dy)
    model.to(dev)
    y = model.forward(xn.to_device(x, dev))
    dx = model.backward(xn.to_device(dy, dev))
    close(xn.to_numpy(y), y_cpu)
    close(xn.to_numpy(dx), dx_cpu)
