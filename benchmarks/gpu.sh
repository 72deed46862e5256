#!/usr/bin/env bash
# One CUDA GPU, at most 8 minutes: the cifar10 UNet's bf16 training step (eager and torch.compile'd: images/s, model-FLOP
# utilisation), sampling images/s at 10 and 50 network calls, and a 2-minute time-to-quality race; one JSON report.
#
#   bash benchmarks/gpu.sh                      # writes gpu_report.json (or $OUT: a file, or a folder to write it in)
#   bash benchmarks/gpu.sh --out r.json --skip time_to_quality     # extra options go to benchmarks/gpu_report.py
#
# Python: $PYTHON, else the project's .venv, else python3 on the PATH. Off a GPU it stops at once with "no CUDA GPU";
# `python benchmarks/gpu_report.py --device cpu --smoke` runs the same code paths on the CPU with a tiny config.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # ddpm_book from this checkout, installed or not

if [[ -n "${PYTHON:-}" ]]; then
  py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
  py=.venv/bin/python
else
  py="$(command -v python3 || command -v python || true)"
fi
if [[ -z "$py" ]]; then
  echo "gpu.sh: no python found (set PYTHON=...)" >&2
  exit 1
fi

if ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu.sh: no CUDA GPU: torch.cuda.is_available() is False for $py" \
    "($("$py" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1 | tail -1));" \
    "nothing measured. To test the code paths on the CPU: $py benchmarks/gpu_report.py --device cpu --smoke" >&2
  exit 1
fi
"$py" -c 'import torch; print("gpu.sh:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true

# gpu_report.py keeps to --max-s (440 s by default) and writes the report after every section; the timeout is a backstop
exec timeout 480 "$py" benchmarks/gpu_report.py --device cuda "$@"
