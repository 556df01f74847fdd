"""The Random Spiking paper's experiments: Table 2 (test error of the nine schemes under each decision rule) and the
stability study (section 5.3) in :mod:`.table2`; the stability measurement itself in :mod:`.stability`."""
