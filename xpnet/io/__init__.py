"""Files written and read safely.

- ``paths``: paths as users give them; saves and loads touch regular files only (a symlink is
  followed to its target; a FIFO, a device or a folder is refused before it is opened);
- ``atomic``: every write goes to a temporary file in the target's folder, then a rename;
- ``signals``: SIGTERM (what batch schedulers send) handled like Ctrl-C during a save or a run;
- ``streams``: binary file objects given instead of a path (``xn.save(obj, io.BytesIO())``), written at their
  position without atomicity, read from it (the archive that starts there);
- ``npz``: the ``.npz`` reader that checks each array's header before reading its data;
- ``tree_file``: a tree of values (a state dict, PyTorch's checkpoint dict) in one ``.npz``, without pickle;
- ``unpickle``: pickles that may hold only arrays (the book's weight files), never plain ``pickle.load``;
- ``torch_file``: PyTorch's ``.pt``/``.pth`` files of ``torch.save`` read without torch, their pickle through an
  allow-list of what a state dict needs (torch's own for ``weights_only=True``, cut down).

It may import only ``xpnet._user`` and third-party libraries; models, training, the book and the
command line write and read through it.
"""

from .paths import XpnetFileError

__all__ = ["XpnetFileError"]
