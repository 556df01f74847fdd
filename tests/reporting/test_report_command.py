"""The command a report prints at its top pastes into a shell as the arguments that made it."""

import shlex

from hrs_tf import cli


def test_the_report_command_quotes_what_a_shell_would_split_and_drops_report_only():
    argv = ["--dataset=mnist", "--schemes=Standard,rs1_adv:confidences=0;5,cw_iterations=100",
            "--use_model=HRS 5x5=runs/hrs", "--report_only", "--l2_edges=0,1,4.5"]
    line = cli.report_command("reproduce_rs.py", argv)
    assert line.startswith("python tools/reproduce_rs.py --dataset=mnist '--schemes=Standard,rs1_adv:confidences=0;5,")
    assert "'--use_model=HRS 5x5=runs/hrs'" in line and line.endswith(" --l2_edges=0,1,4.5")  # plain ones unquoted
    assert shlex.split(line)[2:] == [a for a in argv if a != "--report_only"]
