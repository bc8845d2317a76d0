"""``python -m xpnet``: see :mod:`xpnet.cli`."""

import sys

from .cli import main

sys.exit(main())
