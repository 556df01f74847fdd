"""The hash paper's experiments: the compression-rate search (:mod:`.cr_search`, Algorithm 1) and the reproduction of
its tables and figures (:mod:`.reproduction`, report in :mod:`.report`)."""
