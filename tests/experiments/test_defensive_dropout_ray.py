"""Defensive dropout on Ray (skipped without Ray): the grid's rows measured as Ray tasks, and Algorithm 1's steps one
round at a time, give the result files of a local run."""

from hrs_tf import data
from hrs_tf.experiments.defensive_dropout import search as dd
from tests.result_files import json_files


def test_grid_and_search_on_ray_write_the_local_result_files(ray_executor, tiny_mnist_dir, tmp_path):
    import keras

    from hrs_tf import models
    from hrs_tf.models import serialization

    dataset = data.load_dataset("mnist", tiny_mnist_dir)
    paths = []
    for rate in (0.3, 0.6):  # untrained: the rows only need to be the same numbers wherever they are measured
        keras.utils.set_random_seed(0)
        paths.append((rate, str(tmp_path / f"dropout{rate}.h5")))
        serialization.save_model(models.build_base_model("mnist", dropout_rate=rate), paths[-1][1])
    measure = dict(attack="fgsm", attack_kwargs=dd.attack_settings("fgsm"), num_images=2, accuracy_images=40,
                   repeats=2, passes=2, seed=4)
    quiet = lambda line: None  # noqa: E731

    def run(where, executor=None):
        grid = dd.ModelEvaluators(dataset, paths, progress=None, **measure)
        dd.run_grid(grid, [0.5, 0], str(tmp_path / where / "grid.json"), grid.settings(), log=quiet, executor=executor)
        one = dd.ModelEvaluators(dataset, paths[:1], progress=None, **measure)
        dd.run_search(one, str(tmp_path / where / "search.json"), one.settings(), epsilon=0.5, step=0.5, log=quiet,
                      executor=executor)
        return json_files(tmp_path / where)

    local = run("local")
    on_ray = run("ray", ray_executor)
    assert on_ray == local
    assert sorted(local) == ["grid.json", "grid_cells/settings.json", "grid_cells/train0.3_test0.5.json",
                             "grid_cells/train0.3_test0.json", "grid_cells/train0.6_test0.5.json",
                             "grid_cells/train0.6_test0.json", "search.json", "search_cells/settings.json",
                             "search_cells/train0.3_test0.5.json", "search_cells/train0.3_test0.json"]
    grid, search = local["grid.json"], local["search.json"]
    assert grid["finished"] and [(r["train_rate"], r["test_rate"]) for r in grid["rows"]] == [
        (0.3, 0.0), (0.3, 0.5), (0.6, 0.0), (0.6, 0.5)]
    assert search["finished"] and [r["test_rate"] for r in search["rows"]] == [0.0, 0.5]
    assert search["chosen_test_rate"] == 0.5 and search["a_max"] == search["rows"][0]["accuracy"]
