"""The project's Keras layers, one per file; importing this package registers each of them for
``keras.models.load_model`` in safe mode (registered names ``hrs_tf>ClassName``).

- :mod:`.stochastic`: the base class of every stochastic layer and the randomness controls;
- :mod:`.random_switch`: ``RandomSwitch`` (HRS);
- :mod:`.defensive_dropout`, :mod:`.sap`, :mod:`.gaussian_noise`: the baselines' stochastic layers;
- :mod:`.locally_connected`: ``LocallyConnected2D`` (adversarial reprogramming; Keras 3 dropped it).
"""

from hrs_tf.layers.defensive_dropout import DefensiveDropout
from hrs_tf.layers.gaussian_noise import GaussianNoiseInjection
from hrs_tf.layers.locally_connected import LocallyConnected2D
from hrs_tf.layers.random_switch import RandomSwitch
from hrs_tf.layers.sap import StochasticActivationPruning
from hrs_tf.layers.stochastic import StochasticLayer

__all__ = ["DefensiveDropout", "GaussianNoiseInjection", "LocallyConnected2D", "RandomSwitch", "StochasticActivationPruning",
           "StochasticLayer"]
