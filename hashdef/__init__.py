"""Defensive hash classifier and gradient inhibition (Wang et al., "Model compression hardens deep neural
networks", IEEE TNNLS 2021; REFERENCE section 5), a plug-in of ``hrs_tf``.

Importing the package registers its Keras layers (:mod:`hashdef.layers`), its architectures (the paper's seven-layer
model, :mod:`hashdef.architectures`) and its defenses (:mod:`hashdef.defenses`: ``hash``, ``gi1``-``gi3``, and the
paper's baselines ``bits``, ``median``, ``prune``, ``quantize``). The robustness estimator and compression-rate
search are in :mod:`hashdef.robustness` and :mod:`hashdef.experiments.cr_search`; the paper's tables in
:mod:`hashdef.experiments.reproduction`.
"""

from hashdef import architectures, defenses, layers  # noqa: F401  (registration on import)
