#!/usr/bin/env bash
# Sets up everything on a fresh machine: a virtualenv in .venv holding the pinned stack, CleverHans
# 4.0.0 without its dead dependencies, and this project (editable). Needs python3 >= 3.10 with venv.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "python >= 3.10 needed"'
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -c 'import hrs_tf, cleverhans.tf2.attacks.projected_gradient_descent, tensorflow as tf, keras; print("ready: tensorflow", tf.__version__, "keras", keras.__version__)'
