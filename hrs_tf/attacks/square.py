"""Square attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search", Algorithm 1), L-inf (section 3.1) and L2 (section 3.2), score-based.

Random search on the loss L (Algorithm 1): from an initial point on the boundary of the eps-ball, every iteration
draws a candidate that changes one random square window of the current best iterate, queries the model once on
it, and keeps it only if it lowers L (so the best loss never increases); an example stops as soon as it is
fooled or its query budget is spent. Every still-unfooled example's candidate goes through ONE batched forward
call ``model(x, training=False)`` per iteration; no gradient is ever taken. The sampling and bookkeeping are
numpy (windows differ per example), the forward pass is a cached ``tf.function``.

- L-inf (section 3.1): init = vertical stripes, each column of each channel at ``x0 +- eps`` with a random sign
  (clipped to the box); candidate = the current iterate with one ``s x s`` window (all channels) set to
  ``x0 +- eps``, one random sign per channel, redrawn while the window would not change.
- L2 (section 3.2 and the appendix on the L2 sampling distribution): init = a grid of ``min(H, W) // 5``-sided
  tiles, each holding the "meta pseudo-Gaussian" pattern (two halves of opposite sign whose magnitude is
  ``sum_{k=d}^{n} 1/(k+1)^2`` at Chebyshev distance ``d`` from the half's centre, unit norm, transposed with
  probability 1/2) with a random sign per channel, rescaled to L2 norm eps. Candidate (per channel): window 1
  becomes the normalised sum of the current perturbation in it and a fresh signed pattern, holding all the mass
  of windows 1 and 2 plus the unused budget ``(eps^2 - ||delta||^2) / C``; window 2 is emptied; the whole
  perturbation is rescaled to norm eps and clipped to the box (so ``||delta||_2 <= eps`` up to float rounding).
  The pattern's magnitude is the paper's formula (section 3.2); the remaining details (tile grid, per-channel
  mass bookkeeping, side at least 3 and odd, final rescale) follow the authors' public ``attack.py``
  (max-andr/square-attack, read for its description of the algorithm), written here anew, not copied.
- Side of the square: ``s = round(sqrt(p * H * W))`` (L-inf: at least 1; L2: at least 3 and odd), at most
  ``min(H, W) - 1``, with ``p`` from :func:`p_schedule`: ``p_init`` halved after iterations 10, 50, 200, 500,
  1000, 2000, 4000, 6000 and 8000 of a 10,000-query budget, the iteration rescaled to ``max_queries``
  (the authors' code).
- Loss (minimised): untargeted the margin ``Z_y - max_{j != y} Z_j`` (section 3: the margin loss); targeted the
  cross-entropy toward the target, as the authors' code does for targeted runs (their ``loss_type``; the margin
  toward the target still decides success).
  ``loss_fn`` (CleverHans convention, :mod:`.losses`: increased by an untargeted attack, decreased toward the
  target) replaces it: ``-loss_fn(y)`` resp. ``loss_fn(t)`` is minimised. Success (the stopping rule) is always
  the margin: the prediction is not ``y`` (resp. is ``t``); ``model`` may be a list (losses summed, success on
  every model).
- Defaults: L-inf ``eps=0.3`` (MNIST), ``p_init=0.05``; L2 ``eps=2.0``, ``p_init=0.1`` (the authors' standard
  values); ``max_queries=5000`` (the paper uses 10,000).

CleverHans 4 has no TF2 (or any) version of this attack (REFERENCE section 7), so it is written from the paper.

Deviations from the paper / authors' code: (1) windows (and the L2 pattern's transposition) are drawn per
example, also for L2 where their code moves the same two windows in every image of the batch, so examples
get independent windows; window positions range over all ``H - s + 1`` places (their ``randint(0, h - s)`` never
takes the last one). (2) One extra query per example: the clean image is checked first; an example already
misclassified (resp. at its target) is returned unchanged after that one query, rather than risking an init that
is classified correctly (their code drops such examples before the attack and does not count that pass). So
``stats["queries"]`` = 1 (clean check) + 1 (init) + candidates, at most ``max_queries``; the random search
draws at most ``max_queries - 2`` candidates. (3) The L-inf candidate values are the ball-and-box bounds
computed once and rounded inward in float32, so ``|x_adv - x| <= eps`` holds exactly, not up to rounding.
(4) ``eps=0`` returns the images without querying (the random search could not move).
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients, losses
from hrs_tf.attacks.registry import Parameter, declare
from hrs_tf.errors import ConfigError

SCHEDULE_BUDGET = 10000  # the p schedule is defined on a 10,000-query budget and rescaled (authors' code)
SCHEDULE_STEPS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # p halves after each of these iterations
L2_INIT_TILES = 5  # the L2 init tiles the image with squares of side min(H, W) // 5
_MAX_REDRAWS = 100  # L-inf: redraws of a window's signs that would not change the iterate (then query anyway)
_TINY = 1e-12


# -- the schedule and the L2 patterns (numpy, no model) -----------------------------------------------
def p_schedule(p_init, iteration, max_queries):
    """The fraction ``p`` of pixels changed at ``iteration`` (0-based) of a ``max_queries`` budget: ``p_init``
    halved after each of :data:`SCHEDULE_STEPS`, the iteration rescaled to 10,000 (integer arithmetic)."""
    it = iteration * SCHEDULE_BUDGET // max_queries
    halvings = sum(it > step for step in SCHEDULE_STEPS)
    return p_init / 2 ** halvings


def square_side(p, height, width, norm):
    """Side of the square window at fraction ``p`` (L-inf >= 1; L2 >= 3 and odd), at most ``min(H, W) - 1``."""
    s = int(round(np.sqrt(p * height * width)))
    if norm == 2:
        s = max(s, 3)
        s += 1 - s % 2
    return max(1, min(s, min(height, width) - 1))


def pseudo_gaussian(rows, cols):
    """Unit-norm ``rows x cols`` bump: ``sum_{k=d}^{n} 1/(k+1)^2`` at Chebyshev distance ``d`` from the centre
    cell ``(rows // 2, cols // 2)``, ``n = max(rows, cols) // 2`` (paper, L2 sampling distribution)."""
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols))
    n = max(rows, cols) // 2
    d = np.maximum(np.abs(np.arange(rows) - rows // 2)[:, None], np.abs(np.arange(cols) - cols // 2)[None, :])
    tail = np.cumsum((1.0 / np.arange(1, n + 2) ** 2)[::-1])[::-1]  # tail[d] = sum_{k=d}^{n} 1/(k+1)^2
    bump = tail[d]
    return bump / np.sqrt(np.sum(bump ** 2))


def meta_pattern(side):
    """The ``side x side`` meta pseudo-Gaussian pattern: the top ``side // 2`` rows a bump, the rest a negated
    bump, unit L2 norm (the caller transposes it with probability 1/2)."""
    top = side // 2
    pattern = np.concatenate([pseudo_gaussian(top, side), -pseudo_gaussian(side - top, side)], axis=0)
    return pattern / np.sqrt(np.sum(pattern ** 2))


def _patterns(side, transpose):
    """The meta pattern per example (``transpose``: boolean (A,)), shape (A, side, side, 1)."""
    pattern = meta_pattern(side)
    return np.where(transpose[:, None, None], pattern.T[None], pattern[None])[..., None]


def _window_masks(rows, cols, side, height, width):
    """Boolean (A, H, W) masks of the ``side x side`` windows whose top-left corners are ``rows`` / ``cols``."""
    r = np.arange(height)[None, :]
    c = np.arange(width)[None, :]
    in_r = (r >= rows[:, None]) & (r < rows[:, None] + side)
    in_c = (c >= cols[:, None]) & (c < cols[:, None] + side)
    return in_r[:, :, None] & in_c[:, None, :]


def _window_index(rows, cols, side):
    """Advanced indices selecting each example's window: arrays broadcasting to (A, side, side)."""
    ex = np.arange(len(rows))[:, None, None]
    return ex, (rows[:, None] + np.arange(side))[:, :, None], (cols[:, None] + np.arange(side))[:, None, :]


# -- the two samplers -------------------------------------------------------------------------------
class _Linf:
    """Section 3.1: stripes init, windows at the vertices of the L-inf ball."""

    def __init__(self, x, eps, clip_min, clip_max):
        x64 = x.astype(np.float64)
        self.low = self._inward(np.maximum(x64 - eps, clip_min), x64, eps, clip_min, clip_max)
        self.high = self._inward(np.minimum(x64 + eps, clip_max), x64, eps, clip_min, clip_max)

    @staticmethod
    def _inward(bound, x64, eps, clip_min, clip_max):
        """``bound`` in float32, moved one ulp toward ``x`` where rounding put it outside the ball or the box."""
        b = bound.astype(np.float32)
        outside = (np.abs(b.astype(np.float64) - x64) > eps) | (b < clip_min) | (b > clip_max)
        return np.where(outside, np.nextafter(b, x64.astype(np.float32)), b)

    def initial(self, rng):
        n, _, w, c = self.low.shape
        up = rng.random((n, 1, w, c)) < 0.5  # vertical stripes: one sign per column and channel
        return np.where(up, self.high, self.low)

    def candidates(self, idx, best, p, rng):
        low, high = self.low[idx], self.high[idx]
        a, h, w, c = best.shape
        s = square_side(p, h, w, np.inf)
        mask = _window_masks(rng.integers(0, h - s + 1, a), rng.integers(0, w - s + 1, a), s, h, w)[..., None]
        new = best.copy()
        todo = np.arange(a)
        for _ in range(_MAX_REDRAWS):  # redraw the signs of windows that would not change the iterate
            up = rng.random((len(todo), 1, 1, c)) < 0.5
            new[todo] = np.where(mask[todo], np.where(up, high[todo], low[todo]), best[todo])
            same = ~np.any((new[todo] != best[todo]) & mask[todo], axis=(1, 2, 3))
            todo = todo[same]
            if not len(todo):
                break
        return new


class _L2:
    """Section 3.2: meta pseudo-Gaussian tiles, mass moved from window 2 into window 1."""

    def __init__(self, x, eps, clip_min, clip_max):
        self.x, self.eps, self.box = x.astype(np.float64), eps, (clip_min, clip_max)

    def _to_ball(self, x0, delta):
        """``clip(x0 + eps * delta / ||delta||)`` in float32."""
        norm = np.sqrt(np.sum(delta ** 2, axis=(1, 2, 3), keepdims=True))
        return np.clip(x0 + delta * (self.eps / np.maximum(norm, _TINY)), *self.box).astype(np.float32)

    def initial(self, rng):
        n, h, w, c = self.x.shape
        side = max(1, min(h, w) // L2_INIT_TILES)
        n_h, n_w = h // side, w // side
        top, left = (h - n_h * side) // 2, (w - n_w * side) // 2
        delta = np.zeros(self.x.shape)
        for i in range(n_h):
            for j in range(n_w):
                tile = _patterns(side, rng.random(n) < 0.5) * rng.choice([-1.0, 1.0], size=(n, 1, 1, c))
                delta[:, top + i * side:top + (i + 1) * side, left + j * side:left + (j + 1) * side] = tile
        return self._to_ball(self.x, delta)

    def candidates(self, idx, best, p, rng):
        x0 = self.x[idx]
        delta = best.astype(np.float64) - x0
        a, h, w, c = best.shape
        s = square_side(p, h, w, 2)
        r1, c1 = rng.integers(0, h - s + 1, a), rng.integers(0, w - s + 1, a)
        r2, c2 = rng.integers(0, h - s + 1, a), rng.integers(0, w - s + 1, a)
        window1 = _window_index(r1, c1, s)
        mask2 = _window_masks(r2, c2, s, h, w)[..., None]
        union = _window_masks(r1, c1, s, h, w)[..., None] | mask2
        old = delta[window1]  # (A, s, s, C)
        old_norm = np.sqrt(np.sum(old ** 2, axis=(1, 2), keepdims=True))
        total2 = np.sum(delta ** 2, axis=(1, 2, 3), keepdims=True)
        union2 = np.sum((delta * union) ** 2, axis=(1, 2), keepdims=True)  # per channel
        fresh = _patterns(s, rng.random(a) < 0.5) * rng.choice([-1.0, 1.0], size=(a, 1, 1, c))
        direction = fresh + old / (old_norm + 1e-10)
        direction /= np.maximum(np.sqrt(np.sum(direction ** 2, axis=(1, 2), keepdims=True)), _TINY)
        mass = np.sqrt(np.maximum(self.eps ** 2 - total2, 0.0) / c + union2)
        delta = np.where(mask2, 0.0, delta)
        delta[window1] = direction * mass
        return self._to_ball(x0, delta)


# -- the attack ---------------------------------------------------------------------------------------
def _scorer(model, targeted, loss_fn):
    """Cached forward pass ``(x, y) -> (loss to minimise, remaining)``; ``remaining <= 0`` means fooled."""
    chosen = loss_fn or (losses.cross_entropy if targeted else losses.margin)
    sign = 1.0 if targeted else -1.0

    def build():
        def score(x, y):
            loss, remaining = 0.0, None
            for m in common.models_of(model):
                logits = m(x, training=False)
                loss += sign * chosen(labels=y, logits=logits)
                left = gradients.margin(logits, y) * (-sign)  # untargeted Z_y - max_other; targeted max_other - Z_t
                remaining = left if remaining is None else tf.maximum(remaining, left)
            return loss, remaining

        return score

    key = ("square_score", bool(targeted), getattr(chosen, "__qualname__", "loss"), id(chosen))
    return gradients.compiled(model, key, build)


def _concrete(score, image_shape):
    """``score`` traced once for any batch size (calling the concrete function skips tf.function's dispatch,
    ~2 ms of a ~5 ms MNIST iteration)."""
    return score.get_concrete_function(tf.TensorSpec([None, *image_shape], tf.float32),
                                       tf.TensorSpec([None], tf.int32))


def _square(norm, model, x, y, targeted, eps, max_queries, p_init, loss_fn, seed, clip_min, clip_max, stats, name):
    eps = common.check_eps(eps, norm)
    max_queries = checks.count(max_queries, "max_queries", minimum=1)
    p_init = checks.number(p_init, "p_init")
    if not 0.0 < p_init <= 1.0:
        raise ConfigError(f"p_init={p_init!r} is outside (0, 1] (the fraction of pixels in the first squares)")
    if loss_fn is not None and not callable(loss_fn):
        raise ConfigError(f"loss_fn={loss_fn!r} is not a function loss_fn(labels, logits)")
    if stats is not None and not isinstance(stats, dict):
        raise ConfigError(f"stats={stats!r} must be a dict (or None)")
    clip_min, clip_max = common.check_box(clip_min, clip_max)
    x, y, _ = common.prepare(model, x, y, targeted, name, clip_min, clip_max)
    if x.ndim != 4 or min(x.shape[1:3]) < 2:
        raise ConfigError(f"{name} needs image batches (N, H, W, C) with H, W >= 2; got shape {x.shape}")
    rng = np.random.default_rng(common.check_seed(seed))
    n = len(x)
    queries = np.zeros(n, np.int64)
    best = x.copy()
    if eps > 0:
        score = _concrete(_scorer(model, targeted, loss_fn), x.shape[1:])

        def evaluate(idx, images):
            loss, remaining = score(tf.constant(images), tf.constant(y[idx]))
            queries[idx] += 1
            return loss.numpy(), remaining.numpy()

        sampler = (_Linf if norm == np.inf else _L2)(x, eps, clip_min, clip_max)
        everyone = np.arange(n)
        _, clean_left = evaluate(everyone, x)  # query 1: examples fooled already are left as they are
        todo = everyone[clean_left > 0]
        if len(todo) and max_queries >= 2:
            init = sampler.initial(rng)[todo]
            loss, left = evaluate(todo, init)  # query 2: the initial point
            best[todo] = init
            best_loss = np.full(n, np.inf)
            remaining = np.where(clean_left > 0, np.inf, clean_left)
            best_loss[todo], remaining[todo] = loss, left
            for i in range(max_queries - 2):
                idx = np.flatnonzero(remaining > 0)
                if not len(idx):
                    break
                new = sampler.candidates(idx, best[idx], p_schedule(p_init, i, max_queries), rng)
                loss, left = evaluate(idx, new)
                better = loss < best_loss[idx]
                accepted = idx[better]
                best[accepted], best_loss[accepted], remaining[accepted] = new[better], loss[better], left[better]
    if stats is not None:
        stats["queries"] = queries
    return best


def square(model, x, y=None, targeted=False, eps=0.3, max_queries=5000, p_init=0.05, loss_fn=None, seed=None,
           clip_min=0.0, clip_max=1.0, stats=None):
    """Square attack in the L-inf ball (section 3.1); ``y`` = target if ``targeted`` else true label (None:
    prediction). ``stats`` (a dict) receives ``"queries"``: images of each example sent through the model."""
    return _square(np.inf, model, x, y, targeted, eps, max_queries, p_init, loss_fn, seed, clip_min, clip_max,
                   stats, "square")


def square_l2(model, x, y=None, targeted=False, eps=2.0, max_queries=5000, p_init=0.1, loss_fn=None, seed=None,
              clip_min=0.0, clip_max=1.0, stats=None):
    """Square attack in the L2 ball of radius ``eps`` (section 3.2; pixel units, eps may exceed 1)."""
    return _square(2, model, x, y, targeted, eps, max_queries, p_init, loss_fn, seed, clip_min, clip_max,
                   stats, "square_l2")


PARAMETERS = {
    "eps": Parameter("fraction", "L-inf bound in [0, 1] pixel units, e.g. 0.3 or 8/255"),
    "max_queries": Parameter("int", "query budget per example (clean check and init included)", minimum=1),
    "p_init": Parameter("float", "initial fraction of pixels in a square, in (0, 1]"),
}
declare("square", square, norm="linf", summary="score-based random search with square updates at the ball's "
        "vertices, margin loss", reference="Andriushchenko et al. 2020, Algorithm 1, section 3.1",
        parameters=PARAMETERS)
declare("square_l2", square_l2, norm="l2", summary="Square attack in an L2 ball (meta pseudo-Gaussian windows)",
        reference="Andriushchenko et al. 2020, Algorithm 1, section 3.2",
        parameters={**PARAMETERS, "eps": Parameter("amount", "L2 radius in pixel units (may exceed 1)")})
