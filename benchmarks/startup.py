"""Start-up: seconds from a fresh interpreter to `import ddpm_book.pipeline`, and to a grid from `ddpm-book sample`.

Every measurement is a new Python process (nothing cached in memory; the files are in the OS cache after the first
round, as on a machine that used the book a minute ago). The rounds alternate the programs so that a busy machine
slows all alike; each figure is the median of --rounds runs:

- `import torch`: the floor, what any PyTorch program pays before its own first line;
- `import ddpm_book.pipeline`: the library (chapter 10b's Pipeline and every module it needs);
- `from diffusers import DDPMPipeline`: the peer, diffusers' equivalent import;
- `ddpm-book sample --ckpt book -n 16`: the whole command, end to end (parse, load the shipped model, choose the
  threads, 10 DPM-Solver++ steps with guidance 2, write the PNG); --threads is passed on when given.

It also lists which of the heavy optional packages each import loaded (torchvision, matplotlib, torchmetrics,
tokenizers, diffusers, ipywidgets, imageio), since they are what start-up time is made of beyond torch. The last line
reads `startup pipeline=X s (torch Y s, library Z s) peer diffusers=W s ratio=W/X sample16=S s cpu=...`.

    python benchmarks/startup.py                 # 5 rounds, about a minute on 2 cores
    python benchmarks/startup.py --rounds 9 --threads 1
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HEAVY = ('torchvision', 'matplotlib', 'torchmetrics', 'tokenizers', 'diffusers', 'ipywidgets', 'imageio')
IMPORTS = {
    'torch': 'import torch',
    'pipeline': 'import ddpm_book.pipeline',
    'diffusers': 'from diffusers import DDPMPipeline',
}


def timed(cmd: list[str]) -> float:
    "Wall seconds of one run of `cmd` (which must succeed)."
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def loaded(code: str) -> list[str]:
    "The heavy packages that running `code` in a fresh interpreter leaves in sys.modules."
    probe = f"{code}; import sys; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    return subprocess.run([sys.executable, '-c', probe], check=True, capture_output=True, text=True).stdout.split()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rounds', type=int, default=5, help='runs of each program, alternating (median reported)')
    ap.add_argument('--threads', type=int, default=None, help='passed to ddpm-book sample (default: it measures)')
    ap.add_argument('--no-peer', action='store_true', help='skip the diffusers import')
    a = ap.parse_args()
    programs = {k: [sys.executable, '-c', v] for k, v in IMPORTS.items() if not (a.no_peer and k == 'diffusers')}
    out = Path(tempfile.mkdtemp()) / 'grid.png'
    sample = [sys.executable, '-m', 'ddpm_book.cli', 'sample', '--ckpt', 'book', '-n', '16', '--out', str(out)]
    programs['sample16'] = sample + (['--threads', str(a.threads)] if a.threads else [])
    for cmd in programs.values():
        timed(cmd)  # the first run reads the files from disk into the OS cache
    times = {k: [] for k in programs}
    for _ in range(a.rounds):
        for k, cmd in programs.items():
            times[k].append(timed(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'program':<12}{'median s':>10}{'min s':>8}{'max s':>8}  heavy packages loaded")
    for k, v in times.items():
        heavy = ' '.join(loaded(IMPORTS[k])) if k in IMPORTS else ''
        print(f"{k:<12}{med[k]:>10.2f}{min(v):>8.2f}{max(v):>8.2f}  {heavy or '-'}")
    peer = med.get('diffusers', float('nan'))
    print(
        f"startup pipeline={med['pipeline']:.2f} s (torch {med['torch']:.2f} s, library "
        f"{med['pipeline'] - med['torch']:.2f} s) peer diffusers={peer:.2f} s ratio={peer / med['pipeline']:.2f} "
        f"sample16={med['sample16']:.2f} s rounds={a.rounds} cpu={torch.backends.cpu.get_cpu_capability()}"
    )


if __name__ == '__main__':
    main()
