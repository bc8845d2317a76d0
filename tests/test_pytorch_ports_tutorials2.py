"""pytorch/tutorials' blitz neural_networks_tutorial (LeNet), the Mario DDQN tutorial's learning part, pytorch/examples'
legacy SNLI model and the introyt training tutorial's validation loop, ported to xpnet as a PyTorch user writes them
first, each run next to the same program in torch, float64, the same initial weights, a few steps; and what the ports
showed a porter has to be told. No MNIST, gym or SNLI here: tiny random data and a synthetic replay buffer."""

import argparse
import contextlib
import copy
import random
from collections import deque

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _close(ours, theirs, name=""):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def _params_equal(model, theirs):
    """Every parameter of ``theirs`` (torch) equal to the one ``xn.load_torch_state_dict`` would load it into."""
    probe = copy.deepcopy(model)
    xn.load_torch_state_dict(probe, theirs.state_dict())
    for name, expected in probe.named_params().items():
        np.testing.assert_allclose(model.named_params()[name], expected, rtol=1e-10, atol=1e-12, err_msg=name)


# --- beginner_source/blitz/neural_networks_tutorial.py: LeNet ---------------------------------------------------------

class _LeNet(xn.Model):
    """The tutorial's Net: F.relu and F.max_pool2d as one ReLU and one MaxPool2d layer, each called several times, their
    backward last call first; ``x.view(-1, n)`` is a reshape, undone in backward. x (N, 1, 32, 32) -> (N, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.relu, self.pool = nn.ReLU(), nn.MaxPool2d(2)

    def forward(self, x, train=True):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        self.shape = x.shape
        x = x.reshape(-1, self.num_flat_features(x))
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)

    def backward(self, dy):
        dy = self.fc1.backward(self.relu.backward(self.fc2.backward(self.relu.backward(self.fc3.backward(dy)))))
        dy = self.conv2.backward(self.relu.backward(self.pool.backward(dy.reshape(self.shape))))
        return self.conv1.backward(self.relu.backward(self.pool.backward(dy)))

    def num_flat_features(self, x):
        n = 1
        for s in x.shape[1:]:
            n *= s
        return n


def _torch_lenet(torch):
    """The tutorial's Net as it is there (num_flat_features folded into the view)."""
    F = torch.nn.functional

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 5)
            self.conv2 = torch.nn.Conv2d(6, 16, 5)
            self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
            self.fc2 = torch.nn.Linear(120, 84)
            self.fc3 = torch.nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = x.view(-1, x.size()[1:].numel())
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net()


def test_lenet_tutorial_backward_manual_update_and_sgd_equal_pytorchs():
    """The tutorial top to bottom: parameters() (conv1's weight first, PyTorch's shape), out.backward(g) as
    net.backward(g), the manual ``weight -= lr * grad`` update, MSELoss against ``arange(1, 11).view(1, -1)``, and three
    SGD steps: outputs, gradients, weights and losses equal torch's in float64."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_lenet(torch).double()
    net = _LeNet().to(dtype="float64")
    xn.load_torch_state_dict(net, theirs.state_dict())
    params = list(net.parameters())
    assert len(params) == 10 and params[0].shape == tuple(next(theirs.parameters()).size())
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((1, 1, 32, 32)), rng.standard_normal((1, 10))
    out, tout = net(x), theirs(torch.from_numpy(x))
    _close(out, tout, "out")
    net.zero_grad()
    theirs.zero_grad()
    net.backward(g)                                                    # out.backward(torch.randn(1, 10))
    tout.backward(torch.from_numpy(g))
    grads = net.named_grads()
    _close(grads["conv1.W"], theirs.conv1.weight.grad, "conv1.weight.grad")
    _close(grads["fc1.W"].T, theirs.fc1.weight.grad, "fc1.weight.grad")              # W is (in, out): weight.T
    learning_rate = 0.01
    for name, f in net.named_params().items():                        # f.data.sub_(f.grad.data * learning_rate)
        f -= grads[name] * learning_rate
    with torch.no_grad():
        for f in theirs.parameters():
            f.sub_(f.grad * learning_rate)
    _params_equal(net, theirs)

    target = np.arange(1, 11).reshape(1, -1)                           # torch.arange(1, 11).view(1, -1)
    criterion, tcriterion = xn.losses.MeanSquaredError(), torch.nn.MSELoss()
    optimizer = xn.optim.SGD(net.parameters(), lr=0.01)
    toptimizer = torch.optim.SGD(theirs.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        loss = criterion(net(x), target)
        net.backward(criterion.backward())                             # loss.backward()
        optimizer.step()
        toptimizer.zero_grad()
        tloss = tcriterion(theirs(torch.from_numpy(x)), torch.arange(1, 11).view(1, -1))
        tloss.backward()
        toptimizer.step()
        assert abs(loss.item() - tloss.item()) <= 1e-10 * tloss.item()
    _params_equal(net, theirs)
    with pytest.raises(AttributeError, match=r"no attribute 'grad_fn': xpnet records no graph.*the model's backward"):
        loss.grad_fn.next_functions                                    # print(loss.grad_fn.next_functions[0][0])


def test_an_unbatched_image_into_conv2d_says_to_add_the_batch_axis():
    """``net(input)`` with one (1, 32, 32) image, which PyTorch's Conv2d takes unbatched: refused, saying x[None]."""
    with pytest.raises(ValueError, match=r"^Conv2d: expected a 4-d input \(N, C, H, W\), got shape \(1, 32, 32\); "
                                         r"one unbatched \(C, H, W\) image, which PyTorch takes, is x\[None\] here$"):
        _LeNet()(np.zeros((1, 32, 32), np.float32))


# --- intermediate_source/mario_rl_tutorial.py: the DDQN learning part, a synthetic replay buffer ---------------------

_STATE, _ACTIONS, _BATCH, _GAMMA = (2, 36, 36), 3, 4, 0.9    # the tutorial's 84x84 frames shrunk: 64 features flat


class _MarioNet(xn.Model):
    """The tutorial's MarioNet: an online Sequential and its frozen copy, the target; ``forward(input, model)`` runs
    the one named. backward goes through the online net: the target is never trained."""

    def __init__(self, input_dim, output_dim):
        super().__init__()
        c, h, w = input_dim
        self.online = xn.Sequential(
            nn.Conv2d(in_channels=c, out_channels=32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(in_channels=32, out_channels=64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(in_channels=64, out_channels=64, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, output_dim))
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)            # for p in self.target.parameters(): p.requires_grad = False

    def forward(self, input, model, train=True):
        if model == "online":
            return self.online(input)
        elif model == "target":
            return self.target(input)

    def backward(self, dy):
        return self.online.backward(dy)


class _Mario:
    """Mario's learning methods: ``td_estimate`` indexes the online Q with ``np.arange(0, batch_size), action`` and
    keeps what its backward needs; ``td_target`` runs under ``@xn.no_grad()``; ``learn`` calls td_target first (xpnet
    keeps the caches of a model's last call only: the tutorial's order, td_estimate first, is refused at backward)."""

    def __init__(self, net, sync_every, target_first=True):
        self.net, self.sync_every, self.target_first = net, sync_every, target_first
        self.batch_size, self.gamma, self.curr_step = _BATCH, _GAMMA, 0
        self.optimizer = xn.optim.Adam(self.net.parameters(), lr=0.00025)
        self.loss_fn = xn.losses.SmoothL1Loss()

    def td_estimate(self, state, action):
        self.q, self.action = self.net(state, model="online"), action
        return self.q[np.arange(0, self.batch_size), action]

    @xn.no_grad()
    def td_target(self, reward, next_state, done):
        next_state_Q = self.net(next_state, model="online")
        best_action = np.argmax(next_state_Q, axis=1)
        next_Q = self.net(next_state, model="target")[np.arange(0, self.batch_size), best_action]
        return reward + (1 - done.astype(np.float64)) * self.gamma * next_Q

    def update_Q_online(self, td_estimate, td_target):
        loss = self.loss_fn(td_estimate, td_target)
        self.optimizer.zero_grad()
        dq = np.zeros_like(self.q)                                        # loss.backward() through the indexing
        dq[np.arange(0, self.batch_size), self.action] = self.loss_fn.backward()
        self.net.backward(dq)
        self.optimizer.step()
        return loss.item()

    def sync_Q_target(self):
        self.net.target.load_state_dict(self.net.online.state_dict())

    def learn(self, batch):
        self.curr_step += 1
        if self.curr_step % self.sync_every == 0:
            self.sync_Q_target()
        state, next_state, action, reward, done = batch
        if self.target_first:
            td_tgt = self.td_target(reward, next_state, done)
            td_est = self.td_estimate(state, action)
        else:
            td_est = self.td_estimate(state, action)
            td_tgt = self.td_target(reward, next_state, done)
        return td_est.mean().item(), self.update_Q_online(td_est, td_tgt)


def _torch_mario(torch, sync_every):
    """The tutorial's MarioNet (the 84x84 check and 3136 replaced by the small frames' 64) and Mario's td_estimate,
    td_target, update_Q_online, sync_Q_target and learn's order, as they are there."""
    tnn = torch.nn

    class MarioNet(tnn.Module):
        def __init__(self, input_dim, output_dim):
            super().__init__()
            c, h, w = input_dim
            self.online = tnn.Sequential(
                tnn.Conv2d(in_channels=c, out_channels=32, kernel_size=8, stride=4), tnn.ReLU(),
                tnn.Conv2d(in_channels=32, out_channels=64, kernel_size=4, stride=2), tnn.ReLU(),
                tnn.Conv2d(in_channels=64, out_channels=64, kernel_size=3, stride=1), tnn.ReLU(),
                tnn.Flatten(), tnn.Linear(64, 512), tnn.ReLU(), tnn.Linear(512, output_dim))
            self.target = copy.deepcopy(self.online)
            for p in self.target.parameters():
                p.requires_grad = False

        def forward(self, input, model):
            if model == "online":
                return self.online(input)
            elif model == "target":
                return self.target(input)

    class Mario:
        def __init__(self):
            self.net = MarioNet(_STATE, _ACTIONS).double()
            self.batch_size, self.gamma, self.curr_step, self.sync_every = _BATCH, _GAMMA, 0, sync_every
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=0.00025)
            self.loss_fn = torch.nn.SmoothL1Loss()

        def td_estimate(self, state, action):
            return self.net(state, model="online")[np.arange(0, self.batch_size), action]

        @torch.no_grad()
        def td_target(self, reward, next_state, done):
            next_state_Q = self.net(next_state, model="online")
            best_action = torch.argmax(next_state_Q, axis=1)
            next_Q = self.net(next_state, model="target")[np.arange(0, self.batch_size), best_action]
            return (reward + (1 - done.double()) * self.gamma * next_Q).double()  # .float() there: float32

        def learn(self, batch):
            self.curr_step += 1
            if self.curr_step % self.sync_every == 0:
                self.net.target.load_state_dict(self.net.online.state_dict())
            state, next_state, action, reward, done = batch
            td_est = self.td_estimate(state, action)
            td_tgt = self.td_target(reward, next_state, done)
            loss = self.loss_fn(td_est, td_tgt)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            return td_est.mean().item(), loss.item()

    return Mario()


def _replay_batches(steps):
    """recall()'s batches from a replay buffer of random frames: (state, next_state, action, reward, done) stacked
    from ``random.sample(memory, batch_size)``, as NumPy arrays (their torch tensors are made from them)."""
    rng = np.random.default_rng(1)
    memory = deque([(rng.standard_normal(_STATE), rng.standard_normal(_STATE), int(rng.integers(_ACTIONS)),
                     float(rng.standard_normal()), bool(rng.random() < 0.3)) for _ in range(12)], maxlen=100)
    sampler = random.Random(0)
    for _ in range(steps):
        state, next_state, action, reward, done = map(np.stack, zip(*sampler.sample(memory, _BATCH)))
        yield state, next_state, action, reward, done


def test_mario_ddqn_learning_with_a_frozen_deepcopied_target_equals_pytorchs():
    """Six learn() steps, the target synced every third (load_state_dict of the online net's state dict): TD
    estimates, losses, and both nets' weights equal torch's in float64; the target, frozen, moves only at a sync,
    and the deep copy shares no array with the online net."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_mario(torch, sync_every=3)
    net = _MarioNet(_STATE, _ACTIONS).to(device="cpu", dtype="float64")     # self.net.to(device="cuda") there
    xn.load_torch_state_dict(net, theirs.net.state_dict())
    assert not net.target.requires_grad and net.online.requires_grad
    mario = _Mario(net, sync_every=3)
    assert mario.loss_fn.to(device="cpu") is mario.loss_fn                 # torch.nn.SmoothL1Loss().to(device=...)
    for batch in _replay_batches(6):
        q, loss = mario.learn(batch)
        state, next_state, action, reward, done = (torch.from_numpy(np.asarray(a)) for a in batch)
        tq, tloss = theirs.learn((state, next_state, action, reward, done))
        assert abs(q - tq) <= 1e-10 * max(1.0, abs(tq)) and abs(loss - tloss) <= 1e-10 * max(1.0, tloss)
        _params_equal(net, theirs.net)
    online, target = net.online.named_params(), net.target.named_params()
    assert not any(np.shares_memory(online[k], target[k]) for k in online)
    assert not all(np.array_equal(online[k], target[k]) for k in online)    # one step since the last sync


def test_mario_learn_in_the_tutorials_order_is_refused_saying_to_compute_the_target_first():
    """td_estimate (a training call of the online net), then td_target's no_grad calls of the same net, then the
    backward: that backward would use the no_grad call's caches, so it is refused, saying what to do."""
    mario = _Mario(_MarioNet(_STATE, _ACTIONS).to(dtype="float64"), sync_every=3, target_first=False)
    with pytest.raises(RuntimeError, match=r"last forward ran under xn\.no_grad\(\).*Run what needs no gradient "
                                           r"before the training forward"):
        mario.learn(next(_replay_batches(1)))


class _NaiveMarioNet(_MarioNet):
    """MarioNet with the tutorial's freezing loop as it is there."""

    def __init__(self, input_dim, output_dim):
        xn.Model.__init__(self)
        self.online = xn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, output_dim))
        self.target = copy.deepcopy(self.online)
        for p in self.target.parameters():
            p.requires_grad = False


def test_freezing_the_target_array_by_array_is_refused_saying_requires_grad_on_the_layer():
    """``for p in self.target.parameters(): p.requires_grad = False`` (NumPy arrays take no attribute; a PyTorch
    tensor of xpnet's torch backend takes it and nothing is frozen) is refused at the loop, saying
    ``self.target.requires_grad_(False)``; the one-line form on the torch backend too, where it was silent."""
    with pytest.raises(AttributeError, match=r"^for p in self\.target\.parameters\(\): p\.requires_grad = False: "
                                             r".*write self\.target\.requires_grad_\(False\)"):
        _NaiveMarioNet(_STATE, _ACTIONS)
    _torch()
    model = xn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to("torch:cpu")
    with pytest.raises(AttributeError, match=r"write model\[0\]\.requires_grad_\(False\)"):
        for p in model[0].parameters(): p.requires_grad_(False)  # noqa: E701
    assert model[0].requires_grad
    assert [a.shape for a in model.parameters()] == [(4, 8), (8,), (8, 2), (2,)]


# --- pytorch/examples legacy/snli: model.py and train.py's step -------------------------------------------------------

def _snli_config(**changes):
    """A small config as legacy/snli's get_args() (an argparse.Namespace) and train.py make it (n_cells doubled for
    the birnn)."""
    config = dict(n_embed=11, d_embed=6, d_proj=5, projection=True, d_hidden=4, n_layers=2, dp_ratio=0.0,
                  birnn=True, fix_emb=True, d_out=3, **changes)
    config["n_cells"] = config["n_layers"] * (2 if config["birnn"] else 1)
    return argparse.Namespace(**config)


class _Encoder(xn.Model):
    """model.py's Encoder: the LSTM built time first (``batch_first=False``), PyTorch's two biases
    (``convention="pytorch"``) and ``(out, (h_n, c_n))`` (``return_state=True``); ``ht[-2:].transpose(0, 1)`` is
    ``swapaxes``. inputs (T, N, D) -> (N, n_dirs * H), the last layer's final states; backward gives the gradient to
    those rows of h_n and zeros to the outputs."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        input_size = config.d_proj if config.projection else config.d_embed
        dropout = 0 if config.n_layers == 1 else config.dp_ratio
        self.rnn = nn.LSTM(input_size=input_size, hidden_size=config.d_hidden, num_layers=config.n_layers,
                           dropout=dropout, bidirectional=config.birnn, batch_first=False, return_state=True,
                           convention="pytorch")

    def forward(self, inputs, train=True):
        batch_size = inputs.shape[1]
        state_shape = self.config.n_cells, batch_size, self.config.d_hidden
        h0 = c0 = np.zeros(state_shape, dtype=inputs.dtype)
        self.outputs, (ht, ct) = self.rnn(inputs, (h0, c0))
        return ht[-1] if not self.config.birnn else ht[-2:].swapaxes(0, 1).reshape(batch_size, -1)

    def backward(self, dy):
        dht = np.zeros((self.config.n_cells, dy.shape[0], self.config.d_hidden))
        if self.config.birnn:
            dht[-2:] = dy.reshape(dy.shape[0], 2, -1).swapaxes(0, 1)
        else:
            dht[-1] = dy
        return self.rnn.backward(np.zeros_like(self.outputs), dht, np.zeros_like(dht))


class _SNLIClassifier(xn.Model):
    """model.py's SNLIClassifier: one ReLU and one Dropout object used by the projection and three times inside
    ``self.out`` (five ReLU calls a forward, their backward last first), the Encoder called on the premise then the
    hypothesis (its backward on the hypothesis first), the frozen embedding for ``fix_emb`` (its ``detach()``).
    batch.premise (T1, N), batch.hypothesis (T2, N) ids -> scores (N, d_out)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.n_embed, config.d_embed)
        self.projection = nn.Linear(config.d_embed, config.d_proj)          # Bottle's Linear: over (T, N, D)
        self.encoder = _Encoder(config)
        self.dropout = nn.Dropout(p=config.dp_ratio)
        self.relu = nn.ReLU()
        seq_in_size = 2 * config.d_hidden * (2 if config.birnn else 1)
        lin_config = [seq_in_size] * 2
        self.out = xn.Sequential(nn.Linear(*lin_config), self.relu, self.dropout, nn.Linear(*lin_config), self.relu,
                                 self.dropout, nn.Linear(*lin_config), self.relu, self.dropout,
                                 nn.Linear(seq_in_size, config.d_out))
        if config.fix_emb:
            self.embed.requires_grad_(False)

    def forward(self, batch, train=True):
        prem_embed = self.embed(batch.premise)
        hypo_embed = self.embed(batch.hypothesis)
        if self.config.projection:
            prem_embed = self.relu(self.projection(prem_embed))
            hypo_embed = self.relu(self.projection(hypo_embed))
        premise = self.encoder(prem_embed)
        hypothesis = self.encoder(hypo_embed)
        return self.out(np.concatenate([premise, hypothesis], 1))

    def backward(self, dy):
        d = self.out.backward(dy)
        dpremise, dhypothesis = np.split(d, 2, axis=1)
        dhypo, dprem = self.encoder.backward(dhypothesis), self.encoder.backward(dpremise)
        if self.config.projection:
            dhypo = self.projection.backward(self.relu.backward(dhypo))
            dprem = self.projection.backward(self.relu.backward(dprem))
        if not self.config.fix_emb:
            self.embed.backward(dhypo)
            self.embed.backward(dprem)


def _torch_snli(torch, config):
    """model.py's Bottle, Linear, Encoder and SNLIClassifier as they are there."""
    tnn = torch.nn

    class Bottle(tnn.Module):
        def forward(self, input):
            if len(input.size()) <= 2:
                return super(Bottle, self).forward(input)
            size = input.size()[:2]
            out = super(Bottle, self).forward(input.view(size[0] * size[1], -1))
            return out.view(size[0], size[1], -1)

    class Linear(Bottle, tnn.Linear):
        pass

    class Encoder(tnn.Module):
        def __init__(self, config):
            super(Encoder, self).__init__()
            self.config = config
            input_size = config.d_proj if config.projection else config.d_embed
            dropout = 0 if config.n_layers == 1 else config.dp_ratio
            self.rnn = tnn.LSTM(input_size=input_size, hidden_size=config.d_hidden, num_layers=config.n_layers,
                                dropout=dropout, bidirectional=config.birnn)

        def forward(self, inputs):
            batch_size = inputs.size()[1]
            state_shape = self.config.n_cells, batch_size, self.config.d_hidden
            h0 = c0 = inputs.new_zeros(state_shape)
            outputs, (ht, ct) = self.rnn(inputs, (h0, c0))
            return ht[-1] if not self.config.birnn else ht[-2:].transpose(0, 1).contiguous().view(batch_size, -1)

    class SNLIClassifier(tnn.Module):
        def __init__(self, config):
            super(SNLIClassifier, self).__init__()
            self.config = config
            self.embed = tnn.Embedding(config.n_embed, config.d_embed)
            self.projection = Linear(config.d_embed, config.d_proj)
            self.encoder = Encoder(config)
            self.dropout = tnn.Dropout(p=config.dp_ratio)
            self.relu = tnn.ReLU()
            seq_in_size = 2 * config.d_hidden
            if self.config.birnn:
                seq_in_size *= 2
            lin_config = [seq_in_size] * 2
            self.out = tnn.Sequential(Linear(*lin_config), self.relu, self.dropout, Linear(*lin_config), self.relu,
                                      self.dropout, Linear(*lin_config), self.relu, self.dropout,
                                      Linear(seq_in_size, config.d_out))

        def forward(self, batch):
            prem_embed = self.embed(batch.premise)
            hypo_embed = self.embed(batch.hypothesis)
            if self.config.fix_emb:
                prem_embed = prem_embed.detach()
                hypo_embed = hypo_embed.detach()
            if self.config.projection:
                prem_embed = self.relu(self.projection(prem_embed))
                hypo_embed = self.relu(self.projection(hypo_embed))
            premise = self.encoder(prem_embed)
            hypothesis = self.encoder(hypo_embed)
            return self.out(torch.cat([premise, hypothesis], 1))

    return SNLIClassifier(config)


def _snli_batches(config, n, lengths=((5, 4), (3, 3), (4, 6))):
    """torchtext's time-first batches: premise (T1, N) and hypothesis (T2, N) ids, label (N,); n = 3 sequences."""
    from types import SimpleNamespace
    rng = np.random.default_rng(2)
    return [SimpleNamespace(premise=rng.integers(config.n_embed, size=(t1, n)),
                            hypothesis=rng.integers(config.n_embed, size=(t2, n)),
                            label=rng.integers(config.d_out, size=n), batch_size=n) for t1, t2 in lengths]


def test_snli_classifier_with_frozen_pretrained_embeddings_trains_as_pytorchs(tmp_path):
    """train.py's step on three batches (one with T1 = T2 = N): pretrained vectors copied into the frozen embedding,
    Adam, CrossEntropyLoss, then the dev evaluation under ``eval()`` and ``no_grad``; the losses, the accuracy count
    and every weight (the embedding unchanged) equal torch's in float64. The snapshot, ``xn.save(model, path)``, is
    built back by ``xn.load`` from its ``argparse.Namespace`` config, frozen embedding included."""
    torch = _torch()
    config = _snli_config()
    torch.manual_seed(0)
    theirs = _torch_snli(torch, config).double()
    vectors = np.random.default_rng(3).standard_normal((config.n_embed, config.d_embed))
    theirs.embed.weight.data.copy_(torch.from_numpy(vectors))        # inputs.vocab.vectors
    model = _SNLIClassifier(config).to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    model.embed.weight[...] = vectors
    criterion, tcriterion = xn.losses.SoftmaxCrossEntropy(), torch.nn.CrossEntropyLoss()
    opt = xn.optim.Adam(model.parameters(), lr=0.01)
    topt = torch.optim.Adam(theirs.parameters(), lr=0.01)
    batches = _snli_batches(config, 3)
    for batch in batches:
        model.train()
        opt.zero_grad()
        answer = model(batch)
        n_correct = (answer.argmax(1).reshape(batch.label.shape) == batch.label).sum().item()
        loss = criterion(answer, batch.label)
        model.backward(criterion.backward())                             # loss.backward()
        opt.step()
        theirs.train()
        topt.zero_grad()
        tanswer = theirs(_as_torch(torch, batch))
        tcorrect = (torch.max(tanswer, 1)[1].view(batch.label.shape) == torch.from_numpy(batch.label)).sum().item()
        tloss = tcriterion(tanswer, torch.from_numpy(batch.label))
        tloss.backward()
        topt.step()
        assert n_correct == tcorrect and abs(loss.item() - tloss.item()) <= 1e-10 * tloss.item()
    _params_equal(model, theirs)
    np.testing.assert_array_equal(model.embed.weight, vectors)
    model.eval()
    theirs.eval()
    with xn.no_grad(), torch.no_grad():
        _close(model(batches[1]), theirs(_as_torch(torch, batches[1])), "dev answer")
    xn.save(model, tmp_path / "best_snapshot.pt")                      # torch.save(model, snapshot_path)
    snapshot = xn.load(tmp_path / "best_snapshot.pt")                   # torch.load(args.resume_snapshot)
    assert snapshot.config == config and not snapshot.embed.requires_grad
    snapshot.eval()
    np.testing.assert_array_equal(snapshot(batches[1]), model(batches[1]))


def _as_torch(torch, batch):
    """The batch with torch tensors of its ids (the labels stay NumPy's)."""
    tbatch = copy.copy(batch)
    tbatch.premise, tbatch.hypothesis = torch.from_numpy(batch.premise), torch.from_numpy(batch.hypothesis)
    return tbatch


class _Bottle(nn.Layer):
    """model.py's Bottle ported as it is: the input's two leading axes merged for the base class's forward."""

    def forward(self, input, train=True):
        if len(input.shape) <= 2:
            return super().forward(input)
        size = input.shape[:2]
        out = super().forward(input.reshape(size[0] * size[1], -1))
        return out.reshape(size[0], size[1], -1)


class _BottleLinear(_Bottle, nn.Linear):
    pass


def test_snlis_bottle_linear_ported_as_it_is_is_refused_at_backward_and_linear_takes_3d_input():
    """``class Linear(Bottle, nn.Linear)``: its output is (T, N, D_out) where its cache is 2-d, so the gradient
    given back is refused, saying to reshape it; xpnet's Linear itself takes the (T, N, D) input, as the port uses
    it, and gives Bottle's output."""
    layer, plain = _BottleLinear(4, 3), nn.Linear(4, 3)
    plain.load_state_dict(layer.state_dict())
    x = np.random.default_rng(5).standard_normal((2, 3, 4)).astype(np.float32)
    y = layer(x)
    np.testing.assert_allclose(plain(x), y, rtol=1e-6)
    with pytest.raises(ValueError, match=r"^_BottleLinear: expected dy of shape \(6, 3\) \(the last forward's "
                                         r"output\), got \(2, 3, 3\).*reshape its gradient back"):
        layer.backward(np.ones_like(y))


class _TransposingEncoder(_Encoder):
    """The Encoder's last line as PyTorch's: ``ht[-2:].transpose(0, 1)`` (NumPy's transpose takes every axis)."""

    def forward(self, inputs, train=True):
        batch_size = inputs.shape[1]
        h0 = c0 = np.zeros((self.config.n_cells, batch_size, self.config.d_hidden), dtype=inputs.dtype)
        outputs, (ht, ct) = self.rnn(inputs, (h0, c0))
        return ht[-2:].transpose(0, 1).reshape(batch_size, -1)


def test_snli_encoder_ported_batch_first_or_with_torchs_transpose_says_what_to_write():
    """The Encoder's LSTM left batch first (xpnet's default) while forward reads the batch size from axis 1: refused
    before it runs, also where T = N (3 words, 3 sentences), where the state's shape fits and nothing else would
    tell; ``ht[-2:].transpose(0, 1)`` says to write swapaxes."""
    config = _snli_config()
    encoder = _Encoder(config)
    encoder.rnn = nn.LSTM(input_size=config.d_proj, hidden_size=config.d_hidden, num_layers=config.n_layers,
                          bidirectional=True, return_state=True)
    with pytest.raises(ValueError, match=r"^_Encoder\.forward reads the batch size from axis 1 of what it gives "
                                         r"self\.rnn \(batch_size = inputs\.shape\[1\]\).*batch_first=False"):
        encoder(np.zeros((3, 3, config.d_proj), np.float32))
    with pytest.raises(ValueError, match=r"transpose\(0, 1\) swaps two; write x\.swapaxes\(0, 1\)"):
        _TransposingEncoder(config)(np.zeros((4, 3, config.d_proj), np.float32))


# --- beginner_source/introyt/trainingyt.py: per-epoch validation, the best model's state dict saved ---------------

class _GarmentClassifier(_LeNet):
    """trainingyt.py's GarmentClassifier: the LeNet of the blitz for 28x28 images (``self.pool = nn.MaxPool2d(2,
    2)``, ``x.view(-1, 16 * 4 * 4)``). x (N, 1, 28, 28) -> (N, 10)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.pool = nn.MaxPool2d(2, 2)


def _torch_garment_classifier(torch):
    """trainingyt.py's GarmentClassifier as it is there."""
    F = torch.nn.functional

    class GarmentClassifier(torch.nn.Module):
        def __init__(self):
            super(GarmentClassifier, self).__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 5)
            self.pool = torch.nn.MaxPool2d(2, 2)
            self.conv2 = torch.nn.Conv2d(6, 16, 5)
            self.fc1 = torch.nn.Linear(16 * 4 * 4, 120)
            self.fc2 = torch.nn.Linear(120, 84)
            self.fc3 = torch.nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = x.view(-1, 16 * 4 * 4)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return GarmentClassifier()


def _run_epochs(model, loss_fn, optimizer, training_loader, validation_loader, save, no_grad, epochs=3):
    """The tutorial's loop: train_one_epoch (``last_loss`` every 2 batches where it reports every 1000), then the
    validation losses summed over batches (``running_vloss += vloss``), under ``model.train(False)`` as there or
    ``model.eval()`` and ``no_grad`` (its current version); ``save(epoch)`` where the average beats the best.
    Returns the (avg_loss, avg_vloss) of each epoch and the epochs saved. ``model``, ``loss_fn``... are either
    library's: the lines are the tutorial's, ``backward`` the only name that differs."""
    history, saved, best_vloss = [], [], 1_000_000.
    for epoch in range(epochs):
        model.train(True)
        running_loss, last_loss = 0., 0.
        for i, (inputs, labels) in enumerate(training_loader):
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = loss_fn(outputs, labels)
            _backward(model, loss_fn, loss)
            optimizer.step()
            running_loss += loss.item()
            if i % 2 == 1:
                last_loss, running_loss = running_loss / 2, 0.
        if no_grad is None:
            model.train(False)
        else:
            model.eval()
        running_vloss = 0.0
        with no_grad() if no_grad is not None else contextlib.nullcontext():
            for i, (vinputs, vlabels) in enumerate(validation_loader):
                voutputs = model(vinputs)
                vloss = loss_fn(voutputs, vlabels)
                running_vloss += vloss
        avg_vloss = running_vloss / (i + 1)
        history.append((last_loss, avg_vloss.item()))
        if avg_vloss < best_vloss:
            best_vloss = avg_vloss
            save(epoch)
            saved.append(epoch)
    return history, saved


def _backward(model, loss_fn, loss):
    """``loss.backward()``: torch's, or xpnet's ``model.backward(loss_fn.backward())``."""
    if isinstance(model, xn.Model):
        model.backward(loss_fn.backward())
    else:
        loss.backward()


@pytest.mark.parametrize("how", ["train(False)", "eval() and no_grad"])
def test_trainingyt_epochs_validation_and_the_best_saved_state_dict_equal_pytorchs(tmp_path, how):
    """Three epochs of SGD with momentum, each validated, the state dict saved by ``xn.save(model.state_dict(),
    model_path)`` (a path without a suffix, as there) where the validation loss is the best so far: the training and
    validation losses and the epochs saved equal torch's in float64, and a new model given ``load_state_dict(xn.load
    (PATH))`` of the last one saved gives torch's reloaded model's outputs."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_garment_classifier(torch).double()
    model = _GarmentClassifier().to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    rng = np.random.default_rng(4)
    data = [(rng.standard_normal((4, 1, 28, 28)), rng.integers(10, size=4)) for _ in range(4)]
    training_loader, validation_loader = data[:2], data[2:]
    as_torch = [(torch.from_numpy(x), torch.from_numpy(t)) for x, t in data]

    def save(epoch):
        xn.save(model.state_dict(), tmp_path / f"model_ts_{epoch}")

    def tsave(epoch):
        torch.save(theirs.state_dict(), tmp_path / f"torch_ts_{epoch}")

    no_grad = None if how == "train(False)" else (xn.no_grad, torch.no_grad)
    history, saved = _run_epochs(model, xn.losses.SoftmaxCrossEntropy(), xn.optim.SGD(
        model.parameters(), lr=0.001, momentum=0.9), training_loader, validation_loader, save, no_grad and no_grad[0])
    thistory, tsaved = _run_epochs(theirs, torch.nn.CrossEntropyLoss(), torch.optim.SGD(
        theirs.parameters(), lr=0.001, momentum=0.9), as_torch[:2], as_torch[2:], tsave, no_grad and no_grad[1])
    np.testing.assert_allclose(history, thistory, rtol=1e-10)
    assert saved == tsaved and saved
    saved_model = _GarmentClassifier().to(dtype="float64")
    saved_model.load_state_dict(xn.load(tmp_path / f"model_ts_{saved[-1]}"))
    tsaved_model = _torch_garment_classifier(torch).double()
    tsaved_model.load_state_dict(torch.load(tmp_path / f"torch_ts_{saved[-1]}"))
    _close(saved_model(data[3][0]), tsaved_model(as_torch[3][0]), "reloaded")


class _TorchLines(xn.Model):
    """A forward holding one of SNLI's PyTorch lines, picked by ``line``."""

    def __init__(self, line):
        super().__init__()
        self.embed, self.line = nn.Embedding(5, 3), line

    def forward(self, ids, train=True):
        embedded = self.embed(ids)
        if self.line == "detach":
            return embedded.detach()
        if self.line == "size":
            return embedded[:, :embedded.size()[1]]
        if self.line == "numel":  # the distillation tutorial's count, written in a forward
            return embedded / embedded.numel()
        return embedded.new_zeros(embedded.shape)


@pytest.mark.parametrize("line, error, says", [
    ("detach", AttributeError, r"has no attribute 'detach' \(line \d+: return embedded\.detach\(\)\).*drop it.*"
                               r"freeze that layer: layer\.requires_grad_\(False\)$"),
    ("size", TypeError, r"x\.size\(\) is the shape; write x\.shape for x\.size\(\), x\.shape\[d\] for x\.size\(d\)$"),
    ("new_zeros", AttributeError, r"write xp\.zeros\(shape, dtype=x\.dtype\)"),
    ("numel", AttributeError, r"write x\.size \(NumPy's size is the number of elements")])
def test_snli_forwards_pytorch_tensor_methods_say_numpys_spelling(line, error, says):
    """model.py's ``prem_embed.detach()`` (fix_emb), ``inputs.size()[1]`` and ``inputs.new_zeros(state_shape)`` on
    NumPy arrays: each raised again naming the model, the line, and what to write."""
    with pytest.raises(error, match=r"^_TorchLines\.forward: .*" + says):
        _TorchLines(line)(np.array([[1, 2]]))


class _Configured(xn.Model):
    """A model built from one namespace of sizes, as the SNLI example's classes are."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.fc = nn.Linear(config.d_in, config.sizes[0])


def test_a_model_built_from_a_simple_namespace_is_saved_and_built_back_with_one(tmp_path):
    """``types.SimpleNamespace`` arguments (lists inside too) are kept and given back as a SimpleNamespace, the
    weights with them."""
    from types import SimpleNamespace
    model = _Configured(SimpleNamespace(d_in=3, sizes=[2, 5], name="fc"))
    xn.save(model, tmp_path / "m.npz")
    loaded = xn.load(tmp_path / "m.npz")
    assert type(loaded.config) is SimpleNamespace and loaded.config == model.config
    np.testing.assert_array_equal(loaded.fc.weight, model.fc.weight)
