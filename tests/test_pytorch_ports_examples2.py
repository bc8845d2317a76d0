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
    def coefficients(string):                                    # 'y = a + b x + c x^2 + d x^3' -> [a, b, c, d]
        return [float(term.split()[0]) for term in string[4:].split(" + ")]

    np.testing.assert_allclose(coefficients(model.string()), coefficients(tmodel.string()), rtol=1e-10)
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


# --- pytorch/examples vision_transformer/main.py ----------------------------------------------------------------------

class PatchExtractor(L.Layer):
    """(N, C, H, W) -> (N, num_patches, C * p * p): Tensor.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5)
    as NumPy's reshape and transpose; backward puts the patches' gradient back."""

    def __init__(self, patch_size=16):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, input_data, train=True):
        self.shape = batch_size, channels, height, width = input_data.shape
        p = self.patch_size
        patches = input_data.reshape(batch_size, channels, height // p, p, width // p, p).transpose(0, 2, 4, 1, 3, 5)
        return patches.reshape(batch_size, (height // p) * (width // p), -1)

    def backward(self, dy):
        batch_size, channels, height, width = self.shape
        p = self.patch_size
        dy = dy.reshape(batch_size, height // p, width // p, channels, p, p).transpose(0, 3, 1, 4, 2, 5)
        return dy.reshape(self.shape)


class InputEmbedding(xn.Model):
    """The class token and the positional embedding, (batch_size, 1, latent_size) as the example makes them, are
    parameters in self.params; backward fills their gradients."""

    def __init__(self, args):
        super().__init__()
        self.patchify = PatchExtractor(patch_size=args.patch_size)
        self.LinearProjection = L.Linear(args.patch_size * args.patch_size * args.n_channels, args.latent_size)
        rng = np.random.default_rng(0)                           # nn.Parameter(torch.randn(batch_size, 1, latent))
        self.params['class_token'] = rng.standard_normal((args.batch_size, 1, args.latent_size), dtype=np.float32)
        self.params['pos_embedding'] = rng.standard_normal((args.batch_size, 1, args.latent_size), dtype=np.float32)

    def forward(self, input_data, train=True):
        linear_projection = self.LinearProjection(self.patchify(input_data))
        b, n, _ = linear_projection.shape
        linear_projection = np.concatenate((self.params['class_token'], linear_projection), axis=1)
        self.n = n
        return linear_projection + self.params['pos_embedding'][:, :n + 1, :]

    def backward(self, dy):
        self.grads['class_token'] = dy[:, :1]
        self.grads['pos_embedding'] = np.sum(dy[:, :self.n + 1], axis=1, keepdims=True)  # broadcast over positions
        return self.patchify.backward(self.LinearProjection.backward(dy[:, 1:]))


class EncoderBlock(xn.Model):
    """One LayerNorm called twice, as the example's; its nn.MultiheadAttention is batch_first=False, so it reads
    the (batch, patches, latent) input as (sequence, batch, latent): the permutes reproduce that here."""

    def __init__(self, args):
        super().__init__()
        self.norm = L.LayerNorm(args.latent_size)
        self.attention = L.MultiheadAttention(args.latent_size, args.num_heads, dropout=args.dropout)
        self.enc_MLP = xn.Sequential(L.Linear(args.latent_size, args.latent_size * 4), L.GELU(),
                                     L.Dropout(args.dropout), L.Linear(args.latent_size * 4, args.latent_size),
                                     L.Dropout(args.dropout))

    def forward(self, emb_patches, train=True):
        first_norm = self.norm(emb_patches).transpose(1, 0, 2)
        attention_out = self.attention(first_norm, first_norm, first_norm)[0].transpose(1, 0, 2)
        first_added = attention_out + emb_patches
        return self.enc_MLP(self.norm(first_added)) + first_added

    def backward(self, dy):
        d_first_added = self.norm.backward(self.enc_MLP.backward(dy)) + dy   # the norm's second call first
        dq, dk, dv = self.attention.backward(d_first_added.transpose(1, 0, 2))
        return self.norm.backward((dq + dk + dv).transpose(1, 0, 2)) + d_first_added


class ViT(xn.Model):
    def __init__(self, args):
        super().__init__()
        self.embedding = InputEmbedding(args)
        self.encoders = [EncoderBlock(args) for _ in range(args.num_encoders)]   # nn.ModuleList
        self.MLPHead = xn.Sequential(L.LayerNorm(args.latent_size), L.Linear(args.latent_size, args.latent_size),
                                     L.Linear(args.latent_size, args.num_classes))

    def forward(self, test_input, train=True):
        enc_output = self.embedding(test_input)
        for enc_layer in self.encoders:
            enc_output = enc_layer(enc_output)
        self.enc_shape = enc_output.shape
        return self.MLPHead(enc_output[:, 0])

    def backward(self, dy):
        d_enc = np.zeros(self.enc_shape, dtype=dy.dtype)
        d_enc[:, 0] = self.MLPHead.backward(dy)
        for enc_layer in reversed(self.encoders):
            d_enc = enc_layer.backward(d_enc)
        return self.embedding.backward(d_enc)


def _torch_vit(torch, args):
    """vision_transformer/main.py's InputEmbedding, EncoderBlock and ViT as the example writes them (its device
    moves left out)."""
    nn = torch.nn

    class TorchPatchExtractor(nn.Module):
        def __init__(self, patch_size=16):
            super().__init__()
            self.patch_size = patch_size

        def forward(self, input_data):
            batch_size, channels, height, width = input_data.size()
            num_patches = (height // self.patch_size) * (width // self.patch_size)
            return input_data.unfold(2, self.patch_size, self.patch_size). \
                unfold(3, self.patch_size, self.patch_size).permute(0, 2, 3, 1, 4, 5).contiguous(). \
                view(batch_size, num_patches, -1)

    class TorchInputEmbedding(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.patch_size = args.patch_size
            self.LinearProjection = nn.Linear(self.patch_size * self.patch_size * args.n_channels, args.latent_size)
            self.class_token = nn.Parameter(torch.randn(args.batch_size, 1, args.latent_size))
            self.pos_embedding = nn.Parameter(torch.randn(args.batch_size, 1, args.latent_size))

        def forward(self, input_data):
            patches = TorchPatchExtractor(patch_size=self.patch_size)(input_data)
            linear_projection = self.LinearProjection(patches)
            b, n, _ = linear_projection.shape
            linear_projection = torch.cat((self.class_token, linear_projection), dim=1)
            pos_embed = self.pos_embedding[:, :n + 1, :]
            linear_projection += pos_embed
            return linear_projection

    class TorchEncoderBlock(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.norm = nn.LayerNorm(args.latent_size)
            self.attention = nn.MultiheadAttention(args.latent_size, args.num_heads, dropout=args.dropout)
            self.enc_MLP = nn.Sequential(nn.Linear(args.latent_size, args.latent_size * 4), nn.GELU(),
                                         nn.Dropout(args.dropout), nn.Linear(args.latent_size * 4, args.latent_size),
                                         nn.Dropout(args.dropout))

        def forward(self, emb_patches):
            first_norm = self.norm(emb_patches)
            attention_out = self.attention(first_norm, first_norm, first_norm)[0]
            first_added = attention_out + emb_patches
            second_norm = self.norm(first_added)
            mlp_out = self.enc_MLP(second_norm)
            return mlp_out + first_added

    class TorchViT(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.embedding = TorchInputEmbedding(args)
            self.encoders = nn.ModuleList([TorchEncoderBlock(args) for _ in range(args.num_encoders)])
            self.MLPHead = nn.Sequential(nn.LayerNorm(args.latent_size), nn.Linear(args.latent_size, args.latent_size),
                                         nn.Linear(args.latent_size, args.num_classes))

        def forward(self, test_input):
            enc_output = self.embedding(test_input)
            for enc_layer in self.encoders:
                enc_output = enc_layer(enc_output)
            return self.MLPHead(enc_output[:, 0])

    return TorchViT(args).double()


def test_the_vision_transformer_example_trains_as_pytorchs():
    """vision_transformer/main.py at a tiny size (8x8 images of 4x4 patches, latent 16, 2 heads, 2 encoders, the
    example's batch of 4 and Adam(lr=1e-2, weight_decay=3e-2), dropout 0): xn.load_torch_state_dict takes torch's
    state dict, class token and positional embedding included; three training steps (the train_fn loop) and an
    eval_fn loss, then the weights, equal PyTorch's in float64."""
    torch = _torch()

    class args:
        patch_size, latent_size, n_channels, num_heads, num_encoders = 4, 16, 3, 2, 2
        dropout, img_size, num_classes, batch_size, lr, weight_decay = 0.0, 8, 10, 4, 1e-2, 3e-2

    torch.manual_seed(0)
    ref = _torch_vit(torch, args)
    model = ViT(args).to(dtype="float64")
    xn.load_torch_state_dict(model, ref.state_dict())
    optimizer = xn.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    toptimizer = torch.optim.Adam(ref.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    criterion, tcriterion = xn.losses.SoftmaxCrossEntropy(), torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)                               # CIFAR-10's images, resized: here random
    batches = [(rng.random((4, 3, 8, 8)), rng.integers(0, 10, 4)) for _ in range(3)]
    model.train()
    ref.train()
    for images, labels in batches:
        optimizer.zero_grad()
        logits = model(images)
        loss = criterion(logits, labels)
        model.backward(criterion.backward())                     # loss.backward()
        optimizer.step()
        toptimizer.zero_grad()
        tloss = tcriterion(ref(torch.from_numpy(images)), torch.from_numpy(labels))
        tloss.backward()
        toptimizer.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
    model.eval()
    ref.eval()
    images, labels = batches[0]
    with torch.no_grad():
        assert criterion(model(images), labels).item() == pytest.approx(
            tcriterion(ref(torch.from_numpy(images)), torch.from_numpy(labels)).item(), rel=1e-10)
    got, want = xn.torch_state_dict(model), ref.state_dict()
    assert sorted(got) == sorted(want)
    E = args.latent_size
    for name, value in got.items():
        want_value = want[name].numpy()
        if name.endswith("in_proj_bias"):
            # The key bias's gradient is 0 up to rounding (softmax ignores a shift), and Adam's m / sqrt(v) makes
            # steps of that noise, different in each library: left out.
            value, want_value = np.delete(value, np.s_[E:2 * E]), np.delete(want_value, np.s_[E:2 * E])
        np.testing.assert_allclose(value, want_value, rtol=1e-8, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("make", [lambda: np.random.default_rng(0).standard_normal(), lambda: np.float64(0.5)],
                         ids=["float", "numpy_scalar"])
def test_a_scalar_parameter_that_is_no_array_says_to_make_it_a_0d_array(make):
    """Polynomial3's torch.nn.Parameter(torch.randn(())) guessed as np.random.randn() (a float) or a NumPy scalar:
    no step can update either in place. The step said "namespace: expected at least one array", or that the
    gradient did not match its parameter "(shape () vs ())"; it names the parameter and says what to write."""
    model = Polynomial3()
    model.params["b"] = make()
    a = model.params["a"].copy()
    x, y = _sine(5)
    criterion = xn.losses.MeanSquaredError(reduction='sum')
    for optimizer in (xn.optim.SGD(model.parameters(), lr=1e-6), xn.optim.Adam(model.parameters())):
        optimizer.zero_grad()
        criterion(model(x), y)
        model.backward(criterion.backward())
        with pytest.raises(TypeError, match=r"^(SGD|Adam): parameter 'b' is a (float|float64) \(.*\), not an array, so "
                                            r"no step can update it in place; make it a 0-d array in __init__, "
                                            r"self\.params\['b'\] = np\.asarray\(value\) \(PyTorch's "
                                            r"nn\.Parameter\(torch\.randn\(\(\)\)\) is rng\.standard_normal\(\(\)\)"):
            optimizer.step()
    assert model.params["a"] == a                               # validated before any update


# --- in place into a layer's output -----------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [L.Sigmoid, L.Tanh, lambda: L.Softmax(dim=-1), lambda: L.Softmin(dim=-1),
                                  lambda: L.LogSoftmax(dim=-1)], ids=["Sigmoid", "Tanh", "Softmax", "Softmin",
                                                                       "LogSoftmax"])
def test_a_write_into_an_output_its_backward_reads_is_refused_in_training(make):
    """The ViT's `linear_projection += pos_embed`, written after a Sigmoid, Tanh or a softmax (whose backward
    reads the y it returned), changed that layer's gradient silently, where PyTorch's backward raises ("modified by
    an inplace operation"). In a training forward the output is now a read-only NumPy view: the write raises at
    once and the gradient stays right; `y = y + b` is what to write. In evaluation and under no_grad (sampling's
    `p /= p.sum()`) the output stays writable."""
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    layer = make()
    want = layer(x).copy(), layer.backward(dy)
    y = layer(x)
    with pytest.raises(ValueError, match="read-only"):
        y += 1.0
    np.testing.assert_array_equal(y, want[0])
    np.testing.assert_array_equal(layer.backward(dy), want[1])
    y = layer(x)
    y = y + 1.0                                                  # what to write
    np.testing.assert_array_equal(layer.backward(dy), want[1])
    with xn.no_grad():
        layer(x)[0] = 0.0
    layer.eval()
    layer(x)[0] = 0.0
