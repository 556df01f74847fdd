"""The translucent-box evaluation of the Random Spiking paper (sections 3.2-3.3, 5.2, 5.4, 5.5; REFERENCE section 4):
surrogate fleets, the multi-surrogate C&W-L2 with validation, L2 buckets, the cross-scheme heat map.

- :mod:`.strategies`: the roles of a fleet's models, Single / Multi-t / Multi-t + validation, L2 buckets (pure);
- :mod:`.examples`: the multi-surrogate C&W, 8-bit rounding, random targets, the stored examples;
- :mod:`.study`: the resumable cells of a data set's evaluation (fleets, generate, judge) and their results;
- :mod:`.report`: ``docs/reproduce_rs_<dataset>.md`` with Tables 4-5, Figures 3-4 and the paper's numbers.
"""
