"""The Random Spiking study (:mod:`randspike.experiments.table2`) on Ray: its result cells wait for the training cells
of their models, and a run finished on Ray writes the result files of a local run."""

import dataclasses
import os
import shutil

from randspike.experiments import table2  # (registers the schemes)
from tests.result_files import in_cells, json_files


def result_files(work):
    """{relative path: JSON without timing fields} of every result cell under ``work`` and of the assembled stability
    results."""
    return json_files(work, keep=lambda path: in_cells(path) or os.path.basename(path) == "stability.json")


def test_a_study_finished_on_ray_writes_the_local_result_files(ray_executor, real_mnist, tmp_path):
    """RC (the Dropout model voting over noisy copies): its cells wait for the Dropout model's training; a local run,
    then its results removed and computed on Ray: byte-identical JSON (the Table 2 cell, the stability cells,
    stability.json) apart from compute times."""
    small = dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:256], y_train=real_mnist.y_train[:256],
                                x_test=real_mnist.x_test[:40], y_test=real_mnist.y_test[:40])
    plan = table2.plan_for("mnist", schemes=("region:0.4,5",), models=1, epochs=1, test_images=30, passes=2,
                           settings=(("train_images", 64),), stability_images=10, stability_draws=1,
                           gaussian_levels=(1.0,), jpeg_qualities=(50,))
    local, ray = tmp_path / "local", tmp_path / "ray"
    study = table2.SchemeStudy(small, plan, str(local), log=lambda *_: None)
    keys = {cell.key: cell.after for cell in study.cell_plan()}
    rc = "RC r=0.4 t=5 model=0"
    assert keys == {"model/Dropout model=0": (), f"table2/{rc}": ("model/Dropout model=0",),
                    f"stability/{rc}|clean": ("model/Dropout model=0",),
                    **{f"stability/{rc}|{level}": ("model/Dropout model=0", f"stability/{rc}|clean")
                       for level in ("gaussian|l2=1", "jpeg|q=50")}}
    results = study.run()

    shutil.copytree(local, ray)
    shutil.rmtree(ray / "cells")
    shutil.rmtree(ray / "stability")
    logs = []
    on_ray = table2.SchemeStudy(small, plan, str(ray), log=logs.append).run(executor=ray_executor)
    files = result_files(local)
    assert len(files) == 1 + 3 + 1 and result_files(ray) == files
    assert on_ray["table2"] == results["table2"]
    done = [line for line in logs if line.startswith("cells:")]
    assert len(done) == 4 and "model/" not in "".join(done)  # the model was made: only the results were computed
