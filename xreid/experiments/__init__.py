"""The logic of the example scripts that run experiments on the training API.

* :mod:`xreid.experiments.study`: the paper's ablation studies (Tables 3-5, Figs. 4-5) over
  seeds, with a summary table and figures (``examples/study.py``).
* :mod:`xreid.experiments.recipe_check`: the demo recipe on six synthetic datasets (two of them
  the mannequin transfer group)
  (``examples/recipe_check.py``).
* :mod:`xreid.experiments.cmcl_check`: where CMCL's gradient goes (``examples/cmcl_check.py``).
* :mod:`xreid.experiments.pretrain_tiny`: pre-training the "tiny" backbone on a rendered pool,
  the bundled weights' recipe (``examples/pretrain_tiny.py``).

Each module's ``main(argv)`` is its script; the scripts in ``examples/`` only call it.
"""

__all__: list[str] = []
