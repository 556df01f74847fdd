"""Training with the reference recipe (:mod:`.recipe`) and resumable checkpoints (:mod:`.checkpoint`)."""

from hrs_tf.training.recipe import (REFERENCE_BATCH_SIZE, REFERENCE_DECAY, REFERENCE_LEARNING_RATE, REFERENCE_MOMENTUM,
                                    EpochLog, check_training_settings, compile_reference, epoch_seed, fit,
                                    reference_optimizer, start_epoch, train_base_model, versions)

__all__ = ["EpochLog", "REFERENCE_BATCH_SIZE", "REFERENCE_DECAY", "REFERENCE_LEARNING_RATE", "REFERENCE_MOMENTUM",
           "check_training_settings", "compile_reference", "epoch_seed", "fit", "reference_optimizer", "start_epoch",
           "train_base_model", "versions"]
