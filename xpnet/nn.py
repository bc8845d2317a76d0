"""There is no ``xpnet.nn``: importing it says where PyTorch's ``torch.nn`` names live in xpnet."""

raise ImportError(
    "xpnet has no nn module: layers are in xpnet.layers (import xpnet as xn; xn.layers.Linear, xn.layers.Conv2d, "
    "...), losses in xn.losses (xn.losses.SoftmaxCrossEntropy), the model is xn.Sequential(...); "
    "nn.utils' spectral_norm(m) and weight_norm(m) are the layers xn.layers.SpectralNorm(m), xn.layers.WeightNorm(m), "
    "nn.utils.rnn's pack_padded_sequence, pad_packed_sequence and pad_sequence are xn.layers.pack_padded_sequence, "
    "xn.layers.pad_packed_sequence, xn.layers.pad_sequence; nn.utils.parameters_to_vector: xn.utils's error says "
    "what to write; "
    "docs/from-pytorch.md maps the rest"
)
