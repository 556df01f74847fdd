"""Experiment machinery shared by every paper's experiments: result cells with resume and refusal of changed
settings (:mod:`.cells`), resumable rows (:mod:`.rows`), and a model store that makes defenses through the
registry (:mod:`.model_store`); the papers' experiments are the subpackages (:mod:`.hrs_paper`,
:mod:`.defensive_dropout`, :mod:`.reprogramming`)."""
