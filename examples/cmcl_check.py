#!/usr/bin/env python
"""Which side satisfied CMCL (Eq. 9)? The encoder/CII swap check of a trained run.

The logic lives in :mod:`xreid.experiments.cmcl_check` (``--help`` lists the options).
"""

from __future__ import annotations

import sys

from xreid.experiments.cmcl_check import main

if __name__ == "__main__":
    sys.exit(main())
