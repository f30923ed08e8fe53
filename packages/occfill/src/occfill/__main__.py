"""``python -m occfill``: see :mod:`occfill.cli`."""

import sys

from .cli import main

sys.exit(main())
