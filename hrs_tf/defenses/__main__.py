"""``python -m hrs_tf.defenses``: the registry listing (every registered defense, plug-ins included)."""

from hrs_tf.defenses import listing

print(listing())
