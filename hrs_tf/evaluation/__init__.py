"""Evaluation: clean accuracy (:mod:`.metrics`), decision rules and attack scores (:mod:`.scoring`), the papers'
attack protocol (:mod:`.protocol`), and the HRS paper's defense efficiency score and gradient statistics
(:mod:`.des`)."""

from hrs_tf.evaluation.metrics import accuracy, clean_accuracy, logits_digest, predict_logits, repeated_accuracy
from hrs_tf.evaluation.protocol import (PROTOCOL_SETTINGS, TARGET_MODES, attack_function, check_attack_kwargs,
                                        check_model_fits, cleverhans_version, evaluate_protocol, first_n_all_targets,
                                        make_pairs, run_attack)
from hrs_tf.evaluation.scoring import (RULES, decide, distortions, judge, predict, predict_probabilities, round_to_8bit,
                                       score, success, vote)

__all__ = ["PROTOCOL_SETTINGS", "RULES", "TARGET_MODES", "accuracy", "attack_function", "check_attack_kwargs",
           "check_model_fits", "clean_accuracy", "cleverhans_version", "decide", "distortions", "evaluate_protocol",
           "first_n_all_targets", "judge", "logits_digest", "make_pairs", "predict", "predict_logits",
           "predict_probabilities", "repeated_accuracy", "round_to_8bit", "run_attack", "score", "success", "vote"]
