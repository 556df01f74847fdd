"""Prints (or writes) a markdown table of tools/attack.py result files, one row per file.

    python tools/report_attacks.py --results='docs/attacks_part2/*.json' [--output=table.md]
"""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, fileio  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402
from hrs_tf.reporting import attack_results  # noqa: E402

flags.DEFINE_list("results", None, "Result JSON files of tools/attack.py (shell patterns allowed), in table order.")
flags.DEFINE_string("output", None, "Markdown file to write (default: print the table).")
flags.mark_flags_as_required(["results"])
FLAGS = flags.FLAGS


def main(argv):
    paths = []
    for pattern in FLAGS.results:
        found = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not found:
            raise ConfigError(f"--results pattern {pattern!r} matches no file")
        paths += found
    text = attack_results.table(paths)
    if FLAGS.output:
        fileio.write_text(FLAGS.output, text + "\n")
        print(f"wrote {FLAGS.output}")
    else:
        print(text)


if __name__ == "__main__":
    cli.run(main)
