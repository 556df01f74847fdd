"""One adaptive-attack battery for every registered defense (beyond the papers): per image the worst case over
white-box, adaptive (EOT, fixed randomness, BPDA) and gradient-free attacks, robust accuracy beside clean accuracy,
and gradient-masking checks (:mod:`.summary`). ``tools/battery.py`` runs it; :mod:`.report` writes the leaderboard."""

from hrs_tf.evaluation.battery.attacks import ENTRIES, applicable
from hrs_tf.evaluation.battery.experiment import Battery, Defended, parse_defenses
from hrs_tf.evaluation.battery.plan import RADII, THREATS, Plan, plan_for
from hrs_tf.evaluation.battery.summary import FLAGS, masking_flags, summarize, worst_case
from hrs_tf.evaluation.battery.target import Target

__all__ = ["ENTRIES", "FLAGS", "RADII", "THREATS", "Battery", "Defended", "Plan", "Target", "applicable",
           "masking_flags", "parse_defenses", "plan_for", "summarize", "worst_case"]
