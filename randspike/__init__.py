"""Random Spiking (Ge, Chau, Ribeiro and Li, "Random Spiking and Systematic Evaluation of Defenses Against
Adversarial Examples"), the paper's nine schemes and its evaluation (REFERENCE sections 4 and 9), a plug-in of
``hrs_tf``.

Importing the package registers its Keras layers (:mod:`randspike.layers`: ``RandomSpiking``) and its defenses
(:mod:`randspike.defenses`: ``rs_standard``, ``rs_dropout``, ``distillation``, ``rs1``, ``rsd1``, ``rs1_adv``,
``dropout_adv``, ``magnet``, ``region``). Decision rules (single / MC average / voting, rejection) are in
:mod:`randspike.decision`; the schemes by their paper names in :mod:`randspike.schemes`.
"""

from randspike import defenses, layers  # noqa: F401  (registration on import)
from randspike.layers import RandomSpiking

__all__ = ["RandomSpiking"]
