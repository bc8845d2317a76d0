"""pytorch/tutorials' beginner_source/chatbot_tutorial.py ported as a PyTorch user writes it: EncoderRNN (an Embedding
shared with the decoder, a bidirectional time-first GRU over pack_padded_sequence, its two directions summed),
LuongAttnDecoderRNN with Attn('dot' / 'general' / 'concat'), maskNLLLoss, teacher forcing, two Adam optimizers,
clip_grad_norm_ on each model, the GreedySearchDecoder; run against the tutorial's own classes in torch, float64, the
same initial weights and batches (a tiny vocabulary of the tutorial's shapes stands in for the movie corpus)."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn

PAD_token, SOS_token, EOS_token = 0, 1, 2
VOCAB, HIDDEN, N_LAYERS, CLIP = 9, 4, 2, 0.05  # a clip small enough to act


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _batch(pairs):
    """batch2TrainData's arrays: inputs (T, N) zero-padded after EOS, longest first; lengths; targets (T, N), their
    mask and length."""
    pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)
    inputs, outputs = [p[0] + [EOS_token] for p in pairs], [p[1] + [EOS_token] for p in pairs]

    def padded(rows):
        width = max(map(len, rows))
        return np.array([r + [PAD_token] * (width - len(r)) for r in rows]).T

    target = padded(outputs)
    return padded(inputs), [len(r) for r in inputs], target, target != PAD_token, target.shape[0]


BATCHES = [_batch([([3, 4, 5], [6, 7]), ([8, 3], [4, 5, 6, 7]), ([5], [3])]),
           _batch([([6, 6, 7, 8], [3]), ([4, 5, 3], [8, 8, 6]), ([7, 3], [5, 4])])]


# ---- the port ----

class EncoderRNN(xn.Model):
    def __init__(self, hidden_size, embedding, n_layers=1, dropout=0):
        super().__init__()
        self.n_layers, self.hidden_size, self.embedding = n_layers, hidden_size, embedding
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=n_layers, dropout=(0 if n_layers == 1 else dropout),
                          bidirectional=True, return_state=True)

    def forward(self, input_seq, input_lengths, hidden=None, train=True):
        embedded = self.embedding(input_seq)
        packed = nn.pack_padded_sequence(embedded, input_lengths)
        outputs, hidden = self.gru(packed, hidden)
        outputs, _ = nn.pad_packed_sequence(outputs)
        outputs = outputs[:, :, :self.hidden_size] + outputs[:, :, self.hidden_size:]
        return outputs, hidden

    def backward(self, doutputs, dhidden):
        d = self.gru.backward(np.concatenate([doutputs, doutputs], axis=2), dhidden)  # the sum's two halves
        return self.embedding.backward(d)


class Attn(xn.Model):
    def __init__(self, method, hidden_size):
        super().__init__()
        self.method, self.hidden_size = method, hidden_size
        if self.method == 'general':
            self.attn = nn.Linear(self.hidden_size, hidden_size)
        elif self.method == 'concat':
            self.attn = nn.Linear(self.hidden_size * 2, hidden_size)
            self.params['v'] = np.empty(hidden_size)  # nn.Parameter(torch.FloatTensor(hidden_size))
            self.tanh = nn.Tanh()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, hidden, encoder_outputs, train=True):  # (1, N, H), (T, N, H) -> (N, 1, T)
        self.hidden, self.encoder_outputs = hidden, encoder_outputs
        if self.method == 'general':
            self.energy = self.attn(encoder_outputs)
            attn_energies = np.sum(hidden * self.energy, axis=2)
        elif self.method == 'concat':
            expanded = np.broadcast_to(hidden, encoder_outputs.shape)  # hidden.expand(T, -1, -1)
            self.energy = self.tanh(self.attn(np.concatenate((expanded, encoder_outputs), 2)))
            attn_energies = np.sum(self.params['v'] * self.energy, axis=2)
        else:
            attn_energies = np.sum(hidden * encoder_outputs, axis=2)
        return self.softmax(attn_energies.T)[:, None, :]

    def backward(self, dweights):  # -> (dhidden, dencoder_outputs)
        de = self.softmax.backward(dweights[:, 0, :]).T[:, :, None]  # (T, N, 1)
        if self.method == 'dot':
            return np.sum(de * self.encoder_outputs, axis=0, keepdims=True), de * self.hidden
        if self.method == 'general':
            return np.sum(de * self.energy, axis=0, keepdims=True), self.attn.backward(de * self.hidden)
        self.grads['v'] = np.sum(de * self.energy, axis=(0, 1))
        d = self.attn.backward(self.tanh.backward(de * self.params['v']))
        return np.sum(d[:, :, :self.hidden_size], axis=0, keepdims=True), d[:, :, self.hidden_size:]


class LuongAttnDecoderRNN(xn.Model):
    def __init__(self, attn_model, embedding, hidden_size, output_size, n_layers=1, dropout=0.1):
        super().__init__()
        self.hidden_size, self.n_layers = hidden_size, n_layers
        self.embedding = embedding
        self.embedding_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=n_layers, dropout=(0 if n_layers == 1 else dropout),
                          batch_first=False, return_state=True)
        self.concat = nn.Linear(hidden_size * 2, hidden_size)
        self.out = nn.Linear(hidden_size, output_size)
        self.attn = Attn(attn_model, hidden_size)
        self.tanh, self.softmax = nn.Tanh(), nn.Softmax(dim=1)

    def forward(self, input_step, last_hidden, encoder_outputs, train=True):
        embedded = self.embedding(input_step)
        embedded = self.embedding_dropout(embedded)
        rnn_output, hidden = self.gru(embedded, last_hidden)
        attn_weights = self.attn(rnn_output, encoder_outputs)
        self.attn_weights, self.encoder_outputs = attn_weights, encoder_outputs
        context = attn_weights @ encoder_outputs.transpose(1, 0, 2)  # .bmm(encoder_outputs.transpose(0, 1))
        concat_input = np.concatenate((rnn_output[0], context[:, 0]), 1)
        concat_output = self.tanh(self.concat(concat_input))
        output = self.out(concat_output)
        return self.softmax(output), hidden

    def backward(self, doutput, dhidden):  # -> (dlast_hidden, dencoder_outputs)
        d = self.concat.backward(self.tanh.backward(self.out.backward(self.softmax.backward(doutput))))
        dcontext = d[:, None, self.hidden_size:]  # (N, 1, H)
        dweights = dcontext @ self.encoder_outputs.transpose(1, 2, 0)
        denc = (self.attn_weights.transpose(0, 2, 1) @ dcontext).transpose(1, 0, 2)
        dquery, denc_attn = self.attn.backward(dweights)
        dembedded = self.gru.backward(d[None, :, :self.hidden_size] + dquery, dhidden)
        self.embedding.backward(self.embedding_dropout.backward(dembedded))
        return self.gru.dh, denc + denc_attn


class Seq2Seq(xn.Model):
    """train()'s forward: the encoder, then the decoder one step at a time, inside one forward so that each decoder
    call is kept; backward takes the steps back, last first."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, input_variable, lengths, target_variable, max_target_len, use_teacher_forcing, train=True):
        encoder_outputs, encoder_hidden = self.encoder(input_variable, lengths)
        self.hidden_shape = encoder_hidden.shape
        decoder_input = np.array([[SOS_token for _ in range(input_variable.shape[1])]])
        decoder_hidden = encoder_hidden[:self.decoder.n_layers]
        outputs = []
        for t in range(max_target_len):
            decoder_output, decoder_hidden = self.decoder(decoder_input, decoder_hidden, encoder_outputs)
            if use_teacher_forcing:
                decoder_input = target_variable[t].reshape(1, -1)
            else:
                decoder_input = np.argmax(decoder_output, axis=1)[None, :]  # decoder_output.topk(1)
            outputs.append(decoder_output)
        return np.stack(outputs)

    def backward(self, doutputs):
        dhidden, denc = np.zeros((self.decoder.n_layers, *self.hidden_shape[1:])), 0.0
        for t in reversed(range(doutputs.shape[0])):
            dhidden, d = self.decoder.backward(doutputs[t], dhidden)
            denc = denc + d
        dencoder_hidden = np.zeros(self.hidden_shape)
        dencoder_hidden[:self.decoder.n_layers] = dhidden
        return self.encoder.backward(denc, dencoder_hidden)


def maskNLLLoss(inp, target, mask):
    """The tutorial's loss, and its gradient for inp."""
    nTotal = mask.sum()
    picked = np.take_along_axis(inp, target.reshape(-1, 1), 1)[:, 0]
    loss = -np.log(picked)[mask].mean()
    dinp = np.zeros_like(inp)
    np.put_along_axis(dinp, target.reshape(-1, 1), (np.where(mask, -1.0 / picked, 0.0) / nTotal)[:, None], 1)
    return loss, nTotal.item(), dinp


def train(batch, model, encoder_optimizer, decoder_optimizer, use_teacher_forcing):
    input_variable, lengths, target_variable, mask, max_target_len = batch
    encoder_optimizer.zero_grad()
    decoder_optimizer.zero_grad()
    outputs = model(input_variable, lengths, target_variable, max_target_len, use_teacher_forcing)
    print_losses, n_totals, doutputs = [], 0, np.zeros_like(outputs)
    for t in range(max_target_len):
        mask_loss, nTotal, doutputs[t] = maskNLLLoss(outputs[t], target_variable[t], mask[t])
        print_losses.append(mask_loss.item() * nTotal)
        n_totals += nTotal
    model.backward(doutputs)  # loss.backward()
    xn.optim.clip_grad_norm(model.encoder.parameters(), CLIP)
    xn.optim.clip_grad_norm(model.decoder.parameters(), CLIP)
    encoder_optimizer.step()
    decoder_optimizer.step()
    return sum(print_losses) / n_totals


class GreedySearchDecoder(xn.Model):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, input_seq, input_length, max_length, train=False):
        encoder_outputs, encoder_hidden = self.encoder(input_seq, input_length)
        decoder_hidden = encoder_hidden[:self.decoder.n_layers]
        decoder_input = np.ones((1, 1), dtype=np.int64) * SOS_token
        all_tokens, all_scores = np.zeros([0], dtype=np.int64), np.zeros([0])
        for _ in range(max_length):
            decoder_output, decoder_hidden = self.decoder(decoder_input, decoder_hidden, encoder_outputs)
            decoder_scores, decoder_input = np.max(decoder_output, axis=1), np.argmax(decoder_output, axis=1)
            all_tokens = np.concatenate((all_tokens, decoder_input), axis=0)
            all_scores = np.concatenate((all_scores, decoder_scores), axis=0)
            decoder_input = decoder_input[None, :]
        return all_tokens, all_scores


# ---- the tutorial's classes, run by torch ----

def _torch_models(torch, attn_model):
    tnn, F = torch.nn, torch.nn.functional

    class TEncoderRNN(tnn.Module):
        def __init__(self, hidden_size, embedding, n_layers=1, dropout=0):
            super().__init__()
            self.n_layers, self.hidden_size, self.embedding = n_layers, hidden_size, embedding
            self.gru = tnn.GRU(hidden_size, hidden_size, n_layers, dropout=(0 if n_layers == 1 else dropout),
                               bidirectional=True)

        def forward(self, input_seq, input_lengths, hidden=None):
            packed = tnn.utils.rnn.pack_padded_sequence(self.embedding(input_seq), input_lengths)
            outputs, hidden = self.gru(packed, hidden)
            outputs, _ = tnn.utils.rnn.pad_packed_sequence(outputs)
            return outputs[:, :, :self.hidden_size] + outputs[:, :, self.hidden_size:], hidden

    class TAttn(tnn.Module):
        def __init__(self, method, hidden_size):
            super().__init__()
            self.method = method
            if method == 'general':
                self.attn = tnn.Linear(hidden_size, hidden_size)
            elif method == 'concat':
                self.attn = tnn.Linear(hidden_size * 2, hidden_size)
                self.v = tnn.Parameter(torch.FloatTensor(hidden_size).uniform_(-1, 1))

        def forward(self, hidden, encoder_outputs):
            if self.method == 'general':
                attn_energies = torch.sum(hidden * self.attn(encoder_outputs), dim=2)
            elif self.method == 'concat':
                energy = self.attn(torch.cat((hidden.expand(encoder_outputs.size(0), -1, -1), encoder_outputs),
                                             2)).tanh()
                attn_energies = torch.sum(self.v * energy, dim=2)
            else:
                attn_energies = torch.sum(hidden * encoder_outputs, dim=2)
            return F.softmax(attn_energies.t(), dim=1).unsqueeze(1)

    class TLuongAttnDecoderRNN(tnn.Module):
        def __init__(self, attn_model, embedding, hidden_size, output_size, n_layers=1, dropout=0.1):
            super().__init__()
            self.n_layers, self.embedding = n_layers, embedding
            self.embedding_dropout = tnn.Dropout(dropout)
            self.gru = tnn.GRU(hidden_size, hidden_size, n_layers, dropout=(0 if n_layers == 1 else dropout))
            self.concat = tnn.Linear(hidden_size * 2, hidden_size)
            self.out = tnn.Linear(hidden_size, output_size)
            self.attn = TAttn(attn_model, hidden_size)

        def forward(self, input_step, last_hidden, encoder_outputs):
            rnn_output, hidden = self.gru(self.embedding_dropout(self.embedding(input_step)), last_hidden)
            attn_weights = self.attn(rnn_output, encoder_outputs)
            context = attn_weights.bmm(encoder_outputs.transpose(0, 1))
            concat_input = torch.cat((rnn_output.squeeze(0), context.squeeze(1)), 1)
            return F.softmax(self.out(torch.tanh(self.concat(concat_input))), dim=1), hidden

    embedding = tnn.Embedding(VOCAB, HIDDEN)
    encoder = TEncoderRNN(HIDDEN, embedding, N_LAYERS, 0.0)
    decoder = TLuongAttnDecoderRNN(attn_model, embedding, HIDDEN, VOCAB, N_LAYERS, 0.0)
    return embedding, encoder.double(), decoder.double()


def _torch_train(torch, batch, encoder, decoder, encoder_optimizer, decoder_optimizer, use_teacher_forcing):
    """The tutorial's train(), maskNLLLoss inlined."""
    input_variable, lengths, target_variable, mask, max_target_len = (
        torch.tensor(a) if isinstance(a, np.ndarray) else a for a in batch)
    encoder_optimizer.zero_grad()
    decoder_optimizer.zero_grad()
    loss, print_losses, n_totals = 0, [], 0
    encoder_outputs, encoder_hidden = encoder(input_variable, torch.tensor(lengths))
    decoder_input = torch.LongTensor([[SOS_token for _ in range(input_variable.shape[1])]])
    decoder_hidden = encoder_hidden[:decoder.n_layers]
    for t in range(max_target_len):
        decoder_output, decoder_hidden = decoder(decoder_input, decoder_hidden, encoder_outputs)
        if use_teacher_forcing:
            decoder_input = target_variable[t].view(1, -1)
        else:
            _, topi = decoder_output.topk(1)
            decoder_input = torch.LongTensor([[topi[i][0] for i in range(input_variable.shape[1])]])
        nTotal = mask[t].sum()
        crossEntropy = -torch.log(torch.gather(decoder_output, 1, target_variable[t].view(-1, 1)).squeeze(1))
        mask_loss = crossEntropy.masked_select(mask[t]).mean()
        loss += mask_loss
        print_losses.append(mask_loss.item() * nTotal.item())
        n_totals += nTotal.item()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(encoder.parameters(), CLIP)
    torch.nn.utils.clip_grad_norm_(decoder.parameters(), CLIP)
    encoder_optimizer.step()
    decoder_optimizer.step()
    return sum(print_losses) / n_totals


def _ported(attn_model):
    embedding = nn.Embedding(VOCAB, HIDDEN)
    encoder = EncoderRNN(HIDDEN, embedding, N_LAYERS, 0.0)
    decoder = LuongAttnDecoderRNN(attn_model, embedding, HIDDEN, VOCAB, N_LAYERS, 0.0)
    return encoder.to(dtype="float64"), decoder.to(dtype="float64")


@pytest.mark.parametrize("attn_model", ["dot", "general", "concat"])
def test_the_chatbot_trains_and_decodes_greedily_as_pytorchs(attn_model):
    torch = _torch()
    torch.manual_seed(0)
    _, tenc, tdec = _torch_models(torch, attn_model)
    encoder, decoder = _ported(attn_model)
    xn.load_torch_state_dict(encoder, tenc.state_dict())
    xn.load_torch_state_dict(decoder, tdec.state_dict())
    lr = 0.01
    t_optimizers = (torch.optim.Adam(tenc.parameters(), lr=lr), torch.optim.Adam(tdec.parameters(), lr=lr * 5.0))
    optimizers = (xn.optim.Adam(encoder.parameters(), lr=lr), xn.optim.Adam(decoder.parameters(), lr=lr * 5.0))
    model = Seq2Seq(encoder, decoder)
    for i, batch in enumerate(BATCHES * 2):  # teacher forcing, then the decoder's own guesses
        expected = _torch_train(torch, batch, tenc, tdec, *t_optimizers, use_teacher_forcing=i < 2)
        assert train(batch, model, *optimizers, use_teacher_forcing=i < 2) == pytest.approx(expected, rel=1e-10)
    for ours, theirs in ((encoder, tenc), (decoder, tdec)):
        for name, value in xn.torch_state_dict(ours).items():
            np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)

    tenc.eval(), tdec.eval()
    encoder.eval(), decoder.eval()
    input_seq = np.array([[4, 5, 3, EOS_token]]).T
    with torch.no_grad():
        encoder_outputs, encoder_hidden = tenc(torch.tensor(input_seq), torch.tensor([4]))
        decoder_hidden, decoder_input, tokens, scores = encoder_hidden[:N_LAYERS], torch.tensor([[SOS_token]]), [], []
        for _ in range(5):  # GreedySearchDecoder.forward
            decoder_output, decoder_hidden = tdec(decoder_input, decoder_hidden, encoder_outputs)
            decoder_scores, decoder_input = torch.max(decoder_output, dim=1)
            tokens.append(decoder_input.item()), scores.append(decoder_scores.item())
            decoder_input = torch.unsqueeze(decoder_input, 0)
    with xn.no_grad():
        all_tokens, all_scores = GreedySearchDecoder(encoder, decoder)(input_seq, np.array([4]), 5)
    assert all_tokens.tolist() == tokens
    np.testing.assert_allclose(all_scores, scores, rtol=1e-10)


def test_the_decoders_gru_left_batch_first_and_its_steps_taken_back_outside_a_model_are_refused():
    encoder, decoder = _ported("dot")
    input_variable, lengths, target_variable, _, max_target_len = BATCHES[0]
    encoder_outputs, encoder_hidden = encoder(input_variable, lengths)
    decoder_input, decoder_hidden = np.array([[SOS_token] * 3]), encoder_hidden[:N_LAYERS]
    naive = LuongAttnDecoderRNN("dot", encoder.embedding, HIDDEN, VOCAB, N_LAYERS, 0.0).to(dtype="float64")
    naive.gru = nn.GRU(HIDDEN, HIDDEN, num_layers=N_LAYERS, return_state=True, dtype="float64")  # PyTorch's line
    with pytest.raises(ValueError, match=r"hx holds 3 sequences but the input has 1.*build the layer with "
                                         r"batch_first=False"):
        naive(decoder_input, decoder_hidden, encoder_outputs)
    outputs = []
    for t in range(max_target_len):  # train()'s loop as the tutorial has it, outside a model's forward
        decoder_output, decoder_hidden = decoder(decoder_input, decoder_hidden, encoder_outputs)
        decoder_input = target_variable[t].reshape(1, -1)
        outputs.append(decoder_output)
    with pytest.raises(RuntimeError, match=r"LuongAttnDecoderRNN\.backward after a loop of `decoder_output, "
                                           r"decoder_hidden = decoder\(.*a model of your own"):
        decoder.backward(np.ones_like(outputs[-1]), np.zeros_like(decoder_hidden))  # even the last step's


class _EmbeddingForgotten(LuongAttnDecoderRNN):
    def backward(self, doutput, dhidden):
        d = self.concat.backward(self.tanh.backward(self.out.backward(self.softmax.backward(doutput))))
        dcontext = d[:, None, self.hidden_size:]
        dquery, denc_attn = self.attn.backward(dcontext @ self.encoder_outputs.transpose(1, 2, 0))
        self.gru.backward(d[None, :, :self.hidden_size] + dquery, dhidden)  # self.embedding.backward(...) left out
        return self.gru.dh, (self.attn_weights.transpose(0, 2, 1) @ dcontext).transpose(1, 0, 2) + denc_attn


def test_the_shared_embeddings_backward_left_out_in_the_decoder_says_which_call_it_took():
    encoder, _ = _ported("dot")
    decoder = _EmbeddingForgotten("dot", encoder.embedding, HIDDEN, VOCAB, N_LAYERS, 0.0).to(dtype="float64")
    model = Seq2Seq(encoder, decoder)
    batch = BATCHES[0]
    outputs = model(*batch[:3], batch[4], True)
    with pytest.raises(ValueError, match=rf"Embedding: expected dy of shape \(1, 3, {HIDDEN}\).*this backward took "
                                         rf"back call {batch[4] + 1} of the {batch[4] + 1} calls of Embedding.*the "
                                         r"backward of a later call was left out"):
        model.backward(np.ones_like(outputs))
