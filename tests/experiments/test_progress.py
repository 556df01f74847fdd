"""The progress line's time left: kind by kind, untimed kinds counted, not guessed."""

from hrs_tf.experiments.execution import progress as progress_module
from hrs_tf.experiments.execution.cell import Cell
from hrs_tf.experiments.execution.progress import Progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


def run(monkeypatch, plan, durations):
    """Finishes the cells of ``plan`` one after the other, each taking its ``durations`` seconds; the lines."""
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "time", clock.time)
    lines = []
    progress = Progress(lines.append)
    progress.planned(plan)
    for cell, seconds in zip(plan, durations):
        progress.started(cell)
        clock.now += seconds
        progress.finished(cell, seconds)
    return lines


def test_time_left_is_estimated_per_kind_and_untimed_kinds_are_only_counted(monkeypatch):
    plan = [Cell("fleet", f"m{i}") for i in range(3)] + [Cell("judge", f"j{i}") for i in range(4)]
    lines = run(monkeypatch, plan, [120.0, 120.0, 120.0, 1.0, 1.0, 1.0, 1.0])
    # After one 2-minute model: two models left (4 min); the four judgements have no time yet. The old estimate
    # (elapsed / done x left) said 12 min.
    assert lines[0].startswith("cells: 1/7 done, 0 running, 6 left; 2.0 min so far")
    assert "about 4.0 min left for 2 fleet cell(s) at the mean time of finished cells like them, 4 judge cell(s) not timed yet" in lines[0]
    assert "about 3 s left for 3 judge cell(s)" in lines[3] and "fleet" not in lines[3].split("|")[0]
    assert "left" in lines[-1] and "about" not in lines[-1] and "not timed" not in lines[-1]


def test_cells_run_at_once_shorten_the_estimate_by_the_runs_parallelism(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "time", clock.time)
    lines = []
    progress = Progress(lines.append)
    plan = [Cell("fleet", f"m{i}") for i in range(4)]
    progress.planned(plan)
    progress.started(plan[0])
    progress.started(plan[1])
    clock.now += 100.0
    progress.finished(plan[0], 100.0)  # two workers: 100 s of wall time for each 100 s cell so far
    progress.finished(plan[1], 100.0)
    # Wall 100 s over 200 cell-seconds: the two cells left take about 100 s (1.7 min), not 200 s.
    assert "about 1.7 min left for 2 fleet cell(s)" in lines[1]


def test_cells_of_one_kind_are_estimated_by_their_estimate_class_and_by_the_kind_until_it_has_a_time(monkeypatch):
    # A stability study: a stochastic model's cells take 100 s, a deterministic one's 10 s, all of one kind.
    plan = ([Cell("stability", f"fast{i}", estimate="Standard") for i in range(3)]
            + [Cell("stability", f"slow{i}", estimate="RS-1") for i in range(3)])
    lines = run(monkeypatch, plan, [10.0, 10.0, 10.0, 100.0, 100.0, 100.0])
    # Before any RS-1 cell is timed its cells take the kind's mean (10 s); after one, their own (100 s), where the
    # kind's mean (32.5 s) would say 65 s for the two left.
    assert "about 50 s left for 5 stability cell(s)" in lines[0]
    assert "about 30 s left for 3 stability cell(s)" in lines[2]
    assert "about 3.3 min left for 2 stability cell(s)" in lines[3]
