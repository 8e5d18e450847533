#!/usr/bin/env python
"""Run a whole ablation of the X-ReID paper (a table or a figure) and summarise it.

The logic lives in :mod:`xreid.experiments.study` (``--help`` lists the options).
"""

from __future__ import annotations

import sys

from xreid.experiments.study import main

if __name__ == "__main__":
    sys.exit(main())
