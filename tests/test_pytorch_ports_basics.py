"""pytorch/tutorials' "Learning PyTorch with Examples" DynamicNet ported to xpnet as a PyTorch user writes it: one
layer object (or one parameter) used a varying number of times per forward, trained with SGD and momentum;
checked against the same program in torch, float64, the same initial weights and the same counts."""

import random

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


class _DynamicNet(xn.Model):
    """The tutorial's first DynamicNet: the middle Linear (and the one ReLU) called `draw()` times, 0 to 3. The
    backward takes the middle layer back as many times as this forward called it, last call first."""

    def __init__(self, D_in, H, D_out, draw):
        super().__init__()
        self.input_linear = L.Linear(D_in, H, dtype="float64")
        self.middle_linear = L.Linear(H, H, dtype="float64")
        self.output_linear = L.Linear(H, D_out, dtype="float64")
        self.relu = L.ReLU()                                     # .clamp(min=0), one object for every use
        self.draw = draw

    def forward(self, x, train=True):
        h_relu = self.relu(self.input_linear(x))
        self.n = self.draw()
        for _ in range(self.n):
            h_relu = self.relu(self.middle_linear(h_relu))
        return self.output_linear(h_relu)

    def backward(self, dy):
        dh = self.output_linear.backward(dy)
        for _ in range(self.n):
            dh = self.middle_linear.backward(self.relu.backward(dh))
        return self.input_linear.backward(self.relu.backward(dh))


class _PolyNet(xn.Model):
    """The tutorial's current DynamicNet: y = a + b x + c x^2 + d x^3, plus e x^4 and e x^5 as drawn; e reused.
    Caches x and the powers of e used."""

    def __init__(self, draw, start):
        super().__init__()
        for name, value in zip("abcde", start):
            self.params[name] = np.asarray(value, dtype=np.float64)
        self.draw = draw

    def forward(self, x, train=True):
        p = self.params
        self.x, self.exps = x, range(4, self.draw())
        y = p["a"] + p["b"] * x + p["c"] * x ** 2 + p["d"] * x ** 3
        for exp in self.exps:
            y = y + p["e"] * x ** exp
        return y

    def backward(self, dy):
        x = self.x
        sums = dict(a=dy, b=dy * x, c=dy * x ** 2, d=dy * x ** 3)
        if self.exps:  # e unused: no gradient, so the step leaves it and its momentum, as PyTorch's grad of None
            sums["e"] = sum(dy * x ** exp for exp in self.exps)
        self.grads.update({name: np.asarray(np.sum(v)) for name, v in sums.items()})  # 0-d arrays, as the params
        dx = self.params["b"] + 2 * self.params["c"] * x + 3 * self.params["d"] * x ** 2
        return dy * (dx + sum(exp * self.params["e"] * x ** (exp - 1) for exp in self.exps))


def _torch_dynamic_net(torch, D_in, H, D_out, draw):
    class DynamicNet(torch.nn.Module):                          # the tutorial's class, its draw passed in
        def __init__(self):
            super().__init__()
            self.input_linear = torch.nn.Linear(D_in, H)
            self.middle_linear = torch.nn.Linear(H, H)
            self.output_linear = torch.nn.Linear(H, D_out)

        def forward(self, x):
            h_relu = self.input_linear(x).clamp(min=0)
            for _ in range(draw()):
                h_relu = self.middle_linear(h_relu).clamp(min=0)
            return self.output_linear(h_relu)
    return DynamicNet().double()


def _counts(how):
    """The draw of the number of middle calls: fixed per step, or random.randint(0, 3) from a seeded generator."""
    if how == "fixed":
        counts = iter([3, 0, 2, 1, 3, 2])
        return lambda: next(counts)
    rng = random.Random(7)
    return lambda: rng.randint(0, 3)


@pytest.mark.parametrize("how", ["fixed", "random"])
def test_the_dynamic_net_reusing_its_middle_layer_trains_as_pytorchs(how):
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_dynamic_net(torch, 3, 6, 2, _counts(how))
    ours = _DynamicNet(3, 6, 2, _counts(how))
    xn.load_torch_state_dict(ours, theirs.state_dict())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    criterion, their_criterion = xn.losses.MeanSquaredError(reduction="sum"), torch.nn.MSELoss(reduction="sum")
    optimizer = xn.optim.SGD(ours.parameters(), lr=1e-2, momentum=0.9)
    their_optimizer = torch.optim.SGD(theirs.parameters(), lr=1e-2, momentum=0.9)
    for _ in range(6):
        optimizer.zero_grad()
        loss = criterion(ours(x), y)
        ours.backward(criterion.backward())
        optimizer.step()
        their_optimizer.zero_grad()
        their_loss = their_criterion(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        their_loss.backward()
        their_optimizer.step()
        assert float(loss) == pytest.approx(their_loss.item(), rel=1e-10)
    for name, p in xn.torch_state_dict(ours).items():
        np.testing.assert_allclose(np.asarray(p), theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("how", ["fixed", "random"])
def test_the_polynomial_dynamic_net_reusing_e_trains_as_pytorchs(how):
    torch = _torch()
    start = np.random.default_rng(1).standard_normal(5)
    rng = random.Random(3)
    counts = [6, 4, 5, 6] if how == "fixed" else [rng.randint(4, 6) for _ in range(4)]
    ours = _PolyNet(iter(counts).__next__, start)
    params = [torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in start]
    x_np = np.linspace(-np.pi, np.pi, 50)
    y_np = np.sin(x_np)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    criterion = xn.losses.MeanSquaredError(reduction="sum")
    optimizer = xn.optim.SGD(ours.parameters(), lr=1e-6, momentum=0.9)
    their_optimizer = torch.optim.SGD(params, lr=1e-6, momentum=0.9)
    for count in counts:
        optimizer.zero_grad()
        loss = criterion(ours(x_np), y_np)
        ours.backward(criterion.backward())
        optimizer.step()
        a, b, c, d, e = params
        y_pred = a + b * x + c * x ** 2 + d * x ** 3
        for exp in range(4, count):
            y_pred = y_pred + e * x ** exp
        their_loss = torch.nn.MSELoss(reduction="sum")(y_pred, y)
        their_optimizer.zero_grad()
        their_loss.backward()
        their_optimizer.step()
        assert float(loss) == pytest.approx(their_loss.item(), rel=1e-10)
    got = ours.named_params()
    np.testing.assert_allclose([float(got[n]) for n in "abcde"], [p.item() for p in params], rtol=1e-10)


def test_a_numpy_scalar_gradient_of_a_0d_parameter_is_refused_saying_to_make_it_an_array():
    """np.sum(dy) gives a numpy.float64, not an array: the step said 'shape () vs (), dtype float64 vs float64'."""
    model = _PolyNet(lambda: 4, np.ones(5))
    x = np.linspace(-1.0, 1.0, 5)
    model(x)
    model.grads.update({name: np.sum(x) for name in "abcde"})
    with pytest.raises(ValueError, match=r"SGD: gradient of 'a' is a NumPy scalar \(float64\).*np.asarray"):
        xn.optim.SGD(model, lr=0.1).step()


# --- advanced_source/neural_style_tutorial.py: the input image optimized by L-BFGS ---------------------------------

def _gram_matrix(input):
    a, b, c, d = input.shape
    features = np.reshape(input, (a * b, c * d))
    return features @ features.T / (a * b * c * d)


class _ContentLoss(L.Layer):
    """The tutorial's transparent ContentLoss: returns its input, records `loss`; backward adds weight * dloss."""

    def __init__(self, target, weight=1.0):
        super().__init__()
        self.target, self.weight = target, weight
        self.mse = xn.losses.MeanSquaredError()

    def forward(self, input, train=True):
        self.loss = self.mse(input, self.target)
        return input

    def backward(self, dy):
        return dy + self.weight * self.mse.backward()


class _StyleLoss(L.Layer):
    """The tutorial's StyleLoss: the MSE of Gram matrices (C, C), its input passed on. Caches the input."""

    def __init__(self, target_feature, weight=1.0):
        super().__init__()
        self.target, self.weight = _gram_matrix(target_feature), weight
        self.mse = xn.losses.MeanSquaredError()

    def forward(self, input, train=True):
        self.input = input
        self.loss = self.mse(_gram_matrix(input), self.target)
        return input

    def backward(self, dy):
        a, b, c, d = self.input.shape
        dG = self.mse.backward()
        dF = (dG + dG.T) @ np.reshape(self.input, (a * b, c * d)) / (a * b * c * d)
        return dy + self.weight * np.reshape(dF, self.input.shape)


class _Normalization(L.Layer):
    """(img - mean) / std per channel, (N, C, H, W)."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = np.reshape(mean, (-1, 1, 1)), np.reshape(std, (-1, 1, 1))

    def forward(self, img, train=True):
        return (img - self.mean) / self.std

    def backward(self, dy):
        return dy / self.std


class _StyleTransfer(xn.Model):
    """The image as the one parameter L-BFGS optimizes (PyTorch's LBFGS([input_img.requires_grad_()])): forward
    runs the frozen style model on it, backward stores the model's dx as its gradient."""

    def __init__(self, model, input_img):
        super().__init__()
        self.model = model.requires_grad_(False)
        self.params["input_img"] = input_img

    def forward(self, train=True):
        return self.model(self.params["input_img"])

    def backward(self, dy):
        self.grads["input_img"] = self.model.backward(dy)


def _style_model(cnn, content_img, style_img, content_layers, style_layers, loss_layers, weights):
    """get_style_model_and_losses with the cnn's children, xpnet's or torch's, and the loss classes given."""
    Normalization, ContentLoss, StyleLoss, Sequential, conv = loss_layers
    model = Sequential(Normalization([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])).eval()
    content_losses, style_losses, i = [], [], 0
    for layer in cnn:
        if isinstance(layer, conv):
            i += 1
        name = f"conv_{i}" if isinstance(layer, conv) else f"other_{i}"
        model.append(layer)
        if name in content_layers:
            content_losses.append(ContentLoss(model(content_img), weights[1]))
            model.append(content_losses[-1])
        if name in style_layers:
            style_losses.append(StyleLoss(model(style_img), weights[0]))
            model.append(style_losses[-1])
    for i in range(len(model) - 1, -1, -1):
        if isinstance(model[i], (ContentLoss, StyleLoss)):
            break
    return model[:(i + 1)], style_losses, content_losses


def _torch_style_classes(torch):
    """The tutorial's ContentLoss, StyleLoss and Normalization, from its source; the weights kept on the losses."""
    F = torch.nn.functional

    def gram_matrix(input):
        a, b, c, d = input.size()
        features = input.view(a * b, c * d)
        return torch.mm(features, features.t()).div(a * b * c * d)

    class ContentLoss(torch.nn.Module):
        def __init__(self, target, weight):
            super().__init__()
            self.target, self.weight = target.detach(), weight

        def forward(self, input):
            self.loss = F.mse_loss(input, self.target)
            return input

    class StyleLoss(torch.nn.Module):
        def __init__(self, target_feature, weight):
            super().__init__()
            self.target, self.weight = gram_matrix(target_feature).detach(), weight

        def forward(self, input):
            self.loss = F.mse_loss(gram_matrix(input), self.target)
            return input

    class Normalization(torch.nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.mean = torch.tensor(mean, dtype=torch.float64).view(-1, 1, 1)
            self.std = torch.tensor(std, dtype=torch.float64).view(-1, 1, 1)

        def forward(self, img):
            return (img - self.mean) / self.std
    return Normalization, ContentLoss, StyleLoss, torch.nn.Sequential, torch.nn.Conv2d


def test_style_transfer_optimizing_the_input_image_with_lbfgs_equals_pytorch():
    """A tiny random conv stack for VGG, 8x8 images; the image clamped to [0, 1] in place in each closure
    (input_img.data.clamp_(0, 1)) as L-BFGS updates it in place, PyTorch's way. Two steps of 10 iterations: the
    two agree to 1e-16 per pixel at first, the clamps and L-BFGS's curvature pairs growing rounding ~10x per
    3 iterations (4e-14 after 20, 4e-10 after 40)."""
    torch = _torch()
    torch.manual_seed(0)
    nn = torch.nn
    their_cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                              nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()).double().eval()
    cnn = xn.Sequential(L.Conv2d(3, 4, 3, padding=1), L.ReLU(), L.MaxPool2d(2), L.Conv2d(4, 4, 3, padding=1),
                        L.ReLU(), L.Conv2d(4, 4, 3, padding=1), L.ReLU()).to(dtype="float64").eval()
    xn.load_torch_state_dict(cnn, their_cnn.state_dict())
    rng = np.random.default_rng(0)
    content_img, style_img = rng.uniform(size=(1, 3, 8, 8)), rng.uniform(size=(1, 3, 8, 8))
    layers = (["conv_2"], ["conv_1", "conv_2"])
    weights = (1e3, 1.0)

    model, style_losses, content_losses = _style_model(
        cnn.named_children().values(), content_img, style_img, *layers,
        (_Normalization, _ContentLoss, _StyleLoss, xn.Sequential, L.Conv2d), weights)
    assert len(model) == 8                                         # conv_3 and after trimmed off
    input_img = content_img.copy()
    transfer = _StyleTransfer(model, input_img).eval()
    optimizer = xn.optim.LBFGS(transfer.parameters(), max_iter=10)

    def closure():
        np.clip(input_img, 0, 1, out=input_img)                    # input_img.data.clamp_(0, 1)
        optimizer.zero_grad()
        out = transfer()
        transfer.backward(np.zeros_like(out))                    # the losses inside add their gradients
        return sum(m.loss * m.weight for m in style_losses + content_losses)

    their_model, their_style, their_content = _style_model(
        their_cnn.children(), torch.from_numpy(content_img), torch.from_numpy(style_img), *layers,
        _torch_style_classes(torch), weights)
    their_img = torch.from_numpy(content_img.copy())
    their_optimizer = torch.optim.LBFGS([their_img.requires_grad_()], max_iter=10)

    def their_closure():
        their_img.data.clamp_(0, 1)
        their_optimizer.zero_grad()
        their_model(their_img)
        loss = sum(m.loss * m.weight for m in their_style + their_content)
        loss.backward()
        return loss

    for _ in range(2):
        loss, their_loss = optimizer.step(closure), their_optimizer.step(their_closure)
        assert float(loss) == pytest.approx(their_loss.item(), rel=1e-10)
    np.clip(input_img, 0, 1, out=input_img)
    their_img.data.clamp_(0, 1)
    assert optimizer.state["func_evals"] == their_optimizer.state[their_optimizer._params[0]]["func_evals"]
    np.testing.assert_allclose(input_img, their_img.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert not np.allclose(input_img, content_img)
    w = cnn[0].params["W"]                                          # the frozen network left as it was
    assert transfer.model[1].params["W"] is w and np.array_equal(w, their_cnn[0].weight.detach().numpy())


def test_lbfgs_given_a_list_holding_the_image_says_to_make_it_a_models_parameter():
    with pytest.raises(TypeError, match=r"LBFGS: .*got a list.*to optimize an array itself.*self.params\['img'\]"):
        xn.optim.LBFGS([np.zeros((1, 3, 8, 8))])
