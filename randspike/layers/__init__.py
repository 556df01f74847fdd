"""The Random Spiking plug-in's Keras layers, one per file; importing this package registers each of them for
``keras.models.load_model`` in safe mode (registered names ``randspike>ClassName``)."""

from randspike.layers.magnet_rejection import MagNetRejection
from randspike.layers.random_spiking import RandomSpiking
from randspike.layers.uniform_noise import UniformInputNoise

__all__ = ["MagNetRejection", "RandomSpiking", "UniformInputNoise"]
