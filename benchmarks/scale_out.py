"""Data-parallel throughput: images/s of ddpm_book's `Trainer` in N processes vs 1 process, same global batch.

Each run trains the same UNet preset (default 'mnist') on the offline digits for `--steps` optimizer steps with the
global batch `--batch-size`; N processes split it (chapter 15) and are started by `launch_local`, like
`ddpm-book train --num-processes N`. One process gets all `--threads` CPU threads, each of N processes gets
threads / N, so every run uses the same cores. The figure is the mean images/s of the Trainer's own metrics
(events.jsonl, written by process 0) after the first `log_every` window, which pays for warm-up. Runs alternate
(1, N, 1, N, ...) `--repeats` times and the median is printed, with the ratio N-process / 1-process and the CPU
capability. On a CPU this shows the cost of the all-reduce and of smaller per-process batches; the gain of data
parallelism needs one GPU per process. Not a test: it prints numbers.

    python benchmarks/scale_out.py                          # mnist preset at 16x16, batch 32, 1 vs 2 processes
    python benchmarks/scale_out.py --processes 4 --threads 4 --steps 60
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

WORKER = '''
import json, sys, torch
from ddpm_book.trainer import Trainer, TrainConfig
from ddpm_book.unet import UNet, UNetConfig
from ddpm_book.data import get_dataset
a = json.loads(sys.argv[1]); torch.set_num_threads(a.pop('threads'))
ds = get_dataset('mnist5k', image_size=a.pop('image_size'))
torch.manual_seed(0)
model = UNet(UNetConfig.preset(a.pop('preset'), image_size=ds[0]['x'].shape[-1], in_channels=1))
Trainer(model, ds, TrainConfig(**a)).fit()
'''


def run(n: int, args, root: Path, k: int) -> float:
    "Train in n processes; the mean images/s after the first log window."
    from ddpm_book.runs import launch_local

    out = root / f'n{n}_{k}'
    cfg = dict(
        run_dir=str(out),
        steps=args.steps,
        batch_size=args.batch_size,
        precision=args.precision,
        warmup_steps=5,
        log_every=args.log_every,
        ckpt_every=0,
        sample_every=0,
        progress=False,
        threads=max(1, args.threads // n),
        image_size=args.image_size,
        preset=args.preset,
    )
    script = root / 'worker.py'
    script.write_text(WORKER)
    env = {**os.environ, 'OMP_NUM_THREADS': str(max(1, args.threads // n))}
    argv = [str(script), json.dumps(cfg)]
    rc = launch_local(argv, n, env=env) if n > 1 else subprocess.run([sys.executable, *argv], env=env).returncode
    if rc:
        sys.exit(f'run with {n} processes failed (exit status {rc})')
    recs = [json.loads(l) for l in (out / 'metrics' / 'events.jsonl').read_text().splitlines()]
    return statistics.mean(r['images_per_s'] for r in recs[1:])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--processes', type=int, default=2)
    p.add_argument('--threads', type=int, default=os.cpu_count())
    p.add_argument('--preset', default='mnist')
    p.add_argument('--image-size', type=int, default=16)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--steps', type=int, default=40)
    p.add_argument('--log-every', type=int, default=10)
    p.add_argument('--precision', default='fp32')
    p.add_argument('--repeats', type=int, default=2)
    args = p.parse_args()
    print(
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__}; "
        f"preset {args.preset} at {args.image_size}x{args.image_size}, global batch "
        f"{args.batch_size}, {args.precision}, {args.threads} threads in all"
    )
    root, res = Path(tempfile.mkdtemp()), {1: [], args.processes: []}
    for k in range(args.repeats):
        for n in res:
            res[n].append(run(n, args, root, k))
    one, many = statistics.median(res[1]), statistics.median(res[args.processes])
    print(f"1 process ({args.threads} threads): {one:.0f} images/s")
    print(
        f"{args.processes} processes ({max(1, args.threads // args.processes)} threads each, batch "
        f"{args.batch_size // args.processes} each): {many:.0f} images/s"
    )
    print(f"ratio {args.processes} processes / 1 process: {many / one:.2f}")


if __name__ == '__main__':
    main()
