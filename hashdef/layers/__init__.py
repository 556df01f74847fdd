"""The hash paper's Keras layers, one per file, registered for safe-mode loading (``hashdef>ClassName``):

- :mod:`.hashed_dense`: ``HashedDense`` (HashedNets' hashing trick);
- :mod:`.inhibited_dense`: ``InhibitedDense`` (GI3 redrawn on every call, a stochastic variant);
- :mod:`.bit_depth`, :mod:`.median_smoothing`: the feature-squeezing baselines' input transforms.
"""

from hashdef.layers.bit_depth import BitDepthReduction
from hashdef.layers.hashed_dense import HashedDense
from hashdef.layers.inhibited_dense import InhibitedDense
from hashdef.layers.median_smoothing import MedianSmoothing2D

__all__ = ["BitDepthReduction", "HashedDense", "InhibitedDense", "MedianSmoothing2D"]
