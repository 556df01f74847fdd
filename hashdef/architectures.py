"""The hash paper's seven-layer model (Wang et al., IEEE TNNLS 2021, section V-A-1), registered as architectures:

``hash_mnist`` (28x28x1, MNIST and Fashion-MNIST) and ``hash_cifar10`` (32x32x3): Conv64(3x3)-Conv128(3x3)-
MaxPool-Conv128(3x3)-Conv64(3x3)-MaxPool-FC256-FC256-FC10, ReLU, logits output. The paper gives no padding or
dropout; we use ``valid`` padding (Flatten 4x4x64 = 1024 on MNIST) and no dropout, and train it with the project's
reference recipe (the paper reports 99.50% on MNIST). The last two fully connected layers (``fc2`` 256x256,
``logits`` 256x10) are the ones the defensive hash classifier replaces: the paper's CRs (1/4096, 1/128) are
exactly (1/16 (N1 M1)^-1/2, 2/N2) for them.
"""

from hrs_tf.models import Architecture, register_architecture

SEVEN_LAYER_WIDTHS = (64, 128, 128, 64)

HASH_MNIST = register_architecture(Architecture("hash_mnist", (28, 28, 1), SEVEN_LAYER_WIDTHS, 256, 0.0))
HASH_CIFAR10 = register_architecture(Architecture("hash_cifar10", (32, 32, 3), SEVEN_LAYER_WIDTHS, 256, 0.0))
