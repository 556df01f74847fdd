"""The image data sets (MNIST, Fashion-MNIST, CIFAR-10) as float32 NHWC arrays in [0, 1]; see :mod:`.loading`."""

from hrs_tf.data.dataset import IMAGE_SHAPES, NUM_CLASSES, Dataset
from hrs_tf.data.loading import (DATA_DIR_ENV, DATASETS, DEBIAN_FASHION_MNIST_DIR, KERAS_FALLBACK_CACHE_DIR,
                                 canonical_name, first_test_images, load_dataset, search_locations,
                                 train_validation_split)

__all__ = ["DATASETS", "DATA_DIR_ENV", "DEBIAN_FASHION_MNIST_DIR", "Dataset", "IMAGE_SHAPES", "KERAS_FALLBACK_CACHE_DIR",
           "NUM_CLASSES", "canonical_name", "first_test_images", "load_dataset", "search_locations",
           "train_validation_split"]
