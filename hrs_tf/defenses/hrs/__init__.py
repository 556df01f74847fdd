"""``hrs[:AxB[xC]][,of=AxB]``: hierarchical random switching (HRS paper section 5; appendix B), registered as a
defense. The model (:mod:`.model`) and its bottom-up training (:mod:`.training`) are here too.

``hrs:5x5`` is trained bottom-up into a resumable run folder; ``hrs:2x2,of=10x10`` is made without training
from the first channels of each block of a trained ``hrs:10x10`` (the DES strength sweep).
"""

import os
import shutil

from hrs_tf import fileio
from hrs_tf.defenses.hrs import training
from hrs_tf.defenses.hrs.model import (build_hrs_model, channel_counts, channel_name, infer_architecture, last_path,
                                       load_published_hrs, parse_channels, path_model, published_channel_file,
                                       set_channel_weights, subset_model, switches, with_granularity)
from hrs_tf.defenses.registry import TRAINED, Argument, Defense, parse, register
from hrs_tf.models import serialization

SWEEP = (2, 3, 4, 5, 6, 8, 10)  # channels per block of the DES strength sweep (HRS paper Table 2, k x k)

__all__ = ["HierarchicalRandomSwitching", "block_ablation", "build_hrs_model", "channel_counts", "channel_name",
           "infer_architecture", "last_path", "load_published_hrs", "parse_channels", "path_model",
           "published_channel_file", "set_channel_weights", "subset_model", "switches", "training", "with_granularity"]


def shape_text(channels):
    return "x".join(map(str, channels))


@register
class HierarchicalRandomSwitching(Defense):
    name = "hrs"
    title = "HRS"
    summary = "hierarchical random switching: per block one of N channels, drawn on every forward pass"
    reference = "Wang et al. 2019 (HRS) section 5, appendix B; REFERENCE section 1"
    make = TRAINED
    arguments = (Argument("channels", parse_channels, (10, 10), "channels per switching block, 1 to 3 blocks: 5x5, 10x10, "
                          "5x5x5", format=shape_text, metavar="AxB[xC]", always=True),
                 Argument("of", parse_channels, None, "take the first channels of each block of this trained HRS model "
                          "instead of training", keyword_only=True, format=shape_text, metavar="AxB"))
    default_epochs = 40
    compared_in = {"hrs_paper": ("5x5", "10x10")}

    def label(self, args):
        text = f"HRS {shape_text(args['channels'])}"
        return text if args["of"] is None else f"{text} of {shape_text(args['of'])}"

    def source(self, args):
        return None if args["of"] is None else parse(f"{self.name}:{shape_text(args['of'])}")

    def apply(self, args, model, seed=None):
        return subset_model(model, args["channels"], seed=seed)

    def artifact(self, stem):
        return stem  # a run folder (channel files, run.json, summary.json, hrs_model.h5)

    def train(self, args, dataset, output, *, epochs, seed=0, verbose=2, log=print, source_model=None, siblings=None,
              eval_repeats=5, **settings):
        """Trains (or resumes) the run folder ``output``; with an ``.h5`` output, the run folder is its stem and
        the model and its summary are also written to ``output`` and its JSON sidecar. Block-0 channels of a
        compatible smaller HRS model among ``siblings`` are copied instead of retrained."""
        folder = output[:-3] if str(output).endswith(".h5") else output
        reuse = self._reusable(args, dataset, siblings or {}, epochs, seed, settings)
        summary = training.train_hrs(dataset, folder, args["channels"], epochs, seed=seed, verbose=verbose, log=log,
                                     eval_repeats=eval_repeats, reuse_block0_from=reuse, **settings)
        if folder != output:
            with fileio.atomic_path(output) as tmp:
                shutil.copyfile(os.path.join(folder, training.MODEL_FILE), tmp)
            fileio.write_json(output[:-3] + ".json", dict(summary, output=str(output), run_folder=folder))

    def reuses(self, args, other):
        """A smaller HRS model with as many blocks (its block-0 channels may be copied, :meth:`_reusable`)."""
        channels = other.args.get("channels") if other.defense is self else None
        return (channels is not None and other.args.get("of") is None and len(channels) == len(args["channels"])
                and channels[0] < args["channels"][0])

    def _reusable(self, args, dataset, siblings, epochs, seed, settings):
        """The run folder of the largest sibling HRS model with fewer block-0 channels whose channels may be reused."""
        candidates = []
        for text, path in siblings.items():
            spec = parse(text)
            other = spec.args.get("channels")
            if spec.defense is not self or spec.args.get("of") is not None or not os.path.isdir(path):
                continue
            if len(other) == len(args["channels"]) and other[0] < args["channels"][0]:
                candidates.append((other[0], path))
        for _, path in sorted(candidates, reverse=True):
            try:
                training.check_reusable(path, dataset, args["channels"], epochs, seed=seed, **settings)
            except Exception:  # noqa: BLE001 -- an incompatible sibling is simply not reused
                continue
            return path
        return None

    def load(self, args, path):
        if os.path.isdir(path):
            path = os.path.join(path, training.MODEL_FILE)
        return serialization.load_model(path)

    def record(self, path):
        summary = os.path.join(path, training.SUMMARY_FILE) if os.path.isdir(path) else path[:-3] + ".json"
        return fileio.read_json(summary) if os.path.isfile(summary) else None

    def strength_sweep(self, dataset_name, specs):
        """HRS k x k for k in :data:`SWEEP` up to the smallest block of the plan's largest 2-block HRS model, as the
        first k channels of each of its blocks (one trained model serves the whole sweep)."""
        trained = [s.args["channels"] for s in specs if s.defense is self and s.args["of"] is None
                   and len(s.args["channels"]) == 2]
        if not trained:
            return []
        largest = max(trained)
        return [parse(f"{self.name}:{k}x{k}" + ("" if (k, k) == tuple(largest) else f",of={shape_text(largest)}"))
                for k in SWEEP if k <= min(largest)]


def block_ablation(channels, blocks=(1, 2, 3)):
    """The specs of HRS with 1, 2 and 3 switching blocks of ``channels`` channels each (HRS appendix F.1, Table A3)."""
    return [parse(f"{HierarchicalRandomSwitching.name}:{shape_text([channels] * b)}") for b in blocks]
