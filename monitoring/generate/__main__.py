"""``python -m monitoring.generate``: see :mod:`monitoring.generate.cli`."""

import sys

from .cli import main

sys.exit(main())
