#!/usr/bin/env bash
# Here, once before the GPU check (bench/gpu_check.py): what the GPU machine lacks travels with the working
# tree in two ignored folders. .whl/: the wheels of the packages its image does not hold (hydra-core,
# omegaconf and antlr4 for ssl-zoo itself, lightly for the SimCLR reference); .gpu/: Tiny Shakespeare
# (1.1 MB, from ../shared/data, never committed). Then, on the GPU machine (carry: .whl, .gpu):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   python3 bench/gpu_check.py --out $OUT/gpu_check.json
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-python3 -m pip}"
mkdir -p .whl .gpu
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl hydra-core==1.3.2 omegaconf==2.3.0 lightly==1.6.0
[ -n "$(ls .whl/antlr4_python3_runtime-4.9.3-*.whl 2>/dev/null)" ] || \
    $PIP wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3   # published as a source archive only: built here (pure Python)
cp "${SHAKESPEARE:-../shared/data/tinyshakespeare/input.txt}" .gpu/input.txt
du -sh .whl .gpu
