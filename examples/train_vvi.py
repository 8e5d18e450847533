#!/usr/bin/env python
"""Train and evaluate X-ReID for video-based visible-infrared person re-identification.

The reference script: the same command as the installed ``xreid train`` (``xreid.cli.train``).
With no arguments: generate (once) a small synthetic dataset in the HITSZ-VCM layout, train the
full X-ReID model (CPC + SII + LII + CII, every Eq. 10 loss) with the "tiny" backbone on CPU,
evaluate I2V and V2I before and after training, and write metrics.json, plots, a JSONL log and
the final checkpoint into the output folder.

Options are ``--section.option VALUE`` (``--help`` lists them; the flat flags of earlier
versions such as ``--lr`` still work), applied over ``--preset`` → ``--variant`` → ``--config``.

Real data:
    python examples/train_vvi.py --preset paper --data.root /data/HITSZ-VCM \\
        --model.weights ViT-B-16.safetensors --run.device cuda --run.amp bf16
Several GPUs:
    torchrun --nproc_per_node 4 examples/train_vvi.py --preset paper ...
Print, edit and reuse a configuration:
    python examples/train_vvi.py --preset paper --print-config > paper.yaml
    python examples/train_vvi.py --config paper.yaml --optim.lr 5e-6
"""

from __future__ import annotations

import sys

from xreid.cli.train_script import script_main as main

if __name__ == "__main__":
    sys.exit(main())
