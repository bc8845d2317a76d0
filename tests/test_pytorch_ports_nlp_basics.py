"""Robert Guthrie's "Deep Learning for NLP with PyTorch" (pytorch/tutorials, beginner_source/nlp/): the BoW
classifier (deep_learning_tutorial.py), the n-gram language model and a CBOW (word_embeddings_tutorial.py), the
LSTM tagger and the LSTM stepped one word at a time (sequence_models_tutorial.py), ported as a PyTorch user writes
them, each against the tutorial's class run by torch in float64 from the same initial weights; and what tripped on
the way. The tutorials' own tiny data sets are cut shorter still (no downloads: they have none)."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


# ---- deep_learning_tutorial.py: BoWClassifier ----

DATA = [("me gusta comer en la cafeteria".split(), "SPANISH"), ("Give it to me".split(), "ENGLISH"),
        ("No creo que sea una buena idea".split(), "SPANISH"),
        ("No it is not a good idea to get lost at sea".split(), "ENGLISH")]
TEST_DATA = [("Yo creo que si".split(), "SPANISH"), ("it is lost on me".split(), "ENGLISH")]
LABEL_TO_IX = {"SPANISH": 0, "ENGLISH": 1}


def _word_to_ix(sentences):
    word_to_ix = {}
    for sent in sentences:
        for word in sent:
            word_to_ix.setdefault(word, len(word_to_ix))
    return word_to_ix


class BoWClassifier(xn.Model):
    def __init__(self, num_labels, vocab_size):
        super().__init__()
        self.linear = nn.Linear(vocab_size, num_labels)
        self.log_softmax = nn.LogSoftmax(dim=1)

    def forward(self, bow_vec, train=True):
        return self.log_softmax(self.linear(bow_vec))

    def backward(self, dy):
        return self.linear.backward(self.log_softmax.backward(dy))


def make_bow_vector(sentence, word_to_ix):
    vec = np.zeros(len(word_to_ix))
    for word in sentence:
        vec[word_to_ix[word]] += 1
    return vec.reshape(1, -1)


def test_bow_classifier_trains_as_pytorchs():
    torch = _torch()
    torch.manual_seed(0)
    word_to_ix = _word_to_ix([s for s, _ in DATA + TEST_DATA])

    class TheirBoW(torch.nn.Module):
        def __init__(self, num_labels, vocab_size):
            super().__init__()
            self.linear = torch.nn.Linear(vocab_size, num_labels)

        def forward(self, bow_vec):
            return torch.nn.functional.log_softmax(self.linear(bow_vec), dim=1)

    theirs = TheirBoW(2, len(word_to_ix)).double()
    model = BoWClassifier(2, len(word_to_ix)).to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    loss_function, their_loss_function = xn.losses.NLLLoss(), torch.nn.NLLLoss()
    optimizer = xn.optim.SGD(model.parameters(), lr=0.1)
    their_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1)
    for epoch in range(2):
        for instance, label in DATA:
            model.zero_grad()
            theirs.zero_grad()
            bow_vec, target = make_bow_vector(instance, word_to_ix), np.array([LABEL_TO_IX[label]])
            loss = loss_function(model(bow_vec), target)
            model.backward(loss_function.backward())  # loss.backward()
            optimizer.step()
            their_loss = their_loss_function(theirs(torch.from_numpy(bow_vec)), torch.from_numpy(target))
            their_loss.backward()
            their_optimizer.step()
            assert loss.item() == pytest.approx(their_loss.item(), rel=1e-12)
    creo = word_to_ix["creo"]
    # next(model.parameters()) is W (vocab, labels), PyTorch's weight.T: PyTorch's [:, creo] is weight's, and
    # the tutorial's line indexing next(...) on the spot is refused
    np.testing.assert_allclose(model.linear.weight[:, creo], next(theirs.parameters())[:, creo].detach().numpy(),
                               rtol=1e-12)
    with pytest.raises(IndexError, match=r"next\(model\.parameters\(\)\)\[:, creo\]: .*'linear\.W'.*"
                                         r"model\.linear\.weight\[:, creo\]"):
        next(model.parameters())[:, creo]  # the tutorial's line: a label's row over the vocabulary where creo < 2
    np.testing.assert_allclose(model.linear.params["W"][creo], model.linear.weight[:, creo])
    with xn.no_grad(), torch.no_grad():
        for instance, _ in TEST_DATA:
            bow_vec = make_bow_vector(instance, word_to_ix)
            np.testing.assert_allclose(model(bow_vec), theirs(torch.from_numpy(bow_vec)).numpy(), rtol=1e-12)


# ---- word_embeddings_tutorial.py: NGramLanguageModeler and a CBOW ----

CONTEXT_SIZE, EMBEDDING_DIM = 2, 10
SONNET = """When forty winters shall besiege thy brow, And dig deep trenches in thy beauty's field,""".split()


class NGramLanguageModeler(xn.Model):
    def __init__(self, vocab_size, embedding_dim, context_size):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.linear1 = nn.Linear(context_size * embedding_dim, 128)
        self.linear2 = nn.Linear(128, vocab_size)
        self.relu, self.log_softmax = nn.ReLU(), nn.LogSoftmax(dim=1)

    def forward(self, inputs, train=True):
        self.embeds = self.embeddings(inputs)
        out = self.relu(self.linear1(self.embeds.reshape((1, -1))))  # .view((1, -1))
        return self.log_softmax(self.linear2(out))

    def backward(self, dy):
        d = self.linear1.backward(self.relu.backward(self.linear2.backward(self.log_softmax.backward(dy))))
        return self.embeddings.backward(d.reshape(self.embeds.shape))


class CBOW(xn.Model):
    """The exercise's model as a PyTorch user writes it: the context's embeddings summed, a Linear, log_softmax."""

    def __init__(self, vocab_size, embedding_dim):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.linear = nn.Linear(embedding_dim, vocab_size)
        self.log_softmax = nn.LogSoftmax(dim=1)

    def forward(self, inputs, train=True):
        self.n = len(inputs)
        return self.log_softmax(self.linear(self.embeddings(inputs).sum(0, keepdims=True)))

    def backward(self, dy):
        d = self.linear.backward(self.log_softmax.backward(dy))
        return self.embeddings.backward(np.repeat(d, self.n, axis=0))  # the sum's gradient: each row gets it


def _their_ngram(torch):
    F = torch.nn.functional

    class TheirNGram(torch.nn.Module):
        def __init__(self, vocab_size, embedding_dim, context_size):
            super().__init__()
            self.embeddings = torch.nn.Embedding(vocab_size, embedding_dim)
            self.linear1 = torch.nn.Linear(context_size * embedding_dim, 128)
            self.linear2 = torch.nn.Linear(128, vocab_size)

        def forward(self, inputs):
            embeds = self.embeddings(inputs).view((1, -1))
            out = F.relu(self.linear1(embeds))
            return F.log_softmax(self.linear2(out), dim=1)

    class TheirCBOW(torch.nn.Module):
        def __init__(self, vocab_size, embedding_dim):
            super().__init__()
            self.embeddings = torch.nn.Embedding(vocab_size, embedding_dim)
            self.linear = torch.nn.Linear(embedding_dim, vocab_size)

        def forward(self, inputs):
            return F.log_softmax(self.linear(self.embeddings(inputs).sum(0).view(1, -1)), dim=1)

    return TheirNGram, TheirCBOW


@pytest.mark.parametrize("which", ["ngram", "cbow"])
def test_word_embedding_models_train_as_pytorchs(which):
    torch = _torch()
    torch.manual_seed(1)
    word_to_ix = {word: i for i, word in enumerate(sorted(set(SONNET)))}
    if which == "ngram":
        data = [([SONNET[i - j - 1] for j in range(CONTEXT_SIZE)], SONNET[i]) for i in range(CONTEXT_SIZE, len(SONNET))]
    else:
        data = [([SONNET[i - 2], SONNET[i - 1], SONNET[i + 1], SONNET[i + 2]], SONNET[i])
                for i in range(2, len(SONNET) - 2)]
    TheirNGram, TheirCBOW = _their_ngram(torch)
    if which == "ngram":
        model, theirs = NGramLanguageModeler(len(word_to_ix), EMBEDDING_DIM, CONTEXT_SIZE), \
            TheirNGram(len(word_to_ix), EMBEDDING_DIM, CONTEXT_SIZE).double()
    else:
        model, theirs = CBOW(len(word_to_ix), EMBEDDING_DIM), TheirCBOW(len(word_to_ix), EMBEDDING_DIM).double()
    model.to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    loss_function, their_loss_function = xn.losses.NLLLoss(), torch.nn.NLLLoss()
    optimizer = xn.optim.SGD(model.parameters(), lr=0.001)
    their_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.001)
    losses, their_losses = [], []
    for epoch in range(2):
        total_loss = their_total_loss = 0
        for context, target in data:
            context_idxs = np.array([word_to_ix[w] for w in context], dtype=np.int64)
            target = np.array([word_to_ix[target]], dtype=np.int64)
            model.zero_grad()
            loss = loss_function(model(context_idxs), target)
            model.backward(loss_function.backward())
            optimizer.step()
            total_loss += loss.item()
            theirs.zero_grad()
            their_loss = their_loss_function(theirs(torch.from_numpy(context_idxs)), torch.from_numpy(target))
            their_loss.backward()
            their_optimizer.step()
            their_total_loss += their_loss.item()
        losses.append(total_loss)
        their_losses.append(their_total_loss)
    np.testing.assert_allclose(losses, their_losses, rtol=1e-12)
    beauty = word_to_ix["beauty's"]
    np.testing.assert_allclose(model.embeddings.weight[beauty], theirs.embeddings.weight[beauty].detach().numpy(),
                               rtol=1e-10, atol=1e-14)
    ours = xn.torch_state_dict(model)
    for name, p in theirs.state_dict().items():
        np.testing.assert_allclose(ours[name], p.numpy(), rtol=1e-10, atol=1e-14, err_msg=name)


def test_the_embeddings_gradient_given_in_the_viewed_shape_says_to_reshape_it_back():
    """NGramLanguageModeler's embeds.view((1, -1)): a backward giving the Embedding the (1, 2*D) gradient of the
    view said only "expected dy of shape (2, 10), got (1, 20)"; it now says to reshape it back."""
    embeddings = nn.Embedding(7, 10)
    embeddings(np.array([3, 5]))
    with pytest.raises(ValueError, match=r"Embedding.*\(2, 10\).*reshape its gradient back: xp.reshape\(dy, \(2, 10\)"):
        embeddings.backward(np.ones((1, 20), dtype=np.float32))


def test_the_embeddings_gradient_of_their_sum_says_to_broadcast_it():
    """A CBOW's embeds.sum(0) (or .mean(0)): its (1, D) gradient given to the Embedding was answered with the hint for
    a loss on some of the rows (dy[mask] = ...); it now says that each row gets the sum's gradient."""
    embeddings = nn.Embedding(7, 10)
    embeddings(np.array([3, 5, 1, 2]))
    with pytest.raises(ValueError, match=r"summed over axis 0 .*xp.broadcast_to\(g, \(4, 10\)\) \(g / 4 for a mean"):
        embeddings.backward(np.ones((1, 10), dtype=np.float32))


# ---- sequence_models_tutorial.py: the LSTM stepped, and LSTMTagger ----

def test_an_lstm_stepped_one_element_at_a_time_carries_its_state_as_the_whole_sequence_and_pytorchs():
    """The tutorial's first snippet: out, hidden = lstm(i.view(1, 1, -1), hidden) for each element, against the
    whole sequence at once from the same hidden; and the whole sequence, time first, against torch's."""
    torch = _torch()
    torch.manual_seed(1)
    their_lstm = torch.nn.LSTM(3, 3).double()
    lstm = nn.LSTM(3, 3, return_state=True, batch_first=False, dtype="float64")
    xn.load_torch_state_dict(lstm, their_lstm.state_dict())
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, 3)) for _ in range(5)]
    hidden0 = (rng.standard_normal((1, 1, 3)), rng.standard_normal((1, 1, 3)))
    hidden, outs = hidden0, []
    for i in inputs:
        out, hidden = lstm(i.reshape(1, 1, -1), hidden)
        outs.append(out)
    whole, whole_hidden = lstm(np.concatenate(inputs).reshape(len(inputs), 1, -1), hidden0)
    np.testing.assert_allclose(np.concatenate(outs), whole, rtol=1e-12)
    np.testing.assert_allclose(hidden[1], whole_hidden[1], rtol=1e-12)
    their_out, (their_h, their_c) = their_lstm(torch.from_numpy(np.concatenate(inputs).reshape(5, 1, -1)),
                                               tuple(torch.from_numpy(h) for h in hidden0))
    np.testing.assert_allclose(whole, their_out.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(whole_hidden[1], their_c.detach().numpy(), rtol=1e-12)


TRAINING_DATA = [("The dog ate the apple".split(), ["DET", "NN", "V", "DET", "NN"]),
                 ("Everybody read that book".split(), ["NN", "V", "DET", "NN"])]
TAG_TO_IX = {"DET": 0, "NN": 1, "V": 2}


def prepare_sequence(seq, to_ix):
    return np.array([to_ix[w] for w in seq], dtype=np.int64)


class LSTMTagger(xn.Model):
    def __init__(self, embedding_dim, hidden_dim, vocab_size, tagset_size, **lstm_options):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, **lstm_options)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)
        self.log_softmax = nn.LogSoftmax(dim=1)

    def forward(self, sentence, train=True):
        embeds = self.word_embeddings(sentence)
        lstm_out, _ = self.lstm(embeds.reshape(len(sentence), 1, -1))
        tag_space = self.hidden2tag(lstm_out.reshape(len(sentence), -1))
        return self.log_softmax(tag_space)

    def backward(self, dy):
        d = self.hidden2tag.backward(self.log_softmax.backward(dy))
        d = self.lstm.backward(d.reshape(len(d), 1, -1))  # lstm_out's gradient; none for the final state
        return self.word_embeddings.backward(d.reshape(len(d), -1))


def test_lstm_tagger_trains_as_pytorchs():
    """Time first, batch_first=False, as PyTorch's nn.LSTM(embedding_dim, hidden_dim); return_state=True for its
    lstm_out, _ = ...; convention="pytorch" keeps its two biases, so that SGD steps each as PyTorch's."""
    torch = _torch()
    F = torch.nn.functional
    torch.manual_seed(1)
    word_to_ix = _word_to_ix([s for s, _ in TRAINING_DATA])

    class TheirTagger(torch.nn.Module):
        def __init__(self, embedding_dim, hidden_dim, vocab_size, tagset_size):
            super().__init__()
            self.hidden_dim = hidden_dim
            self.word_embeddings = torch.nn.Embedding(vocab_size, embedding_dim)
            self.lstm = torch.nn.LSTM(embedding_dim, hidden_dim)
            self.hidden2tag = torch.nn.Linear(hidden_dim, tagset_size)

        def forward(self, sentence):
            embeds = self.word_embeddings(sentence)
            lstm_out, _ = self.lstm(embeds.view(len(sentence), 1, -1))
            tag_space = self.hidden2tag(lstm_out.view(len(sentence), -1))
            return F.log_softmax(tag_space, dim=1)

    theirs = TheirTagger(6, 6, len(word_to_ix), len(TAG_TO_IX)).double()
    model = LSTMTagger(6, 6, len(word_to_ix), len(TAG_TO_IX), batch_first=False, return_state=True,
                       convention="pytorch").to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    loss_function, their_loss_function = xn.losses.NLLLoss(), torch.nn.NLLLoss()
    optimizer = xn.optim.SGD(model.parameters(), lr=0.1)
    their_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1)
    for epoch in range(3):
        for sentence, tags in TRAINING_DATA:
            sentence_in, targets = prepare_sequence(sentence, word_to_ix), prepare_sequence(tags, TAG_TO_IX)
            model.zero_grad()
            loss = loss_function(model(sentence_in), targets)
            model.backward(loss_function.backward())
            optimizer.step()
            theirs.zero_grad()
            their_loss = their_loss_function(theirs(torch.from_numpy(sentence_in)), torch.from_numpy(targets))
            their_loss.backward()
            their_optimizer.step()
            assert loss.item() == pytest.approx(their_loss.item(), rel=1e-12)
    ours = xn.torch_state_dict(model)
    for name, p in theirs.state_dict().items():
        np.testing.assert_allclose(ours[name], p.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
    with xn.no_grad(), torch.no_grad():
        inputs = prepare_sequence(TRAINING_DATA[0][0], word_to_ix)
        np.testing.assert_allclose(model(inputs), theirs(torch.from_numpy(inputs)).numpy(), rtol=1e-10)


def test_pytorchs_time_first_batch_of_one_given_to_a_batch_first_lstm_is_refused():
    """The tagger's self.lstm(embeds.view(len(sentence), 1, -1)) into xn.layers.LSTM(D, H) (batch first): read as
    len(sentence) sequences of one word each, it trained silently with no word seeing the ones before it. It is
    refused, naming batch_first=False; the unpacking refusal of the first guess (no return_state) names it too."""
    word_to_ix = _word_to_ix([s for s, _ in TRAINING_DATA])
    sentence = prepare_sequence(TRAINING_DATA[0][0], word_to_ix)
    first_guess = LSTMTagger(6, 6, len(word_to_ix), 3)
    with pytest.raises(ValueError, match=r"return_state=True.*batch first.*batch_first=False"):
        first_guess(sentence)
    second_guess = LSTMTagger(6, 6, len(word_to_ix), 3, return_state=True)
    with pytest.raises(ValueError, match=r"LSTMTagger.forward gives self.lstm embeds.reshape\(len\(sentence\), 1, "
                                         r"-1\).*batch first.*batch_first=False"):
        second_guess(sentence)
    assert LSTMTagger(6, 6, len(word_to_ix), 3, return_state=True, batch_first=False)(sentence).shape == (5, 3)


class _OneStepEach(xn.Model):
    """Sequences of one step each, written on purpose: x[:, None, :] into a batch-first GRU."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 3)

    def forward(self, x, train=True):
        return self.gru(x[:, None, :])


def test_one_step_sequences_written_with_none_are_not_refused():
    assert _OneStepEach()(np.ones((5, 4), dtype=np.float32)).shape == (5, 1, 3)


class _Viewed(NGramLanguageModeler):
    def forward(self, inputs, train=True):
        embeds = self.embeddings(inputs).view((1, -1))
        return self.log_softmax(self.linear2(self.relu(self.linear1(embeds))))


def test_pytorchs_view_in_a_forward_says_to_reshape():
    """NGramLanguageModeler's self.embeddings(inputs).view((1, -1)): NumPy's view takes a dtype and said only
    "Cannot interpret '1' as a data type"; the error now says to write reshape."""
    with pytest.raises(TypeError, match=r"_Viewed.forward: Cannot interpret '1'.*view\(\(1, -1\)\).*"
                                        r"x.reshape\(shape\)"):
        _Viewed(7, 10, 2)(np.array([3, 5]))


# ---- advanced_tutorial.py: BiLSTM_CRF, the CRF's forward algorithm and its backward written out ----

START_TAG, STOP_TAG = "<START>", "<STOP>"
CRF_DATA = [("the wall street journal reported today".split(), "B I I I O O".split()),
            ("georgia tech is a university in georgia".split(), "B I O O O O B".split())]
CRF_TAG_TO_IX = {"B": 0, "I": 1, "O": 2, START_TAG: 3, STOP_TAG: 4}


def _log_sum_exp(v, axis=-1):
    m = v.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(v - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def _softmax(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class BiLSTM_CRF(xn.Model):
    """The tutorial's model: its transitions a parameter of the model (self.params), its CRF loss and Viterbi decode
    in NumPy, and a backward from the loss to the features and the transitions written out."""

    def __init__(self, vocab_size, tag_to_ix, embedding_dim, hidden_dim):
        super().__init__()
        self.hidden_dim, self.tag_to_ix, self.tagset_size = hidden_dim, tag_to_ix, len(tag_to_ix)
        self.word_embeds = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim // 2, num_layers=1, bidirectional=True, batch_first=False,
                            return_state=True, convention="pytorch")
        self.hidden2tag = nn.Linear(hidden_dim, self.tagset_size)
        transitions = np.random.default_rng(0).standard_normal((self.tagset_size, self.tagset_size))
        transitions[tag_to_ix[START_TAG], :] = -10000
        transitions[:, tag_to_ix[STOP_TAG]] = -10000
        self.params["transitions"] = transitions.astype(np.float32)  # nn.Parameter(torch.randn(...))

    def init_hidden(self):
        return None  # zeros; the test gives both models the same state

    def _get_lstm_features(self, sentence):
        self.embeds = self.word_embeds(sentence).reshape(len(sentence), 1, -1)
        lstm_out, self.hidden = self.lstm(self.embeds, self.init_hidden())
        return self.hidden2tag(lstm_out.reshape(len(sentence), self.hidden_dim))

    def _forward_alg(self, feats):
        trans, alpha = self.params["transitions"], np.full(self.tagset_size, -10000.0, dtype=feats.dtype)
        alpha[self.tag_to_ix[START_TAG]] = 0.0
        self.steps = []
        for feat in feats:
            scores = alpha[None, :] + trans  # [next, previous]
            self.steps.append(_softmax(scores))
            alpha = _log_sum_exp(scores) + feat
        terminal = alpha + trans[self.tag_to_ix[STOP_TAG]]
        self.terminal = _softmax(terminal)
        return _log_sum_exp(terminal)

    def _score_sentence(self, feats, tags):
        trans = self.params["transitions"]
        self.tags = np.concatenate([[self.tag_to_ix[START_TAG]], tags])
        steps = np.arange(len(feats))
        return (trans[self.tags[1:], self.tags[:-1]].sum() + feats[steps, self.tags[1:]].sum()
                + trans[self.tag_to_ix[STOP_TAG], self.tags[-1]])

    def neg_log_likelihood(self, sentence, tags):
        feats = self._get_lstm_features(sentence)
        return self._forward_alg(feats) - self._score_sentence(feats, tags)

    def backward(self, dloss=1.0):
        """neg_log_likelihood.backward(): the forward algorithm's gradient (each step's softmax over the previous
        tags), less the gold path's ones, into the transitions and the features, then the BiLSTM's."""
        stop, n = self.tag_to_ix[STOP_TAG], len(self.steps)
        dtrans = np.zeros_like(self.params["transitions"])
        dfeats = np.zeros((n, self.tagset_size), dtype=dtrans.dtype)
        dalpha = self.terminal
        dtrans[stop] += dalpha
        for t in reversed(range(n)):
            dfeats[t] = dalpha
            dscores = dalpha[:, None] * self.steps[t]
            dtrans += dscores
            dalpha = dscores.sum(0)
        np.subtract.at(dtrans, (self.tags[1:], self.tags[:-1]), 1.0)
        dtrans[stop, self.tags[-1]] -= 1.0
        dfeats[np.arange(n), self.tags[1:]] -= 1.0
        self.grads["transitions"] = dloss * dtrans
        d = self.hidden2tag.backward(dloss * dfeats)
        d = self.lstm.backward(d.reshape(n, 1, self.hidden_dim))
        return self.word_embeds.backward(d.reshape(n, -1))

    def _viterbi_decode(self, feats):
        trans, backpointers = self.params["transitions"], []
        forward_var = np.full(self.tagset_size, -10000.0, dtype=feats.dtype)
        forward_var[self.tag_to_ix[START_TAG]] = 0
        for feat in feats:
            next_tag_var = forward_var[None, :] + trans
            best = next_tag_var.argmax(1)
            backpointers.append(best)
            forward_var = next_tag_var[np.arange(self.tagset_size), best] + feat
        terminal_var = forward_var + trans[self.tag_to_ix[STOP_TAG]]
        best_tag_id = int(terminal_var.argmax())
        best_path = [best_tag_id]
        for bptrs_t in reversed(backpointers):
            best_tag_id = int(bptrs_t[best_tag_id])
            best_path.append(best_tag_id)
        assert best_path.pop() == self.tag_to_ix[START_TAG]
        return terminal_var[best_path[0]], best_path[::-1]

    def forward(self, sentence, train=True):
        return self._viterbi_decode(self._get_lstm_features(sentence))


def _their_bilstm_crf(torch, h0, c0):
    """advanced_tutorial.py's BiLSTM_CRF as written there (its helpers inlined), init_hidden giving h0, c0."""
    nn_ = torch.nn

    def argmax(vec):
        _, idx = torch.max(vec, 1)
        return idx.item()

    def log_sum_exp(vec):
        max_score = vec[0, argmax(vec)]
        max_score_broadcast = max_score.view(1, -1).expand(1, vec.size()[1])
        return max_score + torch.log(torch.sum(torch.exp(vec - max_score_broadcast)))

    class TheirBiLSTM_CRF(nn_.Module):
        def __init__(self, vocab_size, tag_to_ix, embedding_dim, hidden_dim):
            super().__init__()
            self.hidden_dim, self.tag_to_ix, self.tagset_size = hidden_dim, tag_to_ix, len(tag_to_ix)
            self.word_embeds = nn_.Embedding(vocab_size, embedding_dim)
            self.lstm = nn_.LSTM(embedding_dim, hidden_dim // 2, num_layers=1, bidirectional=True)
            self.hidden2tag = nn_.Linear(hidden_dim, self.tagset_size)
            self.transitions = nn_.Parameter(torch.randn(self.tagset_size, self.tagset_size))
            self.transitions.data[tag_to_ix[START_TAG], :] = -10000
            self.transitions.data[:, tag_to_ix[STOP_TAG]] = -10000

        def init_hidden(self):
            return torch.from_numpy(h0), torch.from_numpy(c0)

        def _forward_alg(self, feats):
            init_alphas = torch.full((1, self.tagset_size), -10000., dtype=feats.dtype)
            init_alphas[0][self.tag_to_ix[START_TAG]] = 0.
            forward_var = init_alphas
            for feat in feats:
                alphas_t = []
                for next_tag in range(self.tagset_size):
                    emit_score = feat[next_tag].view(1, -1).expand(1, self.tagset_size)
                    trans_score = self.transitions[next_tag].view(1, -1)
                    next_tag_var = forward_var + trans_score + emit_score
                    alphas_t.append(log_sum_exp(next_tag_var).view(1))
                forward_var = torch.cat(alphas_t).view(1, -1)
            terminal_var = forward_var + self.transitions[self.tag_to_ix[STOP_TAG]]
            return log_sum_exp(terminal_var)

        def _get_lstm_features(self, sentence):
            self.hidden = self.init_hidden()
            embeds = self.word_embeds(sentence).view(len(sentence), 1, -1)
            lstm_out, self.hidden = self.lstm(embeds, self.hidden)
            lstm_out = lstm_out.view(len(sentence), self.hidden_dim)
            return self.hidden2tag(lstm_out)

        def _score_sentence(self, feats, tags):
            score = torch.zeros(1, dtype=feats.dtype)
            tags = torch.cat([torch.tensor([self.tag_to_ix[START_TAG]], dtype=torch.long), tags])
            for i, feat in enumerate(feats):
                score = score + self.transitions[tags[i + 1], tags[i]] + feat[tags[i + 1]]
            return score + self.transitions[self.tag_to_ix[STOP_TAG], tags[-1]]

        def _viterbi_decode(self, feats):
            backpointers = []
            init_vvars = torch.full((1, self.tagset_size), -10000., dtype=feats.dtype)
            init_vvars[0][self.tag_to_ix[START_TAG]] = 0
            forward_var = init_vvars
            for feat in feats:
                bptrs_t, viterbivars_t = [], []
                for next_tag in range(self.tagset_size):
                    next_tag_var = forward_var + self.transitions[next_tag]
                    best_tag_id = argmax(next_tag_var)
                    bptrs_t.append(best_tag_id)
                    viterbivars_t.append(next_tag_var[0][best_tag_id].view(1))
                forward_var = (torch.cat(viterbivars_t) + feat).view(1, -1)
                backpointers.append(bptrs_t)
            terminal_var = forward_var + self.transitions[self.tag_to_ix[STOP_TAG]]
            best_tag_id = argmax(terminal_var)
            path_score = terminal_var[0][best_tag_id]
            best_path = [best_tag_id]
            for bptrs_t in reversed(backpointers):
                best_tag_id = bptrs_t[best_tag_id]
                best_path.append(best_tag_id)
            start = best_path.pop()
            assert start == self.tag_to_ix[START_TAG]
            best_path.reverse()
            return path_score, best_path

        def neg_log_likelihood(self, sentence, tags):
            feats = self._get_lstm_features(sentence)
            return self._forward_alg(feats) - self._score_sentence(feats, tags)

        def forward(self, sentence):
            return self._viterbi_decode(self._get_lstm_features(sentence))

    return TheirBiLSTM_CRF


def test_bilstm_crf_loss_gradients_steps_and_viterbi_decode_are_pytorchs():
    torch = _torch()
    torch.manual_seed(1)
    word_to_ix = _word_to_ix([s for s, _ in CRF_DATA])
    rng = np.random.default_rng(2)
    h0, c0 = rng.standard_normal((2, 1, 2)), rng.standard_normal((2, 1, 2))
    theirs = _their_bilstm_crf(torch, h0, c0)(len(word_to_ix), CRF_TAG_TO_IX, 5, 4).double()
    model = BiLSTM_CRF(len(word_to_ix), CRF_TAG_TO_IX, 5, 4).to(dtype="float64")
    model.init_hidden = lambda: (h0, c0)  # the tutorial's torch.randn(2, 1, hidden_dim // 2), the same for both
    xn.load_torch_state_dict(model, theirs.state_dict())
    optimizer = xn.optim.SGD(model.parameters(), lr=0.01, weight_decay=1e-4)
    their_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.01, weight_decay=1e-4)
    for epoch in range(2):
        for sentence, tags in CRF_DATA:
            sentence_in = np.array([word_to_ix[w] for w in sentence], dtype=np.int64)
            targets = np.array([CRF_TAG_TO_IX[t] for t in tags], dtype=np.int64)
            model.zero_grad()
            loss = model.neg_log_likelihood(sentence_in, targets)
            model.backward()  # neg_log_likelihood.backward()
            theirs.zero_grad()
            their_loss = theirs.neg_log_likelihood(torch.from_numpy(sentence_in), torch.from_numpy(targets))
            their_loss.backward()
            assert float(loss) == pytest.approx(their_loss.item(), rel=1e-12)
            np.testing.assert_allclose(model.grads["transitions"], theirs.transitions.grad.numpy(), atol=1e-12)
            np.testing.assert_allclose(model.word_embeds.grads["W"], theirs.word_embeds.weight.grad.numpy(),
                                       atol=1e-12)
            optimizer.step()
            their_optimizer.step()
    ours = xn.torch_state_dict(model)
    for name, p in theirs.state_dict().items():
        np.testing.assert_allclose(ours[name], p.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    with xn.no_grad(), torch.no_grad():
        sentence_in = np.array([word_to_ix[w] for w in CRF_DATA[0][0]], dtype=np.int64)
        score, tag_seq = model(sentence_in)
        their_score, their_tag_seq = theirs(torch.from_numpy(sentence_in))
    assert tag_seq == their_tag_seq and float(score) == pytest.approx(their_score.item(), rel=1e-12)


class _LooseTransitions(xn.Model):
    """The first guess for nn.Parameter(torch.randn(...)): a plain attribute, its gradient put in self.grads, beside
    a layer that has parameters (the gold path's score of BiLSTM_CRF, cut short)."""

    def __init__(self):
        super().__init__()
        self.hidden2tag = nn.Linear(4, 3)
        self.transitions = np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)

    def forward(self, x, tags, train=True):
        self.tags = tags
        feats = self.hidden2tag(x)
        return feats[np.arange(len(tags)), tags].sum() + self.transitions[tags[1:], tags[:-1]].sum()

    def backward(self, dscore=1.0):
        dtrans = np.zeros_like(self.transitions)
        np.add.at(dtrans, (self.tags[1:], self.tags[:-1]), dscore)
        self.grads["transitions"] = dtrans
        dfeats = np.zeros((len(self.tags), 3), dtype=np.float32)
        dfeats[np.arange(len(self.tags)), self.tags] = dscore
        return self.hidden2tag.backward(dfeats)


def test_a_gradient_filled_for_an_array_attribute_not_a_parameter_is_refused_at_the_step():
    """SGD stepped hidden2tag and left the attribute's transitions as they were, silently. The step is refused,
    naming the gradient, the attribute and what to write."""
    model = _LooseTransitions()
    optimizer = xn.optim.SGD(model.parameters(), lr=0.01)
    model(np.ones((4, 4), dtype=np.float32), np.array([0, 2, 1, 1]))
    model.backward()
    with pytest.raises(ValueError, match=r"'transitions' was filled but there is no parameter.*array attribute.*"
                                         r"self.params\['transitions'\]"):
        optimizer.step()


class _ReshapedFirst(LSTMTagger):
    def forward(self, sentence, train=True):
        embeds = self.word_embeddings(sentence).reshape(len(sentence), 1, -1)
        lstm_out, _ = self.lstm(embeds)
        return self.log_softmax(self.hidden2tag(lstm_out.reshape(len(sentence), -1)))


def test_the_time_first_reshape_on_a_line_of_its_own_is_refused_too():
    model = _ReshapedFirst(6, 6, 9, 3, return_state=True)
    with pytest.raises(ValueError, match=r"gives self.lstm embeds = self.word_embeddings\(sentence\).reshape\(len\("
                                         r"sentence\), 1, -1\).*batch_first=False"):
        model(np.arange(5))


class _DataRows(xn.Model):
    def __init__(self):
        super().__init__()
        self.params["transitions"] = np.zeros((5, 5), dtype=np.float32)
        self.params["transitions"].data[3, :] = -10000  # self.transitions.data[tag_to_ix[START_TAG], :] = -10000


def test_writing_rows_through_data_as_pytorch_says_to_write_into_the_array():
    """NumPy's .data is a memoryview, which said only "memoryview: invalid slice key"."""
    with pytest.raises(TypeError, match=r"invalid slice key: .*without PyTorch's .data.*w\[i, :\] = v"):
        _DataRows()
