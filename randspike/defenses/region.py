"""``region[:RADIUS,COPIES]``: region-based classification (Cao & Gong 2017) as the Random Spiking paper deploys it
(appendix A.1 "Region-based Classification (RC)", Table 2 row "RC"): the trained Dropout scheme model (``rs_dropout``)
wrapped without retraining; the prediction is the majority vote over t copies of the input with uniform noise in
[-r, r] per pixel (:class:`randspike.region.RegionClassifier`).

**The model file** is what an attacker differentiates: ``UniformInputNoise(r)`` then the Dropout model (nested).

**Data-set defaults** (r = 0.4, t = 10,000 on MNIST; r = 0.02, t = 1,000 on Fashion-MNIST and CIFAR-10) are not known
when the model is wrapped (:meth:`RegionDefense.apply` sees a model, not a data set; MNIST and Fashion-MNIST models
have the same input shape). So a spec without a radius gives a model whose noise layer has no radius yet (it is
saved that way, and refuses to run rather than guess); the radius is set from the data set by
:meth:`RegionDefense.for_dataset` (the model maker's hook) or, at the latest, by :meth:`RegionDefense.decider`, which
reads the data set from the model's JSON sidecar (``"dataset"``). A radius given in the spec, or set before saving,
is carried by the saved layer. With neither a radius nor a known data set, a one-line ConfigError.
"""

from hrs_tf.defenses.registry import WRAPPED, Argument, Defense, parse, register
from hrs_tf.errors import ConfigError, ModelError
from randspike import region
from randspike.layers.uniform_noise import check_radius

SOURCE = "rs_dropout"  # the RS paper uses the Dropout scheme models for RC


@register
class RegionDefense(Defense):
    name = "region"
    title = "RC"
    summary = ("majority vote of the Dropout model over t copies of the input with uniform noise in [-r, r] "
               "(region-based classification), no retraining")
    reference = "Cao & Gong 2017; Random Spiking paper appendix A.1 and Table 2; REFERENCE section 9"
    make = WRAPPED
    arguments = (
        Argument("radius", check_radius, None, "noise radius r per pixel (default: 0.4 MNIST, 0.02 Fashion-MNIST / "
                 "CIFAR-10)", metavar="RADIUS"),
        Argument("copies", region.check_copies, None, "noisy copies t per image (default: 10000 MNIST, 1000 "
                 "Fashion-MNIST / CIFAR-10)", metavar="COPIES"),
    )

    def label(self, args):
        given = [f"{symbol}={args[key]:g}" for key, symbol in (("radius", "r"), ("copies", "t")) if args[key] is not None]
        return " ".join(["RC"] + given)

    def source(self, args):
        return parse(SOURCE)

    def apply(self, args, model, seed=None):
        """``UniformInputNoise(radius)`` then ``model`` (radius None: chosen later from the data set)."""
        return region.with_input_noise(model, args["radius"], seed=seed)

    def for_dataset(self, args, model, dataset_name):
        """``model`` (made by :meth:`apply`) with the data set's default radius if the spec gave none."""
        region.resolve_radius(model, dataset_name)
        return model

    def decider(self, args, path, dataset=None, chunk=region.CHUNK, log=None):
        """The :class:`randspike.region.RegionClassifier` of the model saved at ``path`` (:meth:`decider_for_model`);
        the data set is ``dataset`` or the ``"dataset"`` of the model's JSON sidecar."""
        dataset = dataset or (self.record(path) or {}).get("dataset")
        return self.decider_for_model(args, self.load(args, path), dataset, chunk=chunk, log=log, where=repr(path))

    def decider_for_model(self, args, model, dataset_name, chunk=region.CHUNK, log=None, where=None):
        """The :class:`randspike.region.RegionClassifier` of ``model`` (made by :meth:`apply`). Radius: the noise
        layer's, else the spec's, else the data set's default; copies: the spec's, else the data set's default."""
        where = where or f"{model.name!r}"
        layer = region.noise_layer(model)
        saved, given = layer.radius, args["radius"]
        if saved is not None and given is not None and abs(saved - given) > 1e-12:
            raise ModelError(f"region model {where} has noise radius {saved:g}, the spec says {given:g}")
        radius = saved if saved is not None else given
        copies = args["copies"]
        if radius is None or copies is None:
            if dataset_name is None:
                raise ConfigError(f"region model {where}: no radius / copies in the spec and no data set known (no "
                                  "'dataset' in its JSON sidecar) to take the paper's defaults from; write "
                                  "region:RADIUS,COPIES")
            defaults = region.dataset_defaults(dataset_name)
            radius = defaults["radius"] if radius is None else radius
            copies = defaults["copies"] if copies is None else copies
        return region.RegionClassifier(region.classifier_of(model), radius, copies, chunk=chunk, seed=layer.seed,
                                       log=log)
