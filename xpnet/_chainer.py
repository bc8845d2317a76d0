"""What a Chainer user types first, and what xpnet has instead (docs/from-chainer.md): the keywords of
Chainer's links, functions and optimizers that xpnet spells otherwise, for ``_user.keyword_hints``, and
the refusal of a size left for the first forward (``Linear(None, 100)``)."""

from __future__ import annotations

_INITIALW = ("init='sigmoid' is Chainer's default LeCunNormal (std sqrt(1/fan_in)); init= also takes 'he', 'xavier', "
             "a standard deviation (where Chainer's initialW=number fills W with that number) or a callable "
             "f(shape, rng); weights of your own go in layer.params['W'] after the layer is built")
_BIAS = ("biases start at zero (Chainer's initial_bias=None or 0); another start: set layer.params['b'] after the "
         "layer is built")
_NOBIAS = "bias=False is Chainer's nobias=True"

LINEAR = {
    "nobias": _NOBIAS,
    "initialW": _INITIALW + " (W is (in, out) here: Chainer's W.T)",
    "initial_bias": _BIAS,
    "in_size": "in_features=... (the input size, which xpnet needs when the layer is built)",
    "out_size": "out_features=...",
}

CONV2D = {
    "ksize": "kernel_size=... (the third argument, as Chainer's ksize)",
    "pad": "padding=... (the fifth argument, as Chainer's pad)",
    "nobias": _NOBIAS,
    "initialW": _INITIALW + " (W is (out, in, kh, kw), as Chainer's)",
    "initial_bias": _BIAS,
    "dilate": "dilation=... is Chainer's dilate (PyTorch's name: by keyword, or the sixth argument)",
}

POOL = {
    "ksize": "kernel_size=... (the first argument, as F.max_pooling_2d's ksize; stride defaults to it, as there)",
    "pad": "padding=... (the third argument, as Chainer's pad)",
    "cover_all": "ceil_mode=True is Chainer's cover_all=True (F.max_pooling_2d's default: a last window that runs "
                 "past the input is kept) at padding 0, ceil_mode=False (xpnet's default) its cover_all=False; with "
                 "padding, Chainer also keeps a last window that starts in the right padding, which xpnet drops "
                 "(as PyTorch)",
}

DROPOUT = {"ratio": "p=ratio: Dropout(p) drops each value with probability p and scales the rest by 1 / (1 - p), as "
                    "F.dropout(x, ratio) does"}

BATCHNORM = {
    "size": "num_features=... (the first argument)",
    "decay": "momentum=1 - decay (Chainer's decay=0.9 is momentum=0.1, the default); the second positional "
             "argument is eps (PyTorch's order)",
    "use_gamma": "affine=False leaves out both gamma and beta (xpnet has no one without the other)",
    "use_beta": "affine=False leaves out both gamma and beta (xpnet has no one without the other)",
}

SOFTMAX_CROSS_ENTROPY = {
    "ignore_label": "ignore_index=-1 is Chainer's ignore_label=-1 (Chainer's default; xpnet's is PyTorch's -100)",
    "class_weight": "weight=class_weight, by keyword; the mean then divides by the counted labels' weights "
                    "(PyTorch's), where Chainer's divides by their number: for Chainer's, reduction='sum' and "
                    "divide by the number of counted labels",
    "normalize": "the mean over the counted labels is Chainer's normalize=True; for normalize=False (the sum over "
                 "the batch size), reduction='sum' and divide by the batch size",
    "reduce": "reduction='mean' (the default) is Chainer's reduce='mean'; a loss per sample (reduce='no') is not "
              "in xpnet",
}

ADAM = {
    "alpha": "lr=alpha (Chainer's Adam(alpha=1e-3) adds eps to the raw sqrt(v): Adam(lr=1e-3, convention='book', "
             "eps=1e-8) steps as it does)",
    "beta1": "betas=(beta1, beta2), one pair (PyTorch's)",
    "beta2": "betas=(beta1, beta2), one pair (PyTorch's)",
    "eta": "fold eta into the learning rate: lr=alpha * eta",
    "weight_decay_rate": "xn.optim.AdamW(lr, weight_decay=weight_decay_rate / lr): Chainer's shrinks p by "
                         "weight_decay_rate each step, AdamW by lr * weight_decay",
    "adabound": "xpnet has no AdaBound",
}


_SIZE_HINT = ("xpnet draws the weights when the layer is built, in the seeded order, so it needs the input size then; "
              "model.summary(input_shape=...) of a model of the layers before it prints that size (C * H * W after "
              "Flatten)")


def lazy_size(layer: str, arg: str) -> str:
    """The refusal of ``arg=None`` (Chainer's ``L.Linear(None, 100)``, PyTorch's ``LazyLinear``)."""
    return (f"{layer}: {arg}=None (a size found at the first forward, Chainer's {layer}(None, ...)) is not in "
            f"xpnet: give {arg}; {_SIZE_HINT}")


# What a Chainer user calls on an optimizer (after optimizer.setup(model), which xpnet has).
OPTIMIZER = {
    "update": "optimizer.step() is Chainer's optimizer.update(); its update(lossfun, x, t) needs autograd: "
              "loss.forward(model(x), t); model.backward(loss.backward()); optimizer.step()",
    "add_hook": "Chainer's WeightDecay(rate) hook is weight_decay=rate, weight_decay_on='all' (every parameter, as "
                "the hook); GradientClipping(threshold) is xn.optim.clip_grad_norm(model, threshold) before step(), "
                "or xn.train(..., clip_grad_norm=threshold); GradientHardClipping(-c, c) is "
                "xn.optim.clip_grad_value(model, c), or xn.train(..., clip_grad_value=c)",
    "target": "the model an optimizer updates is the one given to setup(model) or to the optimizer itself; xpnet "
              "keeps it to itself (optimizer.step() updates it)",
}

_CONFIG = ("xpnet has no global configuration: the mode is the model's, model.eval() (or model.predict(x), "
           "model.forward(x, train=False), xn.evaluate) for chainer.using_config('train', False), and "
           "model.training for chainer.config.train; enable_backprop=False is xn.no_grad() (xpnet records nothing)")
_LINKS = ("layers are in xn.layers (L.Linear is xn.layers.Linear, L.Convolution2D xn.layers.Conv2d, "
          "L.BatchNormalization xn.layers.BatchNorm), losses in xn.losses; docs/from-chainer.md maps the rest")

# What a Chainer user reaches for in chainer (import xpnet as xn standing for import chainer).
MODULE = {
    "using_config": _CONFIG,
    "config": _CONFIG,
    "serializers": "model.save(path) is serializers.save_npz(path, model) (the file holds the architecture too), "
                   "xn.load(path) reads it back; into a model you built: model.load_state_dict(xn.load(path)"
                   ".state_dict()); a file Chainer wrote: xn.load_chainer_npz(file, model, path='predictor/'); "
                   "an optimizer's state: opt.state_dict() / opt.load_state_dict(d)",
    "load_npz": "xn.load_chainer_npz(file, model, path='', strict=True) is serializers.load_npz(file, model, ...): "
                "a file of Chainer's save_npz into the xpnet model whose attributes bear the Chain's names "
                "(path='predictor/' for an L.Classifier's)",
    "links": _LINKS,
    "L": _LINKS,
    "functions": "xpnet has no functional API: every operation is a layer object (F.relu is xn.layers.ReLU(), "
                 "F.dropout(x, ratio) xn.layers.Dropout(p=ratio), F.max_pooling_2d(x, 2) xn.layers.MaxPool2d(2, "
                 "ceil_mode=True), F.softmax_cross_entropy xn.losses.SoftmaxCrossEntropy(ignore_index=-1))",
    "Chain": "a model of your own subclasses xn.Model: layers assigned as attributes in __init__ (with or without "
             "self.init_scope()), forward(x, train=True) and backward(dy) written out (xpnet has no autograd)",
    "ChainList": "xn.Sequential(layer, ...) for a chain of layers; a list of layers assigned as an attribute of an "
                 "xn.Model is registered too (self.blocks = [...])",
    "Variable": "xpnet has no Variable: layers take NumPy arrays (or CuPy, PyTorch, JAX arrays) and return arrays",
    "get_device": "xn.device('cuda:0') is chainer.get_device('@cupy:0'), xn.device('cpu') its '@numpy'",
    "backends": "xn.to_device(x, 'cuda') is chainer.backends.cuda.to_gpu(x), xn.to_numpy(x) its to_cpu(x), "
                "xn.backend.namespace(x) its get_array_module(x) (the array-API namespace of x)",
    "optimizers": "optimizers are in xn.optim (MomentumSGD is xn.optim.Momentum(lr, momentum), Adam xn.optim.Adam)",
    "iterators": "xn.datasets.BatchIterator(x, t, batch_size=100, seed=0) is SerialIterator: "
                 "for x, t in it.epoch(n) gives one epoch's shuffled batches; xn.train(..., batch_size=...) cuts them "
                 "itself",
    "Reporter": "xn.train returns a History (history.epochs: loss and accuracy per epoch) and prints them",
}

LAYERS = {
    "Classifier": "xpnet keeps the loss apart from the model: xn.train(model, (x, t), loss=xn.losses."
                  "SoftmaxCrossEntropy()) logs the loss and the accuracy, as L.Classifier(model) reports them",
    "LazyLinear": "xpnet has no lazy layers: xn.layers.Linear(in_features, out_features); " + _SIZE_HINT,
    "LazyConv2d": "xpnet has no lazy layers: xn.layers.Conv2d(in_channels, out_channels, kernel_size); " + _SIZE_HINT,
    **{f"Lazy{name}": f"xpnet has no lazy layers: xn.layers.{name}({args}); " + _SIZE_HINT for name, args in (
        ("Conv1d", "in_channels, out_channels, kernel_size"), ("ConvTranspose1d", "in_channels, out_channels, "
         "kernel_size"), ("ConvTranspose2d", "in_channels, out_channels, kernel_size"), ("InstanceNorm1d",
         "num_features"), ("InstanceNorm2d", "num_features"))},
    **{f"LazyBatchNorm{d}": "xpnet has no lazy layers: xn.layers.BatchNorm(num_features); " + _SIZE_HINT
       for d in ("1d", "2d")},
}

# What a Chainer user calls on a model (a Chain).
MODEL = {
    "xp": "model.device.xp is the model's array-API namespace (Chainer's link.xp)",
    "count_params": "model.summary() ends with the parameter count; or sum(p.size for p in "
                    "model.named_params().values())",
    "links": "model.named_modules() is a dict of every layer and model inside, by dotted name",
    "add_link": "assign the layer as an attribute (self.fc = xn.layers.Linear(...)) or setattr(model, name, layer)",
    "serialize": "model.state_dict() and model.load_state_dict(d) (or model.save(path), xn.load(path))",
    "copyparams": "model.load_state_dict(other.state_dict())",
}

DATASETS = {
    "get_mnist": "(x, t), (x_test, t_test) = xn.datasets.load_mnist() is get_mnist()'s data: float32 in [0, 1], "
                 "(N, 784) (flatten=False: (N, 1, 28, 28), Chainer's ndim=3), int labels, as arrays, not tuples",
    "get_fashion_mnist": "(x, t), (x_test, t_test) = xn.datasets.load_fashion_mnist(), as load_mnist()",
    "get_cifar10": "xpnet has no CIFAR loader: any (N, 3, 32, 32) float32 array and int labels train with xn.train",
    "get_cifar100": "xpnet has no CIFAR loader: any (N, 3, 32, 32) float32 array and int labels train with xn.train",
    "TupleDataset": "xpnet takes the arrays themselves: xn.train(model, (x, t), ...)",
    "SerialIterator": "xn.datasets.BatchIterator(x, t, batch_size=100, seed=0): for x, t in it.epoch(n)",
}

# What a Chainer user reads off a layer (a link).
LAYER = {
    "W": "layer.params['W'] is the weight array (Linear's is (in, out): Chainer's W.array.T; Conv2d's "
         "(out, in, kh, kw), as Chainer's)",
    "b": "layer.params['b'] is the bias array",
}
