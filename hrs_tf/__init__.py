"""hrs_tf: the core of the project (data sets, base models, layers, the defense registry, attacks, evaluation,
training, experiment machinery, reporting) and the HRS and defensive-dropout papers.

Importing the package registers every custom Keras layer it defines, so that
``keras.models.load_model("model.h5")`` works with no ``custom_objects``; plug-in packages (randspike,
hashdef, ...) register theirs when :func:`hrs_tf.plugins.load` imports them (the defense registry, the model
loader and every tool call it).
"""

from hrs_tf import quiet

quiet.tensorflow_log_level()  # before TensorFlow is imported (see hrs_tf.quiet)
quiet.import_tensorflow()

__version__ = "0.1.0"

from hrs_tf.errors import ConfigError, DataError, HrsError, ModelError, PluginError  # noqa: E402,F401

# Register every custom layer for keras.models.load_model (safe mode, no custom_objects).
from hrs_tf import layers  # noqa: E402,F401
