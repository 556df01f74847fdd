"""The defenses, each declared once in its own module and registered in :mod:`.registry` under one spec grammar
(``none``, ``sap[:exact|hrs]``, ``dropout[:R]``, ``gaussian[:INIT,INNER]``, ``adv[:EPS,steps=N]``,
``hrs[:AxB[xC]][,of=AxB]``; plug-in packages add theirs). ``python -m hrs_tf.defenses`` lists them.
"""

from hrs_tf.defenses.registry import (INSTALLED, MAKES, TRAINED, TRANSFORM, UNDEFENDED, WRAPPED, Argument, Defense, Spec,
                                      attacker_view, compared_in, get, listing, names, parse, parse_list, register,
                                      write_model)

# The core defenses register themselves on import, in this order (the order of reports and listings).
from hrs_tf.defenses import base, sap, dropout, gaussian, adversarial_training, hrs  # noqa: E402,F401,I001

__all__ = ["Argument", "Defense", "INSTALLED", "MAKES", "Spec", "TRAINED", "TRANSFORM", "UNDEFENDED", "WRAPPED",
           "attacker_view", "compared_in", "get", "listing", "names", "parse", "parse_list", "register", "write_model"]
