"""pytorch/examples' reinforcement_learning/reinforce.py, regression/main.py and mnist_rnn's model ported to
xpnet as a PyTorch user writes them first, and checked against the same programs in torch, float64, the same
initial weights (and for REINFORCE the same sampled actions); and the hints that porting them added. No gym here:
a tiny deterministic environment (``_Env``) with 4-d observations and 2 actions stands in for CartPole."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


class _Env:
    """Deterministic: s0 = (0.1, -0.2, 0.05, 0.3); a step moves s to 0.9 s + (2a - 1) (0.3, -0.1, 0.2, 0.1), rewards
    1 - |s[2]| and ends after 6 steps (truncated) or when |s[0]| > ``limit`` (terminated)."""

    def __init__(self, limit=1.0):
        self.limit = limit

    def reset(self):
        self.t, self.s = 0, np.array([0.1, -0.2, 0.05, 0.3])
        return self.s.copy(), {}

    def step(self, action):
        self.t += 1
        self.s = 0.9 * self.s + (2 * action - 1) * np.array([0.3, -0.1, 0.2, 0.1])
        return self.s.copy(), 1.0 - abs(self.s[2]), abs(self.s[0]) > self.limit, self.t >= 6, {}


class _Policy(xn.Model):
    """reinforce.py's Policy, F.relu and F.softmax as layers, backward written out: x (N, 4) -> probs (N, 2)."""

    def __init__(self, p=0.6):
        super().__init__()
        self.affine1 = L.Linear(4, 128)
        self.dropout = L.Dropout(p=p)
        self.relu = L.ReLU()
        self.affine2 = L.Linear(128, 2)
        self.softmax = L.Softmax(dim=1)

    def forward(self, x, train=True):
        x = self.relu(self.dropout(self.affine1(x)))
        return self.softmax(self.affine2(x))

    def backward(self, dy):
        dy = self.relu.backward(self.affine2.backward(self.softmax.backward(dy)))
        return self.affine1.backward(self.dropout.backward(dy))


class _Episode(xn.Model):
    """main()'s step loop in a forward: the policy called once per step (each call kept for its backward, its
    Dropout draw included), an action sampled from each step's probabilities with ``rng``. Returns the (T, 2)
    probabilities; keeps the actions and rewards. backward(dprobs (T, 2)) goes through the steps last first."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, env, rng, train=True):
        state, _ = env.reset()
        probs, self.actions, self.rewards = [], [], []
        while True:
            p = self.policy(state[None, :])
            action = int(rng.random() >= p[0, 0])                   # Categorical(probs).sample()
            state, reward, terminated, truncated, _ = env.step(action)
            probs.append(p)
            self.actions.append(action)
            self.rewards.append(reward)
            if terminated or truncated:
                return np.concatenate(probs)

    def backward(self, dprobs):
        for t in reversed(range(dprobs.shape[0])):
            self.policy.backward(dprobs[t:t + 1])


def _returns(rewards, gamma=0.99):
    """finish_episode()'s discounted returns, standardised with the unbiased std as torch's ``returns.std()``."""
    R, returns = 0.0, []
    for r in rewards[::-1]:
        R = r + gamma * R
        returns.insert(0, R)
    returns = np.array(returns)
    return (returns - returns.mean()) / (returns.std(ddof=1) + np.finfo(np.float32).eps)


def _policy_loss_grad(probs, actions, returns):
    """d/dprobs of sum_t -log(probs[t, a_t]) * R_t: (T, 2)."""
    dprobs = np.zeros_like(probs)
    steps = np.arange(len(actions))
    dprobs[steps, actions] = -returns / probs[steps, actions]
    return dprobs


def _torch_policy(torch):
    nn, F = torch.nn, torch.nn.functional

    class Policy(nn.Module):
        def __init__(self):
            super(Policy, self).__init__()
            self.affine1 = nn.Linear(4, 128)
            self.dropout = nn.Dropout(p=0.0)
            self.affine2 = nn.Linear(128, 2)

        def forward(self, x):
            x = self.affine1(x)
            x = self.dropout(x)
            x = F.relu(x)
            action_scores = self.affine2(x)
            return F.softmax(action_scores, dim=1)

    return Policy()


def test_reinforce_episode_updates_as_pytorchs():
    """Three episodes of main() and finish_episode() (Adam, lr 1e-2): the weights after each update equal torch's,
    which takes xpnet's sampled actions, in float64. Dropout is 0 here so that both draw the same (none)."""
    torch = _torch()
    from torch.distributions import Categorical
    torch.manual_seed(543)
    theirs = _torch_policy(torch).double()
    toptimizer = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    policy = _Policy(p=0.0).to(dtype="float64")
    xn.load_torch_state_dict(policy, theirs.state_dict())
    episode = _Episode(policy)
    optimizer = xn.optim.Adam(policy.parameters(), lr=1e-2)
    rng, env = np.random.default_rng(0), _Env()
    for _ in range(3):
        probs = episode(env, rng)
        returns = _returns(episode.rewards)
        optimizer.zero_grad()
        episode.backward(_policy_loss_grad(probs, episode.actions, returns))
        optimizer.step()

        state, _ = env.reset()
        saved_log_probs = []
        for action in episode.actions:
            m = Categorical(theirs(torch.from_numpy(state).unsqueeze(0)))
            saved_log_probs.append(m.log_prob(torch.tensor([action])))
            state, *_ = env.step(action)
        policy_loss = [-log_prob * R for log_prob, R in zip(saved_log_probs, torch.from_numpy(returns))]
        toptimizer.zero_grad()
        torch.cat(policy_loss).sum().backward()
        toptimizer.step()
        ours = policy.named_params()
        for name, p in theirs.named_parameters():
            layer, kind = name.split(".")
            mine = ours[f"{layer}.W"].T if kind == "weight" else ours[f"{layer}.b"]
            np.testing.assert_allclose(mine, p.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_reinforce_per_step_calls_then_one_backward_say_what_to_write():
    """select_action()'s policy(state) at each step, then the episode's gradients given to the policy's backward
    as PyTorch's one backward of torch.cat(policy_loss).sum() would take them: stacked, refused saying not to sum
    them (the broadcast hint alone would say to) and what to write; one backward per step, refused at the second."""
    policy, rng = _Policy(), np.random.default_rng(0)
    probs = [policy(rng.standard_normal((1, 4)).astype(np.float32)) for _ in range(3)]
    dys = [_policy_loss_grad(p, [1], np.ones(1)) for p in probs]
    with pytest.raises(ValueError, match=r"(?s)do not sum them.*at each step inside one forward of a model.*REINFORCE"):
        policy.backward(np.concatenate(dys))
    policy.backward(dys[-1])
    with pytest.raises(RuntimeError, match="ran 3 training forwards"):
        policy.backward(dys[-2])


# --- regression ---------------------------------------------------------------------------------------------------

POLY_DEGREE = 4


def _make_features(x):
    """Builds features i.e. a matrix with columns [x, x^2, x^3, x^4]."""
    x = x[:, None]                                                  # x.unsqueeze(1)
    return np.concatenate([x ** i for i in range(1, POLY_DEGREE + 1)], 1)


def _poly_desc(W, b):
    """Creates a string description of a polynomial."""
    result = 'y = '
    for i, w in enumerate(W):
        result += '{:+.2f} x^{} '.format(w, i + 1)
    result += '{:+.2f}'.format(b[0])
    return result


def test_regression_main_steps_as_pytorchs():
    """regression/main.py's loop (fc.zero_grad(), F.smooth_l1_loss, the manual update param.data.add_(-0.1 *
    param.grad)) on a lone Linear(4, 1), eight batches: losses, weights and poly_desc equal torch's in float64.
    param.grad is fc.named_grads()[name]; fc.weight.view(-1) is fc.weight.reshape(-1) (NumPy's view takes a
    dtype)."""
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    W_target, b_target = rng.standard_normal((POLY_DEGREE, 1)) * 5, rng.standard_normal(1) * 5
    torch.manual_seed(0)
    theirs = torch.nn.Linear(POLY_DEGREE, 1).double()
    fc = L.Linear(W_target.shape[0], 1, dtype="float64")
    fc.weight[...] = theirs.weight.detach().numpy()                 # a view of W: the write lands there
    fc.bias[...] = theirs.bias.detach().numpy()
    criterion = xn.losses.SmoothL1Loss()
    for _ in range(8):
        batch_x = _make_features(rng.standard_normal(32))
        batch_y = batch_x @ W_target + b_target.item()
        fc.zero_grad()
        output = criterion(fc(batch_x), batch_y)
        loss = output.item()
        fc.backward(criterion.backward())                           # output.backward()
        grads = fc.named_grads()
        for name, param in fc.named_params().items():
            param -= 0.1 * grads[name]                              # param.data.add_(-0.1 * param.grad)

        theirs.zero_grad()
        toutput = F.smooth_l1_loss(theirs(torch.from_numpy(batch_x)), torch.from_numpy(batch_y))
        tloss = toutput.item()
        toutput.backward()
        for param in theirs.parameters():
            param.data.add_(-0.1 * param.grad)
        assert abs(loss - tloss) <= 1e-10 * max(1.0, abs(tloss))
    np.testing.assert_allclose(fc.weight, theirs.weight.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fc.bias, theirs.bias.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert _poly_desc(fc.weight.reshape(-1), fc.bias) == _poly_desc(theirs.weight.view(-1), theirs.bias)


# --- mnist_rnn ----------------------------------------------------------------------------------------------------

class _MnistRNN(xn.Model):
    """mnist_rnn/main.py's Net: the LSTM built with return_state=True for its out, hidden = self.rnn(input),
    Dropout for its Dropout2d on (N, 64) (PyTorch drops value by value there), backward written out.
    input (N, 1, 28, 28) -> log-probabilities (N, 10); caches the LSTM output's shape."""

    def __init__(self, p1=0.25, p2=0.5):
        super().__init__()
        self.rnn = L.LSTM(input_size=28, hidden_size=64, batch_first=True, return_state=True)
        self.batchnorm = L.BatchNorm(64)
        self.dropout1 = L.Dropout(p1)
        self.dropout2 = L.Dropout(p2)
        self.fc1 = L.Linear(64, 32)
        self.fc2 = L.Linear(32, 10)
        self.relu = L.ReLU()
        self.log_softmax = L.LogSoftmax(dim=1)

    def forward(self, input, train=True):
        input = input.reshape(-1, 28, 28)
        output, hidden = self.rnn(input)
        self.rnn_shape = output.shape
        output = self.dropout1(self.batchnorm(output[:, -1, :]))
        output = self.dropout2(self.relu(self.fc1(output)))
        return self.log_softmax(self.fc2(output))

    def backward(self, dy):
        dy = self.fc2.backward(self.log_softmax.backward(dy))
        dy = self.fc1.backward(self.relu.backward(self.dropout2.backward(dy)))
        dout = np.zeros(self.rnn_shape, dtype=dy.dtype)
        dout[:, -1, :] = self.batchnorm.backward(self.dropout1.backward(dy))
        return self.rnn.backward(dout)


def _torch_mnist_rnn(torch):
    """mnist_rnn/main.py's Net as it is there."""
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super(Net, self).__init__()
            self.rnn = nn.LSTM(input_size=28, hidden_size=64, batch_first=True)
            self.batchnorm = nn.BatchNorm1d(64)
            self.dropout1 = nn.Dropout2d(0.25)
            self.dropout2 = nn.Dropout2d(0.5)
            self.fc1 = nn.Linear(64, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, input):
            input = input.reshape(-1, 28, 28)
            output, hidden = self.rnn(input)
            output = output[:, -1, :]
            output = self.batchnorm(output)
            output = self.dropout1(output)
            output = self.fc1(output)
            output = F.relu(output)
            output = self.dropout2(output)
            output = self.fc2(output)
            output = F.log_softmax(output, dim=1)
            return output

    return Net()


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 2-D input")
def test_mnist_rnn_trains_and_evaluates_as_pytorchs():
    """train() (Adadelta, lr 0.1, nll_loss) for three batches of 4 random 28x28 images, then test()'s forward in
    eval mode: losses, weights and the evaluation output equal torch's in float64. Dropout p is 0 in both so that
    they draw the same (none); torch's bias_hh is folded into bias_ih and frozen (xpnet's LSTM has one bias)."""
    torch = _torch()
    torch.manual_seed(1)
    theirs = _torch_mnist_rnn(torch).double()
    theirs.dropout1.p = theirs.dropout2.p = 0.0
    with torch.no_grad():
        theirs.rnn.bias_ih_l0.add_(theirs.rnn.bias_hh_l0)
        theirs.rnn.bias_hh_l0.zero_().requires_grad_(False)
    model = _MnistRNN(0.0, 0.0).to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    optimizer = xn.optim.Adadelta(model.parameters(), lr=0.1)
    toptimizer = torch.optim.Adadelta([p for p in theirs.parameters() if p.requires_grad], lr=0.1)
    criterion, rng = xn.losses.NLLLoss(), np.random.default_rng(0)
    for _ in range(3):
        data, target = rng.standard_normal((4, 1, 28, 28)), rng.integers(0, 10, 4)
        optimizer.zero_grad()
        loss = criterion(model(data), target)
        model.backward(criterion.backward())
        optimizer.step()
        toptimizer.zero_grad()
        tloss = torch.nn.functional.nll_loss(theirs(torch.from_numpy(data)), torch.from_numpy(target))
        tloss.backward()
        toptimizer.step()
        assert abs(loss.item() - tloss.item()) <= 1e-10
    np.testing.assert_allclose(model.fc1.weight, theirs.fc1.weight.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.rnn.named_params()["Wx"].T[:, :5], theirs.rnn.weight_ih_l0.detach()[:, :5],
                               rtol=1e-10, atol=1e-12)
    model.eval()
    theirs.eval()
    data = rng.standard_normal((3, 1, 28, 28))
    with xn.no_grad(), torch.no_grad():
        np.testing.assert_allclose(model(data), theirs(torch.from_numpy(data)).numpy(), rtol=1e-10, atol=1e-12)


def test_mnist_rnn_lstm_unpacked_without_return_state_is_refused_for_a_batch_of_2():
    """out, hidden = self.rnn(input) over an LSTM built without return_state: with a batch of 2 it unpacked the
    batch axis (out the first sample's (28, 64), then output[:, -1, :] an IndexError); refused before the forward,
    for any batch, saying what to write."""

    class Net(_MnistRNN):
        def __init__(self):
            super().__init__()
            self.rnn = L.LSTM(input_size=28, hidden_size=64, batch_first=True)

        def forward(self, input, train=True):
            output, hidden = self.rnn(input.reshape(-1, 28, 28))
            return self.log_softmax(self.fc2(self.relu(self.fc1(self.batchnorm(output[:, -1, :])))))

    for n in (2, 3):
        with pytest.raises(ValueError, match=r"Net.forward unpacks the output of self.rnn\(...\), PyTorch's out, "
                                             r"\(h_n, c_n\) = self.rnn\(x, \(h0, c0\)\), .* write out = self.rnn\(x\), "
                                             r"or build it as xn.layers.LSTM\(..., return_state=True\)"):
            Net()(np.zeros((n, 1, 28, 28), np.float32))
