"""Loss functions for the attacks' ``loss_fn`` seam, in CleverHans's convention: ``loss_fn(labels, logits)``
returns one loss per example, which an untargeted attack increases (away from ``labels``) and a targeted one
decreases (``labels`` = the targets). Pass any of them, or your own, as ``loss_fn=`` to a gradient attack; on
the command line ``--loss=NAME`` picks one of :data:`LOSSES` for any attack that takes a ``loss_fn``.

- ``cross_entropy``: softmax cross-entropy (the default of FGSM, BIM, MIM, PGD, APGD-CE);
- ``margin``: the logit margin ``max_{j != y} Z_j - Z_y`` of Carlini & Wagner (2017, f_6 without the
  confidence clamp), also the margin loss of PGD-margin and the Square attack;
- ``dlr``: the difference-of-logits ratio of Croce & Hein (2020, eq. 6), ``-(Z_y - max_{j != y} Z_j) /
  (Z_pi1 - Z_pi3 + 1e-12)`` (needs at least 3 classes); ``dlr_targeted``: its targeted form (APGD-T's loss, for
  targeted attacks; at least 4 classes);
- ``bpda_sigmoid``: the hash / gradient-inhibition paper's adaptive attack (section V-A, "white-box setting", BPDA): the softmax
  that gradient inhibition saturates is replaced by independent sigmoids of the logits when taking gradients,
  i.e. the loss is the sigmoid cross-entropy ``sum_j BCE(sigmoid(Z_j), onehot_j)``. A backward-pass
  approximation of the output nonlinearity (Athalye et al. 2018, section 4.1) that needs no layer patch, so
  it is a loss for every gradient attack (``--attack=pgd --loss=bpda_sigmoid``), not an attack of its own.
"""

import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import gradients


def cross_entropy(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def margin(labels, logits):
    return -gradients.margin(logits, labels)


def dlr(labels, logits):
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
    scale = sorted_logits[..., 0] - sorted_logits[..., 2] + 1e-12
    return -gradients.margin(logits, labels) / scale


def dlr_targeted(labels, logits):
    """Targeted DLR (section 4) as a ``loss_fn`` decreased toward the target ``labels`` = t:
    ``(max_{j != t} Z_j - Z_t) / (Z_pi1 - (Z_pi3 + Z_pi4) / 2 + 1e-12)``; the attack increases its negation,
    the paper's ``-(Z_y - Z_t) / (...)`` with Z_y the strongest non-target logit (see :mod:`.apgd`). Needs at
    least 4 classes."""
    top = tf.sort(logits, axis=-1, direction="DESCENDING")
    scale = top[..., 0] - 0.5 * (top[..., 2] + top[..., 3]) + 1e-12
    return -gradients.margin(logits, labels) / scale


def bpda_sigmoid(labels, logits):
    onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=logits), axis=-1)


LOSSES = {fn.__name__: fn for fn in (cross_entropy, margin, dlr, dlr_targeted, bpda_sigmoid)}


def get(name):
    """The loss called ``name`` (one of :data:`LOSSES`); ConfigError naming the choices otherwise."""
    return LOSSES[checks.choice(name, "loss", tuple(LOSSES))]
