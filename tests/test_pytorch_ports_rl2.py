"""pytorch/examples' reinforcement_learning/actor_critic.py, pytorch/tutorials' DQN tutorial
(intermediate_source/reinforcement_q_learning.py), pytorch/examples' mnist_forward_forward and gcn ported to xpnet
as a PyTorch user writes them first, each checked against the same program in torch, float64, the same initial
weights, a few steps; and the fixes and hints that porting them added (AMSGrad, a backward after a no_grad call,
a subclass's forward that skips its base's, a layer of two inputs, a loss on some rows). No gym, MNIST or Cora
here: a tiny deterministic environment (``_Env``) with 4-d observations and 2 actions stands in for CartPole, tiny
random data and a random graph for the rest."""

import math
import random
from collections import deque, namedtuple

import numpy as np
import pytest
from test_pytorch_ports_rl import _Env, _returns  # the REINFORCE port's environment and finish_episode()'s returns

import xpnet as xn
from xpnet import layers as nn


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _close(ours, theirs, name=""):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def _linear_weights_equal(model, theirs):
    """Every Linear of ``theirs`` (torch) equal to the xpnet layer of the same attribute name."""
    for name, p in theirs.named_parameters():
        layer, kind = name.rsplit(".", 1)
        mine = getattr(model, layer)
        _close(mine.weight if kind == "weight" else mine.bias, p, name)


# --- actor_critic -------------------------------------------------------------------------------------------------

class _Policy(xn.Model):
    """actor_critic.py's Policy: a shared trunk (affine1, ReLU) and two heads; F.relu and F.softmax as layers.
    x (N, 4) -> (action_prob (N, 2), state_values (N, 1)); backward(dprob, dvalue) adds the heads' gradients
    where they meet, at the trunk's output."""

    def __init__(self):
        super().__init__()
        self.affine1 = nn.Linear(4, 128)
        self.action_head = nn.Linear(128, 2)
        self.value_head = nn.Linear(128, 1)
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x, train=True):
        x = self.relu(self.affine1(x))
        action_prob = self.softmax(self.action_head(x))
        state_values = self.value_head(x)
        return action_prob, state_values

    def backward(self, dprob, dvalue):
        dx = self.action_head.backward(self.softmax.backward(dprob)) + self.value_head.backward(dvalue)
        return self.affine1.backward(self.relu.backward(dx))


class _Episode(xn.Model):
    """main()'s step loop in a forward, select_action() at each step: the policy called once per step (each call
    kept for its backward), an action sampled from each step's probabilities with ``rng``. Returns the (T, 2)
    probabilities and the (T, 1) values; keeps the actions and rewards. backward(dprobs, dvalues) goes through
    the steps last first."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, env, rng, train=True):
        state, _ = env.reset()
        probs, values, self.actions, self.rewards = [], [], [], []
        while True:
            p, v = self.model(state[None, :])
            action = int(rng.random() >= p[0, 0])                   # Categorical(probs).sample()
            state, reward, terminated, truncated, _ = env.step(action)
            probs.append(p)
            values.append(v)
            self.actions.append(action)
            self.rewards.append(reward)
            if terminated or truncated:
                return np.concatenate(probs), np.concatenate(values)

    def backward(self, dprobs, dvalues):
        for t in reversed(range(dprobs.shape[0])):
            self.model.backward(dprobs[t:t + 1], dvalues[t:t + 1])


def _finish_episode_grads(probs, values, actions, returns, criterion):
    """finish_episode()'s loss, sum(-log_prob * advantage) + sum(smooth_l1_loss(value, R)), its gradients for the
    probabilities and the values: the advantage R - value.item() is a number (no gradient through it), and each
    step's value loss gives its gradient right after its call."""
    dprobs, dvalues, loss = np.zeros_like(probs), [], 0.0
    for t, (action, R) in enumerate(zip(actions, returns)):
        advantage = R - values[t].item()
        loss += -math.log(probs[t, action]) * advantage
        dprobs[t, action] = -advantage / probs[t, action]
        loss += criterion(values[t:t + 1], np.array([[R]]))
        dvalues.append(criterion.backward())
    return loss, dprobs, np.concatenate(dvalues)


def _torch_actor_critic(torch):
    """actor_critic.py's Policy as it is there (its buffers left out)."""
    nn_, F = torch.nn, torch.nn.functional

    class Policy(nn_.Module):
        def __init__(self):
            super(Policy, self).__init__()
            self.affine1 = nn_.Linear(4, 128)
            self.action_head = nn_.Linear(128, 2)
            self.value_head = nn_.Linear(128, 1)

        def forward(self, x):
            x = F.relu(self.affine1(x))
            action_prob = F.softmax(self.action_head(x), dim=-1)
            state_values = self.value_head(x)
            return action_prob, state_values

    return Policy()


def test_actor_critic_episodes_update_as_pytorchs():
    """Three episodes of main() and finish_episode() (Adam, lr 3e-2): the loss and the weights after each update
    equal torch's, which takes xpnet's sampled actions, in float64 (its 1-d states, xpnet's (1, 4) rows)."""
    torch = _torch()
    from torch.distributions import Categorical
    F = torch.nn.functional
    torch.manual_seed(543)
    theirs = _torch_actor_critic(torch).double()
    toptimizer = torch.optim.Adam(theirs.parameters(), lr=3e-2)
    model = _Policy().to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    episode = _Episode(model)
    optimizer = xn.optim.Adam(model.parameters(), lr=3e-2)
    criterion, rng, env = xn.losses.SmoothL1Loss(), np.random.default_rng(0), _Env()
    for _ in range(3):
        probs, values = episode(env, rng)
        returns = _returns(episode.rewards)
        loss, dprobs, dvalues = _finish_episode_grads(probs, values, episode.actions, returns, criterion)
        optimizer.zero_grad()
        episode.backward(dprobs, dvalues)
        optimizer.step()

        state, _ = env.reset()
        saved_actions = []
        for action in episode.actions:
            tprobs, state_value = theirs(torch.from_numpy(state))
            saved_actions.append((Categorical(tprobs).log_prob(torch.tensor(action)), state_value))
            state, *_ = env.step(action)
        policy_losses, value_losses = [], []
        for (log_prob, value), R in zip(saved_actions, torch.from_numpy(returns)):
            advantage = R - value.item()
            policy_losses.append(-log_prob * advantage)
            value_losses.append(F.smooth_l1_loss(value, torch.tensor([R])))
        toptimizer.zero_grad()
        tloss = torch.stack(policy_losses).sum() + torch.stack(value_losses).sum()
        tloss.backward()
        toptimizer.step()
        assert abs(loss - tloss.item()) <= 1e-10 * max(1.0, abs(tloss.item()))
        _linear_weights_equal(model, theirs)


# --- reinforcement_q_learning (DQN) -------------------------------------------------------------------------------

Transition = namedtuple('Transition', ('state', 'action', 'next_state', 'reward'))


class ReplayMemory(object):
    """The tutorial's, as it is there."""

    def __init__(self, capacity):
        self.memory = deque([], maxlen=capacity)

    def push(self, *args):
        """Save a transition"""
        self.memory.append(Transition(*args))

    def sample(self, batch_size):
        return random.sample(self.memory, batch_size)

    def __len__(self):
        return len(self.memory)


class DQN(xn.Model):
    """The tutorial's DQN, F.relu as one ReLU layer used twice, backward written out: x (N, n_obs) -> Q (N, n_act)."""

    def __init__(self, n_observations, n_actions):
        super().__init__()
        self.layer1 = nn.Linear(n_observations, 128)
        self.layer2 = nn.Linear(128, 128)
        self.layer3 = nn.Linear(128, n_actions)
        self.relu = nn.ReLU()

    def forward(self, x, train=True):
        x = self.relu(self.layer1(x))
        x = self.relu(self.layer2(x))
        return self.layer3(x)

    def backward(self, dy):
        dy = self.layer2.backward(self.relu.backward(self.layer3.backward(dy)))
        return self.layer1.backward(self.relu.backward(dy))


BATCH_SIZE, GAMMA, EPS_START, EPS_END, EPS_DECAY, TAU, LR = 8, 0.99, 0.9, 0.05, 1000, 0.005, 1e-4


def _optimize_model(policy_net, target_net, optimizer, transitions):
    """optimize_model() on a sampled batch: gather(1, action_batch) is np.take_along_axis (its backward
    np.put_along_axis), max(1).values is max(1); loss.backward() is the criterion's backward through them."""
    batch = Transition(*zip(*transitions))
    non_final_mask = np.array(tuple(map(lambda s: s is not None, batch.next_state)), dtype=bool)
    non_final_next_states = np.concatenate([s for s in batch.next_state if s is not None])
    state_batch = np.concatenate(batch.state)
    action_batch = np.concatenate(batch.action)
    reward_batch = np.concatenate(batch.reward)

    q = policy_net(state_batch)
    state_action_values = np.take_along_axis(q, action_batch, 1)
    next_state_values = np.zeros(BATCH_SIZE)
    with xn.no_grad():
        next_state_values[non_final_mask] = target_net(non_final_next_states).max(1)
    expected_state_action_values = (next_state_values * GAMMA) + reward_batch

    criterion = xn.losses.SmoothL1Loss()
    loss = criterion(state_action_values, expected_state_action_values[:, None])
    optimizer.zero_grad()
    dq = np.zeros_like(q)
    np.put_along_axis(dq, action_batch, criterion.backward(), 1)
    policy_net.backward(dq)
    xn.optim.clip_grad_value(policy_net.parameters(), 100)
    optimizer.step()
    return loss


def _soft_update(policy_net, target_net):
    """θ′ ← τ θ + (1 −τ )θ′ through the state dicts, as the tutorial writes it."""
    target_net_state_dict = target_net.state_dict()
    policy_net_state_dict = policy_net.state_dict()
    for key in policy_net_state_dict:
        target_net_state_dict[key] = policy_net_state_dict[key] * TAU + target_net_state_dict[key] * (1 - TAU)
    target_net.load_state_dict(target_net_state_dict)


def _torch_dqn(torch):
    nn_, F = torch.nn, torch.nn.functional

    class DQN(nn_.Module):
        def __init__(self, n_observations, n_actions):
            super(DQN, self).__init__()
            self.layer1 = nn_.Linear(n_observations, 128)
            self.layer2 = nn_.Linear(128, 128)
            self.layer3 = nn_.Linear(128, n_actions)

        def forward(self, x):
            x = F.relu(self.layer1(x))
            x = F.relu(self.layer2(x))
            return self.layer3(x)

    return DQN


def _torch_optimize_model(torch, policy_net, target_net, optimizer, transitions):
    """The tutorial's optimize_model() on the same batch, as it is there."""
    batch = Transition(*zip(*[Transition(*(None if v is None else torch.from_numpy(v) for v in t))
                              for t in transitions]))
    non_final_mask = torch.tensor(tuple(map(lambda s: s is not None, batch.next_state)), dtype=torch.bool)
    non_final_next_states = torch.cat([s for s in batch.next_state if s is not None])
    state_batch = torch.cat(batch.state)
    action_batch = torch.cat(batch.action)
    reward_batch = torch.cat(batch.reward)
    state_action_values = policy_net(state_batch).gather(1, action_batch)
    next_state_values = torch.zeros(BATCH_SIZE, dtype=torch.float64)
    with torch.no_grad():
        next_state_values[non_final_mask] = target_net(non_final_next_states).max(1).values
    expected_state_action_values = (next_state_values * GAMMA) + reward_batch
    criterion = torch.nn.SmoothL1Loss()
    loss = criterion(state_action_values, expected_state_action_values.unsqueeze(1))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_value_(policy_net.parameters(), 100)
    optimizer.step()
    return loss


def test_dqn_tutorial_trains_as_pytorchs():
    """Three episodes of the tutorial's training loop (epsilon-greedy select_action under no_grad, ReplayMemory,
    optimize_model() with AdamW(amsgrad=True), SmoothL1Loss and clip_grad_value_, the soft update of the target
    net through state_dict() and load_state_dict): each step's loss and, at the end, both nets' weights equal
    torch's on the same sampled batches in float64. Terminal states (next_state None, masked out) are in them."""
    torch = _torch()
    torch.manual_seed(0)
    tpolicy, ttarget = _torch_dqn(torch)(4, 2).double(), _torch_dqn(torch)(4, 2).double()
    ttarget.load_state_dict(tpolicy.state_dict())
    toptimizer = torch.optim.AdamW(tpolicy.parameters(), lr=LR, amsgrad=True)
    policy_net, target_net = DQN(4, 2).to(dtype="float64"), DQN(4, 2).to(dtype="float64")
    xn.load_torch_state_dict(policy_net, tpolicy.state_dict())
    target_net.load_state_dict(policy_net.state_dict())
    optimizer = xn.optim.AdamW(policy_net.parameters(), lr=LR, amsgrad=True)
    memory, env, rng, steps_done, finals = ReplayMemory(10000), _Env(limit=0.5), random.Random(0), 0, 0
    for i_episode in range(3):
        state, info = env.reset()
        state = state[None, :]
        while True:
            eps_threshold = EPS_END + (EPS_START - EPS_END) * math.exp(-1. * steps_done / EPS_DECAY)
            steps_done += 1
            if rng.random() > eps_threshold:
                with xn.no_grad():
                    action = policy_net(state).argmax(1).reshape(1, 1)     # .max(1).indices.view(1, 1)
            else:
                action = np.array([[rng.randrange(2)]])
            observation, reward, terminated, truncated, _ = env.step(action.item())
            next_state = None if terminated else observation[None, :]
            memory.push(state, action, next_state, np.array([reward]))
            state = next_state
            if len(memory) >= BATCH_SIZE:
                transitions = random.Random(steps_done).sample(memory.memory, BATCH_SIZE)
                finals += sum(t.next_state is None for t in transitions)
                loss = _optimize_model(policy_net, target_net, optimizer, transitions)
                tloss = _torch_optimize_model(torch, tpolicy, ttarget, toptimizer, transitions)
                assert abs(loss - tloss.item()) <= 1e-10 * max(1.0, abs(tloss.item()))
            _soft_update(policy_net, target_net)
            ttarget_state_dict, tpolicy_state_dict = ttarget.state_dict(), tpolicy.state_dict()
            for key in tpolicy_state_dict:
                ttarget_state_dict[key] = tpolicy_state_dict[key] * TAU + ttarget_state_dict[key] * (1 - TAU)
            ttarget.load_state_dict(ttarget_state_dict)
            if terminated or truncated:
                break
    assert finals > 0
    _linear_weights_equal(policy_net, tpolicy)
    _linear_weights_equal(target_net, ttarget)


@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_amsgrad_steps_as_pytorchs(cls):
    """Adam/AdamW(amsgrad=True), the DQN tutorial's optimizer (refused before): with gradients that shrink, so that
    the running maximum of v is not v, the weights equal torch's in float64 step by step, and differ from
    amsgrad=False's; the maximum is optimizer state, saved and loaded with it."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = torch.nn.Linear(3, 2).double()
    toptimizer = getattr(torch.optim, cls)(theirs.parameters(), lr=0.1, amsgrad=True, weight_decay=0.01)
    models = [xn.Sequential(nn.Linear(3, 2, dtype="float64")) for _ in range(2)]
    optimizers = [getattr(xn.optim, cls)(m.parameters(), lr=0.1, amsgrad=a, weight_decay=0.01,
                                         weight_decay_on="all") for m, a in zip(models, (True, False))]
    for m in models:
        xn.load_torch_state_dict(m, {"0." + k: v for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 3))
    for scale in (1.0, 0.3, 0.1, 0.03):
        for m, opt in zip(models, optimizers):
            opt.zero_grad()
            m.backward(scale * m(x))                                # the gradient of scale * sum(y ** 2) / 2
            opt.step()
        toptimizer.zero_grad()
        y = theirs(torch.from_numpy(x))
        (scale * (y ** 2).sum() / 2).backward()
        toptimizer.step()
        _close(models[0][0].weight, theirs.weight)
        _close(models[0][0].bias, theirs.bias)
    assert not np.allclose(models[1][0].weight, models[0][0].weight, rtol=1e-6)
    again = getattr(xn.optim, cls)(models[0].parameters(), lr=0.1, amsgrad=True)
    again.load_state_dict(optimizers[0].state_dict())
    assert again.amsgrad and again.state["0.W"]["v_max"] is optimizers[0].state["0.W"]["v_max"]


def test_a_no_grad_call_between_forward_and_backward_is_refused_and_the_order_that_works_equals_torch():
    """Double DQN's habit: q = policy_net(states), then under no_grad policy_net(next_states).argmax(1) for the
    target's actions, then the backward. The no_grad call replaced the caches, and with batches of one size the
    gradient was the no_grad call's, silently; refused now, naming the model and what to write. Written so (the
    no_grad calls first), the gradients equal torch's in-between order in float64. set_grad_enabled(False) as a
    context is no_grad; enable_grad() within it takes a backward again."""
    torch = _torch()
    torch.manual_seed(0)
    tpolicy, ttarget = _torch_dqn(torch)(4, 2).double(), _torch_dqn(torch)(4, 2).double()
    policy_net, target_net = DQN(4, 2).to(dtype="float64"), DQN(4, 2).to(dtype="float64")
    xn.load_torch_state_dict(policy_net, tpolicy.state_dict())
    xn.load_torch_state_dict(target_net, ttarget.state_dict())
    rng = np.random.default_rng(0)
    states, next_states = rng.standard_normal((BATCH_SIZE, 4)), rng.standard_normal((BATCH_SIZE, 4))
    actions, rewards = rng.integers(0, 2, (BATCH_SIZE, 1)), rng.standard_normal(BATCH_SIZE)
    criterion = xn.losses.SmoothL1Loss()

    q = policy_net(states)
    with xn.no_grad():
        next_actions = policy_net(next_states).argmax(1)
    with pytest.raises(RuntimeError, match=r"DQN.backward: the model's last forward ran under xn.no_grad\(\).*Run "
                                           r"what needs no gradient before the training forward"):
        policy_net.backward(np.ones_like(q))
    for context in (xn.no_grad, lambda: xn.set_grad_enabled(False)):  # made here: set_grad_enabled(False) sets it
        with context():
            next_actions = policy_net(next_states).argmax(1, keepdims=True)     # the no_grad calls first
            with xn.enable_grad():
                policy_net(states)
            next_values = np.take_along_axis(target_net(next_states), next_actions, 1)
        q = policy_net(states)
        state_action_values = np.take_along_axis(q, actions, 1)
        criterion(state_action_values, GAMMA * next_values + rewards[:, None])
        policy_net.zero_grad()
        dq = np.zeros_like(q)
        np.put_along_axis(dq, actions, criterion.backward(), 1)
        policy_net.backward(dq)

    tq = tpolicy(torch.from_numpy(states))
    with torch.no_grad():
        tnext_actions = tpolicy(torch.from_numpy(next_states)).argmax(1, keepdim=True)
        tnext_values = ttarget(torch.from_numpy(next_states)).gather(1, tnext_actions)
    loss = torch.nn.SmoothL1Loss()(tq.gather(1, torch.from_numpy(actions)),
                                   GAMMA * tnext_values + torch.from_numpy(rewards).unsqueeze(1))
    loss.backward()
    grads = policy_net.named_grads()
    for name, p in tpolicy.named_parameters():
        layer, kind = name.split(".")
        _close(grads[f"{layer}.W"].T if kind == "weight" else grads[f"{layer}.b"], p.grad, name)


# --- mnist_forward_forward ----------------------------------------------------------------------------------------

class _Args:
    lr, threshold, epochs = 0.03, 2.0, 4


args = _Args()


def overlay_y_on_x(x, y, classes=10):
    x_ = x.copy()                                                   # x.clone()
    x_[:, :classes] *= 0.0
    x_[range(x.shape[0]), y] = x.max()
    return x_


class Net(xn.Model):
    """main.py's Net: its Layers in a list (registered here: named_params() has them, as layers.0.W), predict()
    and train() as there (train overrides the mode switch, as the script's does in torch)."""

    def __init__(self, dims):
        super().__init__()
        self.layers = []
        for d in range(len(dims) - 1):
            self.layers = self.layers + [Layer(dims[d], dims[d + 1])]

    def predict(self, x):
        goodness_per_label = []
        for label in range(10):
            h = overlay_y_on_x(x, label)
            goodness = []
            for layer in self.layers:
                h = layer(h)
                goodness = goodness + [(h ** 2).mean(1)]            # h.pow(2).mean(1)
            goodness_per_label += [sum(goodness)[:, None]]          # .unsqueeze(1)
        goodness_per_label = np.concatenate(goodness_per_label, 1)
        return goodness_per_label.argmax(1)

    def train(self, x_pos, x_neg):
        h_pos, h_neg = x_pos, x_neg
        for i, layer in enumerate(self.layers):
            h_pos, h_neg = layer.train(h_pos, h_neg)


class Layer(nn.Linear):
    """main.py's Layer(nn.Linear) with its own Adam: forward normalises x, then Linear's forward (super().forward,
    whose caches Linear's backward reads) and the ReLU; backward the two in reverse (the input needs no gradient:
    each layer trains on the one below's output, detached). train() runs x_pos and x_neg as one batch, one call's
    caches for the one backward of the layer-local loss (each row is normalised on its own: the same outputs)."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype="float32"):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.relu = nn.ReLU()
        self.opt = xn.optim.Adam(self.parameters(), lr=args.lr)
        self.threshold = args.threshold
        self.num_epochs = args.epochs

    def forward(self, x, train=True):
        x_direction = x / (np.linalg.norm(x, 2, 1, keepdims=True) + 1e-4)     # x.norm(2, 1, keepdim=True)
        return self.relu(super().forward(x_direction))

    def backward(self, dy):
        return super().backward(self.relu.backward(dy))

    def train(self, x_pos, x_neg):
        n = len(x_pos)
        for i in range(self.num_epochs):
            h = self.forward(np.concatenate([x_pos, x_neg]))
            g = (h ** 2).mean(1)
            z = np.concatenate([-g[:n] + self.threshold, g[n:] - self.threshold])
            self.loss = np.log1p(np.exp(z)).mean()
            dz = 1 / (1 + np.exp(-z)) / len(z)                      # d mean(log1p(exp(z))) / dz
            dg = np.concatenate([-dz[:n], dz[n:]])
            self.opt.zero_grad()
            self.backward(2 * h / h.shape[1] * dg[:, None])         # d mean(h ** 2, 1) / dh
            self.opt.step()
        return self.forward(x_pos), self.forward(x_neg)             # .detach(): nothing to detach from


def _torch_forward_forward(torch):
    """main.py's Net and Layer as they are there (args and device as the script's globals)."""
    nn_ = torch.nn
    device = torch.device("cpu")

    def overlay_y_on_x(x, y, classes=10):
        x_ = x.clone()
        x_[:, :classes] *= 0.0
        x_[range(x.shape[0]), y] = x.max()
        return x_

    class Net(torch.nn.Module):
        def __init__(self, dims):
            super().__init__()
            self.layers = []
            for d in range(len(dims) - 1):
                self.layers = self.layers + [Layer(dims[d], dims[d + 1]).to(device)]

        def predict(self, x):
            goodness_per_label = []
            for label in range(10):
                h = overlay_y_on_x(x, label)
                goodness = []
                for layer in self.layers:
                    h = layer(h)
                    goodness = goodness + [h.pow(2).mean(1)]
                goodness_per_label += [sum(goodness).unsqueeze(1)]
            goodness_per_label = torch.cat(goodness_per_label, 1)
            return goodness_per_label.argmax(1)

        def train(self, x_pos, x_neg):
            h_pos, h_neg = x_pos, x_neg
            for i, layer in enumerate(self.layers):
                h_pos, h_neg = layer.train(h_pos, h_neg)

    class Layer(nn_.Linear):
        def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
            super().__init__(in_features, out_features, bias, device, dtype)
            self.relu = torch.nn.ReLU()
            self.opt = torch.optim.Adam(self.parameters(), lr=args.lr)
            self.threshold = args.threshold
            self.num_epochs = args.epochs

        def forward(self, x):
            x_direction = x / (x.norm(2, 1, keepdim=True) + 1e-4)
            return self.relu(torch.mm(x_direction, self.weight.T) + self.bias.unsqueeze(0))

        def train(self, x_pos, x_neg):
            for i in range(self.num_epochs):
                g_pos = self.forward(x_pos).pow(2).mean(1)
                g_neg = self.forward(x_neg).pow(2).mean(1)
                loss = torch.log1p(
                    torch.exp(
                        torch.cat([-g_pos + self.threshold, g_neg - self.threshold])
                    )
                ).mean()
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                self.loss = loss
            return self.forward(x_pos).detach(), self.forward(x_neg).detach()

    return Net, overlay_y_on_x


def test_forward_forward_trains_each_layer_as_pytorchs():
    """main.py on 16 random 40-pixel 'images' (Net([40, 24, 24]), 4 epochs a layer): each layer's last loss, the
    weights of both layers and predict()'s labels equal torch's in float64: each layer stepped by its own Adam on
    its own loss, no end-to-end backward."""
    torch = _torch()
    torch.manual_seed(1)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)                         # the script's layers, made in float64
    try:
        TNet, toverlay = _torch_forward_forward(torch)
        theirs = TNet([40, 24, 24])
    finally:
        torch.set_default_dtype(previous)
    net = Net([40, 24, 24]).to(dtype="float64")
    for layer, tlayer in zip(net.layers, theirs.layers):
        xn.load_torch_state_dict(layer, tlayer.state_dict())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 40)), rng.integers(0, 10, 16)
    y_neg = (y + rng.integers(1, 10, 16)) % 10                     # get_y_neg(y): another label, at random
    net.train(overlay_y_on_x(x, y), overlay_y_on_x(x, y_neg))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    theirs.train(toverlay(tx, ty), toverlay(tx, torch.from_numpy(y_neg)))
    for layer, tlayer in zip(net.layers, theirs.layers):
        assert abs(layer.loss - tlayer.loss.item()) <= 1e-10
        _close(layer.weight, tlayer.weight)
        _close(layer.bias, tlayer.bias)
    with xn.no_grad(), torch.no_grad():
        np.testing.assert_array_equal(net.predict(x), theirs.predict(tx).numpy())


def test_a_subclass_forward_that_skips_super_forward_says_what_to_write():
    """main.py's Layer(nn.Linear) as written there, x_direction @ self.weight.T + self.bias by hand: Linear's
    backward then had no caches and said only 'backward called before forward'; it now says that the forward
    replaced Linear's and what to write."""

    class ByHand(nn.Linear):
        def __init__(self, in_features, out_features):
            super().__init__(in_features, out_features)
            self.relu = nn.ReLU()

        def forward(self, x, train=True):
            x_direction = x / (np.linalg.norm(x, 2, 1, keepdims=True) + 1e-4)
            return self.relu(x_direction @ self.weight.T + self.bias[None])

    layer = ByHand(12, 4)
    h = layer(np.ones((2, 12), np.float32))
    with pytest.raises(RuntimeError, match=r"ByHand.forward replaces Linear.forward, whose caches Linear.backward "
                                           r"reads. Call super\(\).forward\(x\) in it .* and write "
                                           r"ByHand.backward\(dy\)"):
        layer.backward(np.ones_like(h))


# --- gcn ----------------------------------------------------------------------------------------------------------

class GraphConv(nn.Layer):
    """gcn/main.py's GraphConv as a layer of one's own: its nn.Parameters in self.params (``kernel``, ``bias``),
    forward(input_tensor, adj_mat) called as self.gc1(x, adj_mat), PyTorch's way; torch.spmm is a dense @ here.
    x (N, F_in), adj_mat (N, N) -> (N, F_out); caches both inputs; backward returns dx (no gradient for adj_mat)."""

    def __init__(self, input_dim, output_dim, use_bias=False):
        super().__init__()
        self.params["kernel"] = np.empty((input_dim, output_dim), dtype=np.float32)
        xn.init.xavier_normal_(self.params["kernel"])
        self.use_bias = use_bias
        if use_bias:
            self.params["bias"] = np.zeros(output_dim, dtype=np.float32)

    def forward(self, input_tensor, adj_mat, train=True):
        self.input_tensor, self.adj_mat = input_tensor, adj_mat
        support = input_tensor @ self.params["kernel"]
        output = adj_mat @ support
        if self.use_bias:
            output = output + self.params["bias"]
        return output

    def backward(self, dy):
        dsupport = self.adj_mat.T @ dy
        self.grads["kernel"] = self.input_tensor.T @ dsupport
        if self.use_bias:
            self.grads["bias"] = dy.sum(0)
        return dsupport @ self.params["kernel"].T


class GCN(xn.Model):
    """gcn/main.py's GCN, F.relu and F.log_softmax as layers, backward written out: (N, F) features and the (N, N)
    normalised adjacency -> (N, C) log-probabilities."""

    def __init__(self, input_dim, hidden_dim, output_dim, use_bias=True, dropout_p=0.1):
        super().__init__()
        self.gc1 = GraphConv(input_dim, hidden_dim, use_bias=use_bias)
        self.gc2 = GraphConv(hidden_dim, output_dim, use_bias=use_bias)
        self.dropout = nn.Dropout(dropout_p)
        self.relu = nn.ReLU()
        self.log_softmax = nn.LogSoftmax(dim=1)

    def forward(self, input_tensor, adj_mat, train=True):
        x = self.gc1(input_tensor, adj_mat)
        x = self.dropout(self.relu(x))
        x = self.gc2(x, adj_mat)
        return self.log_softmax(x)

    def backward(self, dy):
        dy = self.gc2.backward(self.log_softmax.backward(dy))
        return self.gc1.backward(self.relu.backward(self.dropout.backward(dy)))


def _graph(rng, n=12, f=8):
    """load_cora() on a random graph: row-normalised 0/1 features and D^-1/2 (I + A) D^-1/2 (A symmetric)."""
    features = (rng.random((n, f)) < 0.4).astype(np.float64)
    sums = features.sum(1)
    scale = np.where(sums > 0, 1 / np.where(sums > 0, sums, 1), 0)
    a = np.triu(rng.random((n, n)) < 0.25, 1)
    adj = np.eye(n) + a + a.T
    degree = np.sqrt(1 / adj.sum(1))
    return scale[:, None] * features, degree[:, None] * adj * degree[None, :]


def test_gcn_trains_and_tests_as_pytorchs():
    """train_iter() and test() for five epochs on a random 12-node graph (3 classes, 6 training nodes): the training
    loss (NLLLoss on output[mask_train], its gradient put back in those rows), the validation loss and accuracy,
    and the weights equal torch's, which runs the script's GCN on the sparse matrices, in float64. Adam built from
    gcn.parameters(), as the script's, decays every parameter as PyTorch's (the book's form would spare the kernel,
    not named as a weight, with a warning)."""
    torch = _torch()
    nn_, F = torch.nn, torch.nn.functional

    class TGraphConv(nn_.Module):
        def __init__(self, input_dim, output_dim, use_bias=False):
            super(TGraphConv, self).__init__()
            self.kernel = nn_.Parameter(torch.Tensor(input_dim, output_dim))
            nn_.init.xavier_normal_(self.kernel)
            self.bias = None
            if use_bias:
                self.bias = nn_.Parameter(torch.Tensor(output_dim))
                nn_.init.zeros_(self.bias)

        def forward(self, input_tensor, adj_mat):
            support = torch.mm(input_tensor, self.kernel)
            output = torch.spmm(adj_mat, support)
            if self.bias is not None:
                output = output + self.bias
            return output

    class TGCN(nn_.Module):
        def __init__(self, input_dim, hidden_dim, output_dim, use_bias=True, dropout_p=0.1):
            super(TGCN, self).__init__()
            self.gc1 = TGraphConv(input_dim, hidden_dim, use_bias=use_bias)
            self.gc2 = TGraphConv(hidden_dim, output_dim, use_bias=use_bias)
            self.dropout = nn_.Dropout(dropout_p)

        def forward(self, input_tensor, adj_mat):
            x = self.gc1(input_tensor, adj_mat)
            x = F.relu(x)
            x = self.dropout(x)
            x = self.gc2(x, adj_mat)
            return F.log_softmax(x, dim=1)

    rng = np.random.default_rng(0)
    features, adj_mat = _graph(rng)
    labels = rng.integers(0, 3, len(features))
    idx = rng.permutation(len(labels))
    idx_val, idx_train = idx[:6], idx[6:]
    torch.manual_seed(42)
    theirs = TGCN(8, 16, 3, True, 0.0).double()
    toptimizer = torch.optim.Adam(theirs.parameters(), lr=0.01, weight_decay=5e-4)
    gcn = GCN(8, 16, 3, True, 0.0).to(dtype="float64")
    for name, p in theirs.named_parameters():
        gcn.named_params()[name][...] = p.detach().numpy()
    optimizer = xn.optim.Adam(gcn.parameters(), lr=0.01, weight_decay=5e-4)  # PyTorch's decay: built from parameters()
    criterion, tcriterion = xn.losses.NLLLoss(), nn_.NLLLoss()
    tinput = (torch.from_numpy(features).to_sparse(), torch.from_numpy(adj_mat).to_sparse())
    target = torch.from_numpy(labels)

    def test(model, mask):
        model.eval()
        with xn.no_grad():
            output = model(features, adj_mat)
            output, t = output[mask], labels[mask]
            loss = criterion(output, t)
            acc = (output.argmax(axis=1) == t).astype(np.float64).sum() / len(t)
        return loss.item(), acc.item()

    for epoch in range(5):
        gcn.train()
        optimizer.zero_grad()
        output = gcn(features, adj_mat)
        loss = criterion(output[idx_train], labels[idx_train])
        doutput = np.zeros_like(output)
        doutput[idx_train] = criterion.backward()                   # loss.backward(): back in the training rows
        gcn.backward(doutput)
        optimizer.step()
        loss_val, acc_val = test(gcn, idx_val)

        theirs.train()
        toptimizer.zero_grad()
        toutput = theirs(*tinput)
        tloss = tcriterion(toutput[idx_train], target[idx_train])
        tloss.backward()
        toptimizer.step()
        theirs.eval()
        with torch.no_grad():
            toutput = theirs(*tinput)[idx_val]
            tloss_val = tcriterion(toutput, target[idx_val]).item()
            tacc_val = ((toutput.argmax(dim=1) == target[idx_val]).float().sum() / len(idx_val)).item()
        assert abs(loss - tloss.item()) <= 1e-10 and abs(loss_val - tloss_val) <= 1e-10
        assert abs(acc_val - tacc_val) <= 1e-7                     # torch's .float(): float32
    ours = gcn.named_params()
    for name, p in theirs.named_parameters():
        _close(ours[name], p, name)


def test_gcn_guesses_a_layer_of_two_inputs_and_a_loss_on_some_rows():
    """self.gc1(input_tensor, adj_mat) on a layer of one's own was refused (the adjacency taken for train); it calls
    forward(x, adj_mat, train=...) now, while layer(x, False) still means train=False. model.backward(
    criterion.backward()) after a loss on output[idx_train] said only that the shapes differ; it now says to put the
    gradient back in those rows."""
    rng = np.random.default_rng(0)
    features, adj_mat = _graph(rng)
    gc = GraphConv(8, 4)
    np.testing.assert_array_equal(gc(features.astype(np.float32), adj_mat.astype(np.float32)),
                                  gc.forward(features.astype(np.float32), adj_mat.astype(np.float32)))
    ones = np.ones((4, 5), np.float32)
    np.testing.assert_array_equal(nn.Dropout(0.5)(ones, False), ones)           # train=False by position
    gcn = GCN(8, 16, 3).to(dtype="float64")
    criterion, idx_train = xn.losses.NLLLoss(), np.arange(6, 12)
    output = gcn(features, adj_mat)
    criterion(output[idx_train], rng.integers(0, 3, 12)[idx_train])
    with pytest.raises(ValueError, match=r"expected dy of shape \(12, 3\) .* got \(6, 3\); if the loss saw only some "
                                         r"of the 12 rows .* dy\[mask\] = criterion.backward\(\)"):
        gcn.backward(criterion.backward())
