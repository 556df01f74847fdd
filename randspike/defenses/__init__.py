"""The Random Spiking paper's nine schemes as registered defenses (Table 2): the trained ones in :mod:`.schemes`,
MagNet (:mod:`.magnet`) and region-based classification (:mod:`.region`), both made from a trained ``rs_dropout``."""

from randspike.defenses import magnet, region, schemes  # noqa: F401  (registration on import)
