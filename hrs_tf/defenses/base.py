"""``none``: the undefended base model (the papers' "Base"), trained with the reference recipe."""

from hrs_tf import training
from hrs_tf.defenses.registry import TRAINED, Defense, register


@register
class Undefended(Defense):
    name = "none"
    title = "Base"
    summary = "the undefended base model (the papers' Base)"
    reference = "HRS appendix C.4, Table A1; REFERENCE section 1"
    make = TRAINED
    default_epochs = 40
    epoch_checkpoints = True
    compared_in = {"hrs_paper": ("",)}

    def label(self, args):
        return "Base"

    def fit(self, args, dataset, *, epochs, seed=0, verbose=2, log=print, source_model=None, **settings):
        return training.train_base_model(dataset, epochs=epochs, seed=seed, verbose=verbose, log=log, **settings)
