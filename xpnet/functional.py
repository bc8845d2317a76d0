"""There is no ``xpnet.functional``: importing it (``import torch.nn.functional as F`` ported) says that every
operation is a layer object, and which."""

raise ImportError(
    "xpnet has no functional module: every operation is a layer object, called as layer(x) in forward, with its "
    "backward called in yours (xpnet has no autograd): F.relu(x) is xn.layers.ReLU(), F.tanh xn.layers.Tanh(), "
    "F.softmax(x, dim) xn.layers.Softmax(dim), F.log_softmax(x, dim) xn.layers.LogSoftmax(dim), F.dropout "
    "xn.layers.Dropout(p), F.interpolate xn.layers.Upsample(...), F.scaled_dot_product_attention "
    "xn.layers.ScaledDotProductAttention(...); the losses are in xn.losses (F.cross_entropy: "
    "xn.losses.SoftmaxCrossEntropy(), F.binary_cross_entropy(y, t, reduction='sum'): "
    "xn.losses.BCELoss(reduction='sum')); F.affine_grid(theta, x.shape) and F.grid_sample(x, grid) (the spatial "
    "transformer tutorial) xn.layers.AffineGrid() and xn.layers.GridSample(), their backwards giving dtheta and "
    "(dx, dgrid); "
    "docs/from-pytorch.md maps the rest"
)
