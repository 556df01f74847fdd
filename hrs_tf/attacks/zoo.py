"""ZOO-ADAM (Chen, Zhang, Sharma, Yi & Hsieh 2017, "ZOO: Zeroth order optimization based black-box attacks to
deep neural networks without training substitute models", Algorithm 2), score-based, L2, targeted or untargeted.

Minimises the C&W-style objective ``||x' - x||_2^2 + c * f(x')`` (section 3.1) with ``f`` on the model's log
probabilities ``log F = log_softmax(logits)`` (:func:`log_prob_loss`):

- targeted (eq. 7):   ``f = max(max_{i != t} log F_i - log F_t, -kappa)``;
- untargeted (eq. 8): ``f = max(log F_y - max_{i != y} log F_i, -kappa)``.

Every iteration, per example (Algorithm 2): ``batch_coordinates`` (B, default 128, the paper's) distinct
coordinates are drawn uniformly (seeded, ``tf.random.stateless_uniform`` + top-k); each coordinate derivative is
the symmetric difference ``(L(v + h e_i) - L(v - h e_i)) / 2h`` with ``h = 1e-4`` (eq. 6,
:func:`coordinate_gradient`); ADAM updates only those coordinates, with per-coordinate moments M, v and step
counts T (``M_i <- b1 M_i + (1 - b1) g``, ``v_i <- b2 v_i + (1 - b2) g^2``, ``T_i <- T_i + 1``, bias-corrected
step; eta 1e-2, b1 0.9, b2 0.999, eps 1e-8 as in the paper; :func:`common.adam_update`), then projects them onto
the pixel box. The 2B probes of every still-running example AND its current iterate (one extra image, used for the
success test, the best-L2 bookkeeping and abort-early, as the reference code's ``losses[0]``) go through ONE
batched forward call ``model(x, training=False)`` per iteration: ``N_active * (2B + 1)`` images, so a
stochastic model (e.g. HRS, one random path per call) scores all of an example's probes with the same draw.
Only when ``query_batch_size`` is given and exceeded is the call split, into pieces of whole examples
(``query_batch_size`` rounded down to a multiple of 2B + 1; smaller pieces if it is below 2B + 1). No gradient
is ever taken. The loop runs in a cached ``tf.function`` (one ``tf.while_loop`` per constant c).

Attack-space dimension reduction (section 3.4): with ``reduced_size=r`` the variable is an ``r x r x C`` grid
``d`` and the image is ``clip(x + resize_bilinear(d, H x W))`` (``tf.image.resize``); the coordinates, the
finite differences and ADAM live on the grid. ``None`` (or 0, for the command line) = the full space.
The hierarchical attack (section 3.5: growing the grid during the attack, the perturbation carried over) and
importance sampling (section 3.6) are not implemented: the grid is fixed per call and the coordinates uniform
(the paper's MNIST / CIFAR-10 setting).

Constant c: C&W's binary search per example (x10 until a first success gives an upper bound, then bisection;
with 10 or more steps the last uses the upper bound), the variable and ADAM state reset for every c, as the
reference code. An iterate succeeds when the prediction is the target (resp. not the label) with a log-
probability margin of at least kappa (the margin of log F equals the logit margin); the smallest-L2 success
over all iterations and constants is returned, the original image where none was found. Abort early (per
example, as the reference's one-image loop): every 100 iterations (the reference's ``early_stop_iters``) the
current iterate's objective must have fallen below 0.9999 of its previous check, or that example stops for
this c. An example does not stop at its first success: it goes on shrinking L2 until its budget is spent.

Query budget: ``stats["queries"]`` (numpy int64, shape (N,)) counts every image of the example sent through the
model: the shape check of ``common.prepare`` (1 image, example 0), the label prediction when ``y=None`` (1 per
example), and ``2B + 1`` per iteration. An example stops when one more iteration would exceed ``max_queries``,
so ``stats["queries"] <= max_queries`` always.

Defaults. The paper's ZOO-ADAM (REFERENCE section 10): B 128, h 1e-4, ADAM eta 1e-2, b1 0.9, b2 0.999, eps 1e-8;
kappa 0. The reference code's MNIST runs (``test_all.py`` with the README's ``-b 9``): 9 binary-search steps from
c = 0.01, 3000 iterations per constant, abort early every 100 -- up to 9 * 3000 * 257 = 6.9 million queries
per image, out of reach here. Ours: ONE constant c = 10 (the README's ``-b 1 -c 10.0`` untargeted runs),
``max_queries=100000`` (389 iterations), ``max_iterations=10000`` (the reference's ``MAX_ITERATIONS``; the budget
binds first). Measured on the tests' small MNIST CNN (10 test images, c = 10): first successes after 4,883 to
49,088 queries, all fooled by 50,000, mean L2 1.88 after 100,000; a 20,000 budget fools 2 of 9; c = 1 or 0.5
fool 1 of 4 within 60,000. On ``runs/base_mnist.h5`` (``benchmarks/bench_zoo.py``, first 10 correctly classified
test images): 10/10 fooled, mean 75,815 queries (abort early), mean L2 2.19. Every constant restarts from zero,
so a binary search (``binary_search_steps > 1``) only pays with larger budgets.

CleverHans 4 has no ZOO (REFERENCE section 7), so this is written from the paper (and the public reference code
for the details the paper leaves open); nothing is copied.

Deviations: (1) the whole batch is attacked at once (the reference runs one image at a time); coordinates,
moments, step counts, budgets, abort-early and the constant are per example. (2) Full-space probes
``x + delta +- h e_i`` are not clipped (as the reference: they may leave the box by h); only the iterate is
projected. Reduced space: the box is kept by clipping the upsampled image (a per-coordinate projection of the
grid does not exist), probes included; the reference uses a tanh change of variable there. (3) The ADAM step is
``eta * sqrt(1 - b2^T) / (1 - b1^T) * M / (sqrt(v) + eps)`` (the reference code's form and
:func:`common.adam_update`'s); Algorithm 2 adds eps to ``sqrt(v_hat)`` instead, a difference of order eps.
(4) The loss is computed in float64 from the model's float32 outputs (log_softmax, not the reference's
``log(softmax + 1e-30)``), so the difference quotient loses no digits to rounding of the loss itself.
(5) Importance sampling, the hierarchical attack and ADAM resets after the first success (used by the
reference on ImageNet) are not implemented; ``model`` is one model (no ensembles).
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.registry import Parameter, declare
from hrs_tf.errors import ConfigError

H = 1e-4  # the paper's finite-difference step (eq. 6)
ABORT_TOLERANCE = 0.9999  # abort early when the objective has not fallen below this fraction of its last check
ABORT_PERIOD = 100  # ... checked every 100 iterations (the reference's early_stop_iters on MNIST / CIFAR-10)


# -- the loss and the finite-difference estimate ------------------------------------------------------
def log_prob_loss(logits, y, targeted=False, confidence=0.0):
    """``f`` of eq. 7 (targeted, ``y`` = targets) or eq. 8 (untargeted, ``y`` = labels) on ``log_softmax(logits)``,
    per image, in float64 (graph code)."""
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float64))
    margin = gradients.margin(log_probs, y)  # log F_y - max_{i != y} log F_i
    kappa = tf.constant(float(confidence), tf.float64)
    return tf.maximum(-margin, -kappa) if targeted else tf.maximum(margin, -kappa)


def _probes(v, coordinates, h, center):
    """``(N, [1 +] 2B, D)`` rows: [``v``,] ``v + h e_i`` for the B coordinates, then ``v - h e_i``; ``v`` is
    ``(N, D)``, ``coordinates`` ``(N, B)`` flat indices."""
    step = tf.one_hot(coordinates, tf.shape(v)[1], on_value=tf.cast(h, v.dtype), dtype=v.dtype)  # (N, B, D)
    base = v[:, None, :]
    return tf.concat(([base] if center else []) + [base + step, base - step], axis=1)


def _differences(losses, h):
    """``(L(+h) - L(-h)) / 2h`` from ``(N, 2B)`` losses ordered as :func:`_probes` (without the center)."""
    b = tf.shape(losses)[1] // 2
    return (losses[:, :b] - losses[:, b:]) / (2.0 * h)


def coordinate_gradient(loss_fn, x, coordinates, h=H):
    """Symmetric-difference estimates (eq. 6) of ``d loss / d x_i`` at the given coordinates, shape (N, B).

    ``loss_fn(images) -> (M,)`` per-image losses; ``x`` (N, ...) points; ``coordinates`` (N, B) flat indices into
    one example. ``loss_fn`` is called ONCE on the N * 2B probes, example-major (example n's ``x + h e_i`` for
    its B coordinates, then its ``x - h e_i``), so per-image labels are ``np.repeat(y, 2 * B)``. The loss is
    taken in float64; the probes have ``x``'s dtype. Returns a float64 tensor.
    """
    h = check_h(h)
    x = tf.convert_to_tensor(x)
    coordinates = tf.convert_to_tensor(coordinates, tf.int32)
    if len(coordinates.shape) != 2 or coordinates.shape[0] != x.shape[0]:
        raise ConfigError(f"coordinates must be (N, B) = ({x.shape[0]}, B) flat indices, "
                          f"got {tuple(coordinates.shape)}")
    n = tf.shape(x)[0]
    probes = _probes(tf.reshape(x, [n, -1]), coordinates, h, center=False)
    images = tf.reshape(probes, tf.concat([[-1], tf.shape(x)[1:]], axis=0))
    losses = tf.reshape(tf.cast(loss_fn(images), tf.float64), [n, -1])
    return _differences(losses, h)


def check_h(h):
    h = checks.number(h, "h")
    if not h > 0:
        raise ConfigError(f"h={h!r} must be a positive finite-difference step (the paper's is 1e-4)")
    return h


# -- the attack ---------------------------------------------------------------------------------------------
def _build(model, targeted, kappa, learning_rate, batch, reduced, h, abort_early, clip_min, clip_max, chunk,
           classes):
    """The graph function running ZOO-ADAM for one constant per example (see :func:`zoo`)."""
    cost = 2 * batch + 1
    period = ABORT_PERIOD

    def query(images):
        """The model's logits on ``images``: one call, or pieces of ``chunk`` images (float32)."""
        if chunk is None:
            return tf.cast(model(images, training=False), tf.float32)
        total = tf.shape(images)[0]
        pieces = (total + chunk - 1) // chunk
        out = tf.TensorArray(tf.float32, size=pieces, infer_shape=False,
                             element_shape=tf.TensorShape([None, classes]))

        def body(k, out):
            logits = model(images[k * chunk:(k + 1) * chunk], training=False)
            return k + 1, out.write(k, tf.cast(logits, tf.float32))

        _, out = tf.while_loop(lambda k, _: k < pieces, body, (tf.constant(0), out))
        return out.concat()

    def optimise(x, y, const, seed, offset, max_iterations, max_queries, queries, best_l2, best_adv):
        rank = len(x.shape)
        n = tf.shape(x)[0]
        axes = list(range(1, rank))
        if reduced:
            dims = reduced * reduced * x.shape[-1]
        else:
            dims = int(np.prod(x.shape[1:]))
        x_flat = tf.reshape(x, [n, dims]) if not reduced else None
        lower = None if reduced else clip_min - x_flat  # the box for the full-space variable
        upper = None if reduced else clip_max - x_flat
        zeros = tf.zeros([n, dims], tf.float32)
        c64 = tf.cast(const, tf.float64)

        def images_of(v, xr):
            """Images for flat variables ``v`` (K, dims) around the repeated originals ``xr`` (K, ...)."""
            if reduced:
                grid = tf.reshape(v, [-1, reduced, reduced, x.shape[-1]])
                up = tf.image.resize(grid, [x.shape[1], x.shape[2]], method="bilinear")
                return tf.clip_by_value(xr + up, clip_min, clip_max)
            return xr + tf.reshape(v, tf.shape(xr))

        def body(i, delta, m, v, t, active, prev, found, queries, best_l2, best_adv):
            ia = tf.where(active)[:, 0]  # the examples still querying
            na = tf.shape(ia)[0]
            draw = tf.random.stateless_uniform([n, dims], tf.stack([seed, offset + tf.cast(i, tf.int64)]))
            coords = tf.gather(tf.math.top_k(draw, batch).indices, ia)  # B distinct uniform coordinates each
            xa, ya, ca = tf.gather(x, ia), tf.gather(y, ia), tf.gather(c64, ia)
            probes = _probes(tf.gather(delta, ia), coords, h, center=True)  # (na, 2B + 1, dims)
            xr = tf.repeat(xa, cost, axis=0)
            images = images_of(tf.reshape(probes, [na * cost, dims]), xr)
            logits = query(images)  # the step's ONE batched model call
            f = log_prob_loss(logits, tf.repeat(ya, cost), targeted, kappa)
            l2 = tf.reduce_sum(tf.square(tf.cast(images - xr, tf.float64)), axes)
            loss = tf.reshape(l2 + tf.repeat(ca, cost) * f, [na, cost])
            g = tf.cast(_differences(loss[:, 1:], h), tf.float32)  # (na, B)

            # The current iterate (row 0 of each example): success and best-L2 bookkeeping.
            rows = tf.range(na) * cost
            ok = gradients.succeeded(tf.gather(logits, rows), ya, targeted, kappa)
            l2_0 = tf.gather(l2, rows)
            old_l2 = tf.gather(best_l2, ia)
            better = tf.logical_and(ok, l2_0 < old_l2)
            at = ia[:, None]
            best_l2 = tf.tensor_scatter_nd_update(best_l2, at, tf.where(better, l2_0, old_l2))
            keep = tf.reshape(better, [-1] + [1] * (rank - 1))
            best_adv = tf.tensor_scatter_nd_update(best_adv, at, tf.where(keep, tf.gather(images, rows),
                                                                          tf.gather(best_adv, ia)))
            found = tf.tensor_scatter_nd_update(found, at, tf.logical_or(tf.gather(found, ia), ok))
            spent = tf.gather(queries, ia) + cost
            queries = tf.tensor_scatter_nd_update(queries, at, spent)

            # ADAM on the chosen coordinates only, then the box.
            where = tf.stack([tf.repeat(ia, batch), tf.cast(tf.reshape(coords, [-1]), tf.int64)], axis=1)
            t_new = tf.gather_nd(t, where) + 1.0  # each coordinate's own step count (Algorithm 2's T_i)
            step, m_new, v_new = common.adam_update(tf.gather_nd(m, where), tf.gather_nd(v, where),
                                                    tf.reshape(g, [-1]), t_new, learning_rate)
            d_new = tf.gather_nd(delta, where) - step
            if not reduced:
                d_new = tf.clip_by_value(d_new, tf.gather_nd(lower, where), tf.gather_nd(upper, where))
            delta = tf.tensor_scatter_nd_update(delta, where, d_new)
            m = tf.tensor_scatter_nd_update(m, where, m_new)
            v = tf.tensor_scatter_nd_update(v, where, v_new)
            t = tf.tensor_scatter_nd_update(t, where, t_new)

            # Abort early (per example) and the budget.
            loss_0, prev_a = loss[:, 0], tf.gather(prev, ia)
            check = tf.logical_and(abort_early, tf.equal(i % period, 0))
            stalled = tf.logical_and(check, loss_0 > prev_a * ABORT_TOLERANCE)
            prev = tf.tensor_scatter_nd_update(prev, at, tf.where(check, loss_0, prev_a))
            going = tf.logical_and(tf.logical_not(stalled), spent + cost <= max_queries)
            active = tf.tensor_scatter_nd_update(active, at, going)
            return i + 1, delta, m, v, t, active, prev, found, queries, best_l2, best_adv

        active = queries + cost <= max_queries
        state = (tf.constant(0), zeros, zeros, zeros, zeros, active, tf.fill([n], tf.constant(np.inf, tf.float64)),
                 tf.zeros([n], tf.bool), queries, best_l2, best_adv)
        out = tf.while_loop(lambda i, *s: tf.logical_and(i < max_iterations, tf.reduce_any(s[4])), body, state)
        return out[-4], out[-3], out[-2], out[-1]

    return optimise


def _check_reduced(reduced_size, x):
    if reduced_size is None:
        return None
    r = checks.count(reduced_size, "reduced_size")
    if r == 0:
        return None
    if x.ndim != 4:
        raise ConfigError(f"reduced_size needs image batches (N, H, W, C); got shape {x.shape}")
    if r > min(x.shape[1:3]):
        raise ConfigError(f"reduced_size={r} exceeds the image size {x.shape[1]}x{x.shape[2]} (it must reduce it)")
    return r


def zoo(model, x, y=None, targeted=False, confidence=0.0, learning_rate=1e-2, binary_search_steps=1,
        max_iterations=10000, initial_const=10.0, max_queries=100000, batch_coordinates=128, reduced_size=None,
        h=H, abort_early=True, query_batch_size=None, seed=None, clip_min=0.0, clip_max=1.0, stats=None):
    """ZOO-ADAM (Algorithm 2); ``y`` = target if ``targeted`` else true label (None: prediction). ``stats`` (a
    dict) receives ``"queries"``: images of each example sent through the model. Returns numpy images."""
    kappa, learning_rate, binary_search_steps, max_iterations, initial_const = common.ConstantSearch.check_settings(
        confidence, learning_rate, binary_search_steps, max_iterations, initial_const)
    batch = checks.count(batch_coordinates, "batch_coordinates", minimum=1)
    cost = 2 * batch + 1
    max_queries = checks.count(max_queries, "max_queries", minimum=1)
    if max_queries < cost:
        raise ConfigError(f"max_queries={max_queries} is below one iteration's {cost} queries "
                          f"(2 * batch_coordinates + 1)")
    h = check_h(h)
    chunk = None if query_batch_size is None else checks.count(query_batch_size, "query_batch_size", minimum=1)
    if chunk is not None and chunk >= cost:
        chunk -= chunk % cost  # whole examples per piece: an example's probes share one model call
    if stats is not None and not isinstance(stats, dict):
        raise ConfigError(f"stats={stats!r} must be a dict (or None)")
    if isinstance(model, (list, tuple)):
        raise ConfigError("zoo attacks one model (a black box), not a list of models")
    seed = common.check_seed(seed)
    clip_min, clip_max = common.check_box(clip_min, clip_max)
    x = common.check_images(model, x, clip_min, clip_max)  # before prepare: no query on a bad configuration
    reduced = _check_reduced(reduced_size, x)
    dims = reduced * reduced * x.shape[-1] if reduced else int(np.prod(x.shape[1:]))
    if batch > dims:
        raise ConfigError(f"batch_coordinates={batch} exceeds the {dims} coordinates of the attack space")
    n = len(x)
    queries = np.zeros(n, np.int64)
    queries[0] += 1  # common.prepare's output-shape check sends x[:1]
    if y is None and not targeted:
        queries += 1  # ... and its label prediction sends every image once
    x, y, classes = common.prepare(model, x, y, targeted, "zoo", clip_min, clip_max)

    key = ("zoo", bool(targeted), kappa, learning_rate, batch, reduced, h, bool(abort_early), clip_min, clip_max,
           chunk, classes)
    optimise = gradients.compiled(model, key, lambda: _build(model, bool(targeted), kappa, learning_rate, batch,
                                                             reduced, h, bool(abort_early), clip_min, clip_max,
                                                             chunk, classes))
    best_l2 = tf.constant(np.full(n, np.inf))
    best_adv = tf.constant(x)
    xt, yt = tf.constant(x), tf.constant(y)
    budget = tf.constant(max_queries, tf.int64)
    search = common.ConstantSearch(initial_const, n, binary_search_steps)
    for step, const in enumerate(search):
        if queries.min() + cost > max_queries:
            break  # every example's budget is spent
        found, q, best_l2, best_adv = optimise(xt, yt, tf.constant(const), tf.constant(seed, tf.int64),
                                               tf.constant(step * max_iterations, tf.int64),
                                               tf.constant(max_iterations), budget,
                                               tf.constant(queries), best_l2, best_adv)
        queries = q.numpy()
        search.update(found.numpy())
    if stats is not None:
        stats["queries"] = queries
    return best_adv.numpy()


PARAMETERS = {
    "confidence": Parameter("float", "C&W confidence kappa on the log-probability margin"),
    "learning_rate": Parameter("float", "ADAM learning rate (the paper's 1e-2)"),
    "binary_search_steps": Parameter("int", "binary-search steps on the constant c", minimum=1),
    "max_iterations": Parameter("int", "coordinate-ADAM iterations per constant", minimum=1),
    "initial_const": Parameter("float", "initial constant c"),
    "abort_early": Parameter("bool", "stop an example's optimisation for a constant when its loss stalls"),
    "max_queries": Parameter("int", "query budget per example (2 * batch_coordinates + 1 per iteration)", minimum=1),
    "batch_coordinates": Parameter("int", "coordinates estimated and updated per iteration (the paper's 128)", minimum=1),
    "reduced_size": Parameter("int", "attack-space side r (an r x r x C grid upsampled bilinearly); 0 = full space"),
}
declare("zoo", zoo, norm="l2", summary="ZOO-ADAM: coordinate-wise finite differences on log probabilities, "
        "score-based", reference="Chen et al. 2017, Algorithm 2, sections 3.1, 3.4", parameters=PARAMETERS)
