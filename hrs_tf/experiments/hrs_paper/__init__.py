"""The HRS paper's evaluation reproduced on one data set: the plan (:mod:`.plan`), the cells (:mod:`.run`) and the
report (:mod:`.report`); ``tools/reproduce_hrs.py`` drives it."""

from hrs_tf.experiments.hrs_paper.plan import CONTENT_KEYS, EXPERIMENTS, Plan, plan_for
from hrs_tf.experiments.hrs_paper.run import Reproduction, cell_name

__all__ = ["CONTENT_KEYS", "EXPERIMENTS", "Plan", "Reproduction", "cell_name", "plan_for"]
