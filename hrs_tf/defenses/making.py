"""Making one defended model file from a spec, the way its defense is made (``tools/train_baseline.py``).

- trained from scratch (``none``, ``gaussian``, ``adv``, ``hrs``): its defense's resumable trainer writes the
  model (and its own checkpoint or run folder) at the output;
- derived (wrapped, transform, a subset): made from a trained source model without training -- the given
  ``base_model``, or the source trained here first with the same settings;
- installed: applied to the source model, then fine-tuned.

The JSON sidecar beside the ``.h5`` records the spec, its label, the training record (if trained), the clean
accuracy with every test image meeting its own randomness, and what an adaptive attacker needs to know
(:func:`hrs_tf.defenses.registry.attacker_view`).
"""

import os
import time

from hrs_tf import fileio, training
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import metrics
from hrs_tf.models import count_params, serialization


def make(spec, dataset, output, base_model=None, epochs=None, seed=0, eval_repeats=5, verbose=2, log=print,
         annotations=None, **settings):
    """Makes the model of ``spec`` at ``output`` (.h5) with its sidecar; returns ``(model, record)``.

    ``base_model``: path of the trained source model of a derived defense (else it is trained here);
    ``epochs`` (default: the defense's reference value) and ``settings`` (arch, dropout_rate, batch_size,
    learning_rate) are the training recipe; ``annotations`` are added to the sidecar (e.g. the command line).
    """
    spec = registry.parse(spec)
    if not str(output).endswith(".h5"):
        raise ConfigError(f"output {output!r} must end in .h5")
    source = spec.source()
    started = time.time()
    if source is None:
        if base_model:
            raise ConfigError(f"defense {spec.text!r} is trained from scratch; --base_model does not apply to it")
        spec.train(dataset, output, epochs=_epochs(spec, epochs), seed=seed, verbose=verbose, log=log, **settings)
        model = spec.load(output)
        record = dict(spec.defense.record(output) or {}, retrained=True)
    else:
        if base_model:
            source_model = serialization.load_model(base_model)
        else:
            if source.source() is not None:
                raise ConfigError(f"defense {spec.text!r} is made from a trained {source.text!r} model: give it "
                                  "with --base_model")
            log(f"training the source model {source.text} first (no --base_model given)")
            source_path = os.path.splitext(output)[0] + "_source.h5"
            source.train(dataset, source_path, epochs=_epochs(source, epochs), seed=seed, verbose=verbose, log=log,
                         **settings)
            source_model, base_model = source.load(source_path), source_path
        model = spec.apply(source_model, seed=None, dataset_name=dataset.name)
        record = {"base_model": str(base_model), "retrained": False}
        if spec.make == registry.INSTALLED:  # fine-tuned by its defense's (resumable) trainer, written at output
            spec.train(dataset, output, epochs=_epochs(spec, epochs), seed=seed, verbose=verbose, log=log,
                       source_model=model, **settings)
            model = spec.load(output)
            record.update(spec.defense.record(output) or {}, retrained=True)
        else:
            serialization.save_model(model, output)
    record.update(kind="defended_model", defense=spec.text, label=spec.label, make=spec.make,
                  dataset=dataset.name, data_source=dataset.source, num_params=count_params(model),
                  clean_accuracy=metrics.clean_accuracy(model, dataset.x_test, dataset.y_test, eval_repeats),
                  attacker_view=registry.attacker_view(model), seconds=round(time.time() - started, 1),
                  versions=training.versions(), output=str(output), **(annotations or {}))
    fileio.write_json(os.path.splitext(output)[0] + ".json", record)
    return model, record


def _epochs(spec, epochs):
    epochs = spec.defense.default_epochs if epochs is None else epochs
    if epochs is None:
        raise ConfigError(f"defense {spec.text!r} needs --epochs")
    return epochs
