#!/usr/bin/env bash
# The GPU figures of the README's performance section, in one call on a device machine
# (see bench/README.md, "On a GPU machine"). Run from the repository root; the data travel
# in .devdata (MNIST and PTB, about 18 MB), since ../shared does not.
set -euo pipefail
out="${OUT:-.}"
export VAELAB_DATA="${VAELAB_DATA:-.devdata}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
# the progress bars go to the file only; the reply's tail keeps the lines that matter
python3 bench/run.py --device cuda --configs 8,32 --conv-configs 5,8,32 "$@" > "$out/bench-cuda.txt" 2>&1 || {
    tail -c 4000 "$out/bench-cuda.txt"; exit 1; }
tr '\r' '\n' < "$out/bench-cuda.txt" | grep -v 'step/s' | grep -v '^$'
