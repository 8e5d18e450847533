"""The entry point of ``examples/train_vvi.py``: ``xreid train`` under the script's name."""

from __future__ import annotations

from xreid.cli.train import train_main

__all__ = ["PROG", "script_main"]

PROG = "train_vvi.py"


def script_main(argv: list[str] | None = None) -> int:
    """``xreid train`` with errors prefixed ``train_vvi.py:``."""
    return train_main(argv, prog=PROG)


main = script_main  # the name the example script and the tests call
