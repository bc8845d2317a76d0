"""There is no ``xpnet.functional``: importing it (``import torch.nn.functional as F`` ported) says that every
operation is a layer object, and which."""

raise ImportError(
    "xpnet has no functional module: every operation is a layer object, called as layer(x) in forward, with its "
    "backward called in yours (xpnet has no autograd): F.relu(x) is xn.layers.ReLU(), F.tanh xn.layers.Tanh(), "
    "F.softmax(x, dim) xn.layers.Softmax(dim), F.log_softmax(x, dim) xn.layers.LogSoftmax(dim), F.dropout "
    "xn.layers.Dropout(p), F.interpolate xn.layers.Upsample(...), F.scaled_dot_product_attention "
    "xn.layers.ScaledDotProductAttention(...); the losses are in xn.losses (F.cross_entropy: "
    "xn.losses.SoftmaxCrossEntropy(), F.binary_cross_entropy(y, t, reduction='sum'): "
    "xn.losses.BCELoss(reduction='sum')); F.affine_grid and F.grid_sample (the spatial transformer tutorial) have no "
    "layer yet: write them as a layer of your own (xn.layers.Layer, forward and backward written out); "
    "docs/from-pytorch.md maps the rest"
)
