"""The attacker's input transform of adversarial reprogramming (HRS paper appendix E) and the reprogrammed model:
``ZeroPadding2D`` -> :class:`~hrs_tf.layers.LocallyConnected2D` (target channels, k x k, relu) -> ``tanh``,
composed with the frozen target and the identity output mapping."""

import keras
import numpy as np

from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers import stochastic
from hrs_tf.layers.locally_connected import LocallyConnected2D

NUM_CLASSES = 10
OUTPUT_MAPPING = "identity"  # source class i -> target logit i, all 10 logits


def _image_shape(shape, what):
    shape = tuple(shape)
    if len(shape) == 4 and shape[0] is None:
        shape = shape[1:]
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
        raise ConfigError(f"{what} {shape} is not an image shape (height, width, channels)")
    return tuple(int(d) for d in shape)


def transform_padding(source_shape, target_shape, kernel_size=3):
    """``((top, bottom), (left, right))`` zero padding so that a ``valid`` k x k window maps source to target size.

    Raises ConfigError if the kernel is too small to shrink a larger source to the target size (the
    padding would be negative).
    """
    source_shape = _image_shape(source_shape, "source shape")
    target_shape = _image_shape(target_shape, "target shape")
    k = check_kernel_size(kernel_size)
    padding = []
    for axis, (src, dst) in enumerate(zip(source_shape[:2], target_shape[:2])):
        total = dst - src + k - 1
        if total < 0:
            raise ConfigError(
                f"kernel_size={k} cannot map a {source_shape[0]}x{source_shape[1]} source onto a "
                f"{target_shape[0]}x{target_shape[1]} target: the padding would be {total} along "
                f"{'height' if axis == 0 else 'width'} (needs kernel_size >= {src - dst + 1})")
        padding.append((total // 2, total - total // 2))
    return tuple(padding)


def check_kernel_size(kernel_size):
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
        raise ConfigError(f"kernel_size={kernel_size!r} must be a positive integer")
    return int(kernel_size)


def build_input_transform(source_shape, target_shape, kernel_size=3, name="input_transform"):
    """The reference input transform: ZeroPadding2D -> LocallyConnected2D(target channels, k x k, relu) -> tanh.

    Maps a ``source_shape`` image to a ``target_shape`` image with values in ``[0, 1]``.
    """
    source_shape = _image_shape(source_shape, "source shape")
    target_shape = _image_shape(target_shape, "target shape")
    k = check_kernel_size(kernel_size)
    padding = transform_padding(source_shape, target_shape, k)
    return keras.Sequential([
        keras.Input(shape=source_shape),
        keras.layers.ZeroPadding2D(padding, name="padding"),
        LocallyConnected2D(target_shape[2], k, activation="relu", name="locally_connected"),
        keras.layers.Activation("tanh", name="tanh"),
    ], name=name)


def check_target(target_model):
    if not isinstance(target_model, keras.Model) or not target_model.built:
        raise ModelError(f"the target must be a built Keras model, got {type(target_model).__name__}")
    try:
        input_shape, output_shape = target_model.input_shape, target_model.output_shape
    except (AttributeError, ValueError) as e:
        raise ModelError(f"target model {target_model.name!r} has no single input and output: {e}") from None
    if not isinstance(input_shape, tuple) or len(input_shape) != 4:
        raise ModelError(f"target model {target_model.name!r} takes inputs {input_shape}, not images (batch, height, width, channels)")
    if tuple(output_shape) != (None, NUM_CLASSES):
        raise ModelError(f"target model {target_model.name!r} outputs {tuple(output_shape)}; reprogramming with the "
                         f"identity output mapping needs {NUM_CLASSES} logits (None, {NUM_CLASSES})")
    return tuple(input_shape[1:])


def reprogram(target_model, transform, name=None):
    """The reprogrammed model ``target(transform(x))`` with the target frozen.

    Every target weight is made non-trainable (``target_model.trainable = False``: the target object is
    changed) and its stochastic layers are set to ``random`` mode. Call the result with
    ``training=False`` (as :func:`train_reprogramming` does): the target then runs in inference mode
    (train-time dropout off, as the reference's learning phase 0) while the defense stays random.
    The output mapping is the identity: logit ``i`` is source class ``i``.
    """
    target_shape = check_target(target_model)
    if tuple(transform.output_shape[1:]) != target_shape:
        raise ModelError(f"the input transform outputs {tuple(transform.output_shape[1:])}, target model "
                         f"{target_model.name!r} takes {target_shape}")
    target_model.trainable = False
    stochastic.set_randomness(target_model, stochastic.RANDOM)
    inputs = keras.Input(shape=transform.input_shape[1:])
    outputs = target_model(transform(inputs))
    return keras.Model(inputs, outputs, name=name or f"reprogrammed_{target_model.name}")
