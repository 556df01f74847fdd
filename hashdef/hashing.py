"""The hash of HashedNets (Chen et al. 2015; hash paper section III-C; REFERENCE section 5): xxHash32, seeded,
vectorised in numpy, identical on every platform (pure uint32 wrap-around arithmetic on little-endian words).

A hashed layer's virtual weight ``V[i, j] = sign_table[i, j] * w[bucket_table[i, j]]``:

- ``bucket_table[i, j] = xxh32([i, j], seed) mod K`` (the bucket hash h);
- ``sign_table[i, j] = +1 if xxh32([i, j], seed + 1) is even else -1`` (the sign hash xi, lowest bit).

The key of (i, j) is the 8 bytes of the two uint32 words i, j, little-endian (the HashedNets authors hashed a
text key built from the indices with xxHash32, seed 1691; the hash function is the same, the key bytes differ).
"""

import math

import numpy as np

from hrs_tf import checks
from hrs_tf.errors import ConfigError

PRIME2 = np.uint32(2246822519)
PRIME3 = np.uint32(3266489917)
PRIME4 = np.uint32(668265263)
PRIME5 = np.uint32(374761393)
DEFAULT_SEED = 1691  # the HashedNets authors' seed
ROUND_UP_TOLERANCE = 1e-9  # K = n_in * n_out * CR within this relative distance of an integer is that integer


def _rotl(x, r):
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def xxh32(words, seed=0):
    """xxHash32 (Collet) of each row of ``words`` (uint32, shape ``(..., n_words)``), the row read as the
    ``4 * n_words`` little-endian bytes of its words; returns a uint32 array of shape ``words.shape[:-1]``.

    The short-input path of xxHash32 (input < 16 bytes, so ``n_words`` 0 to 3): ``h = seed + PRIME5 + length``;
    per word ``h = rotl(h + word * PRIME3, 17) * PRIME4``; then the avalanche. Equals
    ``xxhash.xxh32_intdigest(bytes, seed)``.
    """
    words = np.asarray(words)
    if words.ndim < 1 or words.shape[-1] > 3:
        raise ConfigError(f"xxh32 takes rows of 0 to 3 uint32 words (inputs shorter than 16 bytes); got shape "
                          f"{words.shape}")
    if words.size and not np.issubdtype(words.dtype, np.integer):
        raise ConfigError(f"xxh32 words must be integers, not {words.dtype}")
    if words.size and (words.min() < 0 or words.max() > 0xFFFFFFFF):
        raise ConfigError("xxh32 words must be in [0, 2**32)")
    seed = check_seed(seed, "seed")
    words = words.astype(np.uint32)
    n_words = words.shape[-1]
    # uint32 arithmetic throughout (uint32 constants, never Python ints that would upcast): arrays wrap silently
    # modulo 2**32; errstate silences the overflow warning numpy scalars give (the 0-word / 0-d case).
    with np.errstate(over="ignore"):
        h = np.full(words.shape[:-1], np.uint32(seed), dtype=np.uint32)
        h += PRIME5 + np.uint32(4 * n_words)
        for k in range(n_words):  # at most 3 iterations: over the words of a row, not over elements
            h += words[..., k] * PRIME3
            h = _rotl(h, 17) * PRIME4
        h ^= h >> np.uint32(15)
        h *= PRIME2
        h ^= h >> np.uint32(13)
        h *= PRIME3
        h ^= h >> np.uint32(16)
    return h


def _index_words(n_in, n_out):
    """uint32 ``(n_in, n_out, 2)``: the key ``[i, j]`` of every virtual weight."""
    words = np.empty((n_in, n_out, 2), np.uint32)
    words[..., 0] = np.arange(n_in, dtype=np.uint32)[:, None]
    words[..., 1] = np.arange(n_out, dtype=np.uint32)[None, :]
    return words


def _check_shape(n_in, n_out):
    return checks.count(n_in, "n_in", 1), checks.count(n_out, "n_out", 1)


def check_seed(seed, name="hash_seed"):
    """A hash seed: an integer in [0, 2**32)."""
    seed = checks.count(seed, name)
    if seed > 0xFFFFFFFF:
        raise ConfigError(f"{name}={seed} must be below 2**32")
    return seed


def bucket_table(n_in, n_out, num_buckets, seed=DEFAULT_SEED):
    """int32 ``(n_in, n_out)``: the bucket h(i, j) = xxh32([i, j], seed) mod ``num_buckets`` of each virtual weight."""
    n_in, n_out = _check_shape(n_in, n_out)
    k = checks.count(num_buckets, "num_buckets", 1)
    return (xxh32(_index_words(n_in, n_out), check_seed(seed)) % np.uint32(k)).astype(np.int32)


def sign_table(n_in, n_out, seed=DEFAULT_SEED):
    """float32 ``(n_in, n_out)`` of +-1: the sign xi(i, j) from the lowest bit of xxh32([i, j], seed + 1)
    (0 -> +1, 1 -> -1; ``seed + 1`` wraps modulo 2**32)."""
    n_in, n_out = _check_shape(n_in, n_out)
    sign_seed = (check_seed(seed) + 1) % 2**32
    low_bit = xxh32(_index_words(n_in, n_out), sign_seed) & np.uint32(1)
    return (1.0 - 2.0 * low_bit).astype(np.float32)


def parse_rate(text, name="compression_rate"):
    """A compression rate (real / virtual weights) in (0, 1] from text ``"1/4096"``, ``"0.25"``, ``"2.5e-4"``
    (or a number)."""
    rate = checks.number(text, name)
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"{name}={text!r} must be in (0, 1] (real / virtual weights, e.g. 1/64)")
    return rate


def num_buckets(n_in, n_out, compression_rate):
    """K = ceil(n_in * n_out * CR), at least 1: the number of real weights of an n_in x n_out hashed layer.

    A product within a relative ``ROUND_UP_TOLERANCE`` (1e-9) of an integer counts as that integer, so that a rate
    rounded in floating point (e.g. 1/4096 given as 0.000244140625000001) does not add a bucket.
    """
    n_in, n_out = _check_shape(n_in, n_out)
    product = n_in * n_out * parse_rate(compression_rate)
    nearest = round(product)
    if abs(product - nearest) <= ROUND_UP_TOLERANCE * max(product, 1.0):
        return max(1, int(nearest))
    return max(1, math.ceil(product))
