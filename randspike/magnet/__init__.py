"""MagNet (Meng & Chen 2017) as the Random Spiking paper uses it (appendix A.1; REFERENCE section 9): denoising
autoencoders (:mod:`.autoencoders`), reconstruction / divergence detectors and their thresholds (:mod:`.detectors`),
and the defense around a classifier with its rejection, composite model and detector-aware attack model
(:mod:`.magnet`). The registered defense ``magnet`` is :mod:`randspike.defenses.magnet`."""

from randspike.magnet.magnet import MagNet, load_magnet, paper_setup, train_magnet

__all__ = ["MagNet", "load_magnet", "paper_setup", "train_magnet"]
