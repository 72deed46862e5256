"""The README's main job (`ddpm-book demo`) on the slowest machine it promises to serve, and on worse ones.

The promise (chapter 14): within its budget the demo ends with digits a classifier recognises (>= 90 % of 100) on
any machine at least as fast as one x86-64 core with AVX2 and no native bf16 free for it, e.g. a 2-core laptop whose
other core is busy. This runs the real command in a fresh process with the CPU limited to AVX2 kernels
(`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`, so `precision='auto'` takes fp32 as on such a laptop) while
`--neighbours` busy processes (a single-threaded float32 matrix product in a loop, as a browser tab or a second job
would be) hold cores, pinned to the first cores where the OS allows. `--compare` also runs the demo with the thread
count torch picks by itself (`--threads` = all cores: what the demo did before it measured), in the same conditions.
It prints wall time, steps, threads chosen, what ended training and the classifier's agreement. Not a test: minutes.

    python benchmarks/demo_contention.py                    # AVX2 kernels, one busy core, 8-minute budget
    python benchmarks/demo_contention.py --compare          # and the same with torch's own thread count
    python benchmarks/demo_contention.py --native --neighbours 0
    python benchmarks/demo_contention.py --neighbours 3     # a machine too slow: the demo says so at the start
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEIGHBOUR = '''
import os, sys, numpy as np
if hasattr(os, 'sched_setaffinity'):
    try:
        os.sched_setaffinity(0, {int(sys.argv[1]) % os.cpu_count()})
    except OSError:
        pass
a = np.random.default_rng(0).random((384, 384), dtype=np.float32)
while True:
    a = (a @ a) / 384.0
'''


def start_neighbours(n: int) -> list:
    "n busy single-threaded processes, the k-th pinned to core k where the OS allows."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    return [subprocess.Popen([sys.executable, '-c', NEIGHBOUR, str(k)], env=env) for k in range(n)]


def run_demo(out: Path, minutes: float, native: bool, threads: int | None) -> dict:
    "One `ddpm-book demo` in a fresh process; its demo.json (or its verdict) with the wall time seen from outside."
    env = dict(os.environ)
    env.pop('OMP_NUM_THREADS', None)  # the demo chooses (or is told) its own thread count
    if not native:
        env.update(ATEN_CPU_CAPABILITY='avx2', ONEDNN_MAX_CPU_ISA='AVX2')
    cmd = [sys.executable, '-m', 'ddpm_book.cli', 'demo', '--out', str(out), '--minutes', str(minutes), '--no-progress']
    cmd += ['--threads', str(threads)] if threads else []
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    d = json.loads((out / 'demo.json').read_text()) if (out / 'demo.json').is_file() else {}
    last = [line for line in r.stdout.splitlines() if line.startswith(('demo', 'time budget'))]
    return {'returncode': r.returncode, 'wall_s': wall, 'demo': d, 'said': last, 'stderr': r.stderr[-1500:]}


def threads_text(d: dict) -> str:
    "'training 1 (measured ...), sampling 1' from demo.json."
    t = d.get('threads') or {}
    train = [c['threads'] for c in t.get('training') or []]
    samp = (t.get('sampling') or {}).get('threads')
    return f"training {'/'.join(map(str, train)) or 'torch default'}, sampling {samp or '-'}"


def report(name: str, r: dict, minutes: float):
    d = r['demo']
    agree = d.get('label_agreement')
    print(
        f"{name}: exit {r['returncode']}, wall {r['wall_s'] / 60:.1f} min of a {minutes:g}-minute budget, "
        f"{d.get('steps', '?')} steps ({(d.get('s_per_step') or 0):.2f} s each), threads {threads_text(d)}, "
        f"ended by {d.get('ended_by', '?')}, agreement {'-' if agree is None else f'{agree:.0%}'}, "
        f"precision {d.get('precision', '?')}, cpu {d.get('cpu_capability', '?')}"
    )
    for line in r['said']:
        print('   ', line)
    if r['returncode'] not in (0, 1):
        print(r['stderr'])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--minutes', type=float, default=8.0, help="the demo's budget (default: 8, the README's)")
    p.add_argument('--neighbours', type=int, default=1, help='busy single-threaded processes (default: 1)')
    p.add_argument('--native', action='store_true', help="the CPU's own kernels (default: AVX2 only)")
    p.add_argument('--compare', action='store_true', help="also run with torch's own thread count (all cores)")
    p.add_argument('--out', default=None, help='keep the run folders here (default: a temporary folder)')
    a = p.parse_args()
    root = Path(a.out or tempfile.mkdtemp(prefix='demo_contention_'))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    kernels = 'native' if a.native else 'AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)'
    print(f"{cores} cores, kernels {kernels}, {a.neighbours} busy neighbour(s), load average {load:.1f} before")
    busy = start_neighbours(a.neighbours)
    try:
        time.sleep(2)
        runs = {'measured threads': run_demo(root / 'measured', a.minutes, a.native, None)}
        if a.compare:
            import torch  # torch's own count: what `threads` was before the demo measured it

            runs[f'torch default ({torch.get_num_threads()} threads)'] = run_demo(
                root / 'default', a.minutes, a.native, torch.get_num_threads()
            )
    finally:
        for b in busy:
            b.kill()
    for name, r in runs.items():
        report(name, r, a.minutes)
    m = runs['measured threads']['demo']
    agree = lambda d: '-' if d.get('label_agreement') is None else f"{d['label_agreement']:.0%}"
    line = (
        f"demo under contention: {agree(m)} agreement, {m.get('steps', 0)} steps, "
        f"ended by {m.get('ended_by', '?')}, {runs['measured threads']['wall_s'] / 60:.1f} min"
    )
    if a.compare:
        d = list(runs.values())[1]['demo']
        ratio = (d.get('s_per_step') or float('nan')) / (m.get('s_per_step') or float('nan'))
        line += (
            f"; with torch's own thread count: {agree(d)} agreement, {d.get('steps', 0)} steps, ended by "
            f"{d.get('ended_by', '?')}; a step {ratio:.1f}x faster with measured threads"
        )
    import torch

    print(f"{line}; cpu capability {torch.backends.cpu.get_cpu_capability() if a.native else 'AVX2 (emulated)'}")
    print(f"run folders: {root}")


if __name__ == '__main__':
    main()
