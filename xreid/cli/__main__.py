"""``python -m xreid.cli``: the ``xreid`` command."""

import sys

from xreid.cli import main

sys.exit(main())
