"""The Ray executor: cells as Ray tasks, on a local Ray instance or an existing cluster.

The driver (the tool's process) submits every cell whose dependencies are done as a task that reserves the cell's
:class:`~hrs_tf.experiments.execution.cell.Needs` (CPUs, GPUs, memory), and prints a progress line as each one
finishes. A task rebuilds the experiment from its :class:`~hrs_tf.experiments.execution.cell.Recipe` once per worker
process (data and models are then cached there across cells) and computes the cell, which writes its result into
the work folder atomically: the work folder must be one every worker sees (this machine, or a shared file system on
a cluster). TensorFlow in a worker uses as many threads as the cell reserves CPUs (or ``threads``), so workers do
not fight over cores. Floating-point sums depend on how TensorFlow splits them over threads: a result equals the
local run's to the last bit when the workers use the local process's thread count (``threads``); with fewer, a
trained weight may differ in its last bits, which an attack's sign steps can amplify into other examples. A worker that dies mid-cell (killed, out of memory) leaves no file behind and Ray runs the cell again (up to
``retries`` times); a cell that raises stops the run with one line naming it, after cancelling the running ones.
"""

import math
import os
import sys
import time

from hrs_tf.errors import ConfigError, HrsError

RETRIES = 3  # reruns of a cell whose worker died
OBJECT_STORE_MB = 256  # a local instance's object store: the recipes only (data sets are small next to it)
_built = {}  # in a worker: recipe token -> experiment
_threads = []  # in a worker: the TensorFlow thread count it was started with


class CellError(HrsError):
    """A cell raised on a worker."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor=ray needs the ray package: pip install -r requirements-ray.txt "
                          "(or ./setup.sh --with-ray)") from None
    return ray


def limit_threads(threads):
    """TensorFlow's intra- and inter-op thread pools of this process set to ``threads`` (once, before TF runs)."""
    if _threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran in this process: keep its pools
        pass
    _threads.append(threads)


def compute_cell(recipe, cell, threads):
    """The task body: the experiment of ``recipe`` (built once per worker process) computes ``cell``; returns
    (seconds, host:pid)."""
    limit_threads(threads)
    start = time.time()
    experiment = _built.get(recipe.token)
    if experiment is None:
        experiment = _built[recipe.token] = recipe.build()
    experiment.compute(cell)
    return time.time() - start, f"{os.uname().nodename}:{os.getpid()}"


class RayExecutor:
    """Runs cells as Ray tasks. ``address``: an existing cluster ("auto" or "host:port"), else a local instance
    with ``workers`` CPUs (default: this machine's cores) is started for this run and stopped by :meth:`close`.
    ``threads``: TensorFlow threads of a worker (default: the CPUs its cell reserves)."""

    name = "ray"

    def __init__(self, address=None, workers=None, threads=None, retries=RETRIES, log=print):
        self.ray = ray = _import_ray()
        self.log, self.retries, self.threads = log, int(retries), threads
        self._started = False
        if not ray.is_initialized():
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join([os.getcwd()] + [p for p in sys.path if p])}}
            if address:
                ray.init(address=address, runtime_env=env, log_to_driver=True)
            else:
                ray.init(num_cpus=int(workers or os.cpu_count()), include_dashboard=False, runtime_env=env,
                         object_store_memory=OBJECT_STORE_MB * 2**20, log_to_driver=True)
            self._started = True
        self._task = ray.remote(compute_cell)
        resources = ray.cluster_resources()
        log(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs in "
            f"{len(ray.nodes())} node(s)" + (f" at {address}" if address else " (a local instance)"))

    def _submit(self, recipe_ref, cell):
        needs = cell.needs
        options = {"num_cpus": needs.cpus, "num_gpus": needs.gpus, "max_retries": self.retries,
                   "retry_exceptions": False, "name": cell.key[:200]}
        if needs.memory_mb:
            options["memory"] = int(needs.memory_mb * 2**20)
        return self._task.options(**options).remote(recipe_ref, cell, self.threads or max(1, math.ceil(needs.cpus)))

    def run(self, experiment, cells, finished, progress):
        ray = self.ray
        recipe_ref = ray.put(experiment.recipe())
        done, waiting, running = set(finished), list(cells), {}
        while waiting or running:
            for cell in [c for c in waiting if all(k in done for k in c.after)]:
                running[self._submit(recipe_ref, cell)] = cell
                progress.started(cell)
                waiting.remove(cell)
            if not running:
                raise ConfigError(f"cells wait for cells that never finish: {', '.join(c.key for c in waiting[:3])}")
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                cell = running.pop(ref)
                try:
                    seconds, where = ray.get(ref)
                except Exception as e:  # noqa: BLE001 -- a failed cell stops the run, with its own message
                    for other in running:
                        ray.cancel(other)
                    raise CellError(f"cell {cell.key!r} failed on a Ray worker: {_last_line(e)}") from None
                done.add(cell.key)
                progress.finished(cell, seconds, where)

    def close(self):
        if self._started:
            self.ray.shutdown()
            self._started = False


def _last_line(error):
    cause = getattr(error, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
