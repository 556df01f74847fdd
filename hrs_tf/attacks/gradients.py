"""The one gradient path of every gradient attack, with Expectation over Transformation built in.

An attack never differentiates the model itself: it calls :func:`value_and_grad` with an *objective*
(a function ``(logits, y) -> per-example value`` that the attacker wants to increase, or a tuple of such
values) and the number of ``samples``. A user's ``loss_fn`` in CleverHans's convention (``loss_fn(labels,
logits)`` -> per-example loss, increased by an untargeted attack and decreased toward the target by a targeted
one; e.g. :mod:`hrs_tf.attacks.losses`) becomes an objective through :func:`objective_from_loss`, so every
gradient attack takes one. ``model`` may be a list of models: each pass runs all of them on the same batch
and sums their objectives (one traced computation; logits stacked as (models, N, classes)).

- ``samples=1``: one forward + backward pass (white-box);
- ``samples=n``: EOT (Athalye et al. 2018, "Synthesizing robust adversarial examples"; HRS paper section
  6.1): the mean over ``n`` *separate* forward + backward executions of the model, run one after another
  in a ``tf.while_loop``. Stochastic layers draw inside ``call()`` on every execution, so each pass draws
  its own HRS path / dropout mask / noise; ``n`` copies inside one batch would share one HRS path
  (the switch draws once per batch), which is why the batch is never tiled.

Gradients are taken with respect to the model input only (``watch_accessed_variables=False``), so a BPDA
replacement (:mod:`hrs_tf.attacks.bpda`) only has to provide input gradients.
Everything here is graph code, meant to run inside the attacks' ``tf.function`` loops.
"""

import contextlib

import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common
from hrs_tf.layers import stochastic

_CACHE_ATTRIBUTE = "_hrs_tf_attack_functions"
_MAX_CACHED = 64
_generation = [0]  # bumped whenever a BPDA patch starts or ends: traced graphs then differ


def bump_generation():
    """Invalidates every cached attack function (called by :mod:`hrs_tf.attacks.bpda`)."""
    _generation[0] += 1


def compiled(model, key, build):
    """``tf.function(build())``, cached on ``model`` under ``key`` so that repeated attack calls with the same
    static settings (e.g. the batches of an evaluation) trace once.

    ``key=None`` (e.g. an objective without a ``key``) disables caching. Randomness modes are read at run
    time, so they never need a new trace; BPDA patches do, and change the cache generation.
    """
    if key is None:
        return tf.function(build(), reduce_retracing=True)
    models = common.models_of(model)
    if len(models) > 1:
        key = tuple(key) + tuple(id(m) for m in models)
    try:
        cache = models[0].__dict__.setdefault(_CACHE_ATTRIBUTE, {})  # plain attribute: not tracked by Keras
    except AttributeError:
        return tf.function(build(), reduce_retracing=True)
    full_key = tuple(key) + (_generation[0], stochastic.trace_generation())
    fn = cache.get(full_key)
    if fn is None:
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        fn = cache[full_key] = tf.function(build(), reduce_retracing=True)
    return fn


def step_function(fn):
    """``fn`` as a separately optimised graph function, for the body of an attack's ``tf.while_loop``.

    Not inlined into the loop (``_noinline``): Grappler then optimises the step as a graph of its own
    (fused conv kernels etc.); measured 15% faster per PGD step than the inlined body on this CPU
    (``benchmarks/bench_pgd.py``).
    """
    return tf.function(fn, experimental_attributes={"_noinline": True}, reduce_retracing=True)


def objective_key(objective):
    """The cache key of an objective built here (None for ad-hoc objectives: no caching)."""
    return getattr(objective, "key", None)


def _keyed(objective, *key):
    objective.key = key
    return objective


# -- objectives (values the attacker increases) ------------------------------------------------------
def cross_entropy(targeted):
    """Untargeted: CE(logits, y) (push away from the label); targeted: -CE(logits, t) (pull toward t)."""
    sign = -1.0 if targeted else 1.0

    def objective(logits, y):
        return sign * tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)

    return _keyed(objective, "cross_entropy", bool(targeted))


def objective_from_loss(loss_fn, targeted):
    """The objective of a CleverHans-style ``loss_fn(labels, logits)``: the loss itself (untargeted, pushed up
    away from the label) or its negation (targeted, pulled down toward the target)."""
    if not callable(loss_fn):
        raise common.ConfigError(f"loss_fn={loss_fn!r} is not a function loss_fn(labels, logits)")
    sign = -1.0 if targeted else 1.0

    def objective(logits, y):
        return sign * loss_fn(labels=y, logits=logits)

    # The cached graph keeps loss_fn alive, so its id is not reused while the key is in the cache.
    return _keyed(objective, "loss_fn", getattr(loss_fn, "__qualname__", "loss"), id(loss_fn), bool(targeted))


def objective_or_loss(default, loss_fn, targeted):
    """``default`` (an objective), or the objective of ``loss_fn`` when one is given."""
    return default if loss_fn is None else objective_from_loss(loss_fn, targeted)


def margin(logits, y):
    """``Z_y - max_{j != y} Z_j`` per example (Carlini & Wagner 2017, eq. for f_6 on logits Z)."""
    num_classes = logits.shape[-1]
    onehot = tf.one_hot(y, num_classes if num_classes is not None else tf.shape(logits)[-1], dtype=logits.dtype)
    own = tf.reduce_sum(onehot * logits, axis=-1)
    others = tf.reduce_max(tf.where(onehot > 0, logits.dtype.min, logits), axis=-1)  # largest other logit
    return own - others


def carlini_wagner(targeted, confidence=0.0):
    """The C&W loss f with confidence kappa = ``confidence``, negated so that the attacker increases it.

    Targeted:   f = max(max_{j != t} Z_j - Z_t, -kappa)   (minimised toward the target);
    untargeted: f = max(Z_y - max_{j != y} Z_j, -kappa).
    """
    kappa = float(confidence)

    def objective(logits, y):
        m = margin(logits, y)
        f = tf.maximum(-m, -kappa) if targeted else tf.maximum(m, -kappa)
        return -f

    return _keyed(objective, "carlini_wagner", bool(targeted), kappa)


def succeeded(logits, y, targeted, confidence=0.0):
    """C&W success test with confidence: the prediction is t (resp. not y) with a logit margin of at least
    ``confidence``; for stacked logits (models, N, classes) of several models, on every one of them."""
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    m = margin(logits, y)
    if targeted:
        ok = tf.logical_and(tf.equal(pred, y), m >= confidence)
    else:
        ok = tf.logical_and(tf.not_equal(pred, y), -m >= confidence)
    return tf.reduce_all(ok, axis=0) if len(logits.shape) == 3 else ok


# -- the gradient estimator --------------------------------------------------------------------------
def _single_pass(model, objective, x, y):
    """One forward + backward execution: logits, the objective's values and their input gradients.

    With several models, each runs on ``x`` and their objective values are summed; the logits are stacked.
    One non-persistent tape per objective output (a persistent tape made Grappler emit a temporary
    variable that collided across iterations of nested attack loops on HRS models).
    """
    count = getattr(objective, "num_outputs", None) or 1
    models = common.models_of(model)
    with contextlib.ExitStack() as stack:
        tapes = [stack.enter_context(tf.GradientTape(watch_accessed_variables=False)) for _ in range(count)]
        for tape in tapes:
            tape.watch(x)
        all_logits = [m(x, training=False) for m in models]
        values = objective(all_logits[0], y)
        for more in all_logits[1:]:
            values = tf.nest.map_structure(tf.add, values, objective(more, y))
        logits = all_logits[0] if len(models) == 1 else tf.stack(all_logits)
        flat = tf.nest.flatten(values)
        if len(flat) != count:
            raise ValueError(f"objective returned {len(flat)} values; set objective.num_outputs = {len(flat)}")
        totals = [tf.reduce_sum(v) for v in flat]  # inside the tapes, or they would not be recorded
    grads = [tape.gradient(total, x) for tape, total in zip(tapes, totals)]
    grads = [tf.zeros_like(x) if g is None else g for g in grads]  # a gradient-free model gives zeros
    return logits, flat, grads, values


def value_and_grad(model, objective, x, y, samples=1):
    """EOT estimate of ``objective(model(x), y)`` and of its input gradient.

    Returns ``(values, grads, logits)``: the objective value(s) (per example), their input gradient(s)
    and the logits, each the mean over ``samples`` separate forward + backward passes. ``values`` and
    ``grads`` have the structure of the objective's output: one tensor, or a tuple of
    ``objective.num_outputs`` tensors.
    """
    samples = checks.count(samples, "eot_samples", minimum=1)
    x = tf.convert_to_tensor(x)
    one_pass = step_function(lambda x, y: _single_pass(model, objective, x, y))
    logits, flat_values, grads, structure = one_pass(x, y)
    if samples > 1:
        def body(i, logits_sum, value_sums, grad_sums):
            lg, vs, gs, _ = one_pass(x, y)
            return (i + 1, logits_sum + lg, [a + b for a, b in zip(value_sums, vs)],
                    [a + b for a, b in zip(grad_sums, gs)])

        _, logits, flat_values, grads = tf.while_loop(
            lambda i, *_: i < samples, body, (tf.constant(1), logits, flat_values, grads), parallel_iterations=1)
        scale = 1.0 / samples
        logits = logits * scale
        flat_values = [v * scale for v in flat_values]
        grads = [g * scale for g in grads]
    values = tf.nest.pack_sequence_as(structure, flat_values)
    grads = tf.nest.pack_sequence_as(structure, grads)
    return values, grads, logits


def per_sample_gradients(model, objective, x, y, samples):
    """The ``samples`` individual input gradients of separate passes, stacked: shape (samples, N, ...).

    Eager-callable (runs its own ``tf.function``). Used to check that EOT sees distinct random paths, and
    for the HRS paper's input-gradient deviation (std of the gradient over repeated passes).
    """
    samples = checks.count(samples, "samples", minimum=1)
    x = tf.constant(common.as_numpy(x), tf.float32)
    y = tf.constant(common.as_numpy(y), tf.int32)

    def build():
        def run(x, y):
            out = tf.TensorArray(tf.float32, size=samples)

            def body(i, out):
                _, _, grads, _ = _single_pass(model, objective, x, y)
                return i + 1, out.write(i, grads[0])

            _, out = tf.while_loop(lambda i, _: i < samples, body, (tf.constant(0), out), parallel_iterations=1)
            return out.stack()

        return run

    key = objective_key(objective)
    run = compiled(model, key and ("per_sample_gradients", key, samples), build)
    return run(x, y).numpy()


def input_gradient(model, x, y, objective=None, samples=1):
    """Eager convenience: the (EOT-averaged) input gradient of ``objective`` (default untargeted CE), numpy."""
    objective = objective or cross_entropy(targeted=False)
    x = tf.constant(common.as_numpy(x), tf.float32)
    y = tf.constant(common.as_numpy(y), tf.int32)

    samples = checks.count(samples, "eot_samples", minimum=1)
    key = objective_key(objective)
    run = compiled(model, key and ("input_gradient", key, samples),
                   lambda: lambda x, y: value_and_grad(model, objective, x, y, samples)[1])
    return run(x, y).numpy()
