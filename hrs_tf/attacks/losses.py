"""Loss functions for the attacks' ``loss_fn`` seam, in CleverHans's convention: ``loss_fn(labels, logits)``
returns one loss per example, which an untargeted attack increases (away from ``labels``) and a targeted one
decreases (``labels`` = the targets). Pass any of them, or your own, as ``loss_fn=`` to a gradient attack.

- :func:`cross_entropy`: softmax cross-entropy (the default of FGSM, BIM, MIM, PGD);
- :func:`margin`: the logit margin ``max_{j != y} Z_j - Z_y`` of Carlini & Wagner (2017, f_6 without the
  confidence clamp), also the margin loss of PGD-margin and the Square attack;
- :func:`dlr`: the difference-of-logits ratio of Croce & Hein (2020), ``-(Z_y - max_{j != y} Z_j) /
  (Z_pi1 - Z_pi3 + 1e-12)`` (needs at least 3 classes);
- :func:`sigmoid_cross_entropy`: BPDA for a saturated softmax (the hash / gradient-inhibition paper's adaptive
  attack): the cross-entropy of independent sigmoids of the logits instead of their softmax.
"""

import tensorflow as tf

from hrs_tf.attacks import gradients


def cross_entropy(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def margin(labels, logits):
    return -gradients.margin(logits, labels)


def dlr(labels, logits):
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
    scale = sorted_logits[..., 0] - sorted_logits[..., 2] + 1e-12
    return -gradients.margin(logits, labels) / scale


def sigmoid_cross_entropy(labels, logits):
    onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=logits), axis=-1)
