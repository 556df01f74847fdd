"""The executor protocol (:mod:`hrs_tf.experiments.execution.cell`) for experiments built on a
:class:`~hrs_tf.experiments.model_store.ModelStore` (``self.models``) and a
:class:`~hrs_tf.experiments.cells.CellStore` (``self.cells``).

Such an experiment lists its cells with :class:`CellList`: the training cells of its models, then result cells, each
computed by one of its methods (``Cell.args = (method name, args, kwargs)``, the method computing or reading its
stored cell as a local run calls it), waiting for the training cells of the models it uses. :class:`CellExperiment`
gives ``done`` and ``compute``; the experiment gives ``recipe`` and ``cell_plan``.
"""

from hrs_tf.experiments.execution import Cell, Needs
from hrs_tf.experiments.model_store import MODEL


class CellList:
    """An experiment's cells in local order; a key listed again is ignored (the first listing is the one that runs)."""

    def __init__(self, models):
        self.models, self.cells, self._keys = models, [], set()

    def add(self, cell):
        if cell is not None and cell.key not in self._keys:
            self._keys.add(cell.key)
            self.cells.append(cell)

    def add_models(self, names, needs=Needs()):
        """The training cells of models ``names`` and of what they are made from."""
        for cell in self.models.model_cells(names, needs):
            self.add(cell)

    def result(self, kind, name, method, *args, models=(), after=(), needs=Needs(), group="", estimate="", **kwargs):
        """The result cell ``kind/name`` computed by ``experiment.method(*args, **kwargs)``, after the training of
        ``models`` and the cells ``after``; ``group``, ``estimate``: see :class:`~hrs_tf.experiments.execution.Cell`."""
        wait = [key for model in models for key in self.models.requires(model)] + list(after)
        self.add(Cell(kind, name, args=(method, tuple(args), dict(kwargs)), needs=needs,
                      after=tuple(dict.fromkeys(wait)), group=group, estimate=estimate))

    def ready(self, name):
        """Whether model ``name``'s training cells are all done (its properties, e.g. stochastic, can be read)."""
        return all(self.models.made(key.split("/", 1)[1]) for key in self.models.requires(name))


class CellExperiment:
    """``done`` and ``compute`` of an experiment whose cells come from :class:`CellList`."""

    def done(self, cell):
        if cell.kind == MODEL:
            return self.models.made(cell.name)
        return self.cells.stored(cell.kind, cell.name) is not None

    def compute(self, cell):
        if cell.kind == MODEL:  # a trainer that draws from the global generators draws from this cell's seed
            self.cells.start_randomness(cell.key)
            self.models.get(cell.name)
            return
        method, args, kwargs = cell.args
        getattr(self, method)(*args, **kwargs)
