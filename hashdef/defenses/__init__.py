"""The hash paper's registered defenses, one module each (importing registers them):

- :mod:`.hash_classifier`: ``hash[:CR1,CR2]``, the defensive hash classifier (installed, fine-tuned);
- :mod:`.gradient_inhibition`: ``gi1`` / ``gi2`` / ``gi3`` (test-time weight transforms, optionally ``on=`` another
  defense, e.g. ``gi3:0.2,on=hash``);
- :mod:`.feature_squeezing`: ``bits`` and ``median`` (input transforms with a BPDA identity backward pass);
- :mod:`.compression`: ``prune`` and ``quantize`` (Table VII's compression baselines).
"""

from hashdef.defenses import compression, feature_squeezing, gradient_inhibition, hash_classifier  # noqa: F401
