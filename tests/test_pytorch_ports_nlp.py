"""PyTorch's "NLP from scratch" tutorials (pytorch/tutorials, intermediate_source/): char_rnn_generation_tutorial.py
and seq2seq_translation_tutorial.py, ported as a PyTorch user writes them, each against the tutorial's own classes
run by torch in float64 (the same initial weights); and what tripped on the way. No downloads: tiny synthetic names
and sentence pairs of the tutorials' shapes and kinds stand in for data/names/*.txt and eng-fra.txt."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as L

N_CATEGORIES, N_LETTERS, HIDDEN = 3, 8, 5  # the tutorial's n_categories and n_letters (EOS the last letter)


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


# ---- char_rnn_generation_tutorial.py ----

class _RNN(xn.Model):
    """The tutorial's RNN as written there (one step: category, letter, hidden -> log-probabilities, hidden), with
    its backward written out: the gradients of the step's two outputs in, those of its three inputs out."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = L.Linear(N_CATEGORIES + input_size + hidden_size, hidden_size)
        self.i2o = L.Linear(N_CATEGORIES + input_size + hidden_size, output_size)
        self.o2o = L.Linear(hidden_size + output_size, output_size)
        self.dropout = L.Dropout(0.1)
        self.softmax = L.LogSoftmax(dim=1)

    def forward(self, category, input, hidden, train=True):
        input_combined = np.concatenate((category, input, hidden), 1)
        hidden = self.i2h(input_combined)
        output = self.i2o(input_combined)
        output_combined = np.concatenate((hidden, output), 1)
        output = self.o2o(output_combined)
        output = self.dropout(output)
        output = self.softmax(output)
        return output, hidden

    def backward(self, doutput, dhidden):
        d = self.o2o.backward(self.dropout.backward(self.softmax.backward(doutput)))
        dcombined = self.i2h.backward(dhidden + d[:, :self.hidden_size]) + self.i2o.backward(d[:, self.hidden_size:])
        return dcombined[:, :N_CATEGORIES], dcombined[:, N_CATEGORIES:-self.hidden_size], \
            dcombined[:, -self.hidden_size:]

    def initHidden(self):
        return np.zeros((1, self.hidden_size))


class _Generator(xn.Model):
    """The tutorial's per-letter loop, inside one forward: each rnn call is kept, and backward takes them back."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, category, line, train=True):
        hidden, outputs = self.rnn.initHidden(), []
        for i in range(line.shape[0]):
            output, hidden = self.rnn(category, line[i], hidden)
            outputs.append(output)
        self.hidden = hidden
        return outputs

    def backward(self, doutputs):
        dhidden = np.zeros_like(self.hidden)
        for doutput in reversed(doutputs):
            _, _, dhidden = self.rnn.backward(doutput, dhidden)


def _torch_rnn(torch):
    """The tutorial's class, from its source."""
    nn = torch.nn

    class RNN(nn.Module):
        def __init__(self, input_size, hidden_size, output_size):
            super(RNN, self).__init__()
            self.hidden_size = hidden_size
            self.i2h = nn.Linear(N_CATEGORIES + input_size + hidden_size, hidden_size)
            self.i2o = nn.Linear(N_CATEGORIES + input_size + hidden_size, output_size)
            self.o2o = nn.Linear(hidden_size + output_size, output_size)
            self.dropout = nn.Dropout(0.1)
            self.softmax = nn.LogSoftmax(dim=1)

        def forward(self, category, input, hidden):
            input_combined = torch.cat((category, input, hidden), 1)
            hidden = self.i2h(input_combined)
            output = self.i2o(input_combined)
            output_combined = torch.cat((hidden, output), 1)
            output = self.o2o(output_combined)
            output = self.dropout(output)
            output = self.softmax(output)
            return output, hidden

        def initHidden(self):
            return torch.zeros(1, self.hidden_size)

    return RNN(N_LETTERS, HIDDEN, N_LETTERS)


def _example(rng, length):
    """categoryTensor, inputTensor, targetTensor of a random name (letters 0..6, EOS 7)."""
    line = rng.integers(0, N_LETTERS - 1, length)
    return np.eye(N_CATEGORIES)[rng.integers(0, N_CATEGORIES, 1)], np.eye(N_LETTERS)[line][:, None, :], \
        np.append(line[1:], N_LETTERS - 1)


def test_char_rnn_generation_trains_and_samples_as_pytorchs():
    """The tutorial's RNN class as it is, its letter loop in a model's forward, the summed per-letter NLLLoss as
    one gradient per step and the update p.data.add_(p.grad.data, alpha=-lr): weights equal PyTorch's after names
    of several lengths; sampling (greedy, in evaluation mode) picks PyTorch's letters. Dropout is 0 on both
    sides in training (their masks come from different generators)."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_rnn(torch).double()
    rnn = _RNN(N_LETTERS, HIDDEN, N_LETTERS).to(dtype="float64")
    xn.load_torch_state_dict(rnn, theirs.state_dict())
    model, criterion, rng, lr = _Generator(rnn), xn.losses.NLLLoss(), np.random.default_rng(0), 0.05
    theirs.dropout.p = rnn.dropout.p = 0.0
    for length in (4, 1, 6):
        category, line, target = _example(rng, length)
        model.zero_grad()
        loss, dys = 0, []
        for i, output in enumerate(model(category, line)):
            loss += criterion(output, target[i:i + 1])
            dys.append(criterion.backward())
        model.backward(dys)
        grads = model.named_grads()
        for name, p in model.named_params().items():
            p -= lr * grads[name]
        theirs.zero_grad()
        hidden, their_loss, t = theirs.initHidden().double(), 0, torch.from_numpy(target).unsqueeze_(-1)
        for i in range(length):
            output, hidden = theirs(torch.from_numpy(category), torch.from_numpy(line[i]), hidden)
            their_loss += torch.nn.NLLLoss()(output, t[i])
        their_loss.backward()
        for p in theirs.parameters():
            p.data.add_(p.grad.data, alpha=-lr)
        assert float(loss) == pytest.approx(their_loss.item(), rel=1e-12)
    for name, value in xn.torch_state_dict(rnn).items():
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    rnn.eval()
    theirs.eval()
    category = np.eye(N_CATEGORIES)[[1]]
    for start in range(3):
        with xn.no_grad(), torch.no_grad():
            ours, theirs_ = [start], [start]
            hidden, their_hidden = rnn.initHidden(), theirs.initHidden().double()
            for _ in range(5):
                output, hidden = rnn(category, np.eye(N_LETTERS)[ours[-1:]], hidden)
                ours.append(int(np.argmax(output, axis=1)[0]))         # output.topk(1)
                output, their_hidden = theirs(torch.from_numpy(category), torch.eye(N_LETTERS).double()[theirs_[-1:]],
                                              their_hidden)
                theirs_.append(output.topk(1)[1][0][0].item())
        assert ours == theirs_


def test_the_rnn_called_once_per_letter_with_one_backward_per_letter_is_refused():
    """The tutorial's loop as it is, the model called at each letter: a backward per letter after the loop would
    take the last letter's caches every time. The first is refused, as the loop's calls feed each other (the hidden
    state); with a state not fed back, the second, each saying what to write."""
    rnn, criterion = _RNN(N_LETTERS, HIDDEN, N_LETTERS).to(dtype="float64"), xn.losses.NLLLoss()
    category, line, target = _example(np.random.default_rng(1), 3)
    hidden, dys = rnn.initHidden(), []
    rnn.zero_grad()
    for i in range(3):
        output, hidden = rnn(category, line[i], hidden)
        criterion(output, target[i:i + 1])
        dys.append(criterion.backward())
    with pytest.raises(RuntimeError, match=r"_RNN.backward after a loop of `output, hidden = rnn\(category, line\[i\], "
                                           r"hidden\)`.*forward of a model of your own"):
        rnn.backward(dys[-1], np.zeros_like(hidden))
    hidden0, dys = rnn.initHidden(), []
    for i in range(3):
        output, hidden = rnn(category, line[i], hidden0)
        criterion(output, target[i:i + 1])
        dys.append(criterion.backward())
    _, _, dhidden = rnn.backward(dys[-1], np.zeros_like(hidden))
    with pytest.raises(RuntimeError, match="ran 3 training forwards.*within one forward of a model of your own"):
        rnn.backward(dys[-2], dhidden)


def test_one_backward_of_a_loss_whose_calls_were_summed_is_refused():
    """loss += criterion(output, target[i]) at each step, then one backward: criterion.backward() would give the
    last step's gradient alone (every step before silently none), so it is refused, as is loss.backward(), each
    saying what to write. Sums of values whose backward was taken stay allowed (a running total, DCGAN's errD)."""
    criterion, rng = xn.losses.NLLLoss(), np.random.default_rng(0)
    y, t = np.log(rng.dirichlet(np.ones(4), 2)), np.array([1, 3])
    loss = 0
    for _ in range(3):
        loss += criterion(y, t)
    with pytest.raises(RuntimeError, match=r"last 3 calls were summed.*dys.append\(criterion.backward\(\)\)"):
        criterion.backward()
    with pytest.raises(AttributeError, match="NLLLoss keeps its last call only"):
        loss.backward()
    criterion(y, t)
    assert criterion.backward().shape == y.shape                       # a new call: its own backward
    total = 0
    for _ in range(3):
        value = criterion(y, t)
        criterion.backward()
        total += value                                                  # logging, after each backward
    err_real = criterion(y, t)
    criterion.backward()
    err_fake = criterion(y, t)
    err_d = err_real + err_fake                                         # DCGAN's errD before the fake's backward
    criterion.backward()
    assert float(err_d) == pytest.approx(2 * float(err_real))


def test_a_scalar_target_says_to_keep_the_batch_axis():
    """criterion(output, target_line_tensor[i]) on a 1-d NumPy target gives a NumPy scalar: it said 'predictions are
    on cpu but targets are on cpu'; now it says what came and what to write (the tutorial's unsqueeze_(-1))."""
    with pytest.raises(TypeError, match=r"NLLLoss: targets must be an array, got the int64 scalar.*t\[i:i \+ 1\]"):
        xn.losses.NLLLoss()(np.zeros((1, 4)), np.arange(3)[1])


# ---- seq2seq_translation_tutorial.py ----

SOS_token, EOS_token, MAX_LENGTH = 0, 1, 5


class _EncoderRNN(xn.Model):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = L.Embedding(input_size, hidden_size)
        self.gru = L.GRU(hidden_size, hidden_size, batch_first=True, return_state=True)
        self.dropout = L.Dropout(dropout_p)

    def forward(self, input, train=True):
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden

    def backward(self, doutput, dhidden):
        self.embedding.backward(self.dropout.backward(self.gru.backward(doutput, dhidden)))


class _BahdanauAttention(xn.Model):
    def __init__(self, hidden_size):
        super().__init__()
        self.Wa = L.Linear(hidden_size, hidden_size)
        self.Ua = L.Linear(hidden_size, hidden_size)
        self.Va = L.Linear(hidden_size, 1)
        self.tanh, self.softmax = L.Tanh(), L.Softmax(dim=-1)

    def forward(self, query, keys, train=True):
        scores = self.Va(self.tanh(self.Wa(query) + self.Ua(keys)))     # (N, S, 1)
        scores = np.transpose(scores, (0, 2, 1))                        # squeeze(2).unsqueeze(1): (N, 1, S)
        weights = self.softmax(scores)
        self.weights, self.keys = weights, keys
        context = weights @ keys                                        # torch.bmm
        return context, weights

    def backward(self, dcontext):
        dweights = dcontext @ np.transpose(self.keys, (0, 2, 1))
        dkeys = np.transpose(self.weights, (0, 2, 1)) @ dcontext
        da = self.tanh.backward(self.Va.backward(np.transpose(self.softmax.backward(dweights), (0, 2, 1))))
        dquery = self.Wa.backward(da.sum(axis=1, keepdims=True))      # Wa(query) was broadcast over the keys
        return dquery, dkeys + self.Ua.backward(da)


class _AttnDecoderRNN(xn.Model):
    def __init__(self, hidden_size, output_size, dropout_p=0.1):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = L.Embedding(output_size, hidden_size)
        self.attention = _BahdanauAttention(hidden_size)
        self.gru = L.GRU(2 * hidden_size, hidden_size, batch_first=True, return_state=True)
        self.out = L.Linear(hidden_size, output_size)
        self.dropout = L.Dropout(dropout_p)
        self.log_softmax = L.LogSoftmax(dim=-1)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None, train=True):
        decoder_input = np.full((encoder_outputs.shape[0], 1), SOS_token)
        decoder_hidden, decoder_outputs, attentions = encoder_hidden, [], []
        for i in range(MAX_LENGTH):
            decoder_output, decoder_hidden, attn_weights = self.forward_step(
                decoder_input, decoder_hidden, encoder_outputs)
            decoder_outputs.append(decoder_output)
            attentions.append(attn_weights)
            if target_tensor is not None:
                decoder_input = target_tensor[:, i:i + 1]                  # teacher forcing
            else:
                decoder_input = np.argmax(decoder_output, axis=-1)       # topk(1), then .detach(): nothing to do
        decoder_outputs = self.log_softmax(np.concatenate(decoder_outputs, axis=1))
        return decoder_outputs, decoder_hidden, np.concatenate(attentions, axis=1)

    def forward_step(self, input, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(input))
        query = np.transpose(hidden, (1, 0, 2))                          # hidden.permute(1, 0, 2)
        context, attn_weights = self.attention(query, encoder_outputs)
        output, hidden = self.gru(np.concatenate((embedded, context), axis=2), hidden)
        return self.out(output), hidden, attn_weights

    def backward(self, doutputs):
        """The steps from the last to the first; returns the gradients of encoder_outputs and encoder_hidden."""
        dlogits, h = self.log_softmax.backward(doutputs), self.hidden_size
        dhidden, dkeys = np.zeros((1, dlogits.shape[0], h)), 0
        for i in reversed(range(dlogits.shape[1])):
            dinput_gru = self.gru.backward(self.out.backward(dlogits[:, i:i + 1]), dhidden)
            dquery, dk = self.attention.backward(dinput_gru[:, :, h:])
            dhidden, dkeys = self.gru.dh + np.transpose(dquery, (1, 0, 2)), dkeys + dk
            self.embedding.backward(self.dropout.backward(dinput_gru[:, :, :h]))
        return dkeys, dhidden


def _torch_seq2seq(torch, input_size, hidden_size, output_size):
    """The tutorial's EncoderRNN, BahdanauAttention and AttnDecoderRNN, from its source (dropout_p 0)."""
    nn, F, device = torch.nn, torch.nn.functional, "cpu"

    class EncoderRNN(nn.Module):
        def __init__(self, input_size, hidden_size, dropout_p=0.1):
            super(EncoderRNN, self).__init__()
            self.hidden_size = hidden_size
            self.embedding = nn.Embedding(input_size, hidden_size)
            self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
            self.dropout = nn.Dropout(dropout_p)

        def forward(self, input):
            embedded = self.dropout(self.embedding(input))
            output, hidden = self.gru(embedded)
            return output, hidden

    class BahdanauAttention(nn.Module):
        def __init__(self, hidden_size):
            super(BahdanauAttention, self).__init__()
            self.Wa = nn.Linear(hidden_size, hidden_size)
            self.Ua = nn.Linear(hidden_size, hidden_size)
            self.Va = nn.Linear(hidden_size, 1)

        def forward(self, query, keys):
            scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
            scores = scores.squeeze(2).unsqueeze(1)
            weights = F.softmax(scores, dim=-1)
            context = torch.bmm(weights, keys)
            return context, weights

    class AttnDecoderRNN(nn.Module):
        def __init__(self, hidden_size, output_size, dropout_p=0.1):
            super(AttnDecoderRNN, self).__init__()
            self.embedding = nn.Embedding(output_size, hidden_size)
            self.attention = BahdanauAttention(hidden_size)
            self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
            self.out = nn.Linear(hidden_size, output_size)
            self.dropout = nn.Dropout(dropout_p)

        def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
            batch_size = encoder_outputs.size(0)
            decoder_input = torch.empty(batch_size, 1, dtype=torch.long, device=device).fill_(SOS_token)
            decoder_hidden = encoder_hidden
            decoder_outputs = []
            attentions = []
            for i in range(MAX_LENGTH):
                decoder_output, decoder_hidden, attn_weights = self.forward_step(
                    decoder_input, decoder_hidden, encoder_outputs
                )
                decoder_outputs.append(decoder_output)
                attentions.append(attn_weights)
                if target_tensor is not None:
                    decoder_input = target_tensor[:, i].unsqueeze(1)
                else:
                    _, topi = decoder_output.topk(1)
                    decoder_input = topi.squeeze(-1).detach()
            decoder_outputs = torch.cat(decoder_outputs, dim=1)
            decoder_outputs = F.log_softmax(decoder_outputs, dim=-1)
            attentions = torch.cat(attentions, dim=1)
            return decoder_outputs, decoder_hidden, attentions

        def forward_step(self, input, hidden, encoder_outputs):
            embedded = self.dropout(self.embedding(input))
            query = hidden.permute(1, 0, 2)
            context, attn_weights = self.attention(query, encoder_outputs)
            input_gru = torch.cat((embedded, context), dim=2)
            output, hidden = self.gru(input_gru, hidden)
            output = self.out(output)
            return output, hidden, attn_weights

    return EncoderRNN(input_size, hidden_size, 0.0).double(), AttnDecoderRNN(hidden_size, output_size, 0.0).double()


def test_seq2seq_translation_with_bahdanau_attention_trains_and_evaluates_as_pytorchs():
    """train_epoch's batches (teacher forcing), its two Adam optimizers each zero_grad/step, the NLLLoss on
    view(-1, V): losses and weights equal PyTorch's over three steps; evaluate (eval mode, greedy topk(1))
    decodes PyTorch's words with its attention weights. Dropout 0 on both sides (different generators)."""
    torch = _torch()
    v_in, v_out, h, n = 7, 6, 4, 3
    torch.manual_seed(0)
    their_encoder, their_decoder = _torch_seq2seq(torch, v_in, h, v_out)
    encoder = _EncoderRNN(v_in, h, dropout_p=0.0).to(dtype="float64")
    decoder = _AttnDecoderRNN(h, v_out, dropout_p=0.0).to(dtype="float64")
    xn.load_torch_state_dict(encoder, their_encoder.state_dict())
    xn.load_torch_state_dict(decoder, their_decoder.state_dict())
    encoder_optimizer = xn.optim.Adam(encoder.parameters(), lr=0.01)
    decoder_optimizer = xn.optim.Adam(decoder.parameters(), lr=0.01)
    their_optimizers = [torch.optim.Adam(m.parameters(), lr=0.01) for m in (their_encoder, their_decoder)]
    criterion, rng = xn.losses.NLLLoss(), np.random.default_rng(0)
    for _ in range(3):
        input_tensor, target_tensor = rng.integers(2, v_in, (n, MAX_LENGTH)), rng.integers(1, v_out, (n, MAX_LENGTH))
        encoder_optimizer.zero_grad()
        decoder_optimizer.zero_grad()
        encoder_outputs, encoder_hidden = encoder(input_tensor)
        decoder_outputs, _, _ = decoder(encoder_outputs, encoder_hidden, target_tensor)
        loss = criterion(decoder_outputs.reshape(-1, v_out), target_tensor.reshape(-1))
        encoder.backward(*decoder.backward(criterion.backward().reshape(decoder_outputs.shape)))
        encoder_optimizer.step()
        decoder_optimizer.step()
        for opt in their_optimizers:
            opt.zero_grad()
        x, t = torch.from_numpy(input_tensor), torch.from_numpy(target_tensor)
        outputs, _, _ = their_decoder(*their_encoder(x), t)
        their_loss = torch.nn.NLLLoss()(outputs.view(-1, outputs.size(-1)), t.view(-1))
        their_loss.backward()
        for opt in their_optimizers:
            opt.step()
        assert float(loss) == pytest.approx(their_loss.item(), rel=1e-12)
    for ours, theirs in ((encoder, their_encoder), (decoder, their_decoder)):
        for name, value in xn.torch_state_dict(ours).items():
            np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-10, atol=1e-10, err_msg=name)
    for m in (encoder, decoder, their_encoder, their_decoder):
        m.eval()
    sentence = rng.integers(2, v_in, (1, MAX_LENGTH))
    with xn.no_grad(), torch.no_grad():
        decoder_outputs, _, attentions = decoder(*encoder(sentence))
        their_outputs, _, their_attentions = their_decoder(*their_encoder(torch.from_numpy(sentence)))
    np.testing.assert_array_equal(np.argmax(decoder_outputs, axis=-1)[0], their_outputs.topk(1)[1].squeeze().numpy())
    np.testing.assert_allclose(attentions, their_attentions.numpy(), rtol=1e-10, atol=1e-14)


def test_the_gradient_of_a_broadcast_output_says_to_sum_it():
    """BahdanauAttention's Wa(query) + Ua(keys) broadcasts (N, 1, H) over the keys: a backward giving Wa the
    (N, S, H) gradient is refused, as before, and now says what PyTorch's autograd does there and what to pass."""
    wa = L.Linear(4, 4, dtype="float64")
    wa(np.ones((3, 1, 4)))
    with pytest.raises(ValueError, match=r"broadcast to \(3, 5, 4\).*dy.sum\(axis=1, keepdims=True\)"):
        wa.backward(np.ones((3, 5, 4)))


def test_the_gradient_of_a_reshaped_output_says_to_reshape_it_back():
    """The seq2seq tutorial's criterion(decoder_outputs.view(-1, V), target.view(-1)): the loss's gradient comes in
    the (N*T, V) shape it was given; a backward given it as it is is refused, and now says to reshape it back."""
    log_softmax = L.LogSoftmax(dim=-1)
    log_softmax(np.zeros((3, 5, 6)))
    with pytest.raises(ValueError, match=r"reshaped to \(15, 6\).*xp.reshape\(dy, \(3, 5, 6\)\)"):
        log_softmax.backward(np.ones((15, 6)))



def test_the_steps_backward_written_out_in_the_loop_after_calling_the_rnn_per_letter_is_refused():
    """The tutorial's loop as it is, then the step's layers' backward calls written in the training loop (not a
    backward method of the model): each layer kept only the last letter's caches and gave the last letter's
    gradient at every step, silently; the second backward of a layer is now refused, saying what to write."""
    rnn, criterion = _RNN(N_LETTERS, HIDDEN, N_LETTERS).to(dtype="float64"), xn.losses.NLLLoss()
    category, line, target = _example(np.random.default_rng(2), 3)
    hidden, dys = rnn.initHidden(), []
    for i in range(3):
        output, hidden = rnn(category, line[i], hidden)
        criterion(output, target[i:i + 1])
        dys.append(criterion.backward())
    dhidden = np.zeros_like(hidden)
    with pytest.raises(RuntimeError, match="LogSoftmax.backward: the layer ran 3 training forwards"):
        for doutput in reversed(dys):
            d = rnn.o2o.backward(rnn.dropout.backward(rnn.softmax.backward(doutput)))
            dcombined = rnn.i2h.backward(dhidden + d[:, :HIDDEN]) + rnn.i2o.backward(d[:, HIDDEN:])
            dhidden = dcombined[:, -HIDDEN:]


def test_sampling_in_training_mode_between_steps_leaves_the_next_step_as_it_is():
    """The tutorial samples without rnn.eval() (its dropout on): RNN calls in training mode with no backward between
    two training steps. The next step's backward was refused (the sampling calls counted as forwards it would
    replay); it now gives the gradients of a step without them."""
    category, line, target = _example(np.random.default_rng(3), 4)
    grads = []
    for sample_first in (False, True):
        xn.manual_seed(0)
        rnn = _RNN(N_LETTERS, HIDDEN, N_LETTERS).to(dtype="float64")
        rnn.dropout.p = 0.0
        model, criterion = _Generator(rnn), xn.losses.NLLLoss()
        if sample_first:
            hidden = rnn.initHidden()
            for i in range(3):
                _, hidden = rnn(category, line[i], hidden)
        model.zero_grad()
        dys = []
        for i, output in enumerate(model(category, line)):
            criterion(output, target[i:i + 1])
            dys.append(criterion.backward())
        model.backward(dys)
        grads.append(model.named_grads())
    for name, value in grads[0].items():
        np.testing.assert_array_equal(grads[1][name], value, err_msg=name)
