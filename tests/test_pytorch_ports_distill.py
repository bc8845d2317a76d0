"""PyTorch's tutorials knowledge_distillation_tutorial.py, fgsm_tutorial.py and text_sentiment_ngrams_tutorial.py
(pytorch/tutorials, beginner_source/), ported as a PyTorch user writes them, each against the tutorial's own
classes and loop run by torch in float64 from the same initial weights; and what tripped on the way. No downloads:
tiny synthetic images (CIFAR-10's 3 channels, MNIST's 1 x 28 x 28 in [0, 1]) and token ids stand in for CIFAR-10,
MNIST and AG_NEWS; the networks' widths are shrunk, their structure kept."""

import numpy as np
import pytest

import xpnet as xn
from xpnet import layers as nn

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[backends]')")


def _same_weights(ours, theirs, what, skip=lambda name: False):
    for name, value in xn.torch_state_dict(ours).items():
        if skip(name):
            continue
        np.testing.assert_allclose(value, theirs.state_dict()[name].numpy(), **TOL, err_msg=f"{what}: {name}")


# ---- knowledge_distillation_tutorial.py ----

class DeepNN(xn.Model):
    """The tutorial's teacher (its widths 128, 64, 64, 32 and 512 shrunk to 8, 4, 4, 4 and 12, on 8 x 8 images);
    with ``hidden=True`` its ModifiedDeepNNCosine: the logits and the flattened features pooled by 2."""

    def __init__(self, num_classes=10, hidden=False):
        super().__init__()
        self.hidden = hidden
        self.features = xn.Sequential(
            nn.Conv2d(3, 8, kernel_size=3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2), nn.Conv2d(4, 4, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(4, 4, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.flatten = nn.Flatten()
        self.classifier = xn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Dropout(0.1), nn.Linear(12, num_classes))
        self.pool = nn.AvgPool1d(2)

    def forward(self, x, train=True):
        flattened_conv_output = self.flatten(self.features(x))
        x = self.classifier(flattened_conv_output)
        if not self.hidden:
            return x
        # F.avg_pool1d(flattened, 2) reads the (N, 16) array as one unbatched sequence of N channels
        return x, self.pool(flattened_conv_output[:, None, :])[:, 0, :]


class LightNN(xn.Model):
    """The tutorial's student (16, 16 and 256 shrunk to 4, 2 and 6); ``hidden=True``: ModifiedLightNNCosine, which
    returns its flattened features too, so its backward takes both gradients and adds them where they meet."""

    def __init__(self, num_classes=10, hidden=False):
        super().__init__()
        self.hidden = hidden
        self.features = xn.Sequential(
            nn.Conv2d(3, 4, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(4, 2, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.flatten = nn.Flatten()
        self.classifier = xn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Dropout(0.1), nn.Linear(6, num_classes))

    def forward(self, x, train=True):
        flattened_conv_output = self.flatten(self.features(x))
        x = self.classifier(flattened_conv_output)
        return (x, flattened_conv_output) if self.hidden else x

    def backward(self, dy, dhidden=None):
        d = self.classifier.backward(dy)
        return self.features.backward(self.flatten.backward(d if dhidden is None else d + dhidden))


def _torch_nets(torch):
    """The tutorial's DeepNN and LightNN with their Modified...Cosine forwards, from its source, shrunk alike."""
    tnn = torch.nn

    class TorchDeepNN(tnn.Module):
        def __init__(self, num_classes=10, hidden=False):
            super().__init__()
            self.hidden = hidden
            self.features = tnn.Sequential(
                tnn.Conv2d(3, 8, kernel_size=3, padding=1), tnn.ReLU(), tnn.Conv2d(8, 4, kernel_size=3, padding=1),
                tnn.ReLU(), tnn.MaxPool2d(kernel_size=2, stride=2), tnn.Conv2d(4, 4, kernel_size=3, padding=1),
                tnn.ReLU(), tnn.Conv2d(4, 4, kernel_size=3, padding=1), tnn.ReLU(),
                tnn.MaxPool2d(kernel_size=2, stride=2))
            self.classifier = tnn.Sequential(tnn.Linear(16, 12), tnn.ReLU(), tnn.Dropout(0.1),
                                             tnn.Linear(12, num_classes))

        def forward(self, x):
            x = self.features(x)
            flattened_conv_output = torch.flatten(x, 1)
            x = self.classifier(flattened_conv_output)
            if not self.hidden:
                return x
            return x, torch.nn.functional.avg_pool1d(flattened_conv_output, 2)

    class TorchLightNN(tnn.Module):
        def __init__(self, num_classes=10, hidden=False):
            super().__init__()
            self.hidden = hidden
            self.features = tnn.Sequential(
                tnn.Conv2d(3, 4, kernel_size=3, padding=1), tnn.ReLU(), tnn.MaxPool2d(kernel_size=2, stride=2),
                tnn.Conv2d(4, 2, kernel_size=3, padding=1), tnn.ReLU(), tnn.MaxPool2d(kernel_size=2, stride=2))
            self.classifier = tnn.Sequential(tnn.Linear(8, 6), tnn.ReLU(), tnn.Dropout(0.1),
                                             tnn.Linear(6, num_classes))

        def forward(self, x):
            x = self.features(x)
            flattened_conv_output = torch.flatten(x, 1)
            x = self.classifier(flattened_conv_output)
            return (x, flattened_conv_output) if self.hidden else x

    return TorchDeepNN, TorchLightNN


def _pair(torch, hidden):
    """Teacher and student, ours and theirs with the same weights, float64; Dropout p = 0 in both students (their
    masks come from different generators); the teacher runs in evaluation mode anyway."""
    TorchDeepNN, TorchLightNN = _torch_nets(torch)
    torch.manual_seed(0)
    t_teacher, t_student = TorchDeepNN(hidden=hidden).double(), TorchLightNN(hidden=hidden).double()
    teacher, student = DeepNN(hidden=hidden).to(dtype="float64"), LightNN(hidden=hidden).to(dtype="float64")
    xn.load_torch_state_dict(teacher, t_teacher.state_dict())
    xn.load_torch_state_dict(student, t_student.state_dict())
    student.classifier[2].p = t_student.classifier[2].p = 0.0
    return teacher, student, t_teacher, t_student


def _cifar_batches(n=3):
    """Batches of 4 synthetic 3 x 8 x 8 images, normalised as the tutorial's, with labels of 10 classes."""
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((4, 3, 8, 8)), rng.integers(0, 10, 4)) for _ in range(n)]


def test_knowledge_distillation_trains_the_student_as_pytorchs():
    """train_knowledge_distillation with T=2, soft_target_loss_weight=0.25, ce_loss_weight=0.75: the teacher in
    evaluation mode under no_grad, the soft-target term -sum(softmax(t / T) * log_softmax(s / T)) / N * T**2 as
    SoftmaxCrossEntropy on probability rows, its gradient T * kd.backward(). Losses and weights after Adam steps
    equal PyTorch's."""
    torch = _torch()
    teacher, student, t_teacher, t_student = _pair(torch, hidden=False)
    T, soft_target_loss_weight, ce_loss_weight = 2, 0.25, 0.75
    ce_loss, kd_loss, softmax = xn.losses.SoftmaxCrossEntropy(), xn.losses.SoftmaxCrossEntropy(), nn.Softmax(dim=-1)
    optimizer = xn.optim.Adam(student.parameters(), lr=0.001)
    t_optimizer = torch.optim.Adam(t_student.parameters(), lr=0.001)
    teacher.eval(), student.train(), t_teacher.eval(), t_student.train()
    for inputs, labels in _cifar_batches():
        optimizer.zero_grad()
        with xn.no_grad():
            teacher_logits = teacher(inputs)
        student_logits = student(inputs)
        soft_targets = softmax(teacher_logits / T)
        soft_targets_loss = kd_loss(student_logits / T, soft_targets) * T**2
        label_loss = ce_loss(student_logits, labels)
        loss = soft_target_loss_weight * soft_targets_loss + ce_loss_weight * label_loss
        student.backward(soft_target_loss_weight * T * kd_loss.backward() + ce_loss_weight * ce_loss.backward())
        optimizer.step()

        t_optimizer.zero_grad()  # the tutorial's loop as it is
        with torch.no_grad():
            t_teacher_logits = t_teacher(torch.from_numpy(inputs))
        t_student_logits = t_student(torch.from_numpy(inputs))
        t_soft_targets = torch.nn.functional.softmax(t_teacher_logits / T, dim=-1)
        soft_prob = torch.nn.functional.log_softmax(t_student_logits / T, dim=-1)
        t_soft_targets_loss = -torch.sum(t_soft_targets * soft_prob) / soft_prob.size()[0] * (T**2)
        t_label_loss = torch.nn.CrossEntropyLoss()(t_student_logits, torch.from_numpy(labels))
        t_loss = soft_target_loss_weight * t_soft_targets_loss + ce_loss_weight * t_label_loss
        t_loss.backward()
        t_optimizer.step()
        assert loss.item() == pytest.approx(t_loss.item(), rel=1e-12)
    _same_weights(student, t_student, "distilled student")
    _same_weights(teacher, t_teacher, "teacher (not trained)")


def test_the_soft_target_loss_written_with_numpy_says_its_gradient_must_be_written_out():
    """The tutorial's -torch.sum(soft_targets * soft_prob) / N * T**2 written over NumPy arrays is a NumPy float:
    weighted and added to a loss's value, it dropped the LossValue (0.25 * np.float64 + LossValue is NumPy's
    float64), so loss.backward() said only "'numpy.float64' object has no attribute 'backward'". It stays a
    LossValue, whose backward() says a part computed by hand needs its gradient written out; and one criterion
    called for both terms says to give each its own."""
    rng = np.random.default_rng(0)
    student_logits, labels, T = rng.standard_normal((4, 10)), rng.integers(0, 10, 4), 2
    soft_targets = nn.Softmax(dim=-1)(rng.standard_normal((4, 10)) / T)
    soft_prob = nn.LogSoftmax(dim=-1)(student_logits / T)
    soft_targets_loss = -np.sum(soft_targets * soft_prob) / soft_prob.shape[0] * (T**2)
    ce_loss = xn.losses.SoftmaxCrossEntropy()
    loss = np.float64(0.25) * soft_targets_loss + np.float64(0.75) * ce_loss(student_logits, labels)
    assert isinstance(loss, xn.losses.LossValue)
    with pytest.raises(AttributeError, match="a part computed by hand .* needs its gradient written out"):
        loss.backward()
    loss = 0.25 * ce_loss(student_logits / T, soft_targets) * T**2 + 0.75 * ce_loss(student_logits, labels)
    with pytest.raises(RuntimeError, match=r"give each term a loss object of its own .*model.backward\(a \* T \* "
                                           r"kd.backward\(\) \+ b \* ce.backward\(\)\)"):
        ce_loss.backward()


def test_cosine_loss_on_hidden_representations_trains_the_student_as_pytorchs():
    """train_cosine_loss: nn.CosineEmbeddingLoss()(student_hidden, teacher_hidden, target=ones) is 1 - cos per
    sample (the hint of xn.losses.CosineEmbeddingLoss: CosineSimilarity, then HingeEmbeddingLoss on 1 - cos);
    the student's forward returns (logits, hidden) and its backward adds the hidden gradient to the classifier's
    dx. Losses and weights after Adam steps equal PyTorch's."""
    torch = _torch()
    teacher, student, t_teacher, t_student = _pair(torch, hidden=True)
    hidden_rep_loss_weight, ce_loss_weight = 0.25, 0.75
    ce_loss, cosine, hinge = xn.losses.SoftmaxCrossEntropy(), nn.CosineSimilarity(dim=1), xn.losses.HingeEmbeddingLoss()
    optimizer = xn.optim.Adam(student.parameters(), lr=0.001)
    t_optimizer = torch.optim.Adam(t_student.parameters(), lr=0.001)
    teacher.eval(), student.train(), t_teacher.eval(), t_student.train()
    for inputs, labels in _cifar_batches():
        optimizer.zero_grad()
        with xn.no_grad():
            _, teacher_hidden_representation = teacher(inputs)
        student_logits, student_hidden_representation = student(inputs)
        ones = np.ones(inputs.shape[0])
        hidden_rep_loss = hinge(1 - cosine(student_hidden_representation, teacher_hidden_representation), ones)
        label_loss = ce_loss(student_logits, labels)
        loss = hidden_rep_loss_weight * hidden_rep_loss + ce_loss_weight * label_loss
        d_hidden, _ = cosine.backward(-hidden_rep_loss_weight * hinge.backward())
        student.backward(ce_loss_weight * ce_loss.backward(), d_hidden)
        optimizer.step()

        t_optimizer.zero_grad()
        with torch.no_grad():
            _, t_teacher_hidden = t_teacher(torch.from_numpy(inputs))
        t_student_logits, t_student_hidden = t_student(torch.from_numpy(inputs))
        t_hidden_rep_loss = torch.nn.CosineEmbeddingLoss()(t_student_hidden, t_teacher_hidden,
                                                           target=torch.ones(inputs.shape[0]).double())
        t_label_loss = torch.nn.CrossEntropyLoss()(t_student_logits, torch.from_numpy(labels))
        t_loss = hidden_rep_loss_weight * t_hidden_rep_loss + ce_loss_weight * t_label_loss
        t_loss.backward()
        t_optimizer.step()
        assert loss.item() == pytest.approx(t_loss.item(), rel=1e-10)
    _same_weights(student, t_student, "student trained on the cosine loss")


# ---- fgsm_tutorial.py ----

class Net(xn.Model):
    """The tutorial's LeNet (conv widths 10, 20 and fc1's 50 shrunk to 3, 4 and 8; MNIST's 28 x 28 kept); its
    F.relu, F.max_pool2d, x.view(-1, 320), F.dropout and F.log_softmax as layer objects, its backward written out
    (it returns dx, the gradient with respect to the image)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, kernel_size=5)
        self.conv2 = nn.Conv2d(3, 4, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(64, 8)
        self.fc2 = nn.Linear(8, 10)
        self.relu, self.pool, self.flatten = nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
        self.dropout, self.log_softmax = nn.Dropout(), nn.LogSoftmax(dim=1)

    def forward(self, x, train=True):
        x = self.relu(self.pool(self.conv1(x)))
        x = self.relu(self.pool(self.conv2_drop(self.conv2(x))))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.dropout(x)
        x = self.fc2(x)
        return self.log_softmax(x)

    def backward(self, dy):
        d = self.dropout.backward(self.fc2.backward(self.log_softmax.backward(dy)))
        d = self.flatten.backward(self.fc1.backward(self.relu.backward(d)))
        d = self.conv2.backward(self.conv2_drop.backward(self.pool.backward(self.relu.backward(d))))
        return self.conv1.backward(self.pool.backward(self.relu.backward(d)))


def _torch_lenet(torch):
    """The tutorial's Net, from its source, shrunk alike."""
    F = torch.nn.functional

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 3, kernel_size=5)
            self.conv2 = torch.nn.Conv2d(3, 4, kernel_size=5)
            self.conv2_drop = torch.nn.Dropout2d()
            self.fc1 = torch.nn.Linear(64, 8)
            self.fc2 = torch.nn.Linear(8, 10)

        def forward(self, x):
            x = F.relu(F.max_pool2d(self.conv1(x), 2))
            x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
            x = x.view(-1, 64)
            x = F.relu(self.fc1(x))
            x = F.dropout(x, training=self.training)
            x = self.fc2(x)
            return F.log_softmax(x, dim=1)

    return TorchNet()


def fgsm_attack(image, epsilon, data_grad):
    """The tutorial's, with NumPy's sign and clip for torch's."""
    sign_data_grad = np.sign(data_grad)
    perturbed_image = image + epsilon * sign_data_grad
    return np.clip(perturbed_image, 0, 1)


def test_fgsm_attack_perturbs_the_images_as_pytorchs():
    """test(model, device, test_loader, epsilon): the model in evaluation mode; data.requires_grad = True,
    loss.backward() and data.grad become dx = model.backward(criterion.backward()) (a NumPy array has no
    requires_grad: model.backward returns the input's gradient). For each image of a batch_size=1 loader whose
    prediction is right: the input gradient, the perturbed image and the new prediction equal PyTorch's, and the
    weights are left as they were."""
    torch = _torch()
    torch.manual_seed(0)
    theirs = _torch_lenet(torch).double()
    model = Net().to(dtype="float64")
    xn.load_torch_state_dict(model, theirs.state_dict())
    model.eval()
    theirs.eval()
    rng, criterion = np.random.default_rng(0), xn.losses.NLLLoss()
    images = rng.random((8, 1, 1, 28, 28))
    with xn.no_grad():
        targets = [int(np.argmax(model(data), axis=1)[0]) for data in images[:6]]
    targets += [(targets[0] + 1) % 10] * 2  # wrong for images[6:] or not: the tutorial's loop skips the wrong ones
    for epsilon in (0.05, 0.3):
        correct = attacked = 0
        for data, target in zip(images, targets):
            target = np.array([target])
            output = model(data)
            init_pred = np.argmax(output, axis=1)
            if init_pred.item() != target.item():
                continue
            loss = criterion(output, target)
            model.zero_grad()
            data_grad = model.backward(criterion.backward())
            perturbed_data = fgsm_attack(data, epsilon, data_grad)
            final_pred = np.argmax(model(perturbed_data), axis=1)
            correct += final_pred.item() == target.item()
            attacked += 1

            t_data = torch.from_numpy(data)
            t_data.requires_grad = True
            t_output = theirs(t_data)
            t_loss = torch.nn.functional.nll_loss(t_output, torch.from_numpy(target))
            theirs.zero_grad()
            t_loss.backward()
            t_perturbed = torch.clamp(t_data + epsilon * t_data.grad.data.sign(), 0, 1)
            assert loss.item() == pytest.approx(t_loss.item(), rel=1e-12)
            np.testing.assert_allclose(data_grad, t_data.grad.numpy(), **TOL)
            np.testing.assert_array_equal(perturbed_data, t_perturbed.detach().numpy())
            assert final_pred.item() == theirs(t_perturbed).max(1, keepdim=True)[1].item()
        assert attacked >= 6
    _same_weights(model, theirs, "the attacked model")


# ---- text_sentiment_ngrams_tutorial.py ----

class TextClassificationModel(xn.Model):
    """The tutorial's model as written there (its init_weights with xn.init for .data.uniform_), backward added."""

    def __init__(self, vocab_size, embed_dim, num_class):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=False)
        self.fc = nn.Linear(embed_dim, num_class)
        self.init_weights()

    def init_weights(self):
        initrange = 0.5
        xn.init.uniform_(self.embedding.weight, -initrange, initrange)
        xn.init.uniform_(self.fc.weight, -initrange, initrange)
        xn.init.zeros_(self.fc.bias)

    def forward(self, text, offsets, train=True):
        embedded = self.embedding(text, offsets)
        return self.fc(embedded)

    def backward(self, dy):
        return self.embedding.backward(self.fc.backward(dy))


def _torch_text_model(torch, vocab_size, embed_dim, num_class):
    """The tutorial's TextClassificationModel, from its source."""
    class TorchTextClassificationModel(torch.nn.Module):
        def __init__(self, vocab_size, embed_dim, num_class):
            super().__init__()
            self.embedding = torch.nn.EmbeddingBag(vocab_size, embed_dim, sparse=False)
            self.fc = torch.nn.Linear(embed_dim, num_class)
            self.init_weights()

        def init_weights(self):
            initrange = 0.5
            self.embedding.weight.data.uniform_(-initrange, initrange)
            self.fc.weight.data.uniform_(-initrange, initrange)
            self.fc.bias.data.zero_()

        def forward(self, text, offsets):
            embedded = self.embedding(text, offsets)
            return self.fc(embedded)

    return TorchTextClassificationModel(vocab_size, embed_dim, num_class)


def collate_batch(batch):
    """The tutorial's, over (label, token ids) pairs already through its pipelines, with NumPy for torch."""
    label_list, text_list, offsets = [], [], [0]
    for _label, _text in batch:
        label_list.append(_label)
        text_list.append(np.asarray(_text, dtype=np.int64))
        offsets.append(len(_text))
    return np.array(label_list), np.concatenate(text_list), np.cumsum(offsets[:-1])


def test_text_classification_with_embedding_bag_trains_as_pytorchs():
    """The tutorial's train(dataloader): EmbeddingBag (mean) over the flat ids of a batch with offsets, Linear,
    CrossEntropyLoss, clip_grad_norm_(model.parameters(), 0.1), SGD(lr=5) and StepLR(optimizer, 1.0, gamma=0.1)
    stepped after each epoch (as the tutorial's first version; the current one steps it when the validation
    accuracy drops); an empty text among them (an empty bag). Losses, weights, the learning rate and
    predict(text) (one bag, offsets [0]) equal PyTorch's; evaluate(dataloader) in evaluation mode under no_grad."""
    torch = _torch()
    rng = np.random.default_rng(0)
    vocab_size, emsize, num_class = 30, 6, 4
    data = [(int(rng.integers(0, num_class)), rng.integers(0, vocab_size, rng.integers(1, 9)).tolist())
            for _ in range(24)]
    data[5] = (1, [])
    model = TextClassificationModel(vocab_size, emsize, num_class).to(dtype="float64")
    theirs = _torch_text_model(torch, vocab_size, emsize, num_class).double()
    xn.load_torch_state_dict(model, theirs.state_dict())
    criterion = xn.losses.SoftmaxCrossEntropy()
    optimizer = xn.optim.SGD(model.parameters(), lr=5)
    scheduler = xn.optim.lr_scheduler.StepLR(optimizer, 1.0, gamma=0.1)
    t_optimizer = torch.optim.SGD(theirs.parameters(), lr=5)
    t_scheduler = torch.optim.lr_scheduler.StepLR(t_optimizer, 1.0, gamma=0.1)
    for epoch in range(3):
        model.train()
        theirs.train()
        for i in range(0, 16, 8):
            label, text, offsets = collate_batch(data[i:i + 8])
            optimizer.zero_grad()
            predicted_label = model(text, offsets)
            loss = criterion(predicted_label, label)
            model.backward(criterion.backward())
            xn.optim.clip_grad_norm(model.parameters(), 0.1)
            optimizer.step()

            t_optimizer.zero_grad()
            t_predicted = theirs(torch.from_numpy(text), torch.from_numpy(offsets))
            t_loss = torch.nn.CrossEntropyLoss()(t_predicted, torch.from_numpy(label))
            t_loss.backward()
            torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.1)
            t_optimizer.step()
            assert loss.item() == pytest.approx(t_loss.item(), rel=1e-12)
        scheduler.step()
        t_scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        assert lr == t_optimizer.param_groups[0]["lr"] == pytest.approx(5 * 0.1**(epoch + 1))
    _same_weights(model, theirs, "text classifier")
    label, text, offsets = collate_batch(data[16:])
    model.eval()
    theirs.eval()
    with xn.no_grad(), torch.no_grad():
        total_acc = (model(text, offsets).argmax(1) == label).sum().item()
        assert total_acc == (theirs(torch.from_numpy(text), torch.from_numpy(offsets)).argmax(1)
                             == torch.from_numpy(label)).sum().item()
        text = np.array(data[3][1])
        assert model(text, np.array([0])).argmax(1).item() == theirs(torch.from_numpy(text),
                                                                     torch.tensor([0])).argmax(1).item()


def test_flat_ids_with_offsets_given_to_xn_train_say_to_pad_them_into_rows():
    """xn.train(model, ((text, offsets), label)) said only "x[0] has 19 samples but y has 4; they must match" (and
    predict alike): flat ids and offsets cannot be cut into batches alike. The error says to give (B, T) ids padded
    with the EmbeddingBag's padding_idx, which give the same bags: the same outputs, and xn.train runs on them."""
    rng = np.random.default_rng(0)
    data = [(int(rng.integers(0, 4)), rng.integers(1, 30, n).tolist()) for n in (3, 7, 1, 8)]
    label, text, offsets = collate_batch(data)
    model = TextClassificationModel(30, 6, 4)
    hint = r"flat ids with offsets .* cannot be cut into batches alike: give it \(B, T\) ids, a bag per row padded"
    with pytest.raises(ValueError, match="x\\[0\\] has 19 samples but y has 4; they must match; " + hint):
        xn.train(model, ((text, offsets), label), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=2)
    with pytest.raises(ValueError, match=r"the inputs hold \[19, 4\] samples; they must match; " + hint):
        model.predict(text, offsets)
    rows = np.zeros((4, 8), dtype=np.int64)  # id 0: the padding
    for i, (_, ids) in enumerate(data):
        rows[i, :len(ids)] = ids
    padded = xn.Sequential(nn.EmbeddingBag(30, 6, padding_idx=0), nn.Linear(6, 4))
    padded.load_state_dict(dict(zip(padded.state_dict(), model.state_dict().values())))
    np.testing.assert_allclose(padded.predict(rows), model(text, offsets, train=False), rtol=1e-6)
    xn.train(padded, (rows, label), loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=2, progress=False)


# ---- pytorch/examples fast_neural_style: transformer_net.py, utils.gram_matrix, neural_style.train ----

class ConvLayer(xn.Model):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        reflection_padding = kernel_size // 2
        self.reflection_pad = nn.ReflectionPad2d(reflection_padding)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x, train=True):
        out = self.reflection_pad(x)
        out = self.conv2d(out)
        return out

    def backward(self, dy):
        return self.reflection_pad.backward(self.conv2d.backward(dy))


class ResidualBlock(xn.Model):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x, train=True):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        out = out + residual
        return out

    def backward(self, dy):  # the residual's share added
        return self.conv1.backward(self.in1.backward(self.relu.backward(self.conv2.backward(self.in2.backward(dy))))) \
            + dy


class UpsampleConvLayer(xn.Model):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=upsample, mode="nearest") if upsample else nn.Identity()
        reflection_padding = kernel_size // 2
        self.reflection_pad = nn.ReflectionPad2d(reflection_padding)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x, train=True):
        x_in = self.upsample(x)
        out = self.reflection_pad(x_in)
        out = self.conv2d(out)
        return out

    def backward(self, dy):
        return self.upsample.backward(self.reflection_pad.backward(self.conv2d.backward(dy)))


class TransformerNet(xn.Model):
    """The example's network, its widths 32, 64 and 128 shrunk to 4, 6 and 8 (five residual blocks kept)."""

    def __init__(self):
        super().__init__()
        self.conv1 = ConvLayer(3, 4, kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(4, affine=True)
        self.conv2 = ConvLayer(4, 6, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(6, affine=True)
        self.conv3 = ConvLayer(6, 8, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(8, affine=True)
        self.res = [ResidualBlock(8) for _ in range(5)]  # the example's res1 ... res5
        self.deconv1 = UpsampleConvLayer(8, 6, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(6, affine=True)
        self.deconv2 = UpsampleConvLayer(6, 4, kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(4, affine=True)
        self.deconv3 = ConvLayer(4, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, X, train=True):
        y = self.relu(self.in1(self.conv1(X)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for block in self.res:
            y = block(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)

    def backward(self, dy):
        d = self.deconv2.backward(self.in5.backward(self.relu.backward(self.deconv3.backward(dy))))
        d = self.deconv1.backward(self.in4.backward(self.relu.backward(d)))
        for block in reversed(self.res):
            d = block.backward(d)
        d = self.conv3.backward(self.in3.backward(self.relu.backward(d)))
        d = self.conv2.backward(self.in2.backward(self.relu.backward(d)))
        return self.conv1.backward(self.in1.backward(self.relu.backward(d)))


class Vgg16(xn.Model):
    """The example's Vgg16 cut to a stand-in: four slices of a tiny conv stack (no download), frozen, returning
    the four features by name; its backward takes their four gradients, each added where its feature leaves."""

    def __init__(self, requires_grad=False):
        super().__init__()
        self.slice1 = xn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.slice2 = xn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.slice3 = xn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.slice4 = xn.Sequential(nn.MaxPool2d(2), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.requires_grad_(requires_grad)

    def forward(self, X, train=True):
        h_relu1_2 = self.slice1(X)
        h_relu2_2 = self.slice2(h_relu1_2)
        h_relu3_3 = self.slice3(h_relu2_2)
        h_relu4_3 = self.slice4(h_relu3_3)
        return VggOutputs(h_relu1_2, h_relu2_2, h_relu3_3, h_relu4_3)

    def backward(self, d1, d2, d3, d4):
        d = self.slice3.backward(self.slice4.backward(d4) + d3) + d2
        return self.slice1.backward(self.slice2.backward(d) + d1)


VggOutputs = __import__("collections").namedtuple("VggOutputs", ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
MEAN, STD = np.array([0.485, 0.456, 0.406])[:, None, None], np.array([0.229, 0.224, 0.225])[:, None, None]


def gram_matrix(y):
    (b, ch, h, w) = y.shape
    features = np.reshape(y, (b, ch, w * h))
    return features @ np.transpose(features, (0, 2, 1)) / (ch * h * w)


def gram_matrix_backward(y, dgram):
    """y's gradient from its Gram matrix's: (dG + dG^T) F / (ch h w), written out (no autograd)."""
    (b, ch, h, w) = y.shape
    features = np.reshape(y, (b, ch, w * h))
    return np.reshape((dgram + np.transpose(dgram, (0, 2, 1))) @ features / (ch * h * w), y.shape)


def normalize_batch(batch):
    return (batch / 255.0 - MEAN) / STD


def _torch_fast_neural_style(torch):
    """transformer_net.py from its source (widths shrunk alike), the Vgg16 stand-in, utils' two functions."""
    class TorchConvLayer(torch.nn.Module):
        def __init__(self, in_channels, out_channels, kernel_size, stride):
            super().__init__()
            reflection_padding = kernel_size // 2
            self.reflection_pad = torch.nn.ReflectionPad2d(reflection_padding)
            self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

        def forward(self, x):
            return self.conv2d(self.reflection_pad(x))

    class TorchResidualBlock(torch.nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.conv1 = TorchConvLayer(channels, channels, kernel_size=3, stride=1)
            self.in1 = torch.nn.InstanceNorm2d(channels, affine=True)
            self.conv2 = TorchConvLayer(channels, channels, kernel_size=3, stride=1)
            self.in2 = torch.nn.InstanceNorm2d(channels, affine=True)
            self.relu = torch.nn.ReLU()

        def forward(self, x):
            residual = x
            out = self.relu(self.in1(self.conv1(x)))
            out = self.in2(self.conv2(out))
            return out + residual

    class TorchUpsampleConvLayer(torch.nn.Module):
        def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
            super().__init__()
            self.upsample = upsample
            reflection_padding = kernel_size // 2
            self.reflection_pad = torch.nn.ReflectionPad2d(reflection_padding)
            self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

        def forward(self, x):
            x_in = x
            if self.upsample:
                x_in = torch.nn.functional.interpolate(x_in, mode='nearest', scale_factor=self.upsample)
            return self.conv2d(self.reflection_pad(x_in))

    class TorchTransformerNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = TorchConvLayer(3, 4, kernel_size=9, stride=1)
            self.in1 = torch.nn.InstanceNorm2d(4, affine=True)
            self.conv2 = TorchConvLayer(4, 6, kernel_size=3, stride=2)
            self.in2 = torch.nn.InstanceNorm2d(6, affine=True)
            self.conv3 = TorchConvLayer(6, 8, kernel_size=3, stride=2)
            self.in3 = torch.nn.InstanceNorm2d(8, affine=True)
            self.res = torch.nn.ModuleList([TorchResidualBlock(8) for _ in range(5)])
            self.deconv1 = TorchUpsampleConvLayer(8, 6, kernel_size=3, stride=1, upsample=2)
            self.in4 = torch.nn.InstanceNorm2d(6, affine=True)
            self.deconv2 = TorchUpsampleConvLayer(6, 4, kernel_size=3, stride=1, upsample=2)
            self.in5 = torch.nn.InstanceNorm2d(4, affine=True)
            self.deconv3 = TorchConvLayer(4, 3, kernel_size=9, stride=1)
            self.relu = torch.nn.ReLU()

        def forward(self, X):
            y = self.relu(self.in1(self.conv1(X)))
            y = self.relu(self.in2(self.conv2(y)))
            y = self.relu(self.in3(self.conv3(y)))
            for block in self.res:
                y = block(y)
            y = self.relu(self.in4(self.deconv1(y)))
            y = self.relu(self.in5(self.deconv2(y)))
            return self.deconv3(y)

    class TorchVgg16(torch.nn.Module):
        def __init__(self):
            super().__init__()
            tnn = torch.nn
            self.slice1 = tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1), tnn.ReLU())
            self.slice2 = tnn.Sequential(tnn.MaxPool2d(2), tnn.Conv2d(4, 4, 3, padding=1), tnn.ReLU())
            self.slice3 = tnn.Sequential(tnn.Conv2d(4, 6, 3, padding=1), tnn.ReLU())
            self.slice4 = tnn.Sequential(tnn.MaxPool2d(2), tnn.Conv2d(6, 6, 3, padding=1), tnn.ReLU())
            for param in self.parameters():
                param.requires_grad = False

        def forward(self, X):
            h_relu1_2 = self.slice1(X)
            h_relu2_2 = self.slice2(h_relu1_2)
            h_relu3_3 = self.slice3(h_relu2_2)
            return VggOutputs(h_relu1_2, h_relu2_2, h_relu3_3, self.slice4(h_relu3_3))

    def torch_gram_matrix(y):
        (b, ch, h, w) = y.size()
        features = y.view(b, ch, w * h)
        features_t = features.transpose(1, 2)
        return features.bmm(features_t) / (ch * h * w)

    def torch_normalize_batch(batch):
        mean = batch.new_tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
        std = batch.new_tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
        batch = batch.div_(255.0)
        return (batch - mean) / std

    return TorchTransformerNet(), TorchVgg16(), torch_gram_matrix, torch_normalize_batch


def test_fast_neural_style_trains_the_transformer_as_pytorchs():
    """neural_style.train's step: the transformer's output and the batch normalised, both through the frozen
    "vgg", the content loss on relu2_2 and the style loss on the Gram matrices of the four features, Adam. Each
    MSE call's gradient is taken right after it; the Gram matrix's backward is written out; vgg(x), the target,
    runs under no_grad before vgg(y) (after it, vgg's backward would take x's caches: see the note in
    docs/from-pytorch.md). Losses and the transformer's weights after the steps equal PyTorch's."""
    torch = _torch()
    torch.manual_seed(0)
    t_transformer, t_vgg, torch_gram_matrix, torch_normalize_batch = _torch_fast_neural_style(torch)
    t_transformer, t_vgg = t_transformer.double(), t_vgg.double()
    transformer, vgg = TransformerNet().to(dtype="float64"), Vgg16(requires_grad=False).to(dtype="float64")
    xn.load_torch_state_dict(transformer, t_transformer.state_dict())
    xn.load_torch_state_dict(vgg, t_vgg.state_dict())
    content_weight, style_weight, rng = 1e5, 1e10, np.random.default_rng(0)
    style = np.repeat(rng.uniform(0, 255, (1, 3, 16, 16)), 2, axis=0)
    optimizer = xn.optim.Adam(transformer.parameters(), 1e-3)
    t_optimizer = torch.optim.Adam(t_transformer.parameters(), 1e-3)
    mse_loss = xn.losses.MeanSquaredError()
    with xn.no_grad():
        gram_style = [gram_matrix(y) for y in vgg(normalize_batch(style))]
    t_gram_style = [torch_gram_matrix(y) for y in t_vgg(torch_normalize_batch(torch.from_numpy(style)))]
    transformer.train()
    t_transformer.train()
    for _ in range(2):
        x = rng.uniform(0, 255, (2, 3, 16, 16))
        n_batch = len(x)
        optimizer.zero_grad()
        y = transformer(x)
        with xn.no_grad():
            features_x = vgg(normalize_batch(x))
        features_y = vgg(normalize_batch(y))
        content_loss = content_weight * mse_loss(features_y.relu2_2, features_x.relu2_2)
        d_features = [np.zeros_like(f) for f in features_y]
        d_features[1] += content_weight * mse_loss.backward()
        style_loss = 0.
        for i, (ft_y, gm_s) in enumerate(zip(features_y, gram_style)):
            style_loss += mse_loss(gram_matrix(ft_y), gm_s[:n_batch, :, :])
            d_features[i] += style_weight * gram_matrix_backward(ft_y, mse_loss.backward())
        style_loss *= style_weight
        total_loss = content_loss + style_loss
        transformer.backward(vgg.backward(*d_features) / STD / 255.0)
        optimizer.step()

        t_x = torch.from_numpy(x)
        t_optimizer.zero_grad()  # the example's step as it is
        t_y = t_transformer(t_x)
        t_y = torch_normalize_batch(t_y)
        t_x = torch_normalize_batch(t_x)
        t_features_y = t_vgg(t_y)
        t_features_x = t_vgg(t_x)
        t_content_loss = content_weight * torch.nn.MSELoss()(t_features_y.relu2_2, t_features_x.relu2_2)
        t_style_loss = 0.
        for ft_y, gm_s in zip(t_features_y, t_gram_style):
            t_style_loss += torch.nn.MSELoss()(torch_gram_matrix(ft_y), gm_s[:n_batch, :, :])
        t_style_loss *= style_weight
        t_total_loss = t_content_loss + t_style_loss
        t_total_loss.backward()
        t_optimizer.step()
        assert content_loss.item() == pytest.approx(t_content_loss.item(), rel=1e-10)
        assert total_loss.item() == pytest.approx(t_total_loss.item(), rel=1e-10)
    # A per-channel constant that reaches an InstanceNorm through convolutions alone changes no output (the bias of
    # a convolution before one, a residual block's in2.bias, added to the stream before the next block's and
    # deconv1's): its gradient is rounding noise, which Adam scales to steps of about lr, different on each side
    normalized = lambda name: (name.endswith("conv2d.bias") and not name.startswith("deconv3")  # noqa: E731
                               or name.startswith("res.") and name.endswith("in2.bias"))
    _same_weights(transformer, t_transformer, "style transformer", skip=normalized)
    _same_weights(vgg, t_vgg, "frozen vgg")
