"""The defensive-dropout paper's Algorithm 1, its (train rate x test rate) grid and gradient histograms
(:mod:`.search`; its rows as executor cells in :mod:`.row_cells`), with their tables and plots (:mod:`.report`);
``tools/defensive_dropout.py`` drives them."""
