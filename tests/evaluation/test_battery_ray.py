"""The battery on Ray gives the local run's cells (issue 18's executors; issue 19's battery)."""

from hrs_tf.evaluation import battery
from hrs_tf.models import serialization
from tests.evaluation import battery_toys
from tests.result_files import in_cells, json_files


def test_the_battery_on_ray_writes_the_local_cells(ray_executor, tiny_mnist_dir, tmp_path):
    """A deterministic model and a stochastic decider (region voting): identical cells apart from the compute time,
    whichever worker and order computed them."""
    from hrs_tf import data

    dataset = data.load_dataset("mnist", tiny_mnist_dir)
    plain = str(tmp_path / "plain.h5")
    serialization.save_model(battery_toys.classifier(dataset, images=1000, epochs=2), plain)
    defenses = battery.parse_defenses([f"Plain=none={plain}", f"RC=region:0.3,20={plain}"])
    plan = battery.plan_for("mnist", images=12, steps=4, restarts=1, square_queries=20, eot_grid=(1, 2), bpda_eot=2,
                            passes=3, threats=("linf",))
    attacks = ["pgd_ce", "eot", "transfer"]
    battery.Battery(dataset, plan, defenses, str(tmp_path / "local"), transfer_from=plain, attacks=attacks,
                    log=lambda line: None).run()
    on_ray = battery.Battery(dataset, plan, defenses, str(tmp_path / "ray"), transfer_from=plain, attacks=attacks,
                             log=lambda line: None)
    on_ray.run(executor=ray_executor)
    local, ray = json_files(tmp_path / "local", in_cells), json_files(tmp_path / "ray", in_cells)
    # the transfer cell; per defense clean + unbounded + its attacks: Plain 2, RC 3 (EOT)
    assert len(local) == 1 + 2 * 2 + 2 + 3
    assert ray == local
