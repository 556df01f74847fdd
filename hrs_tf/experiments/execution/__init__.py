"""Executors for an experiment's cells: in this process (``local``, the default) or on Ray (``ray``).

:func:`execute` runs every cell an experiment lists that is not done (see :mod:`.cell` for what an experiment
offers); :func:`make_executor` builds the executor a tool's ``--executor`` / ``--ray_address`` / ``--ray_workers``
flags ask for. Ray is imported only by the ``ray`` executor, so the default install needs none.
"""

from hrs_tf.errors import ConfigError
from hrs_tf.experiments.execution.cell import Cell, Needs, Recipe, cell_seed
from hrs_tf.experiments.execution.local import LocalExecutor
from hrs_tf.experiments.execution.progress import Progress
from hrs_tf.experiments.execution.runner import check_plan, execute, ordered

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "Cell", "LocalExecutor", "Needs", "Progress", "Recipe", "cell_seed", "check_executor",
           "check_plan", "execute", "make_executor", "ordered"]


def check_executor(name="local", ray_address=None, ray_workers=None, ray_threads=None):
    """ConfigError (one line) unless the executor settings make sense together and the executor can be made here (no
    Ray settings with ``local``; counts >= 1; the ``ray`` package importable for ``ray``); starts nothing."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor={name!r} is not one of {', '.join(EXECUTORS)}")
    if name == "local":
        given = [f for f, v in (("ray_address", ray_address), ("ray_workers", ray_workers),
                                ("ray_threads", ray_threads)) if v]
        if given:
            raise ConfigError(f"--{given[0]} is a Ray setting; add --executor=ray to use it")
        return
    for flag, value in (("ray_workers", ray_workers), ("ray_threads", ray_threads)):
        if value is not None and int(value) < 1:
            raise ConfigError(f"--{flag}={value!r} must be at least 1")
    if ray_address and ray_workers:
        raise ConfigError("--ray_workers sizes a local Ray instance; an existing cluster (--ray_address) has its own")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--executor=ray needs the ray package: pip install -r requirements-ray.txt "
                          "(or ./setup.sh --with-ray)")


def make_executor(name="local", ray_address=None, ray_workers=None, ray_threads=None, log=print):
    """The executor ``name`` (``local`` or ``ray``) after :func:`check_executor`."""
    check_executor(name, ray_address, ray_workers, ray_threads)
    if name == "local":
        return LocalExecutor()
    from hrs_tf.experiments.execution.ray_cluster import RayExecutor

    return RayExecutor(address=ray_address, workers=ray_workers, threads=ray_threads, log=log)
