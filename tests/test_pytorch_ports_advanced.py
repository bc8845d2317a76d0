"""PyTorch's neural_style_tutorial.py (advanced_source/), dcgan_faces_tutorial.py and translation_transformer.py
(beginner_source/) of pytorch/tutorials, ported to xpnet as a PyTorch user writes them first, each against the
tutorial's own classes and loop run by torch in float64 from the same initial weights; and what tripped on the way.
No downloads: tiny random images stand in for the style and content pictures and for CelebA (16 x 16 instead of
64 x 64, one generator and one discriminator stage fewer, widths shrunk), and short random token sequences with
padding for Multi30k; a random tiny conv stack stands in for vgg19."""

import math

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _close(ours, theirs, what=""):
    np.testing.assert_allclose(ours, theirs.detach().numpy() if hasattr(theirs, "detach") else theirs, **TOL,
                               err_msg=what)


def _same_state(ours, theirs, what):
    state = theirs.state_dict()
    for name, value in xn.torch_state_dict(ours).items():
        if name.endswith("in_proj_bias"):
            # the key bias's gradient is 0 (softmax ignores a shift per query), so it holds rounding (1e-17) that
            # Adam scales to ~lr * 1e-17 / eps = 1e-10, in each library its own: compared to that size
            np.testing.assert_allclose(value, state[name].numpy(), rtol=1e-10, atol=1e-9, err_msg=name)
        elif not name.endswith("num_batches_tracked"):                 # PyTorch counts it, unused at momentum 0.1
            _close(value, state[name], f"{what}: {name}")


# ---- beginner_source/dcgan_faces_tutorial.py: the whole G/D training loop ----

NZ, NGF, NDF, NC = 4, 4, 4, 3  # the tutorial's nz, ngf, ndf (100, 64, 64) shrunk; nc = 3 kept


class Generator(xn.Model):
    """The tutorial's Generator, one ConvTranspose2d stage fewer: (N, nz, 1, 1) -> (N, nc, 16, 16) in [-1, 1]."""

    def __init__(self, ngpu):
        super().__init__()
        self.ngpu = ngpu
        self.main = xn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 2, 4, 1, 0, bias=False),       # (NGF*2) x 4 x 4
            nn.BatchNorm(NGF * 2),                                     # nn.BatchNorm2d: its name says so
            nn.ReLU(),                                                 # nn.ReLU(True): refused, saying why
            nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False),     # NGF x 8 x 8
            nn.BatchNorm(NGF),
            nn.ReLU(),
            nn.ConvTranspose2d(NGF, NC, 4, 2, 1, bias=False),          # NC x 16 x 16
            nn.Tanh())

    def forward(self, input, train=True):
        return self.main(input)

    def backward(self, dy):
        return self.main.backward(dy)


class Discriminator(xn.Model):
    """The tutorial's Discriminator, one stage fewer: (N, nc, 16, 16) -> (N, 1, 1, 1) probabilities."""

    def __init__(self, ngpu):
        super().__init__()
        self.ngpu = ngpu
        self.main = xn.Sequential(
            nn.Conv2d(NC, NDF, 4, 2, 1, bias=False),                   # NDF x 8 x 8
            nn.LeakyReLU(0.2),                                         # inplace=True: refused, saying why
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False),              # (NDF*2) x 4 x 4
            nn.BatchNorm(NDF * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(NDF * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid())

    def forward(self, input, train=True):
        return self.main(input)

    def backward(self, dy):
        return self.main.backward(dy)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        xn.init.normal_(m.weight, 0.0, 0.02)                           # nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        xn.init.normal_(m.weight, 1.0, 0.02)
        xn.init.constant_(m.bias, 0)


def _torch_dcgan(torch):
    """The tutorial's Generator and Discriminator as written there, the same stage fewer."""
    tn = torch.nn

    class TorchGenerator(tn.Module):
        def __init__(self):
            super().__init__()
            self.main = tn.Sequential(
                tn.ConvTranspose2d(NZ, NGF * 2, 4, 1, 0, bias=False), tn.BatchNorm2d(NGF * 2), tn.ReLU(True),
                tn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), tn.BatchNorm2d(NGF), tn.ReLU(True),
                tn.ConvTranspose2d(NGF, NC, 4, 2, 1, bias=False), tn.Tanh())

        def forward(self, input):
            return self.main(input)

    class TorchDiscriminator(tn.Module):
        def __init__(self):
            super().__init__()
            self.main = tn.Sequential(
                tn.Conv2d(NC, NDF, 4, 2, 1, bias=False), tn.LeakyReLU(0.2, inplace=True),
                tn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), tn.BatchNorm2d(NDF * 2),
                tn.LeakyReLU(0.2, inplace=True), tn.Conv2d(NDF * 2, 1, 4, 1, 0, bias=False), tn.Sigmoid())

        def forward(self, input):
            return self.main(input)

    return TorchGenerator().double(), TorchDiscriminator().double()


def test_the_dcgan_training_loop_trains_generator_and_discriminator_as_pytorchs():
    """Three iterations of the tutorial's loop: D's two backwards (real, then ``fake.detach()``) before its Adam
    step, G's loss through the updated D into G (``errG.backward()``), the statistics D(x), D(G(z)) and the
    fixed noise sampled under no_grad in training mode (BatchNorm's running statistics move, as PyTorch's): every
    loss, statistic, weight and running statistic equal to torch's in float64."""
    torch = _torch()
    netG, netD = Generator(0).to(dtype="float64"), Discriminator(0).to(dtype="float64")
    assert netG.apply(weights_init) is netG and netD.apply(weights_init) is netD
    their_G, their_D = _torch_dcgan(torch)
    their_G.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in xn.torch_state_dict(netG).items()},
                            strict=False)
    their_D.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in xn.torch_state_dict(netD).items()},
                            strict=False)
    criterion, their_criterion = xn.losses.BCELoss(), torch.nn.BCELoss()
    optimizerD = xn.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = xn.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    their_optD = torch.optim.Adam(their_D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    their_optG = torch.optim.Adam(their_G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(0)
    fixed_noise = rng.standard_normal((4, NZ, 1, 1))
    real_label, fake_label = 1., 0.

    def ours(real_cpu, noise):
        netD.zero_grad()
        b_size = real_cpu.shape[0]
        label = np.full((b_size,), real_label)                         # torch.full((b_size,), real_label, ...)
        output = netD(real_cpu).reshape(-1)                            # .view(-1)
        errD_real = criterion(output, label)
        netD.backward(np.reshape(criterion.backward(), (-1, 1, 1, 1)))  # errD_real.backward()
        D_x = output.mean().item()
        fake = netG(noise)
        label.fill(fake_label)
        output = netD(fake).reshape(-1)                                # netD(fake.detach()): the dx is left unused
        errD_fake = criterion(output, label)
        netD.backward(np.reshape(criterion.backward(), (-1, 1, 1, 1)))
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()
        netG.zero_grad()
        label.fill(real_label)
        output = netD(fake).reshape(-1)
        errG = criterion(output, label)
        netG.backward(netD.backward(np.reshape(criterion.backward(), (-1, 1, 1, 1))))   # errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()
        with xn.no_grad():
            sample = netG(fixed_noise)
        return errD.item(), errG.item(), D_x, D_G_z1, D_G_z2, sample

    def theirs(real_cpu, noise):
        their_D.zero_grad()
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), real_label, dtype=torch.float64)
        output = their_D(real_cpu).view(-1)
        errD_real = their_criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        fake = their_G(noise)
        label.fill_(fake_label)
        output = their_D(fake.detach()).view(-1)
        errD_fake = their_criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        their_optD.step()
        their_G.zero_grad()
        label.fill_(real_label)
        output = their_D(fake).view(-1)
        errG = their_criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        their_optG.step()
        with torch.no_grad():
            sample = their_G(torch.from_numpy(fixed_noise)).detach()
        return errD.item(), errG.item(), D_x, D_G_z1, D_G_z2, sample

    for _ in range(3):
        real, noise = rng.uniform(-1, 1, (4, NC, 16, 16)), rng.standard_normal((4, NZ, 1, 1))
        mine, their = ours(real, noise), theirs(torch.from_numpy(real), torch.from_numpy(noise))
        np.testing.assert_allclose(mine[:5], their[:5], **TOL)
        _close(mine[5], their[5], "netG(fixed_noise)")
    _same_state(netG, their_G, "netG")
    _same_state(netD, their_D, "netD")


# ---- beginner_source/translation_transformer.py: Seq2SeqTransformer, time first, padding masks ----

class PositionalEncoding(xn.Model):
    """The tutorial's: its (maxlen, 1, emb_size) table as a buffer (register_buffer), added to the (T, N, E)
    embeddings, then dropout. backward is the dropout's."""

    def __init__(self, emb_size, dropout, maxlen=5000):
        super().__init__()
        den = np.exp(- np.arange(0, emb_size, 2) * math.log(10000) / emb_size)
        pos = np.arange(0, maxlen).reshape(maxlen, 1)
        pos_embedding = np.zeros((maxlen, emb_size))
        pos_embedding[:, 0::2] = np.sin(pos * den)
        pos_embedding[:, 1::2] = np.cos(pos * den)
        pos_embedding = pos_embedding[:, None, :]
        self.dropout = nn.Dropout(dropout)
        self.buffers['pos_embedding'] = pos_embedding                 # self.register_buffer('pos_embedding', ...)

    def forward(self, token_embedding, train=True):
        return self.dropout(token_embedding + self.buffers['pos_embedding'][:token_embedding.shape[0], :])  # .size(0)

    def backward(self, dy):
        return self.dropout.backward(dy)


class TokenEmbedding(xn.Model):
    """(T, N) ids -> (T, N, E) embeddings scaled by sqrt(emb_size)."""

    def __init__(self, vocab_size, emb_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_size)
        self.emb_size = emb_size

    def forward(self, tokens, train=True):
        return self.embedding(tokens.astype(np.int64)) * math.sqrt(self.emb_size)   # tokens.long()

    def backward(self, dy):
        return self.embedding.backward(dy * math.sqrt(self.emb_size))


class Seq2SeqTransformer(xn.Model):
    """The tutorial's, time first: (S, N) and (T, N) ids -> (T, N, tgt_vocab_size) logits. backward(dy) goes
    through the generator and the Transformer, then the two embeddings; the one PositionalEncoding, called twice
    (src, then tgt), goes back last call first."""

    def __init__(self, num_encoder_layers, num_decoder_layers, emb_size, nhead, src_vocab_size, tgt_vocab_size,
                 dim_feedforward=512, dropout=0.1):
        super().__init__()
        self.transformer = nn.Transformer(d_model=emb_size, nhead=nhead, num_encoder_layers=num_encoder_layers,
                                          num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
                                          dropout=dropout, batch_first=False)   # PyTorch's default, time first
        self.generator = nn.Linear(emb_size, tgt_vocab_size)
        self.src_tok_emb = TokenEmbedding(src_vocab_size, emb_size)
        self.tgt_tok_emb = TokenEmbedding(tgt_vocab_size, emb_size)
        self.positional_encoding = PositionalEncoding(emb_size, dropout=dropout)

    def forward(self, src, trg, src_mask, tgt_mask, src_padding_mask, tgt_padding_mask, memory_key_padding_mask,
                train=True):
        src_emb = self.positional_encoding(self.src_tok_emb(src))
        tgt_emb = self.positional_encoding(self.tgt_tok_emb(trg))
        outs = self.transformer(src_emb, tgt_emb, src_mask, tgt_mask, None, src_padding_mask, tgt_padding_mask,
                                memory_key_padding_mask)
        return self.generator(outs)

    def backward(self, dy):
        dsrc, dtgt = self.transformer.backward(self.generator.backward(dy))
        self.tgt_tok_emb.backward(self.positional_encoding.backward(dtgt))
        self.src_tok_emb.backward(self.positional_encoding.backward(dsrc))

    def encode(self, src, src_mask):
        return self.transformer.encoder(self.positional_encoding(self.src_tok_emb(src)), src_mask)

    def decode(self, tgt, memory, tgt_mask):
        return self.transformer.decoder(self.positional_encoding(self.tgt_tok_emb(tgt)), memory, tgt_mask)


PAD_IDX, BOS_IDX, EOS_IDX = 1, 2, 3
def generate_square_subsequent_mask(sz):
    mask = (np.triu(np.ones((sz, sz))) == 1).T
    return np.where(mask == 0, -np.inf, 0.0)


def create_mask(src, tgt):
    src_seq_len, tgt_seq_len = src.shape[0], tgt.shape[0]
    tgt_mask = generate_square_subsequent_mask(tgt_seq_len)
    src_mask = np.zeros((src_seq_len, src_seq_len), dtype=bool)
    src_padding_mask = (src == PAD_IDX).T
    tgt_padding_mask = (tgt == PAD_IDX).T
    return src_mask, tgt_mask, src_padding_mask, tgt_padding_mask


def _torch_seq2seq(torch):
    """The tutorial's PositionalEncoding, TokenEmbedding, Seq2SeqTransformer and mask functions, from its source
    (encode and decode through ``self.transformer.encoder`` and ``.decoder``, as the tutorial has them today)."""
    tn = torch.nn

    class TorchPositionalEncoding(tn.Module):
        def __init__(self, emb_size, dropout, maxlen=5000):
            super().__init__()
            den = torch.exp(- torch.arange(0, emb_size, 2) * math.log(10000) / emb_size)
            pos = torch.arange(0, maxlen).reshape(maxlen, 1)
            pos_embedding = torch.zeros((maxlen, emb_size))
            pos_embedding[:, 0::2] = torch.sin(pos * den)
            pos_embedding[:, 1::2] = torch.cos(pos * den)
            self.dropout = tn.Dropout(dropout)
            self.register_buffer('pos_embedding', pos_embedding.unsqueeze(-2))

        def forward(self, token_embedding):
            return self.dropout(token_embedding + self.pos_embedding[:token_embedding.size(0), :])

    class TorchTokenEmbedding(tn.Module):
        def __init__(self, vocab_size, emb_size):
            super().__init__()
            self.embedding = tn.Embedding(vocab_size, emb_size)
            self.emb_size = emb_size

        def forward(self, tokens):
            return self.embedding(tokens.long()) * math.sqrt(self.emb_size)

    class TorchSeq2SeqTransformer(tn.Module):
        def __init__(self, num_encoder_layers, num_decoder_layers, emb_size, nhead, src_vocab_size, tgt_vocab_size,
                     dim_feedforward=512, dropout=0.1):
            super().__init__()
            self.transformer = tn.Transformer(d_model=emb_size, nhead=nhead, num_encoder_layers=num_encoder_layers,
                                              num_decoder_layers=num_decoder_layers,
                                              dim_feedforward=dim_feedforward, dropout=dropout)
            self.generator = tn.Linear(emb_size, tgt_vocab_size)
            self.src_tok_emb = TorchTokenEmbedding(src_vocab_size, emb_size)
            self.tgt_tok_emb = TorchTokenEmbedding(tgt_vocab_size, emb_size)
            self.positional_encoding = TorchPositionalEncoding(emb_size, dropout=dropout)

        def forward(self, src, trg, src_mask, tgt_mask, src_padding_mask, tgt_padding_mask, memory_key_padding_mask):
            src_emb = self.positional_encoding(self.src_tok_emb(src))
            tgt_emb = self.positional_encoding(self.tgt_tok_emb(trg))
            outs = self.transformer(src_emb, tgt_emb, src_mask, tgt_mask, None, src_padding_mask, tgt_padding_mask,
                                    memory_key_padding_mask)
            return self.generator(outs)

        def encode(self, src, src_mask):
            return self.transformer.encoder(self.positional_encoding(self.src_tok_emb(src)), src_mask)

        def decode(self, tgt, memory, tgt_mask):
            return self.transformer.decoder(self.positional_encoding(self.tgt_tok_emb(tgt)), memory, tgt_mask)

    def square_subsequent_mask(sz):
        mask = (torch.triu(torch.ones((sz, sz))) == 1).transpose(0, 1)
        return mask.double().masked_fill(mask == 0, float('-inf')).masked_fill(mask == 1, float(0.0))

    def their_create_mask(src, tgt):
        tgt_mask = square_subsequent_mask(tgt.shape[0])
        src_mask = torch.zeros((src.shape[0], src.shape[0])).type(torch.bool)
        return src_mask, tgt_mask, (src == PAD_IDX).transpose(0, 1), (tgt == PAD_IDX).transpose(0, 1)

    return TorchSeq2SeqTransformer, square_subsequent_mask, their_create_mask


def _token_batch(rng, length, n, vocab):
    """(length, n) ids as collate_fn's pad_sequence leaves them: BOS, words, EOS, then PAD, of lengths
    length, length - 1, length - 2, ..."""
    batch = np.full((length, n), PAD_IDX)
    for i in range(n):
        size = max(length - i, 3)
        batch[:size, i] = [BOS_IDX, *rng.integers(4, vocab, size - 2), EOS_IDX]
    return batch


def greedy_decode(model, src, src_mask, max_len, start_symbol):
    memory = model.encode(src, src_mask)
    ys = np.full((1, 1), start_symbol)                                 # torch.ones(1, 1).fill_(start_symbol)
    for i in range(max_len - 1):
        tgt_mask = generate_square_subsequent_mask(ys.shape[0]).astype(bool)   # .type(torch.bool)
        out = model.decode(ys, memory, tgt_mask)
        out = np.swapaxes(out, 0, 1)                                   # out.transpose(0, 1)
        prob = model.generator(out[:, -1])
        next_word = np.argmax(prob, axis=1).item()                     # _, next_word = torch.max(prob, dim=1)
        ys = np.concatenate([ys, np.full((1, 1), next_word)], axis=0)
        if next_word == EOS_IDX:
            break
    return ys


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning",
                            "ignore:Support for mismatched key_padding_mask:UserWarning")   # torch's, on its side
def test_the_translation_transformer_trains_and_greedy_decodes_as_pytorchs():
    """The tutorial's Seq2SeqTransformer (nn.Transformer time first, its batch_first=False), Xavier-uniform over
    every matrix, CrossEntropyLoss(ignore_index=PAD_IDX) on ``tgt[1:]`` for ``tgt[:-1]``, Adam(betas=(0.9, 0.98),
    eps=1e-9), dropout 0: three train_epoch batches of padded sequences (the losses, then every weight), evaluate's
    loss in evaluation mode, and greedy_decode through model.encode and model.decode (its bool causal mask) give
    the same numbers and tokens as torch's in float64."""
    torch = _torch()
    TorchSeq2SeqTransformer, their_square_mask, their_create_mask = _torch_seq2seq(torch)
    V_SRC, V_TGT, EMB, NHEAD, FFN = 11, 12, 8, 2, 16
    xn.init.manual_seed(3)                                             # its greedy decode stops at EOS: [2 4 4 3]
    transformer = Seq2SeqTransformer(2, 2, EMB, NHEAD, V_SRC, V_TGT, FFN, dropout=0.0).to(dtype="float64")
    before = transformer.generator.params["W"].copy()
    for p in transformer.parameters():
        if p.ndim > 1:                                                 # p.dim() > 1
            xn.init.xavier_uniform_(p)
    assert not np.array_equal(before, transformer.generator.params["W"])   # filled in place, in the model
    theirs = TorchSeq2SeqTransformer(2, 2, EMB, NHEAD, V_SRC, V_TGT, FFN, dropout=0.0).double()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in xn.torch_state_dict(transformer).items()})
    loss_fn = xn.losses.SoftmaxCrossEntropy(ignore_index=PAD_IDX)      # torch.nn.CrossEntropyLoss(ignore_index=...)
    their_loss_fn = torch.nn.CrossEntropyLoss(ignore_index=PAD_IDX)
    optimizer = xn.optim.Adam(transformer.parameters(), lr=0.01, betas=(0.9, 0.98), eps=1e-9)
    their_optimizer = torch.optim.Adam(theirs.parameters(), lr=0.01, betas=(0.9, 0.98), eps=1e-9)
    rng = np.random.default_rng(0)
    batches = [(_token_batch(rng, 5, 3, V_SRC), _token_batch(rng, 6, 3, V_TGT)) for _ in range(3)]

    transformer.train()
    theirs.train()
    for src, tgt in batches:
        tgt_input = tgt[:-1, :]
        src_mask, tgt_mask, src_padding_mask, tgt_padding_mask = create_mask(src, tgt_input)
        logits = transformer(src, tgt_input, src_mask, tgt_mask, src_padding_mask, tgt_padding_mask,
                             src_padding_mask)
        optimizer.zero_grad()
        tgt_out = tgt[1:, :]
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1))
        transformer.backward(np.reshape(loss_fn.backward(), logits.shape))    # loss.backward()
        optimizer.step()

        their_src, their_tgt = torch.from_numpy(src), torch.from_numpy(tgt)
        masks = their_create_mask(their_src, their_tgt[:-1, :])
        their_logits = theirs(their_src, their_tgt[:-1, :], *masks, masks[2])
        their_optimizer.zero_grad()
        their_loss = their_loss_fn(their_logits.reshape(-1, their_logits.shape[-1]), their_tgt[1:, :].reshape(-1))
        their_loss.backward()
        their_optimizer.step()
        assert loss.item() == pytest.approx(their_loss.item(), rel=1e-10)
    _same_state(transformer, theirs, "Seq2SeqTransformer")

    transformer.eval()
    theirs.eval()
    src, tgt = batches[0]
    logits = transformer(src, tgt[:-1], *create_mask(src, tgt[:-1]), create_mask(src, tgt[:-1])[2])
    with torch.no_grad():
        masks = their_create_mask(torch.from_numpy(src), torch.from_numpy(tgt[:-1]))
        _close(logits, theirs(torch.from_numpy(src), torch.from_numpy(tgt[:-1]), *masks, masks[2]), "evaluate")

    src = src[:, :1]                                                   # translate(): one sentence, (S, 1)
    src_mask = np.zeros((len(src), len(src)), dtype=bool)
    ys = greedy_decode(transformer, src, src_mask, max_len=len(src) + 5, start_symbol=BOS_IDX)
    with torch.no_grad():
        memory = theirs.encode(torch.from_numpy(src), torch.from_numpy(src_mask))
        their_ys = torch.ones(1, 1).fill_(BOS_IDX).type(torch.long)
        for i in range(len(src) + 4):
            their_mask = their_square_mask(their_ys.size(0)).type(torch.bool)
            out = theirs.decode(their_ys, memory, their_mask).transpose(0, 1)
            next_word = torch.max(theirs.generator(out[:, -1]), dim=1)[1].item()
            their_ys = torch.cat([their_ys, torch.ones(1, 1).type(torch.long).fill_(next_word)], dim=0)
            if next_word == EOS_IDX:
                break
    np.testing.assert_array_equal(ys, their_ys.numpy())
    assert ys[-1, 0] == EOS_IDX
    _close(transformer.encode(src, src_mask), memory, "model.encode")


def test_the_translation_transformer_left_batch_first_is_refused_where_s_t_and_n_are_equal():
    """S = T = N: the (S, S) masks fit a batch-first Transformer too; the tutorial's pos_embedding (maxlen, 1, E)
    tells the layout."""
    model = Seq2SeqTransformer(1, 1, 8, 2, 10, 10, 16, 0.0)
    model.transformer = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                       dim_feedforward=16, dropout=0.0)  # PyTorch's line, xpnet's default layout
    model = model.to(dtype="float64")
    src = np.array([[2, 4, 5], [6, 7, 3], [3, 1, 1]])
    src_mask, tgt_mask, src_padding_mask, tgt_padding_mask = create_mask(src, src)
    with pytest.raises(ValueError, match=r"positional_encoding\.buffers\['pos_embedding'\] of shape \(5000, 1, 8\) "
                                         r"is a positional table in PyTorch's time-first layout.*batch_first=False"):
        model(src, src, src_mask, tgt_mask, src_padding_mask, tgt_padding_mask, src_padding_mask)


# ---- advanced_source/neural_style_tutorial.py (ported in test_pytorch_ports_basics.py): what tripped ----

class _TutorialContentLoss(nn.Layer):
    """The tutorial's ContentLoss as a PyTorch user first writes it: forward only, autograd's part left out."""

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.mse = xn.losses.MeanSquaredError()                        # F.mse_loss

    def forward(self, input, train=True):
        self.loss = self.mse(input, self.target)
        return input


@pytest.mark.parametrize("input_grad", [True, False])
def test_a_loss_layer_without_backward_says_to_add_its_losss_gradient_to_dy(input_grad):
    """The model built by get_style_model_and_losses, then ``model.backward``: Layer's bare NotImplementedError
    named nothing; it now names the layer and what its backward returns."""
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(1, 3, 6, 6))
    model = xn.Sequential(nn.Conv2d(3, 4, 3, padding=1, dtype="float64"), nn.ReLU()).eval()
    content_loss = _TutorialContentLoss(model(np.full_like(img, 0.5)))
    model.append(content_loss).append(nn.Conv2d(4, 4, 3, padding=1, dtype="float64"))
    out = model(img)
    with pytest.raises(NotImplementedError, match=r"^_TutorialContentLoss.backward is not written: .* returns dy \+ "
                                                  r"weight \* self.mse.backward\(\)"):
        model.backward(np.zeros_like(out), input_grad=input_grad)
