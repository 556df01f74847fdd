#!/usr/bin/env bash
# Sets up everything on a fresh machine: a virtualenv in .venv holding the pinned stack, CleverHans
# 4.0.0 without its dead dependencies, and this project (editable). Needs python3 >= 3.10 with venv.
# --with-ray also installs Ray (requirements-ray.txt), for --executor=ray and its tests; the default install has none.
set -euo pipefail
WITH_RAY=0
for arg in "$@"; do
  case "$arg" in
    --with-ray) WITH_RAY=1 ;;
    *) echo "setup.sh: unknown option $arg (the only one is --with-ray)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "python >= 3.10 needed"'
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
if [ "$WITH_RAY" = 1 ]; then
  .venv/bin/python -m pip install --quiet -r requirements-ray.txt
  .venv/bin/python -c 'import ray; print("ray", ray.__version__)'
fi
.venv/bin/python -c 'import hrs_tf, cleverhans.tf2.attacks.projected_gradient_descent, tensorflow as tf, keras; print("ready: tensorflow", tf.__version__, "keras", keras.__version__)'
