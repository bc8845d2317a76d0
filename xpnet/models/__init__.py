"""Models: layers put together, saved and loaded.

- ``sequential``: :class:`Sequential`, layers applied in order;
- ``files``: a model as a device-independent ``.npz`` file (``model.save``, ``xn.load``);
- ``summary``: the table of layers, output shapes and parameter counts.

It may import the layers, ``xpnet.io``, ``xpnet.init`` and the backend; training, gradcheck, the book
and the command line stand on it.
"""

from .files import XpnetFileError, load
from .sequential import Sequential

__all__ = ["Sequential", "XpnetFileError", "load"]
