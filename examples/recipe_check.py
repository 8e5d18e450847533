#!/usr/bin/env python
"""Check a training recipe across differently configured synthetic datasets.

The logic lives in :mod:`xreid.experiments.recipe_check` (``--help`` lists the options).
"""

from __future__ import annotations

import sys

from xreid.experiments.recipe_check import main

if __name__ == "__main__":
    sys.exit(main())
