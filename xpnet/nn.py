"""There is no ``xpnet.nn``: importing it says where PyTorch's ``torch.nn`` names live in xpnet."""

raise ImportError(
    "xpnet has no nn module: layers are in xpnet.layers (import xpnet as xn; xn.layers.Linear, xn.layers.Conv2d, "
    "...), losses in xn.losses (xn.losses.SoftmaxCrossEntropy), the model is xn.Sequential(...); "
    "docs/from-pytorch.md maps the rest"
)
