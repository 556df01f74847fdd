"""hrs_tf: the core of the project (data sets, base models, attacks, metrics, HRS and baselines).

Importing the package registers every custom Keras layer it defines, so that
``keras.models.load_model("model.h5")`` works with no ``custom_objects``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from hrs_tf.errors import ConfigError, DataError, HrsError, ModelError  # noqa: E402,F401

# Register every custom layer for keras.models.load_model (safe mode, no custom_objects).
from hrs_tf import baseline_layers, random_switch  # noqa: E402,F401
from hrs_tf import locally_connected  # noqa: E402,F401
