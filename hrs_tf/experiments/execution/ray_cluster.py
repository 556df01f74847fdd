"""The Ray executor: cells as Ray tasks, on a local Ray instance or an existing cluster.

The driver (the tool's process) submits the cells whose dependencies are done while the cluster has free CPUs (so
"running" in its progress lines means running), each task reserving its cells' needs (:class:`~.cell.Needs`: CPUs,
GPUs, memory), and prints a progress line per cell as tasks return. Ready cells of one ``group`` go in one task
(:func:`batches`): the work they share (a model loaded, an attack traced) is done once on that worker. A task
rebuilds the experiment from its :class:`~.cell.Recipe` once per worker process (data and models stay cached there
across cells) and computes its cells, each writing its result into the work folder atomically: the work folder must
be one every worker sees (this machine, or a shared file system on a cluster). TensorFlow in a worker uses as many
threads as the cell reserves CPUs (or ``threads``), so workers do not fight over cores. Floating-point sums depend
on how TensorFlow splits them over threads: a result equals the local run's to the last bit when the workers use the
local process's thread count; with fewer, a trained weight may differ in its last bits, which an attack's sign steps
can amplify. A worker that dies mid-cell (killed, out of memory) leaves no file behind and Ray reruns its task (up to
``retries`` times; cells already done are skipped); a cell that raises stops the run with one line naming it, after
cancelling the others.
"""

import math
import os
import sys
import time

from hrs_tf.errors import ConfigError, HrsError

RETRIES = 3  # reruns of a cell whose worker died
OBJECT_STORE_MB = 1024  # a local instance's object store: the recipes (a data set travels in one; Ray spills beyond)
BALANCE = 3  # a batch holds at most 1 / (BALANCE x CPUs) of the ready cells: batches shrink as the plan ends
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


def warm_up(threads):
    """A worker's start: TensorFlow's thread pools set and the project imported, before its first cell arrives."""
    limit_threads(threads)
    import hrs_tf.experiments  # noqa: F401 -- imported for its start-up time

    return os.getpid()


def compute_cells(recipe, cells, threads):
    """The task body: the experiment of ``recipe`` (built once per worker process) computes ``cells`` in order,
    skipping those already done (a rerun task after its worker died); returns [(key, seconds, host:pid)] of the
    computed ones and, if one raised, {"failed": key, "error": its one-line description} last."""
    limit_threads(threads)
    where = f"{os.uname().nodename}:{os.getpid()}"
    out = []
    for cell in cells:
        start = time.time()
        try:
            experiment = _built.get(recipe.token)
            if experiment is None:
                experiment = _built[recipe.token] = recipe.build()
            if not experiment.done(cell):
                experiment.compute(cell)
        except Exception as e:  # noqa: BLE001 -- reported to the driver, which stops the run naming the cell
            out.append({"failed": cell.key, "error": f"{type(e).__name__}: {e}".splitlines()[0]})
            break
        out.append((cell.key, time.time() - start, where))
    return out


def batches(ready, free_cpus, total_cpus):
    """The first batch to submit from the ``ready`` cells: the first one and the ready cells of its group (same
    needs), at most ``ceil(len(ready) / (BALANCE x total_cpus))`` cells, so that a group's shared work is done once
    per worker while every core gets cells and, as the plan ends, batches shrink and the last ones spread over the
    cores. None when the first cell does not fit in ``free_cpus``."""
    first = ready[0]
    if first.needs.cpus > free_cpus:
        return None
    size = max(1, math.ceil(len(ready) / (BALANCE * max(1, total_cpus))))
    batch = [first]
    if first.group:
        batch += [c for c in ready[1:] if c.group == first.group and c.needs == first.needs][:size - 1]
    return batch


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
        self._task = ray.remote(compute_cells)
        resources = ray.cluster_resources()
        self.cpus = resources.get("CPU", 0)
        log(f"ray: {self.cpus:g} CPUs, {resources.get('GPU', 0):g} GPUs in "
            f"{len(ray.nodes())} node(s)" + (f" at {address}" if address else " (a local instance)"))
        # Workers start (TensorFlow's import takes seconds) while the driver plans its first cells.
        warm = ray.remote(warm_up).options(num_cpus=1)
        self._warming = [warm.remote(self.threads or 1) for _ in range(int(self.cpus))]

    def wait_until_warm(self):
        """Blocks until every worker started at construction has imported the project; returns their pids."""
        return self.ray.get(self._warming)

    def _submit(self, recipe_ref, batch):
        needs = batch[0].needs
        name = batch[0].key + (f" (+{len(batch) - 1} of its group)" if len(batch) > 1 else "")
        options = {"num_cpus": needs.cpus, "num_gpus": needs.gpus, "max_retries": self.retries,
                   "retry_exceptions": False, "name": name[:200]}
        if needs.memory_mb:
            options["memory"] = int(needs.memory_mb * 2**20)
        return self._task.options(**options).remote(recipe_ref, batch, self.threads or max(1, math.ceil(needs.cpus)))

    def run(self, experiment, cells, finished, progress):
        """Submits ready cells while the cluster has free CPUs (so "running" means running), a group's ready cells
        in one task (:func:`batches`); prints a progress line per computed cell as its task returns."""
        ray = self.ray
        recipe_ref = ray.put(experiment.recipe())
        done, waiting, running = set(finished), list(cells), {}
        while waiting or running:
            free = self.cpus - sum(b[0].needs.cpus for b in running.values())
            while True:
                ready = [c for c in waiting if all(k in done for k in c.after)]
                batch = batches(ready, free if running else float("inf"), self.cpus) if ready else None
                if batch is None:
                    break
                running[self._submit(recipe_ref, batch)] = batch
                free -= batch[0].needs.cpus
                for cell in batch:
                    progress.started(cell)
                    waiting.remove(cell)
            if not running:
                raise ConfigError(f"cells wait for cells that never finish: {', '.join(c.key for c in waiting[:3])}")
            returned, _ = ray.wait(list(running), num_returns=1)
            for ref in returned:
                batch = running.pop(ref)
                try:
                    results = ray.get(ref)
                except Exception as e:  # noqa: BLE001 -- a task that cannot run (its retries spent) stops the run
                    self._cancel(running)
                    raise CellError(f"cell {batch[0].key!r} failed on a Ray worker: {_last_line(e)}") from None
                by_key = {c.key: c for c in batch}
                for result in results:
                    if isinstance(result, dict):
                        self._cancel(running)
                        raise CellError(f"cell {result['failed']!r} failed on a Ray worker: {result['error']}")
                    key, seconds, where = result
                    done.add(key)
                    progress.finished(by_key[key], seconds, where)

    def _cancel(self, running):
        for ref in running:
            self.ray.cancel(ref)

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
