"""Writes the training results report (markdown + PNG plots) from the JSON files of training runs.

    python tools/report_training.py --base=runs/base_mnist.json,runs/base_fashion_mnist.json \
        --hrs=runs/hrs_mnist_5x5/summary.json --benchmark=runs/bench_hrs_forward.txt --output=docs/training_results.md
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, fileio  # noqa: E402
from hrs_tf.reporting.training_report import training_report  # noqa: E402

flags.DEFINE_list("base", [], "Sidecar JSON files of tools/train_base.py runs.")
flags.DEFINE_list("hrs", [], "summary.json files of tools/train_hrs.py runs.")
flags.DEFINE_string("benchmark", None, "Optional text output of benchmarks/bench_hrs_forward.py to include.")
flags.DEFINE_string("intro", None, "Optional markdown file to put before the generated part.")
flags.DEFINE_string("output", "docs/training_results.md", "Markdown report to write (plots go beside it).")
FLAGS = flags.FLAGS


def main(argv):
    bases = [fileio.read_result(p) for p in FLAGS.base]
    summaries = [fileio.read_result(p) for p in FLAGS.hrs]
    benchmark = open(FLAGS.benchmark).read() if FLAGS.benchmark else None
    intro = open(FLAGS.intro).read() if FLAGS.intro else "# Training results\n"
    command = "python tools/report_training.py " + " ".join(sys.argv[1:])
    text = intro.rstrip() + "\n\n" + training_report(bases, summaries, os.path.dirname(os.path.abspath(FLAGS.output)),
                                                                command, benchmark)
    fileio.write_text(FLAGS.output, text)
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
