"""``python -m xreid``: the ``xreid`` command (see :mod:`xreid.cli`)."""

import sys

from xreid.cli import main

sys.exit(main())
