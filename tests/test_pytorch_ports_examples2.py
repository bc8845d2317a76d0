"""pytorch/tutorials' "Learning PyTorch with Examples" polynomials (nn, optim, a Module of four scalar
parameters, a custom autograd Function), the transfer-learning tutorial and pytorch/examples' vision_transformer,
ported to xpnet as a PyTorch user writes them first, each checked against the same program in torch, float64, the
same initial weights, a few steps; and the hints that porting them added. The data are tiny synthetic stand-ins of
the same shape and kind (the machine has no internet): the polynomials' own sin(x) on fewer points, random images."""

import copy
import math

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


# --- the polynomials: examples_nn/polynomial_nn.py, polynomial_optim.py, polynomial_module.py ------------------------

def _sine(n=200):
    x = np.linspace(-math.pi, math.pi, n)
    return x, np.sin(x)


@pytest.mark.parametrize("how", ["manual", "RMSprop"])
def test_the_polynomial_linear_model_trains_as_pytorchs(how):
    """polynomial_nn.py (manual `param -= learning_rate * param.grad` under no_grad) and polynomial_optim.py
    (RMSprop(lr=1e-3)): Sequential(Linear(3, 1), Flatten(0, 1)) on xx = x.unsqueeze(-1).pow(p), MSELoss(reduction=
    'sum'); losses, weights and the printed `linear_layer.weight[:, 0].item()` equal PyTorch's in float64."""
    torch = _torch()
    x, y = _sine()
    p = np.array([1, 2, 3])
    xx = x[:, None] ** p                                        # x.unsqueeze(-1).pow(p)
    model = xn.Sequential(L.Linear(3, 1, dtype="float64"), L.Flatten(0, 1))
    loss_fn = xn.losses.MeanSquaredError(reduction='sum')
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1)).double()
    with torch.no_grad():
        tmodel[0].weight.copy_(torch.from_numpy(model[0].weight.copy()))
        tmodel[0].bias.copy_(torch.from_numpy(model[0].bias))
    tloss_fn = torch.nn.MSELoss(reduction='sum')
    learning_rate = 1e-6 if how == "manual" else 1e-3
    if how == "RMSprop":
        optimizer = xn.optim.RMSprop(model.parameters(), lr=learning_rate)
        toptimizer = torch.optim.RMSprop(tmodel.parameters(), lr=learning_rate)
    txx, ty = torch.from_numpy(xx), torch.from_numpy(y)
    for t in range(5):
        y_pred = model(xx)
        loss = loss_fn(y_pred, y)
        tloss = tloss_fn(tmodel(txx), ty)
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
        if how == "manual":
            model.zero_grad()
            model.backward(loss_fn.backward())                  # loss.backward()
            grads = model.named_grads()
            for name, param in model.named_params().items():    # an array has no .grad: by name
                param -= learning_rate * grads[name]
            tmodel.zero_grad()
            tloss.backward()
            with torch.no_grad():
                for param in tmodel.parameters():
                    param -= learning_rate * param.grad
        else:
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            optimizer.step()
            toptimizer.zero_grad()
            tloss.backward()
            toptimizer.step()
    linear_layer, tlinear_layer = model[0], tmodel[0]
    for i in range(3):
        assert linear_layer.weight[:, i].item() == pytest.approx(tlinear_layer.weight[:, i].item(), rel=1e-10)
    assert linear_layer.bias.item() == pytest.approx(tlinear_layer.bias.item(), rel=1e-10, abs=1e-15)


class Polynomial3(xn.Model):
    """polynomial_module.py's Polynomial3: four scalar (shape ()) parameters, y = a + b x + c x^2 + d x^3."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)                          # torch.nn.Parameter(torch.randn(()))
        for name in "abcd":
            self.params[name] = rng.standard_normal(())

    def forward(self, x, train=True):
        self.x = x
        a, b, c, d = (self.params[name] for name in "abcd")
        return a + b * x + c * x ** 2 + d * x ** 3

    def backward(self, dy):
        x = self.x
        for name, power in zip("abcd", range(4)):               # each gradient a 0-d array, as its parameter
            self.grads[name] = np.asarray(np.sum(dy * x ** power))
        b, c, d = (self.params[name] for name in "bcd")
        return dy * (b + 2 * c * x + 3 * d * x ** 2)

    def string(self):
        a, b, c, d = (self.params[name].item() for name in "abcd")
        return f'y = {a} + {b} x + {c} x^2 + {d} x^3'


def test_a_module_of_four_scalar_parameters_trains_as_pytorchs():
    """polynomial_module.py: Polynomial3's parameters are 0-d arrays in self.params; SGD(model.parameters(),
    lr=1e-6) over MSELoss(reduction='sum') gives PyTorch's losses and `model.string()` in float64, and the state
    dict keeps the 0-d shapes."""
    torch = _torch()

    class TorchPolynomial3(torch.nn.Module):
        def __init__(self, start):
            super().__init__()
            for name in "abcd":
                setattr(self, name, torch.nn.Parameter(torch.tensor(start[name])))

        def forward(self, x):
            return self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3

        def string(self):
            return f'y = {self.a.item()} + {self.b.item()} x + {self.c.item()} x^2 + {self.d.item()} x^3'

    x, y = _sine()
    model = Polynomial3()
    tmodel = TorchPolynomial3(model.state_dict())
    criterion, tcriterion = xn.losses.MeanSquaredError(reduction='sum'), torch.nn.MSELoss(reduction='sum')
    optimizer = xn.optim.SGD(model.parameters(), lr=1e-6)
    toptimizer = torch.optim.SGD(tmodel.parameters(), lr=1e-6)
    for t in range(5):
        loss = criterion(model(x), y)
        tloss = tcriterion(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
        optimizer.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        toptimizer.zero_grad()
        tloss.backward()
        toptimizer.step()
    got = [float(v) for v in model.string()[4:].replace(" x^3", "").replace(" x^2", "").replace(" x", "").split(" + ")]
    want = [float(v) for v in tmodel.string()[4:].replace(" x^3", "").replace(" x^2", "").replace(" x", "").split(" + ")]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert {k: v.shape for k, v in model.state_dict().items()} == dict.fromkeys("abcd", ())


# --- examples_autograd/polynomial_custom_function.py: a torch.autograd.Function is a layer of one's own --------------

class LegendrePolynomial3(L.Layer):
    """torch.autograd.Function's forward(ctx, input) and backward(ctx, grad_output): P3(x) = (5 x^3 - 3 x) / 2,
    its input cached for backward (ctx.save_for_backward)."""

    def forward(self, input, train=True):
        self.input = input
        return 0.5 * (5 * input ** 3 - 3 * input)

    def backward(self, grad_output):
        return grad_output * 1.5 * (5 * self.input ** 2 - 1)


class LegendreModel(xn.Model):
    """y = a + b * P3(c + d * x), the tutorial's four scalar tensors as parameters."""

    def __init__(self):
        super().__init__()
        for name, start in zip("abcd", (0.0, -1.0, 0.0, 0.3)):  # torch.full((), start, requires_grad=True)
            self.params[name] = np.full((), start)
        self.P3 = LegendrePolynomial3()

    def forward(self, x, train=True):
        a, b, c, d = (self.params[name] for name in "abcd")
        self.x, self.p3 = x, self.P3(c + d * x)
        return a + b * self.p3

    def backward(self, dy):
        dz = self.P3.backward(dy * self.params["b"])
        self.grads.update(a=np.asarray(np.sum(dy)), b=np.asarray(np.sum(dy * self.p3)), c=np.asarray(np.sum(dz)),
                          d=np.asarray(np.sum(dz * self.x)))
        return dz * self.params["d"]


def test_a_custom_autograd_function_written_as_a_layer_trains_as_pytorchs():
    """LegendrePolynomial3 (torch.autograd.Function) is a layer of one's own, used in a model whose backward calls
    its backward; the manual update `a -= learning_rate * a.grad`, then `a.grad = None`, is `p -= lr * grads[name]`
    over named_params(), then zero_grad(). Losses and the four values equal PyTorch's in float64; xn.gradcheck
    passes on the model."""
    torch = _torch()

    class TorchP3(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return 0.5 * (5 * input ** 3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            input, = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input ** 2 - 1)

    x, y = _sine()
    model = LegendreModel()
    ta, tb, tc, td = (torch.full((), s, dtype=torch.float64, requires_grad=True) for s in (0.0, -1.0, 0.0, 0.3))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    learning_rate = 5e-6
    for t in range(5):
        y_pred = model(x)
        loss = float(np.sum((y_pred - y) ** 2))                  # (y_pred - y).pow(2).sum()
        model.backward(2 * (y_pred - y))                         # its gradient, written out
        grads = model.named_grads()
        for name, param in model.named_params().items():
            param -= learning_rate * grads[name]
        model.zero_grad()                                        # a.grad = None ...
        tloss = (ta + tb * TorchP3.apply(tc + td * tx) - ty).pow(2).sum()
        tloss.backward()
        with torch.no_grad():
            for p in (ta, tb, tc, td):
                p -= learning_rate * p.grad
                p.grad = None
        assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose([model.params[n].item() for n in "abcd"], [p.item() for p in (ta, tb, tc, td)],
                               rtol=1e-10, atol=1e-15)                  # a and c stay ~0: sin is odd
    assert xn.gradcheck(model, x[:5, None], y[:5, None], loss="mse")


def test_torch_autograd_function_linspace_and_pow_say_what_to_write():
    """`class LegendrePolynomial3(xn.autograd.Function)` said only that xpnet has no autograd; it now says that
    such a Function is a layer of one's own and how its forward and backward are written. torch.linspace and
    torch.pow (the polynomials' data) name the arrays' namespace."""
    with pytest.raises(AttributeError, match=r"torch\.autograd\.Function \(forward\(ctx, input\), backward\(ctx, "
                                             r"grad_output\)\) is a layer of your own, class P3\(xn\.layers\.Layer\)"):
        xn.autograd.Function
    for name in ("linspace", "pow"):
        with pytest.raises(AttributeError, match=r"xpnet has no array functions: use the namespace of the arrays"):
            getattr(xn, name)


# --- transfer_learning_tutorial.py: a frozen backbone, a new head, train and val phases, the best weights kept -------

def train_model(model, criterion, optimizer, scheduler, dataloaders, num_epochs):
    """The tutorial's train_model, xpnet's calls in torch's places: loss.backward() is
    model.backward(criterion.backward()); torch.max(outputs, 1) is outputs.argmax(1)."""
    dataset_sizes = {phase: sum(len(labels) for _, labels in dataloaders[phase]) for phase in ['train', 'val']}
    best_model_wts = copy.deepcopy(model.state_dict())
    best_acc, losses = 0.0, []
    for epoch in range(num_epochs):
        for phase in ['train', 'val']:
            if phase == 'train':
                model.train()
            else:
                model.eval()
            running_loss, running_corrects = 0.0, 0
            for inputs, labels in dataloaders[phase]:
                optimizer.zero_grad()
                with xn.set_grad_enabled(phase == 'train'):
                    outputs = model(inputs)
                    preds = outputs.argmax(1)
                    loss = criterion(outputs, labels)
                    if phase == 'train':
                        model.backward(criterion.backward())
                        optimizer.step()
                running_loss += loss.item() * inputs.shape[0]
                running_corrects += int(np.sum(preds == labels))
                losses.append(loss.item())
            if phase == 'train':
                scheduler.step()
            epoch_acc = running_corrects / dataset_sizes[phase]
            if phase == 'val' and epoch_acc > best_acc:
                best_acc = epoch_acc
                best_model_wts = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_model_wts)
    return model, losses


def _torch_train_model(torch, model, criterion, optimizer, scheduler, dataloaders, num_epochs):
    """The tutorial's train_model as it is (dataloaders of NumPy arrays, made tensors here)."""
    dataset_sizes = {phase: sum(len(labels) for _, labels in dataloaders[phase]) for phase in ['train', 'val']}
    best_model_wts = copy.deepcopy(model.state_dict())
    best_acc, losses = 0.0, []
    for epoch in range(num_epochs):
        for phase in ['train', 'val']:
            model.train() if phase == 'train' else model.eval()
            running_corrects = 0
            for inputs, labels in dataloaders[phase]:
                inputs, labels = torch.from_numpy(inputs), torch.from_numpy(labels)
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == 'train'):
                    outputs = model(inputs)
                    _, preds = torch.max(outputs, 1)
                    loss = criterion(outputs, labels)
                    if phase == 'train':
                        loss.backward()
                        optimizer.step()
                running_corrects += torch.sum(preds == labels.data)
                losses.append(loss.item())
            if phase == 'train':
                scheduler.step()
            epoch_acc = running_corrects.double() / dataset_sizes[phase]
            if phase == 'val' and epoch_acc > best_acc:
                best_acc = epoch_acc
                best_model_wts = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_model_wts)
    return model, losses


class TinyResNet(xn.Model):
    """A stand-in for torchvision's resnet18 (too slow for a test): its stem, one residual block, its pooling and
    its `fc`, one `self.relu` called twice as torchvision's."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1, self.bn1, self.relu = L.Conv2d(3, 8, 3, padding=1, bias=False), L.BatchNorm(8), L.ReLU()
        self.layer1 = L.Residual(xn.Sequential(L.Conv2d(8, 8, 3, padding=1, bias=False), L.BatchNorm(8), L.ReLU(),
                                               L.Conv2d(8, 8, 3, padding=1, bias=False), L.BatchNorm(8)))
        self.avgpool, self.fc = L.GlobalAvgPool(), L.Linear(8, num_classes)

    def forward(self, x, train=True):
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.avgpool(self.relu(x)))

    def backward(self, dy):
        dy = self.layer1.backward(self.relu.backward(self.avgpool.backward(self.fc.backward(dy))))
        return self.conv1.backward(self.bn1.backward(self.relu.backward(dy)))


def _torch_tiny_resnet(torch, num_classes=10):
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return self.body(x) + x

    class TorchTinyResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.relu = nn.ReLU()
            self.layer1 = Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                                 nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                                                 nn.BatchNorm2d(8)))
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, num_classes)

        def forward(self, x):
            x = self.layer1(self.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(self.avgpool(self.relu(x)), 1))

    return TorchTinyResNet().double()


@pytest.mark.parametrize("how", ["fixed_feature_extractor", "finetune"])
def test_the_transfer_learning_tutorial_trains_and_keeps_the_best_weights_as_pytorchs(how):
    """The tutorial's two ways on a small ResNet-like network and 8x8 random images of two classes: the backbone
    frozen (`model.requires_grad_(False)` for its `param.requires_grad = False` loop), its head replaced
    (`model.fc = Linear(num_ftrs, 2)`, which trains) and SGD over `model.fc.parameters()` alone; or everything
    trained, the head at lr 1e-2 and the rest at 1e-3 in param groups of layers. StepLR, train() and eval() per
    phase under set_grad_enabled, the best epoch's weights kept by copy.deepcopy(model.state_dict()) and loaded
    back: losses and the final weights equal PyTorch's in float64."""
    torch = _torch()
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((12, 3, 8, 8)), rng.integers(0, 2, 12)
    dataloaders = {'train': [(images[:4], labels[:4]), (images[4:8], labels[4:8])],
                   'val': [(images[8:], labels[8:])]}
    xn.manual_seed(0)
    model = TinyResNet().to(dtype='float64')
    ref = _torch_tiny_resnet(torch)
    if how == "fixed_feature_extractor":
        model.requires_grad_(False)
        for param in ref.parameters():
            param.requires_grad = False
    num_ftrs = model.fc.in_features
    model.fc = L.Linear(num_ftrs, 2, dtype='float64')
    ref.fc = torch.nn.Linear(num_ftrs, 2).double()
    ref.load_state_dict(xn.torch_state_dict(model, as_tensors=True))
    if how == "fixed_feature_extractor":
        assert sorted(model.trainable_params()) == ['fc.W', 'fc.b']
        optimizer = xn.optim.SGD(model.fc.parameters(), lr=0.01, momentum=0.9)
        toptimizer = torch.optim.SGD(ref.fc.parameters(), lr=0.01, momentum=0.9)
    else:
        params = [{"params": model.fc.parameters(), "lr": 1e-2}] + [
            {"params": child.parameters(), "lr": 1e-3} for name, child in model.named_children().items()
            if name != 'fc']
        optimizer = xn.optim.SGD(params, momentum=0.9)
        tparams = [{"params": [p for name, p in ref.named_parameters() if 'fc' in name], "lr": 1e-2},
                   {"params": [p for name, p in ref.named_parameters() if 'fc' not in name], "lr": 1e-3}]
        toptimizer = torch.optim.SGD(tparams, momentum=0.9)
    scheduler = xn.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    tscheduler = torch.optim.lr_scheduler.StepLR(toptimizer, step_size=1, gamma=0.1)
    model, losses = train_model(model, xn.losses.SoftmaxCrossEntropy(), optimizer, scheduler, dataloaders, 3)
    ref, tlosses = _torch_train_model(torch, ref, torch.nn.CrossEntropyLoss(), toptimizer, tscheduler, dataloaders, 3)
    np.testing.assert_allclose(losses, tlosses, rtol=1e-10)
    want, got = ref.state_dict(), xn.torch_state_dict(model)
    assert sorted(got) == sorted(want)
    for name, value in got.items():
        if name.endswith("num_batches_tracked"):                # xpnet's BatchNorm counts none (momentum 0.1)
            continue
        np.testing.assert_allclose(value, want[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_param_groups_picked_by_name_say_to_make_one_group_per_layer():
    """The tutorial's finetuning groups, [p for name, p in model.named_parameters() if 'fc' in name] at lr 1e-2 and
    the rest at 1e-3, are lists of arrays, which xpnet cannot name: the error says to write one group per layer."""
    model = TinyResNet()
    named = model.named_params().items()
    params = [{"params": [p for name, p in named if 'fc' in name], "lr": 1e-2},
              {"params": [p for name, p in named if 'fc' not in name], "lr": 1e-3}]
    with pytest.raises(TypeError, match=r"param group 0's 'params' is a list; .*parameters picked by name .* are one "
                                        r"group per layer: \[\{'params': model\.fc\.parameters\(\), 'lr': 1e-2\}\] \+ "
                                        r"\[\{'params': child\.parameters\(\), 'lr': 1e-3\} for name, child in "
                                        r"model\.named_children\(\)\.items\(\) if name != 'fc'\]"):
        xn.optim.SGD(params, momentum=0.9)
