"""Writes the adversarial-reprogramming report (markdown + PNG curve plot) from tools/reprogram.py records.

    python tools/report_reprogramming.py --records=runs/reprog/none.json,runs/reprog/dropout0.3.json \
        --intro=docs/reprogramming_intro.md --output=docs/reprogramming.md
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, fileio  # noqa: E402
from hrs_tf.experiments.reprogramming import report  # noqa: E402

flags.DEFINE_list("records", [], "JSON records written by tools/reprogram.py, one curve each.")
flags.DEFINE_string("intro", None, "Optional markdown file to put before the generated part.")
flags.DEFINE_string("output", "docs/reprogramming.md", "Markdown report to write (the plot goes beside it).")
FLAGS = flags.FLAGS


def main(argv):
    records = [fileio.read_result(p) for p in FLAGS.records]
    intro = open(FLAGS.intro).read() if FLAGS.intro else "# Adversarial reprogramming\n"
    plot = os.path.splitext(FLAGS.output)[0] + ".png"
    command = "python tools/report_reprogramming.py " + " ".join(sys.argv[1:])
    text = intro.rstrip() + "\n\n" + report.report_markdown(records, plot, command)
    fileio.write_text(FLAGS.output, text)
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
