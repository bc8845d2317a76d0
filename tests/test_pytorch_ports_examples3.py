"""pytorch/tutorials' custom_function_conv_bn_tutorial.py (a convolution and batch norm fused by hand, their
backward written out) and pytorch/examples' mnist_hogwild, ported to xpnet as a PyTorch user writes them first,
each run next to the same program in torch, float64, the same initial weights, a few steps; and what the ports
showed a porter has to be told. No MNIST here: random (N, 1, 28, 28) images and labels."""

import math
import warnings

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _batches(n, size=4, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((size, 1, 28, 28)), rng.integers(0, 10, size)) for _ in range(n)]


# --- intermediate_source/custom_function_conv_bn_tutorial.py ----------------------------------------------------------

def unsqueeze_all(t):
    return t[None, :, None, None]


def batch_norm_backward(grad_out, X, sum, sqrt_var, N, eps):
    """The tutorial's, with NumPy's ``axis=`` for torch's ``dim=``."""
    tmp = -((X - unsqueeze_all(sum) / N) * grad_out).sum(axis=(0, 2, 3))
    d_denom = tmp / (sqrt_var + eps)**2
    d_var = d_denom / (2 * sqrt_var)
    d_mean_dx = grad_out / unsqueeze_all(sqrt_var + eps)
    d_mean_dx = unsqueeze_all(-d_mean_dx.sum(axis=(0, 2, 3)) / N)
    grad_input = X * unsqueeze_all(d_var * N)
    grad_input += unsqueeze_all(-d_var * sum)
    grad_input *= 2 / ((N - 1) * N)
    grad_input += d_mean_dx
    grad_input *= unsqueeze_all(sqrt_var + eps)
    grad_input += grad_out
    grad_input /= unsqueeze_all(sqrt_var + eps)
    return grad_input


class FusedConvBN(xn.Model):
    """FusedConvBN2DFunction and its nn.Module in one: F.conv2d is a Conv2d(bias=False) held as ``self.conv``
    (xpnet has no functional conv), X, the batch's sum, N and sqrt(unbiased var) kept for backward, which runs the
    convolution forward again (the tutorial's point: X alone kept), then its batch norm backward and the Conv2d's.
    A model (a container), so that the Conv2d's weight is listed, trained, moved and saved.
    X: (N, C_in, H, W) -> (N, C_out, H - k + 1, W - k + 1)."""

    def __init__(self, in_channels, out_channels, kernel_size, exp_avg_factor=0.1, eps=1e-3, device=None,
                 dtype=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)
        self.num_features = out_channels
        self.eps = eps
        xn.init.kaiming_uniform_(self.conv.weight, a=math.sqrt(5))     # reset_parameters

    def forward(self, X, train=True):
        self.X = X                                                     # ctx.save_for_backward(X, conv_weight)
        X = self.conv(X)
        sum = X.sum(axis=(0, 2, 3))
        var = X.var(ddof=1, axis=(0, 2, 3))                            # X.var(unbiased=True, dim=(0, 2, 3))
        N = X.size / X.shape[1]                                        # X.numel() / X.size(1)
        sqrt_var = np.sqrt(var)
        self.sum, self.N, self.sqrt_var = sum, N, sqrt_var
        mean = sum / N
        denom = sqrt_var + self.eps
        out = X - unsqueeze_all(mean)
        out /= unsqueeze_all(denom)
        return out

    def backward(self, grad_out):
        X_conv_out = self.conv(self.X)                                 # (5) recompute conv
        grad_out = batch_norm_backward(grad_out, X_conv_out, self.sum, self.sqrt_var, self.N, self.eps)
        return self.conv.backward(grad_out)


class Net(xn.Model):
    """The tutorial's Net with fused=True (its unfused one is Conv2d(bias=False) then BatchNorm(affine=False,
    track_running_stats=False), PyTorch's, tested elsewhere), F.relu as one ReLU, F.max_pool2d(x, 2) MaxPool2d(2),
    x.flatten(1) Flatten(), F.log_softmax LogSoftmax(dim=1); ``p``: the Dropout's (0.5 there)."""

    def __init__(self, p=0.5):
        super().__init__()
        self.convbn1 = FusedConvBN(1, 32, 3)
        self.convbn2 = FusedConvBN(32, 64, 3)
        self.fc1 = nn.Linear(9216, 128)
        self.dropout = nn.Dropout(p)
        self.fc2 = nn.Linear(128, 10)
        self.relu, self.pool, self.flatten = nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
        self.log_softmax = nn.LogSoftmax(dim=1)

    def forward(self, x, train=True):
        x = self.relu(self.convbn1(x))
        x = self.relu(self.convbn2(x))
        x = self.relu(self.pool(x))
        x = self.relu(self.dropout(self.fc1(self.flatten(x))))
        return self.log_softmax(self.fc2(x))

    def backward(self, dy):
        dy = self.fc2.backward(self.log_softmax.backward(dy))
        dy = self.flatten.backward(self.fc1.backward(self.dropout.backward(self.relu.backward(dy))))
        dy = self.pool.backward(self.relu.backward(dy))
        dy = self.relu.backward(dy)
        return self.convbn1.backward(self.relu.backward(self.convbn2.backward(dy)))


def _torch_net(torch, p):
    """The tutorial's FusedConvBN2DFunction, FusedConvBN and Net (fused) as they are there (the Dropout's p given)."""
    F, tnn = torch.nn.functional, torch.nn

    def convolution_backward(grad_out, X, weight):
        grad_input = F.conv2d(X.transpose(0, 1), grad_out.transpose(0, 1)).transpose(0, 1)
        grad_X = F.conv_transpose2d(grad_out, weight)
        return grad_X, grad_input

    def torch_bn_backward(grad_out, X, sum, sqrt_var, N, eps):
        tmp = -((X - unsqueeze_all(sum) / N) * grad_out).sum(dim=(0, 2, 3))
        d_var = tmp / (sqrt_var + eps)**2 / (2 * sqrt_var)
        d_mean_dx = unsqueeze_all(-(grad_out / unsqueeze_all(sqrt_var + eps)).sum(dim=(0, 2, 3)) / N)
        grad_input = X * unsqueeze_all(d_var * N)
        grad_input += unsqueeze_all(-d_var * sum)
        grad_input *= 2 / ((N - 1) * N)
        grad_input += d_mean_dx
        grad_input *= unsqueeze_all(sqrt_var + eps)
        grad_input += grad_out
        grad_input /= unsqueeze_all(sqrt_var + eps)
        return grad_input

    class FusedConvBN2DFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, X, conv_weight, eps=1e-3):
            ctx.save_for_backward(X, conv_weight)
            X = F.conv2d(X, conv_weight)
            sum = X.sum(dim=(0, 2, 3))
            var = X.var(unbiased=True, dim=(0, 2, 3))
            N = X.numel() / X.size(1)
            sqrt_var = torch.sqrt(var)
            ctx.eps, ctx.sum, ctx.N, ctx.sqrt_var = eps, sum, N, sqrt_var
            out = X - unsqueeze_all(sum / N)
            out /= unsqueeze_all(sqrt_var + eps)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            X, conv_weight, = ctx.saved_tensors
            X_conv_out = F.conv2d(X, conv_weight)
            grad_out = torch_bn_backward(grad_out, X_conv_out, ctx.sum, ctx.sqrt_var, ctx.N, ctx.eps)
            grad_X, grad_input = convolution_backward(grad_out, X, conv_weight)
            return grad_X, grad_input, None

    class TorchFusedConvBN(tnn.Module):
        def __init__(self, in_channels, out_channels, kernel_size, eps=1e-3):
            super().__init__()
            self.conv_weight = tnn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
            self.eps = eps

        def forward(self, X):
            return FusedConvBN2DFunction.apply(X, self.conv_weight, self.eps)

    class TorchNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.convbn1 = TorchFusedConvBN(1, 32, 3)
            self.convbn2 = TorchFusedConvBN(32, 64, 3)
            self.fc1 = tnn.Linear(9216, 128)
            self.dropout = tnn.Dropout(p)
            self.fc2 = tnn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.convbn1(x))
            x = F.relu(self.convbn2(x))
            x = F.relu(F.max_pool2d(x, 2))
            x = self.fc2(F.relu(self.dropout(self.fc1(x.flatten(1)))))
            return F.log_softmax(x, dim=1)

    return TorchNet().double()


def _copy_into_torch(torch, model, tmodel):
    """xpnet's weights into the torch twin, by PyTorch's names (a fused block's conv.weight is conv_weight)."""
    theirs = {name.replace("conv.weight", "conv_weight"): torch.from_numpy(a.copy())
              for name, a in xn.torch_state_dict(model).items()}
    tmodel.load_state_dict(theirs)


def test_fused_conv_batch_norm_custom_function_trains_as_pytorchs():
    """The tutorial's gradcheck of the fused layer (X (2, 3, 4, 4), weight (5, 3, 3, 3); 16 entries of each) passes,
    and its training (Adadelta(lr=1.0), StepLR(step_size=1, gamma=0.7), F.nll_loss, 2 epochs of one batch) equals
    torch's: losses, then the weights, in float64. Dropout p is 0 in both, so that both draw the same (none)."""
    torch = _torch()
    assert xn.gradcheck(FusedConvBN(3, 5, 3).to(dtype="float64"), np.random.default_rng(1).random((2, 3, 4, 4)),
                        max_entries=16)
    model = Net(p=0.0).to(dtype="float64")
    tmodel = _torch_net(torch, 0.0)
    _copy_into_torch(torch, model, tmodel)
    optimizer = xn.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = xn.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    toptimizer = torch.optim.Adadelta(tmodel.parameters(), lr=1.0)
    tscheduler = torch.optim.lr_scheduler.StepLR(toptimizer, step_size=1, gamma=0.7)
    criterion = xn.losses.NLLLoss()
    for epoch in range(2):
        model.train()
        for data, target in _batches(1, size=2):
            optimizer.zero_grad()
            output = model(data)
            loss = criterion(output, target)
            model.backward(criterion.backward())
            optimizer.step()
            toptimizer.zero_grad()
            tloss = torch.nn.functional.nll_loss(tmodel(torch.from_numpy(data)), torch.from_numpy(target))
            tloss.backward()
            toptimizer.step()
            assert loss.item() == pytest.approx(tloss.item(), rel=1e-10), epoch
        scheduler.step()
        tscheduler.step()
    theirs = {name.replace("conv_weight", "conv.weight"): t for name, t in tmodel.state_dict().items()}
    for name, array in xn.torch_state_dict(model).items():
        np.testing.assert_allclose(array, theirs[name].numpy(), rtol=1e-10, atol=1e-13, err_msg=name)


def test_the_fused_layer_written_as_a_layer_holding_its_conv2d_says_so_at_to_and_state_dict():
    """FusedConvBN as ``xn.layers.Layer`` (the docs' home for a custom autograd Function) holding its Conv2d: a
    leaf lists no layer inside it, so ``Net().to(dtype="float64")`` left the Conv2d in float32 (the forward then said
    "cast one of them (model.to(device, dtype=...))", which the porter had just done) and ``state_dict()`` held no
    conv weight: a checkpoint silently without it. Only the optimizer warned. ``to`` and ``state_dict`` now warn
    too, naming the layer, the attribute and what to subclass; the container above says nothing."""
    class LayerFusedConvBN(nn.Layer):
        def __init__(self, in_channels, out_channels, kernel_size):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)

        def forward(self, X, train=True):
            return self.conv(X)

        def backward(self, grad_out):
            return self.conv.backward(grad_out)

    class LayerNet(xn.Model):
        def __init__(self):
            super().__init__()
            self.convbn1 = LayerFusedConvBN(1, 4, 3)

    says = (r"'convbn1' \(LayerFusedConvBN\) holds the Conv2d 'conv' as an attribute, and a layer that is not a "
            r"container lists no layer inside it: its parameters 'W' {}.*subclass xn.Model")
    model = LayerNet()
    with pytest.warns(UserWarning, match=r"^LayerNet\.to: " + says.format("were not moved or cast")):
        model.to(dtype="float64")
    with pytest.warns(UserWarning, match=r"^LayerNet\.state_dict: " + says.format("are not in the state dict")):
        assert list(model.state_dict()) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(Net().to(dtype="float64").state_dict())[:2] == ["convbn1.conv.W", "convbn2.conv.W"]


def test_saving_a_model_whose_layer_of_its_own_holds_a_conv2d_says_the_file_lacks_it(tmp_path):
    """``xn.save(model, path)`` (``torch.save(model, ...)``) of the model above wrote a file without the Conv2d held by
    the layer of one's own, and ``xn.load`` built it again with new random weights there, silently; the save now
    warns as ``to`` and ``state_dict`` do."""
    class LayerConv(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, bias=False)

    class HeldNet(xn.Model):
        def __init__(self):
            super().__init__()
            self.block = LayerConv()

    with pytest.warns(UserWarning, match=r"^xn\.save: 'block' \(LayerConv\) holds the Conv2d 'conv' as an "
                                         r"attribute.*its parameters 'W' are not in the file"):
        xn.save(HeldNet(), tmp_path / "held.npz")


def test_a_layer_of_its_own_keeping_a_layer_class_moves_saves_and_trains(tmp_path):
    """A leaf layer of one's own that keeps the class of a layer it builds later (timm's ``act_layer=nn.GELU``,
    ``self.act_layer = act_layer``) holds no layer: ``to``, ``state_dict``, ``xn.save`` and the optimizer's
    binding raised "Tree.named_params() missing 1 required positional argument: 'self'" (the check for layers
    held as attributes called the class's method)."""
    class Scale(nn.Layer):
        def __init__(self, act_layer=nn.ReLU):
            super().__init__()
            self.act_layer = act_layer
            self.params["W"] = np.ones(3, dtype=np.float32)

    model = xn.Sequential(nn.Linear(3, 3), Scale())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.to(dtype="float64").dtype == "float64"
        assert list(model.state_dict()) == ["0.W", "0.b", "1.W"]
        xn.save(model, tmp_path / "scale.npz")
        xn.optim.SGD(model.parameters(), lr=0.1)  # bound, and no warning of parameters out of its reach


class _TorchStatistics(nn.Layer):
    """The tutorial's batch statistics as a PyTorch user first writes them on NumPy's arrays; ``line`` picks one."""

    def __init__(self, line):
        super().__init__()
        self.line = line

    def forward(self, X, train=True):
        if self.line == "var":
            return X.var(unbiased=True, dim=(0, 2, 3))
        if self.line == "sum":
            return X.sum(dim=(0, 2, 3))
        if self.line == "keepdim":
            return X.mean(axis=(0, 2, 3), keepdim=True)
        return X.flatten(1)

    def backward(self, dy):
        return dy


@pytest.mark.parametrize("line, said", [
    ("var", r"unexpected keyword argument 'unbiased' \(line \d+: return X\.var\(unbiased=True, dim=\(0, 2, 3\)\)\): "
            r"NumPy's reductions take axis=, keepdims= and ddof=.*ddof=1 for unbiased=True.*PyTorch's x\.var\(d\) "
            r"and x\.std\(d\) are the unbiased ones, NumPy's x\.var\(axis=d\) the biased"),
    ("sum", r"'dim' \(line \d+: return X\.sum\(dim=\(0, 2, 3\)\)\): NumPy's reductions take axis=.*axis= for dim="),
    ("keepdim", r"'keepdim' .*keepdims= for keepdim="),
    ("flatten", r"order must be str, not int \(line \d+: return X\.flatten\(1\)\): NumPy's x\.flatten\(order\) "
                r"flattens every axis.*xn\.layers\.Flatten\(\)"),
], ids=["var", "sum", "keepdim", "flatten"])
def test_pytorchs_reduction_keywords_and_flatten_in_a_forward_say_numpys_spelling(line, said):
    """The tutorial's ``X.var(unbiased=True, dim=(0, 2, 3))``, ``X.sum(dim=...)``, a ``keepdim=True`` and
    ``x.flatten(1)`` in a forward gave NumPy's bare "_var() got an unexpected keyword argument 'unbiased'" and
    "order must be str, not int"; each now names the layer, its line and NumPy's spelling. The variance's says that
    PyTorch's is the unbiased one by default: ``X.var(axis=d)``, the first fix that runs, is silently the biased
    one."""
    with pytest.raises(TypeError, match=r"_TorchStatistics\.forward: .*" + said):
        xn.Sequential(_TorchStatistics(line))(np.ones((2, 3, 4, 4)))


# --- pytorch/examples mnist_hogwild: main.py's Net, train.py's train, train_epoch and test_epoch -------------------

class HogwildNet(xn.Model):
    """main.py's Net: F.relu and F.max_pool2d(x, 2) as one ReLU and one MaxPool2d(2), each used twice;
    ``nn.Dropout2d()`` and ``F.dropout(x, training=self.training)`` as Dropout2d(p) and Dropout(p) (0.5 there);
    ``x.view(-1, 320)`` as a Flatten, whose backward reshapes dy back. x (N, 1, 28, 28) -> (N, 10)."""

    def __init__(self, p=0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(p)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)
        self.relu, self.pool, self.flatten, self.dropout = nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(p)
        self.log_softmax = nn.LogSoftmax(dim=1)

    def forward(self, x, train=True):
        x = self.relu(self.pool(self.conv1(x)))
        x = self.relu(self.pool(self.conv2_drop(self.conv2(x))))
        x = self.relu(self.fc1(self.flatten(x)))
        x = self.fc2(self.dropout(x))
        return self.log_softmax(x)

    def backward(self, dy):
        dy = self.dropout.backward(self.fc2.backward(self.log_softmax.backward(dy)))
        dy = self.flatten.backward(self.fc1.backward(self.relu.backward(dy)))
        dy = self.conv2.backward(self.conv2_drop.backward(self.pool.backward(self.relu.backward(dy))))
        return self.conv1.backward(self.pool.backward(self.relu.backward(dy)))


def train_epoch(epoch, args, model, device, data_loader, optimizer):
    """train.py's, xpnet's calls in torch's places (its losses returned, for the test)."""
    model.train()
    criterion, losses = xn.losses.NLLLoss(), []
    for batch_idx, (data, target) in enumerate(data_loader):
        optimizer.zero_grad()
        output = model(xn.to_device(data, device))
        loss = criterion(output, xn.to_device(target, device))
        model.backward(criterion.backward())                       # loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_epoch(model, device, data_loader):
    """train.py's: ``output.max(1)[1]`` is ``output.argmax(1)``. Returns (average loss, correct)."""
    model.eval()
    test_loss, correct = 0, 0
    criterion = xn.losses.NLLLoss(reduction='sum')
    with xn.no_grad():
        for data, target in data_loader:
            output = model(xn.to_device(data, device))
            test_loss += criterion(output, xn.to_device(target, device)).item()
            pred = output.argmax(1)
            correct += int((pred == target).sum())
    return test_loss / sum(len(target) for _, target in data_loader), correct


test_epoch.__test__ = False  # train.py's name, not a test of pytest's


def test_mnist_hogwild_in_one_process_trains_as_pytorchs():
    """train.py's ``train(rank, ...)`` called in this process (one worker, --num-processes 1): SGD(lr=0.01,
    momentum=0.5), 2 epochs of 2 batches, then test_epoch; losses, weights, the test loss and the correct count
    equal torch's (main.py's Net, train.py's loops) in float64. Dropout p is 0 in both, so that both draw the same
    (none)."""
    torch = _torch()
    F, tnn = torch.nn.functional, torch.nn
    model = HogwildNet(p=0.0).to(dtype="float64")

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(1, 10, kernel_size=5)
            self.conv2 = tnn.Conv2d(10, 20, kernel_size=5)
            self.conv2_drop = tnn.Dropout2d(0.0)
            self.fc1 = tnn.Linear(320, 50)
            self.fc2 = tnn.Linear(50, 10)

        def forward(self, x):
            x = F.relu(F.max_pool2d(self.conv1(x), 2))
            x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
            x = x.view(-1, 320)
            x = F.relu(self.fc1(x))
            x = F.dropout(x, p=0.0, training=self.training)
            x = self.fc2(x)
            return F.log_softmax(x, dim=1)

    tmodel = Net().double()
    xn.load_torch_state_dict(model, tmodel.state_dict())
    batches, test_batches = _batches(2, seed=1), _batches(1, seed=2)
    optimizer = xn.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    toptimizer = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.5)
    for epoch in range(1, 3):
        losses = train_epoch(epoch, None, model, "cpu", batches, optimizer)
        tmodel.train()
        for (data, target), loss in zip(batches, losses):
            toptimizer.zero_grad()
            tloss = F.nll_loss(tmodel(torch.from_numpy(data)), torch.from_numpy(target))
            tloss.backward()
            toptimizer.step()
            assert loss == pytest.approx(tloss.item(), rel=1e-10), epoch
    theirs = tmodel.state_dict()
    for name, array in xn.torch_state_dict(model).items():
        np.testing.assert_allclose(array, theirs[name].numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
    test_loss, correct = test_epoch(model, "cpu", test_batches)
    tmodel.eval()
    with torch.no_grad():
        (data, target), = test_batches
        toutput = tmodel(torch.from_numpy(data))
        assert test_loss == pytest.approx(F.nll_loss(toutput, torch.from_numpy(target), reduction='sum').item() / 4,
                                          rel=1e-10)
        assert correct == int(toutput.max(1)[1].eq(torch.from_numpy(target)).sum())


def test_share_memory_says_a_process_trains_a_copy_and_what_to_write():
    """main.py's ``model.share_memory()`` before starting the processes said Python's "no attribute" alone, and
    without it each multiprocessing.Process trains a copy of the model, silently lost; it now says so, and what to
    write: train in this process, or xn.train with a communicator under mpiexec."""
    model = HogwildNet()
    with pytest.raises(AttributeError, match=r"^'HogwildNet' object has no attribute 'share_memory': xpnet's "
                                             r"parameters are arrays of this process.*Process.*is a copy there, "
                                             r"whose training never reaches this one.*train\(0, args, model, .*"
                                             r"xn\.train\(\.\.\., comm=xn\.distributed\.init\(\)\)"):
        model.share_memory()


# --- beginner_source/examples_nn/two_layer_net_module.py (its older version: Variable, size_average) --------------

class TwoLayerNet(xn.Model):
    """The tutorial's TwoLayerNet: ``self.linear1(x).clamp(min=0)`` is a ReLU layer (the clamp's gradient with it).
    x (N, D_in) -> (N, D_out)."""

    def __init__(self, D_in, H, D_out):
        super().__init__()
        self.linear1 = nn.Linear(D_in, H)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(H, D_out)

    def forward(self, x, train=True):
        h_relu = self.relu(self.linear1(x))
        y_pred = self.linear2(h_relu)
        return y_pred

    def backward(self, dy):
        return self.linear1.backward(self.relu.backward(self.linear2.backward(dy)))


class _ClampNet(TwoLayerNet):
    def forward(self, x, train=True):
        h_relu = self.linear1(x).clamp(min=0)
        return self.linear2(h_relu)


def test_two_layer_net_module_trains_as_pytorchs():
    """The tutorial's loop (``model.forward(x)``, ``MSELoss(reduction='sum')`` for its ``size_average=False``,
    ``loss.item()`` for ``loss.data[0]``), 5 steps of SGD(lr=1e-4) on its (64, 1000) -> 100 -> 10 shapes: losses
    and weights equal torch's in float64."""
    torch = _torch()
    N, D_in, H, D_out = 64, 1000, 100, 10
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((N, D_in)), rng.standard_normal((N, D_out))
    model = TwoLayerNet(D_in, H, D_out).to(dtype="float64")
    tmodel = torch.nn.Sequential(torch.nn.Linear(D_in, H), torch.nn.ReLU(), torch.nn.Linear(H, D_out)).double()
    tmodel.load_state_dict({k.replace("linear1", "0").replace("linear2", "2"): torch.from_numpy(v.copy())
                            for k, v in xn.torch_state_dict(model).items()})
    criterion = xn.losses.MeanSquaredError(reduction='sum')
    optimizer = xn.optim.SGD(model.parameters(), lr=1e-4)
    toptimizer = torch.optim.SGD(tmodel.parameters(), lr=1e-4)
    for t in range(5):
        y_pred = model.forward(x)
        loss = criterion(y_pred, y)
        optimizer.zero_grad()
        model.backward(criterion.backward())                       # loss.backward()
        optimizer.step()
        tloss = torch.nn.functional.mse_loss(tmodel(torch.from_numpy(x)), torch.from_numpy(y), reduction='sum')
        toptimizer.zero_grad()
        tloss.backward()
        toptimizer.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-10), t
    theirs = tmodel.state_dict()
    for name, array in xn.torch_state_dict(model).items():
        np.testing.assert_allclose(array, theirs[name.replace("linear1", "0").replace("linear2", "2")].numpy(),
                                   rtol=1e-10, atol=1e-13, err_msg=name)


def test_clamp_in_a_forward_says_relu():
    """``self.linear1(x).clamp(min=0)`` in forward said NumPy's "no attribute 'clamp'" alone; it now names the line
    and says ReLU (whose backward the model's calls), or np.clip for the values alone."""
    with pytest.raises(AttributeError, match=r"_ClampNet\.forward: .*\(line \d+: h_relu = self\.linear1\(x\)\.clamp"
                                             r"\(min=0\)\): NumPy's arrays have no x\.clamp\(\), PyTorch's; write "
                                             r"self\.relu = xn\.layers\.ReLU\(\) for x\.clamp\(min=0\)"):
        _ClampNet(4, 3, 2)(np.ones((2, 4), dtype=np.float32))


def test_pytorchs_size_average_and_reduce_say_reduction():
    """``MSELoss(size_average=False)`` said Python's "unexpected keyword argument 'size_average'" alone, and
    ``MSELoss(False)`` (PyTorch's first positional argument is size_average) "reduction=False is not supported:
    expected 'mean' or 'sum'"; both now say that size_average=False is reduction='sum'."""
    for make in (lambda: xn.losses.MeanSquaredError(size_average=False),
                 lambda: xn.losses.MeanAbsoluteError(reduce=True), lambda: xn.losses.NLLLoss(size_average=False)):
        with pytest.raises(TypeError, match=r"^\w+: PyTorch's deprecated size_average= and reduce= are reduction= "
                                            r"here: size_average=False is reduction='sum'"):
            make()
    with pytest.raises(ValueError, match=r"reduction=False is not supported: .*PyTorch's deprecated size_average.*"
                                         r"size_average=False is reduction='sum'"):
        xn.losses.MeanSquaredError(False)
    assert xn.losses.MeanSquaredError(reduction="sum").reduction == "sum"


def test_a_loss_of_ones_own_taking_keywords_takes_size_average_itself():
    """A loss of one's own whose ``__init__`` takes ``**kwargs`` (a port keeping PyTorch's ``size_average``, or a
    wrapper passing the rest on) was refused with the hint above before its ``__init__`` ran; the hint is for an
    ``__init__`` that cannot take the keyword, and one passed on to xpnet's own loss still gets it."""
    class Summed(xn.losses.Loss):
        def __init__(self, **options):
            super().__init__()
            self.size_average = options.get("size_average", True)

    class Passing(xn.losses.MeanSquaredError):
        def __init__(self, **options):
            super().__init__(**options)

    assert Summed(size_average=False).size_average is False
    with pytest.raises(TypeError, match=r"^Passing: PyTorch's deprecated size_average="):
        Passing(size_average=False)
    assert Passing(reduction="sum").reduction == "sum"


def test_loss_data_says_item():
    """The old tutorial's ``print(t, loss.data[0])`` said "'LossValue' object has no attribute 'data'" alone; it
    now says ``loss.item()``."""
    loss = xn.losses.MeanSquaredError()(np.ones((2, 3)), np.zeros((2, 3)))
    with pytest.raises(AttributeError, match=r"'data': loss\.item\(\) is the value, a Python float"):
        loss.data[0]
    assert loss.item() == 1.0


class _WrongBackward(nn.Layer):
    """x ** 2 with a backward of 3 dy: a gradient a check must catch."""

    def forward(self, x, train=True):
        return x ** 2

    def backward(self, dy):
        return dy * 3


def test_a_failing_gradcheck_is_false():
    """PyTorch's ``torch.autograd.gradcheck`` returns True or raises; xpnet's report was truthy even where a row
    failed, so ``assert xn.gradcheck(...)`` (two port tests wrote it so) could not fail. It is now as true as
    ``report.ok``."""
    a = np.random.default_rng(0).random((1, 2, 3, 4))
    assert not xn.gradcheck(_WrongBackward(), a)
    assert xn.gradcheck(nn.Tanh(), a)


def test_gradcheck_takes_pytorchs_fast_mode_and_raise_exception():
    """The tutorial's ``torch.autograd.gradcheck(BatchNorm.apply, (a,), fast_mode=False)``: ``fast_mode=`` said
    "unexpected keyword argument"; it is PyTorch's name for ``fast`` now, and ``raise_exception=True`` raises
    GradcheckError where a row fails, as PyTorch's default does (xpnet's default returns the report)."""
    a = np.random.default_rng(0).random((1, 2, 3, 4))
    assert xn.gradcheck(nn.Tanh(), a, fast_mode=False)
    assert xn.gradcheck(nn.Tanh(), a, fast_mode=True).fast
    assert xn.gradcheck(nn.Tanh(), a, raise_exception=True)
    with pytest.raises(xn.testing.GradcheckError, match=r"FAIL"):
        xn.gradcheck(_WrongBackward(), a, raise_exception=True)
    with pytest.raises(TypeError, match=r"^gradcheck: fast=True and fast_mode=False disagree"):
        xn.gradcheck(nn.Tanh(), a, fast=True, fast_mode=False)
