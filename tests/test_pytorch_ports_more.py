"""More pytorch/examples programs ported to xpnet as a PyTorch user writes them first: imagenet/main.py's training
machinery (SGD with momentum and weight decay, StepLR, AverageMeter, top-1/top-5 accuracy, validate in evaluation
mode, save_checkpoint and resume) on a ResNet of one block per stage and tiny synthetic images, checked against the
same program in torch, float64, the same initial weights; and the hints that porting it added."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L

from conftest import require_cuda


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


# --- imagenet/main.py ---------------------------------------------------------------------------------------------

class AverageMeter:
    """imagenet/main.py's AverageMeter, without the distributed all_reduce."""

    def __init__(self, name, fmt=':f'):
        self.name, self.fmt = name, fmt
        self.reset()

    def reset(self):
        self.val = self.avg = self.sum = self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def accuracy(output, target, topk=(1,)):
    """imagenet/main.py's accuracy with NumPy for torch: ``output.topk(maxk, 1, True, True)`` is the first maxk
    columns of a stable descending argsort (ties to the lower class, as torch's CPU topk here)."""
    with xn.no_grad():
        maxk = max(topk)
        batch_size = target.shape[0]
        pred = np.argsort(-output, axis=1, stable=True)[:, :maxk].T
        correct = pred == target.reshape(1, -1)
        return [correct[:k].reshape(-1).astype(np.float64).sum(0, keepdims=True) * (100.0 / batch_size)
                for k in topk]


def train(train_loader, model, criterion, optimizer):
    losses, top1, top5 = AverageMeter('Loss', ':.4e'), AverageMeter('Acc@1'), AverageMeter('Acc@5')
    model.train()
    for images, target in train_loader:
        output = model(images)
        loss = criterion(output, target)
        acc1, acc5 = accuracy(output, target, topk=(1, 5))
        losses.update(loss.item(), images.shape[0])
        top1.update(acc1[0], images.shape[0])
        top5.update(acc5[0], images.shape[0])
        optimizer.zero_grad()
        model.backward(criterion.backward())  # loss.backward(): refused on the loss value, saying this
        optimizer.step()
    return losses.avg, top1.avg, top5.avg


def validate(val_loader, model, criterion):
    losses, top1, top5 = AverageMeter('Loss', ':.4e'), AverageMeter('Acc@1'), AverageMeter('Acc@5')
    model.eval()
    with xn.no_grad():
        for images, target in val_loader:
            output = model(images)
            loss = criterion(output, target)
            acc1, acc5 = accuracy(output, target, topk=(1, 5))
            losses.update(loss.item(), images.shape[0])
            top1.update(acc1[0], images.shape[0])
            top5.update(acc5[0], images.shape[0])
    return top1.avg


def _torch_run(torch, ref, loader, val_loader, epochs, lr=0.1):
    """The same epochs in torch: imagenet/main.py's train, validate and scheduler.step()."""
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(ref.parameters(), lr, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    losses, accs = [], []
    for _ in range(epochs):
        ref.train()
        for images, target in loader:
            loss = criterion(ref(torch.from_numpy(images)), torch.from_numpy(target))
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        ref.eval()
        with torch.no_grad():
            accs.append([ref(torch.from_numpy(x)).numpy() for x, _ in val_loader])
        scheduler.step()
    return losses, accs


def _imagenet_setup(torch):
    from test_resnet import TorchBasicBlock, TorchResNet
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8, 3, 16, 16))
    target = rng.integers(0, 10, 8)
    loader = [(images[:4], target[:4]), (images[4:], target[4:])]
    val_loader = [(images[::2], target[::2])]
    xn.manual_seed(0)
    model = xn.models.ResNet("BasicBlock", [1, 1, 1, 1], num_classes=10).to(dtype="float64")
    ref = TorchResNet(TorchBasicBlock, [1, 1, 1, 1], num_classes=10).double()
    ref.load_state_dict(xn.torch_state_dict(model, as_tensors=True))
    return model, ref, loader, val_loader


def test_imagenet_main_training_steps_validate_and_resume_equal_pytorchs(tmp_path):
    torch = _torch()
    model, ref, loader, val_loader = _imagenet_setup(torch)
    criterion = xn.losses.SoftmaxCrossEntropy()  # nn.CrossEntropyLoss(): hinted by that name
    optimizer = xn.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = xn.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    best_acc1 = 0
    loss, acc1, acc5 = train(loader, model, criterion, optimizer)
    val_acc1 = validate(val_loader, model, criterion)
    scheduler.step()
    best_acc1 = max(val_acc1, best_acc1)
    xn.save({'epoch': 1, 'arch': 'resnet', 'state_dict': model.state_dict(), 'best_acc1': best_acc1,
             'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict()}, tmp_path / "checkpoint.pth.tar")

    ref_losses, ref_outputs = _torch_run(torch, ref, loader, val_loader, epochs=2)
    np.testing.assert_allclose(loss, np.mean(ref_losses[:2]), rtol=1e-10)
    assert 0 <= acc1 <= acc5 <= 100

    # a fresh process resumes from the checkpoint and runs the second epoch as the run that never stopped
    xn.manual_seed(1)
    resumed = xn.models.ResNet("BasicBlock", [1, 1, 1, 1], num_classes=10).to(dtype="float64")
    optimizer = xn.optim.SGD(resumed.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = xn.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    checkpoint = xn.load(tmp_path / "checkpoint.pth.tar")
    assert checkpoint['epoch'] == 1 and checkpoint['best_acc1'] == best_acc1
    resumed.load_state_dict(checkpoint['state_dict'])
    optimizer.load_state_dict(checkpoint['optimizer'])
    scheduler.load_state_dict(checkpoint['scheduler'])
    assert optimizer.param_groups[0]['lr'] == pytest.approx(0.01)
    loss, _, _ = train(loader, resumed, criterion, optimizer)
    np.testing.assert_allclose(loss, np.mean(ref_losses[2:]), rtol=1e-10)
    resumed.eval()
    np.testing.assert_allclose(resumed(val_loader[0][0]), ref_outputs[1][0], rtol=1e-9, atol=1e-11)


def test_a_loss_moved_to_a_device_as_imagenets_criterion_is_the_loss_itself():
    # imagenet/main.py: criterion = nn.CrossEntropyLoss().to(device); it was an AttributeError with no hint
    criterion = xn.losses.SoftmaxCrossEntropy()
    assert criterion.to("cpu") is criterion
    assert xn.losses.BCELoss(weight=np.ones(3)).to(xn.device("cpu")) is not None
    with pytest.raises(ValueError, match="device: expected .*got 'gpu'"):
        criterion.to("gpu")


@pytest.mark.gpu
def test_a_loss_moved_to_cuda_is_the_loss_itself_and_its_weights_follow_the_data():
    """criterion = nn.CrossEntropyLoss(weight=w).to(device) on CuPy, w a CuPy array: the loss itself, whose weights
    go to the data's device and dtype; its value and gradient equal those of the loss on NumPy."""
    dev = require_cuda()
    rng = np.random.default_rng(0)
    w, y, t = rng.uniform(0.5, 2, 3), rng.standard_normal((5, 3)).astype(np.float32), rng.integers(0, 3, 5)
    criterion = xn.losses.SoftmaxCrossEntropy(weight=xn.to_device(w, dev))
    assert criterion.to("cuda") is criterion and criterion.to(dev) is criterion
    on_cpu = xn.losses.SoftmaxCrossEntropy(weight=w)
    loss = criterion.forward(xn.to_device(y, dev), xn.to_device(t, dev))
    dy = criterion.backward()
    xn.testing.assert_placed(dy, dev, "float32")
    np.testing.assert_allclose(xn.to_numpy(loss), on_cpu.forward(y, t), **xn.testing.tolerance("float32"))
    np.testing.assert_allclose(xn.to_numpy(dy), on_cpu.backward(), **xn.testing.tolerance("float32"))


def test_a_torch_device_is_taken_as_its_string_by_model_to_and_xn_device():
    # imagenet/main.py: device = torch.device("cpu"); model.to(device) said "expected a str or xpnet.Device, got
    # device"; xn.load's map_location already took it as its string
    torch = _torch()
    model = xn.Sequential(xn.layers.Linear(3, 2))
    assert model.to(torch.device("cpu")) is model
    assert xn.device(torch.device("cpu")) == xn.device("cpu")
    assert xn.losses.SoftmaxCrossEntropy().to(torch.device("cpu")) is not None


# --- intermediate_source/spatial_transformer_tutorial.py --------------------------------------------------------

@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_affine_grid_and_grid_sample_equal_pytorchs_values_and_gradients(backend, align_corners):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    theta = np.array([[1.0, 0, 0], [0, 1, 0]]) + 0.4 * rng.standard_normal((3, 2, 3))  # points outside too
    x, dy = rng.standard_normal((3, 2, 5, 6)), rng.standard_normal((3, 2, 5, 6))
    xp = pytest.importorskip(backend) if backend != "numpy" else np
    affine_grid, grid_sample = L.AffineGrid(align_corners=align_corners), L.GridSample(align_corners=align_corners)
    grid = affine_grid(xp.asarray(theta), x.shape)
    y = grid_sample(xp.asarray(x), grid)
    dx, dgrid = grid_sample.backward(xp.asarray(dy))
    dtheta = affine_grid.backward(dgrid)
    tt, tx = torch.from_numpy(theta).requires_grad_(), torch.from_numpy(x).requires_grad_()
    tgrid = F.affine_grid(tt, x.shape, align_corners=align_corners)
    tgrid.retain_grad()
    F.grid_sample(tx, tgrid, align_corners=align_corners).backward(torch.from_numpy(dy))
    ty = F.grid_sample(tx, tgrid, align_corners=align_corners)
    for ours, theirs in ((grid, tgrid), (y, ty), (dx, tx.grad), (dgrid, tgrid.grad), (dtheta, tt.grad)):
        np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_grid_sample_refuses_what_it_lacks_naming_it():
    with pytest.raises(ValueError, match="GridSample: mode='nearest' is not supported, only 'bilinear'"):
        L.GridSample(mode="nearest")
    with pytest.raises(ValueError, match="GridSample: padding_mode='border' is not supported"):
        L.GridSample(padding_mode="border")
    with pytest.raises(ValueError, match=r"AffineGrid: theta must be \(2, 2, 3\) for size \(2, 1, 4, 4\), got "
                                         r"\(2, 6\) \(theta.view\(-1, 2, 3\) is xp.reshape"):
        L.AffineGrid()(np.zeros((2, 6)), (2, 1, 4, 4))


class _STNNet(xn.Model):
    """The tutorial's Net as a PyTorch user ports it (dropout p as an argument, 0 here, so that a step can be
    compared with torch's)."""

    def __init__(self, p=0.5):
        super().__init__()
        self.conv1 = L.Conv2d(1, 10, kernel_size=5)
        self.conv2 = L.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = L.Dropout2d(p)
        self.fc1 = L.Linear(320, 50)
        self.fc2 = L.Linear(50, 10)
        self.localization = xn.Sequential(L.Conv2d(1, 8, kernel_size=7), L.MaxPool2d(2, stride=2), L.ReLU(),
                                          L.Conv2d(8, 10, kernel_size=5), L.MaxPool2d(2, stride=2), L.ReLU())
        self.fc_loc = xn.Sequential(L.Linear(10 * 3 * 3, 32), L.ReLU(), L.Linear(32, 3 * 2))
        xn.init.zeros_(self.fc_loc[2].weight)                        # .weight.data.fill_(0)
        self.fc_loc[2].bias[...] = np.array([1, 0, 0, 0, 1, 0])      # .bias.data = torch.FloatTensor([...])
        self.affine_grid, self.grid_sample = L.AffineGrid(), L.GridSample()
        self.pool1, self.pool2, self.relu1, self.relu2, self.relu3 = (L.MaxPool2d(2), L.MaxPool2d(2), L.ReLU(),
                                                                      L.ReLU(), L.ReLU())
        self.drop, self.flatten, self.log_softmax = L.Dropout(p), L.Flatten(), L.LogSoftmax(dim=1)

    def stn(self, x):
        xs = self.localization(x)
        self.xs_shape = xs.shape
        theta = self.fc_loc(xs.reshape(-1, 10 * 3 * 3)).reshape(-1, 2, 3)     # .view(-1, 90), .view(-1, 2, 3)
        grid = self.affine_grid(theta, x.shape)
        return self.grid_sample(x, grid)

    def forward(self, x, train=True):
        x = self.stn(x)
        x = self.relu1(self.pool1(self.conv1(x)))
        x = self.relu2(self.pool2(self.conv2_drop(self.conv2(x))))
        x = self.drop(self.relu3(self.fc1(self.flatten(x))))
        return self.log_softmax(self.fc2(x))

    def backward(self, dy):
        dy = self.flatten.backward(self.fc1.backward(self.relu3.backward(self.drop.backward(
            self.fc2.backward(self.log_softmax.backward(dy))))))
        dy = self.conv1.backward(self.pool1.backward(self.relu1.backward(self.conv2.backward(
            self.conv2_drop.backward(self.pool2.backward(self.relu2.backward(dy)))))))
        dx, dgrid = self.grid_sample.backward(dy)
        dtheta = self.affine_grid.backward(dgrid)
        dxs = self.fc_loc.backward(dtheta.reshape(-1, 6)).reshape(self.xs_shape)
        return dx + self.localization.backward(dxs)


def _torch_stn_net(torch, p):
    """spatial_transformer_tutorial.py's Net as it is there (F.dropout's p as an argument)."""
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
            self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
            self.conv2_drop = nn.Dropout2d(p)
            self.fc1 = nn.Linear(320, 50)
            self.fc2 = nn.Linear(50, 10)
            self.localization = nn.Sequential(nn.Conv2d(1, 8, kernel_size=7), nn.MaxPool2d(2, stride=2),
                                              nn.ReLU(True), nn.Conv2d(8, 10, kernel_size=5),
                                              nn.MaxPool2d(2, stride=2), nn.ReLU(True))
            self.fc_loc = nn.Sequential(nn.Linear(10 * 3 * 3, 32), nn.ReLU(True), nn.Linear(32, 3 * 2))

        def stn(self, x):
            xs = self.localization(x)
            xs = xs.view(-1, 10 * 3 * 3)
            theta = self.fc_loc(xs)
            theta = theta.view(-1, 2, 3)
            grid = F.affine_grid(theta, x.size())
            return F.grid_sample(x, grid)

        def forward(self, x):
            x = self.stn(x)
            x = F.relu(F.max_pool2d(self.conv1(x), 2))
            x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
            x = x.view(-1, 320)
            x = F.relu(self.fc1(x))
            x = F.dropout(x, p=p, training=self.training)
            x = self.fc2(x)
            return F.log_softmax(x, dim=1)

    return Net().double()


@pytest.mark.filterwarnings("ignore:Default grid_sample and affine_grid behavior")  # the tutorial's calls as they are
def test_the_spatial_transformer_tutorials_net_trains_as_pytorchs():
    torch = _torch()
    rng = np.random.default_rng(0)
    data, target = rng.standard_normal((4, 1, 28, 28)), rng.integers(0, 10, 4)
    xn.manual_seed(0)
    model = _STNNet(p=0.0).to(dtype="float64")
    model.fc_loc[2].params["W"] += 0.05 * rng.standard_normal((32, 6))  # a trained localisation: theta varies
    ref = _torch_stn_net(torch, p=0.0)
    ref.load_state_dict(xn.torch_state_dict(model, as_tensors=True))
    optimizer = xn.optim.SGD(model.parameters(), lr=0.01)
    ref_optimizer = torch.optim.SGD(ref.parameters(), lr=0.01)
    criterion = xn.losses.NLLLoss()
    for _ in range(2):
        optimizer.zero_grad()
        output = model(data)
        loss = criterion(output, target)
        model.backward(criterion.backward())
        optimizer.step()
        ref_optimizer.zero_grad()
        ref_loss = torch.nn.functional.nll_loss(ref(torch.from_numpy(data)), torch.from_numpy(target))
        ref_loss.backward()
        ref_optimizer.step()
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-10)
    for name, value in xn.torch_state_dict(model).items():
        np.testing.assert_allclose(value, ref.state_dict()[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


# --- gat/main.py --------------------------------------------------------------------------------------------------

class GraphAttentionLayer(L.Layer):
    """gat/main.py's GraphAttentionLayer: h (N, in_features), adj_mat (N, N) -> (N, out_features); its parameters
    W (in_features, n_heads * n_hidden) and a (n_heads, 2 * n_hidden, 1) as there, the backward written out."""

    def __init__(self, in_features, out_features, n_heads, concat=False, dropout=0.4, leaky_relu_slope=0.2):
        super().__init__()
        self.n_heads, self.concat, self.dropout = n_heads, concat, dropout
        if concat:
            self.out_features = out_features
            assert out_features % n_heads == 0
            self.n_hidden = out_features // n_heads
        else:
            self.n_hidden = out_features
        self.params['W'] = np.empty((in_features, self.n_hidden * n_heads))    # nn.Parameter(torch.empty(...))
        self.params['a'] = np.empty((n_heads, 2 * self.n_hidden, 1))
        self.leakyrelu = L.LeakyReLU(leaky_relu_slope)
        self.softmax = L.Softmax(dim=-1)                                       # F.softmax(e, dim=-1)
        self.drop_h, self.drop_attention = L.Dropout(dropout), L.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self):
        xn.init.xavier_normal_(self.params['W'])
        xn.init.xavier_normal_(self.params['a'])

    def forward(self, h, adj_mat, train=True):
        n_nodes, a = h.shape[0], self.params['a']
        h_transformed = self.drop_h(h @ self.params['W'], train=train)
        h_transformed = h_transformed.reshape(n_nodes, self.n_heads, self.n_hidden).transpose(1, 0, 2)
        source_scores = h_transformed @ a[:, :self.n_hidden, :]
        target_scores = h_transformed @ a[:, self.n_hidden:, :]
        e = self.leakyrelu(source_scores + target_scores.transpose(0, 2, 1), train=train)
        e = np.where(adj_mat > 0, e, -9e16 * np.ones_like(e))
        attention = self.drop_attention(self.softmax(e, train=train), train=train)
        h_prime = attention @ h_transformed
        self.cache = (h, adj_mat, h_transformed, attention)
        if self.concat:
            return h_prime.transpose(1, 0, 2).reshape(n_nodes, self.out_features)
        return h_prime.mean(axis=0)

    def backward(self, dy):
        h, adj_mat, h_transformed, attention = self.cache
        a = self.params['a']
        if self.concat:
            dh_prime = dy.reshape(h.shape[0], self.n_heads, self.n_hidden).transpose(1, 0, 2)
        else:
            dh_prime = np.broadcast_to(dy / self.n_heads, (self.n_heads,) + dy.shape)
        dattention = dh_prime @ h_transformed.transpose(0, 2, 1)
        dh_transformed = attention.transpose(0, 2, 1) @ dh_prime
        de = self.softmax.backward(self.drop_attention.backward(dattention))
        de = self.leakyrelu.backward(np.where(adj_mat > 0, de, 0.0))
        dsource, dtarget = de.sum(axis=2, keepdims=True), de.sum(axis=1)[:, :, None]
        dh_transformed = (dh_transformed + dsource @ a[:, :self.n_hidden, :].transpose(0, 2, 1)
                          + dtarget @ a[:, self.n_hidden:, :].transpose(0, 2, 1))
        self.grads['a'] = np.concatenate([h_transformed.transpose(0, 2, 1) @ dsource,
                                          h_transformed.transpose(0, 2, 1) @ dtarget], axis=1)
        dh_transformed = self.drop_h.backward(dh_transformed.transpose(1, 0, 2).reshape(h.shape[0], -1))
        self.grads['W'] = h.T @ dh_transformed
        return dh_transformed @ self.params['W'].T


class GAT(xn.Model):
    def __init__(self, in_features, n_hidden, n_heads, num_classes, concat=False, dropout=0.4, leaky_relu_slope=0.2):
        super().__init__()
        self.gat1 = GraphAttentionLayer(in_features=in_features, out_features=n_hidden, n_heads=n_heads,
                                        concat=concat, dropout=dropout, leaky_relu_slope=leaky_relu_slope)
        self.gat2 = GraphAttentionLayer(in_features=n_hidden, out_features=num_classes, n_heads=1, concat=False,
                                        dropout=dropout, leaky_relu_slope=leaky_relu_slope)
        self.elu, self.log_softmax = L.ELU(), L.LogSoftmax(dim=1)

    def forward(self, input_tensor, adj_mat, train=True):
        x = self.elu(self.gat1(input_tensor, adj_mat))
        return self.log_softmax(self.gat2(x, adj_mat))

    def backward(self, dy):
        self.gat1.backward(self.elu.backward(self.gat2.backward(self.log_softmax.backward(dy))))


def _torch_gat(torch, in_features, n_hidden, n_heads, num_classes, concat):
    """gat/main.py's GraphAttentionLayer and GAT as they are there (dropout 0: the same steps as xpnet's)."""
    nn, F = torch.nn, torch.nn.functional

    class TorchGraphAttentionLayer(nn.Module):
        def __init__(self, in_features, out_features, n_heads, concat=False, dropout=0.4, leaky_relu_slope=0.2):
            super().__init__()
            self.n_heads, self.concat, self.dropout = n_heads, concat, dropout
            if concat:
                self.out_features = out_features
                self.n_hidden = out_features // n_heads
            else:
                self.n_hidden = out_features
            self.W = nn.Parameter(torch.empty(size=(in_features, self.n_hidden * n_heads)))
            self.a = nn.Parameter(torch.empty(size=(n_heads, 2 * self.n_hidden, 1)))
            self.leakyrelu = nn.LeakyReLU(leaky_relu_slope)

        def _get_attention_scores(self, h_transformed):
            source_scores = torch.matmul(h_transformed, self.a[:, :self.n_hidden, :])
            target_scores = torch.matmul(h_transformed, self.a[:, self.n_hidden:, :])
            e = source_scores + target_scores.mT
            return self.leakyrelu(e)

        def forward(self, h, adj_mat):
            n_nodes = h.shape[0]
            h_transformed = torch.mm(h, self.W)
            h_transformed = F.dropout(h_transformed, self.dropout, training=self.training)
            h_transformed = h_transformed.view(n_nodes, self.n_heads, self.n_hidden).permute(1, 0, 2)
            e = self._get_attention_scores(h_transformed)
            connectivity_mask = -9e16 * torch.ones_like(e)
            e = torch.where(adj_mat > 0, e, connectivity_mask)
            attention = F.softmax(e, dim=-1)
            attention = F.dropout(attention, self.dropout, training=self.training)
            h_prime = torch.matmul(attention, h_transformed)
            if self.concat:
                h_prime = h_prime.permute(1, 0, 2).contiguous().view(n_nodes, self.out_features)
            else:
                h_prime = h_prime.mean(dim=0)
            return h_prime

    class TorchGAT(nn.Module):
        def __init__(self):
            super().__init__()
            self.gat1 = TorchGraphAttentionLayer(in_features, n_hidden, n_heads, concat=concat, dropout=0.0)
            self.gat2 = TorchGraphAttentionLayer(n_hidden, num_classes, 1, concat=False, dropout=0.0)

        def forward(self, input_tensor, adj_mat):
            x = F.elu(self.gat1(input_tensor, adj_mat))
            return F.log_softmax(self.gat2(x, adj_mat), dim=1)

    return TorchGAT().double()


@pytest.mark.parametrize("concat", [False, True])
def test_gat_main_trains_as_pytorchs(concat):
    torch = _torch()
    rng = np.random.default_rng(0)
    n, d, classes = 12, 7, 3
    features, labels = rng.random((n, d)), rng.integers(0, classes, n)
    adj_mat = np.eye(n) + (rng.random((n, n)) < 0.25)
    idx = rng.permutation(n)
    idx_val, idx_train = idx[:4], idx[4:]
    xn.manual_seed(0)
    gat_net = GAT(in_features=d, n_hidden=8, n_heads=2, num_classes=classes, concat=concat, dropout=0.0)
    ref = _torch_gat(torch, d, 8, 2, classes, concat)
    with torch.no_grad():
        for name, value in gat_net.named_params().items():
            ref.get_parameter(name).copy_(torch.from_numpy(value))
    optimizer = xn.optim.Adam(gat_net.parameters(), lr=0.005, weight_decay=5e-4)
    ref_optimizer = torch.optim.Adam(ref.parameters(), lr=0.005, weight_decay=5e-4)
    criterion = xn.losses.NLLLoss()
    for _ in range(3):
        gat_net.train()
        optimizer.zero_grad()
        output = gat_net(features, adj_mat)
        loss = criterion(output[idx_train], labels[idx_train])
        dout = np.zeros_like(output)
        dout[idx_train] = criterion.backward()
        gat_net.backward(dout)
        optimizer.step()
        ref_optimizer.zero_grad()
        ref_loss = torch.nn.functional.nll_loss(ref(torch.from_numpy(features), torch.from_numpy(adj_mat))[idx_train],
                                                torch.from_numpy(labels)[idx_train])
        ref_loss.backward()
        ref_optimizer.step()
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-10)
    gat_net.eval()
    with xn.no_grad():
        output = gat_net(features, adj_mat)[idx_val]
    acc = (output.argmax(axis=1) == labels[idx_val]).astype(np.float64).sum() / len(idx_val)
    ref.eval()
    ref_output = ref(torch.from_numpy(features), torch.from_numpy(adj_mat))[idx_val].detach().numpy()
    np.testing.assert_allclose(output, ref_output, rtol=1e-9, atol=1e-12)
    assert acc == (ref_output.argmax(axis=1) == labels[idx_val]).mean()
