"""A test architecture (no tests here): the MNIST base CNN at half its widths (convs 16 / 32, FC 100). Training
tests whose claims hold on it use it for about half the time of the full network."""

from hrs_tf.models.architectures import Architecture

NARROW = Architecture("mnist_narrow", (28, 28, 1), (16, 32), 100, 0.3)
