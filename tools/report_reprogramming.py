"""Writes the adversarial-reprogramming report (markdown + PNG curve plot) from tools/reprogram.py records.

    python tools/report_reprogramming.py --records=runs/reprog/none.json,runs/reprog/dropout0.3.json \
        --labels=base,dropout 0.3 --intro=docs/reprogramming_intro.md --output=docs/reprogramming.md
"""

import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, fileio  # noqa: E402
from hrs_tf.experiments.reprogramming import report  # noqa: E402

flags.DEFINE_list("records", [], "JSON records written by tools/reprogram.py, one curve each.")
flags.DEFINE_list("labels", [], "The targets' names in the report, one per record in the order of --records "
                  "(default: the name each run was given, --target_label of tools/reprogram.py).")
flags.DEFINE_string("intro", None, "Optional markdown file to put before the generated part.")
flags.DEFINE_string("output", "docs/reprogramming.md", "Markdown report to write (the plot goes beside it).")
FLAGS = flags.FLAGS


def main(argv):
    records = report.relabelled([fileio.read_result(p) for p in FLAGS.records], FLAGS.labels)
    intro = open(FLAGS.intro).read() if FLAGS.intro else "# Adversarial reprogramming\n"
    plot = os.path.splitext(FLAGS.output)[0] + ".png"
    command = "python tools/report_reprogramming.py " + shlex.join(sys.argv[1:])  # copy-pasteable in a shell
    text = intro.rstrip() + "\n\n" + report.report_markdown(records, plot, command)
    fileio.write_text(FLAGS.output, text)
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
