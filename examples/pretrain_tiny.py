#!/usr/bin/env python
"""Pre-train the "tiny" backbone on a large synthetic pool (the shipped weights' recipe).

The shipped file ``xreid/backbones/pretrained/tiny-synthetic.safetensors`` was written with
these defaults::

    OMP_NUM_THREADS=1 python examples/pretrain_tiny.py --threads 1 \\
        --output xreid/backbones/pretrained/tiny-synthetic.safetensors

The logic lives in :mod:`xreid.experiments.pretrain_tiny` (``--help`` lists the options; see
docs/backbones.md "Pre-trained tiny weights").
"""

from __future__ import annotations

import sys

from xreid.experiments.pretrain_tiny import main

if __name__ == "__main__":
    sys.exit(main())
