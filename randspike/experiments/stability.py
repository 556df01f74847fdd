"""Model stability (Random Spiking paper, section 5.3, Figures 1-2; REFERENCE section 4 "Stability"), resumable.

For every model (a Keras model with logits output or a :class:`randspike.decision.Decider` such as MagNet):

- the *reference* predictions on the first N test images (paper: 1,000);
- *Gaussian noise* (5.3.1): per image, Gaussian noise rescaled to an exact L2 norm, added, clipped to [0, 1]
  (:func:`gaussian_at_l2`); 20 independent draws per level; levels 0..5 (MNIST), 0..2.5 (Fashion-MNIST, CIFAR-10);
- *JPEG* (5.3.2): the 8-bit image encoded at quality 10..100 and decoded (:func:`jpeg_round_trip`); one draw;

and the percentage of predictions unchanged from the reference (:func:`unchanged_fraction`). A rejection (MagNet,
:data:`randspike.decision.REJECTED`) is never an unchanged prediction: a rejected perturbed image counts as changed
(the paper: "stability approaching 0 ... because majority of those instances are rejected"), and so does every
perturbed prediction of a clean image that was itself rejected (there is no prediction to keep; this costs a
detector its clean false-positive rate at every level, level 0 included).

Each model is evaluated under ``rule`` (default MC average; a deterministic Keras model always single prediction,
:func:`randspike.decision.rule_or_error`), images in consecutive batches (the batch semantics of
:mod:`randspike.decision`). Every draw of the noise is seeded by (seed, level, draw) only, so all models see the
same noisy images; a stochastic model is reseeded per decision, so a cell's number does not depend on whether the
run was resumed. One JSON cell per (model, perturbation, level) (:class:`hrs_tf.experiments.cells.CellStore`),
each computed by :class:`Study` in any order or process once the model's clean cell exists (:func:`run` computes
them in this process); results as ``stability.json`` / ``stability.csv``; :func:`plot` draws the paper's figures:
mean and standard deviation over the k models of each scheme against the level, one line per scheme, Gaussian and
JPEG panels.
"""

import csv
import io
import os
import zlib

import keras
import numpy as np
import tensorflow as tf

from hrs_tf import checks, fileio
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import CellStore, check_settings
from hrs_tf.reporting import plots
from hrs_tf.training.checkpoint import data_fingerprint
from randspike import decision

GAUSSIAN, JPEG = "gaussian", "jpeg"
PERTURBATIONS = (GAUSSIAN, JPEG)
NUM_IMAGES = 1000  # "the first 1,000 images from the test dataset"
DRAWS = 20  # "We repeat this process 20 times"
_FASHION_GRID = tuple(float(v) for v in np.round(np.arange(0.0, 2.51, 0.25), 2))
GAUSSIAN_L2_LEVELS = {"mnist": tuple(float(v) for v in np.arange(0.0, 5.01, 0.5)), "fashion_mnist": _FASHION_GRID,
                      "cifar10": _FASHION_GRID}  # Figure 1's x ranges
JPEG_QUALITIES = tuple(range(10, 101, 10))  # Figure 2: JCQ 10..100
EXPERIMENT = "stability"
CONTENT_KEYS = ("images", "data", "draws", "rule", "passes", "batch_size", "per_image", "seed", "chroma_downsampling")
LEVEL_TITLES = {GAUSSIAN: "L2 of the Gaussian noise", JPEG: "JPEG quality"}


# -- perturbations ------------------------------------------------------------------------------------
def gaussian_noise_at_l2(shape, l2, rng):
    """Gaussian noise of ``shape`` (N, ...) rescaled per image to L2 norm exactly ``l2`` (float64; zeros for 0)."""
    noise = rng.standard_normal(shape)
    norms = np.sqrt(np.sum(np.square(noise).reshape(shape[0], -1), axis=1))
    return noise * (float(l2) / np.maximum(norms, 1e-12)).reshape((-1,) + (1,) * (len(shape) - 1))


def gaussian_at_l2(x, l2, rng):
    """Section 5.3.1: ``x`` plus per-image Gaussian noise of L2 norm exactly ``l2``, clipped to [0, 1] (float32).

    Clipping ("to make sure the new noisy variant is a valid image") lowers the realised norm below ``l2``,
    mostly on MNIST's black background: :func:`unchanged_fraction` records the realised mean L2 of every cell."""
    l2 = checks.nonnegative(l2, "l2")
    x = np.asarray(x, np.float32)
    return np.clip(x + gaussian_noise_at_l2(x.shape, l2, rng), 0.0, 1.0).astype(np.float32)


def jpeg_round_trip(x, quality, chroma_downsampling=True):
    """Section 5.3.2: images in [0, 1] (N, H, W, C) with C = 1 (grayscale) or 3 (RGB), or (N, H, W), quantised to
    8 bits, JPEG-encoded at ``quality`` (``tf.io.encode_jpeg``; RGB with 4:2:0 chroma subsampling by default, as
    libjpeg / PIL), decoded with the accurate integer IDCT, and returned as float32 in [0, 1]."""
    quality = checks.count(quality, "JPEG quality", minimum=1)
    if quality > 100:
        raise ConfigError(f"JPEG quality={quality} must be in 1..100")
    x = np.asarray(x, np.float32)
    squeeze = x.ndim == 3
    if squeeze:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ConfigError(f"images have shape {x.shape}; JPEG needs (N, H, W, 1) or (N, H, W, 3)")
    pixels = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    out = np.empty_like(pixels)
    for i, image in enumerate(pixels):
        encoded = tf.io.encode_jpeg(image, quality=quality, chroma_downsampling=bool(chroma_downsampling))
        out[i] = tf.io.decode_jpeg(encoded, channels=x.shape[-1], dct_method="INTEGER_ACCURATE").numpy()
    out = out.astype(np.float32) / 255.0
    return out[..., 0] if squeeze else out


# -- the measure --------------------------------------------------------------------------------------
def unchanged_fraction(decide, x, perturb, draws=1, reference=None, seed=0):
    """Percentage of predictions unchanged under ``perturb`` (section 5.3).

    ``decide(images) -> labels`` (int, :data:`randspike.decision.REJECTED` for a rejection); ``perturb(x, rng)``
    returns perturbed images (``rng``: a numpy Generator seeded by ``(seed, draw)``); ``reference``: the clean
    predictions (default ``decide(x)``). A prediction is unchanged iff it equals the reference and is not a
    rejection (so a rejected clean image is never unchanged). Returns a dict: ``unchanged`` (% mean over the
    draws), ``unchanged_std`` (over the draws), ``per_draw``, ``rejected`` (% of perturbed predictions),
    ``clean_rejected`` (% of references), ``realised_l2`` (mean L2 of the perturbations actually applied).
    """
    draws = checks.count(draws, "draws", minimum=1)
    x = np.asarray(x, np.float32)
    reference = np.asarray(decide(x) if reference is None else reference).reshape(-1)
    per_draw, rejected, norms = [], [], []
    for d in range(draws):
        perturbed = perturb(x, np.random.default_rng([int(seed), d]))
        predicted = np.asarray(decide(perturbed)).reshape(-1)
        unchanged = (predicted == reference) & (predicted != decision.REJECTED)
        per_draw.append(100.0 * float(unchanged.mean()))
        rejected.append(100.0 * float(np.mean(predicted == decision.REJECTED)))
        norms.append(float(np.sqrt(np.sum(np.square(perturbed.astype(np.float64) - x).reshape(len(x), -1), 1)).mean()))
    return {"unchanged": float(np.mean(per_draw)), "unchanged_std": float(np.std(per_draw)), "per_draw": per_draw,
            "rejected": float(np.mean(rejected)), "clean_rejected": 100.0 * float(np.mean(reference == decision.REJECTED)),
            "realised_l2": float(np.mean(norms))}


# -- the study ----------------------------------------------------------------------------------------
def _int_seed(*parts):
    return zlib.crc32("|".join(map(str, parts)).encode()) % (2**31 - 1)


def _level_name(perturbation, level):
    return f"l2={level:g}" if perturbation == GAUSSIAN else f"q={int(level)}"


def cell_name(model_name, perturbation, level=None):
    """The cell of one (model, perturbation, level); ``perturbation="clean"`` is the reference predictions."""
    return f"{model_name}|clean" if level is None else f"{model_name}|{perturbation}|{_level_name(perturbation, level)}"


def _levels(levels, perturbation):
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise ConfigError(f"{perturbation} levels={levels!r} must be a list")
    if perturbation == GAUSSIAN:
        values = [checks.nonnegative(v, "Gaussian L2 level") for v in levels]
    else:
        values = [checks.count(v, "JPEG quality", minimum=1) for v in levels]
        if any(v > 100 for v in values):
            raise ConfigError(f"JPEG qualities {list(levels)!r} must be in 1..100")
    if not values or len(set(values)) != len(values):
        raise ConfigError(f"{perturbation} levels={list(levels)!r} must be non-empty and distinct")
    return values


def _is_model(value):
    return isinstance(value, (keras.Model, decision.Decider))


class Study:
    """The stability study of ``models`` (see :func:`run` for the arguments) in ``work_dir``, cell by cell: the clean
    cell of a model (:meth:`clean`) and one cell per (perturbation, level) (:meth:`measure`, which reads the clean
    one); every cell draws only from seeds of its own, so the cells may be computed in any order and process.
    ``reseed``: callbacks of the :class:`~hrs_tf.experiments.cells.CellStore` (e.g. the model stores')."""

    def __init__(self, models, x, work_dir, dataset=None, schemes=None, num_images=NUM_IMAGES, gaussian_levels=None,
                 jpeg_qualities=JPEG_QUALITIES, draws=DRAWS, perturbations=PERTURBATIONS, rule=decision.MC_AVERAGE,
                 passes=decision.PASSES, batch_size=decision.BATCH_SIZE, per_image=False, seed=0,
                 chroma_downsampling=True, log=print, reseed=()):
        if not isinstance(models, dict) or not models:
            raise ConfigError("models must be a non-empty dict {name: model, decider or loader}")
        for name, value in models.items():
            if not (_is_model(value) or callable(value)):
                raise ConfigError(f"model {name!r} is a {type(value).__name__}, not a Keras model, a Decider or a "
                                  "loader")
        perturbations = tuple(perturbations)
        for p in perturbations:
            checks.choice(p, "perturbation", PERTURBATIONS)
        if gaussian_levels is None:
            if dataset not in GAUSSIAN_L2_LEVELS:
                raise ConfigError(f"dataset={dataset!r} has no default Gaussian grid; give gaussian_levels or one of "
                                  f"{', '.join(GAUSSIAN_L2_LEVELS)}")
            gaussian_levels = GAUSSIAN_L2_LEVELS[dataset]
        self.levels = {GAUSSIAN: _levels(gaussian_levels, GAUSSIAN), JPEG: _levels(jpeg_qualities, JPEG)}
        self.draws = checks.count(draws, "draws", minimum=1)
        self.passes = checks.count(passes, "passes", minimum=1)
        self.batch_size = checks.count(batch_size, "batch_size", minimum=1)
        self.seed = checks.count(seed, "seed")
        self.rule = decision.check_rule(rule)
        x = np.asarray(x, np.float32)
        num_images = checks.count(num_images, "num_images", minimum=1)
        if num_images > len(x):
            raise ConfigError(f"num_images={num_images} exceeds the {len(x)} images given")
        self.x = x[:num_images]
        self.models, self.work_dir, self.dataset, self.log = models, work_dir, dataset, log
        self.per_image, self.chroma_downsampling = bool(per_image), bool(chroma_downsampling)
        self.schemes = {name: (schemes or {}).get(name, name) for name in models}
        self.settings = {"images": num_images, "data": data_fingerprint(self.x, np.zeros(len(self.x))),
                         "draws": self.draws, "rule": self.rule, "passes": self.passes, "batch_size": self.batch_size,
                         "per_image": self.per_image, "seed": self.seed,
                         "chroma_downsampling": self.chroma_downsampling, "dataset": dataset}
        check_settings(work_dir, self.settings, CONTENT_KEYS, "a stability study")
        self.cells = CellStore(work_dir, log, reseed=reseed)
        self.work = [(p, level) for p in perturbations for level in self.levels[p]]  # (perturbation, level) per model
        self._loaded, self._jpeg = {}, {}

    def model(self, name):
        """Model ``name`` (its loader called once)."""
        if name not in self._loaded:
            value = self.models[name]
            model = value if _is_model(value) else value()
            if not _is_model(model):
                raise ConfigError(f"the loader of model {name!r} returned a {type(model).__name__}")
            self._loaded[name] = model
        return self._loaded[name]

    def _decider(self, name, cell_seed):
        """(rule used, images -> labels) of model ``name``, every decision reseeded from ``cell_seed`` onwards."""
        model = self.model(name)
        use = decision.rule_or_error(self.rule, model)
        counter = iter(range(1 << 30))
        return use, lambda images: decision.labels(model, images, rule=use, passes=self.passes,
                                                   batch_size=self.batch_size, per_image=self.per_image,
                                                   seed=cell_seed + next(counter))

    def _perturb(self, perturbation, level):
        if perturbation == GAUSSIAN:
            return lambda images, rng: gaussian_at_l2(images, level, rng)

        def jpeg(images, rng):
            if level not in self._jpeg:  # deterministic: the same images for every model
                self._jpeg[level] = jpeg_round_trip(images, level, self.chroma_downsampling)
            return self._jpeg[level]
        return jpeg

    def clean(self, name):
        """The clean cell of model ``name``: its reference predictions (computed if missing)."""
        def compute():
            use, decide = self._decider(name, _int_seed(self.seed, name, "clean"))
            labels = decide(self.x)
            return {"model": name, "rule": use, "labels": [int(v) for v in labels],
                    "rejected": 100.0 * float(np.mean(labels == decision.REJECTED))}
        return self.cells.cell(EXPERIMENT, cell_name(name, "clean"), compute)

    def measure(self, name, perturbation, level):
        """The cell of model ``name`` under ``perturbation`` at ``level`` (computed if missing)."""
        reference = np.asarray(self.clean(name)["labels"])  # before this cell's own randomness starts

        def compute():
            use, decide = self._decider(name, _int_seed(self.seed, name, perturbation, level))
            result = unchanged_fraction(decide, self.x, self._perturb(perturbation, level),
                                        self.draws if perturbation == GAUSSIAN else 1, reference,
                                        seed=_int_seed(self.seed, perturbation, level))
            return dict(result, model=name, perturbation=perturbation, level=level, rule=use, images=len(self.x))
        return self.cells.cell(EXPERIMENT, cell_name(name, perturbation, level), compute)

    def stored(self, name):
        """Whether the cell ``name`` (a :func:`cell_name`) is stored."""
        return self.cells.stored(EXPERIMENT, name) is not None

    def finish(self, figure=True):
        """The results of every cell (missing ones computed) written as ``stability.json`` / ``.csv`` (and the
        figure); returns the results dict."""
        rows = []
        for name in self.models:
            for perturbation, level in self.work:
                cell = self.measure(name, perturbation, level)
                rows.append({"model": name, "scheme": self.schemes[name], "perturbation": perturbation,
                             "level": level, "unchanged": cell["unchanged"],
                             "unchanged_std_draws": cell["unchanged_std"], "rejected": cell["rejected"],
                             "clean_rejected": cell["clean_rejected"], "realised_l2": cell["realised_l2"],
                             "rule": cell["rule"], "images": cell["images"], "draws": len(cell["per_draw"])})
        results = {"settings": dict(self.settings, gaussian_levels=self.levels[GAUSSIAN],
                                    jpeg_qualities=self.levels[JPEG]),
                   "rows": rows, "curves": curves(rows)}
        fileio.write_json(os.path.join(self.work_dir, "stability.json"), results)
        write_csv(os.path.join(self.work_dir, "stability.csv"), rows)
        if figure:
            plot(results, os.path.join(self.work_dir, "stability.png"),
                 title=f"Stability ({self.dataset})" if self.dataset else None)
        return results


def run(models, x, work_dir, dataset=None, schemes=None, num_images=NUM_IMAGES, gaussian_levels=None,
        jpeg_qualities=JPEG_QUALITIES, draws=DRAWS, perturbations=PERTURBATIONS, rule=decision.MC_AVERAGE,
        passes=decision.PASSES, batch_size=decision.BATCH_SIZE, per_image=False, seed=0, chroma_downsampling=True,
        figure=True, log=print):
    """The stability study of ``models`` = {name: Keras model, Decider, or a zero-argument loader of one (called only
    if a cell of that model is missing)} on the first ``num_images`` of ``x`` (test images), in ``work_dir`` (the
    study's own folder: ``plan.json``, ``cells/stability/``, ``stability.json`` / ``.csv`` / ``.png``), cell by cell
    in this process (:class:`Study`).

    ``schemes``: {model name: scheme} (default: the name), the groups averaged in the figure (k models per scheme);
    ``gaussian_levels``: L2 grid (default: ``dataset``'s, :data:`GAUSSIAN_L2_LEVELS`); ``jpeg_qualities``: 10..100;
    ``draws``: Gaussian draws per level (JPEG is deterministic: one); decision settings as
    :func:`randspike.decision.labels`. Returns the results dict written to ``stability.json``.
    """
    study = Study(models, x, work_dir, dataset=dataset, schemes=schemes, num_images=num_images,
                  gaussian_levels=gaussian_levels, jpeg_qualities=jpeg_qualities, draws=draws,
                  perturbations=perturbations, rule=rule, passes=passes, batch_size=batch_size, per_image=per_image,
                  seed=seed, chroma_downsampling=chroma_downsampling, log=log)
    total, done = len(models) * len(study.work), 0
    for name in models:
        study.clean(name)
        for perturbation, level in study.work:
            cell = study.measure(name, perturbation, level)
            done += 1
            log(f"  {done}/{total} {name} {perturbation} {_level_name(perturbation, level)}: "
                f"{cell['unchanged']:.2f}% unchanged, {cell['rejected']:.2f}% rejected ({cell['seconds']:.1f} s)")
    return study.finish(figure)


def curves(rows):
    """Per (scheme, perturbation, level): mean and sample standard deviation (ddof 1; 0 for one model) over the
    scheme's models of the % unchanged, as a list of dicts (the lines of Figures 1-2)."""
    groups = {}
    for row in rows:
        groups.setdefault((row["scheme"], row["perturbation"], row["level"]), []).append(row["unchanged"])
    return [{"scheme": s, "perturbation": p, "level": level, "mean": float(np.mean(v)),
             "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "models": len(v)}
            for (s, p, level), v in groups.items()]


def write_csv(path, rows):
    """The per-model rows as CSV (atomically)."""
    out = io.StringIO()
    fields = ["model", "scheme", "perturbation", "level", "unchanged", "unchanged_std_draws", "rejected",
              "clean_rejected", "realised_l2", "rule", "images", "draws"]
    writer = csv.DictWriter(out, fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in fields})
    fileio.write_text(path, out.getvalue())


def plot(results, path, title=None):
    """Figures 1-2: % unchanged predictions against the level, one line per scheme (mean over its models, band =
    +- one standard deviation), a Gaussian panel (L2) and a JPEG panel (quality decreasing to the right, as the
    paper's). ``results``: the dict of :func:`run` (or ``stability.json`` read back). PNG, written atomically."""
    lines = results["curves"]
    kinds = [p for p in PERTURBATIONS if any(c["perturbation"] == p for c in lines)]
    if not kinds:
        raise ConfigError("the stability results hold no curve to plot")
    schemes = list(dict.fromkeys(c["scheme"] for c in lines))
    titles = {GAUSSIAN: "Gaussian noise (Figure 1)", JPEG: "JPEG compression (Figure 2)"}
    panels, bands = {}, {}
    for perturbation in kinds:
        panel = titles[perturbation]
        panels[panel], bands[panel] = {}, {}
        for scheme in schemes:
            points = sorted((c["level"], c["mean"], c["std"]) for c in lines
                            if c["scheme"] == scheme and c["perturbation"] == perturbation)
            if points:
                xs, mean, std = (np.array(v, np.float64) for v in zip(*points))
                panels[panel][scheme] = (xs, mean)
                bands[panel][scheme] = (mean - std, np.minimum(mean + std, 100.0))
    plots.plot_panels(path, panels, {titles[p]: LEVEL_TITLES[p] for p in kinds}, "Unchanged predictions (%)",
                      title=title, bands=bands, inverted=[titles[JPEG]])
