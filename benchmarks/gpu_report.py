"""One GPU, at most 8 minutes: the `cifar10` UNet's training step, sampling speed and a short time-to-quality race.

Sections, each timed, each written to the JSON report as soon as it ends (a later failure keeps the earlier figures):

1. `device`: the GPU's name, its bf16 dense peak from `PEAK_BF16_TFLOPS` (by name; --peak-tflops overrides) and a
   measured large bf16 matmul in TFLOP/s, the practical ceiling;
2. `flops`: model FLOPs per image of one training step (forward + backward) by `torch.utils.flop_counter`;
3. `train_step`: the `cifar10` preset's step (forward, MSE, backward, AdamW) in bf16 autocast on random data, eager and
   `torch.compile`d: images/s, model-FLOP utilisation against the peak and against the measured matmul;
4. `sampling`: images/s of the sampling pipeline (`ddpm_book.pipeline.Pipeline`, DPM-Solver++ and DDIM) at 10 and 50
   network calls, bf16 autocast, random weights (the speed does not depend on them), network calls counted;
5. `time_to_quality`: benchmarks/time_to_quality.py on the device (mnist preset, the peer's LR sweep, then the race),
   with --ttq-budget-s training seconds per side (shortened to fit the time left).

    python benchmarks/gpu_report.py --device cuda --out gpu_report.json    # what benchmarks/gpu.sh runs
    python benchmarks/gpu_report.py --device cpu --smoke                   # the same code paths on a tiny config
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

PEAK_BF16_TFLOPS = [  # (name part, dense bf16 TFLOP/s, spec) first match wins: the datasheets' figures without sparsity
    ('GH200', 989, 'GH200 (H100/H200 SXM tensor cores)'),
    ('H200 NVL', 835, 'H200 NVL'),
    ('H200', 989, 'H200 SXM'),
    ('H100 PCIe', 756, 'H100 PCIe'),
    ('H100 NVL', 835, 'H100 NVL'),
    ('H100', 989, 'H100 SXM'),
    ('B200', 2250, 'B200'),
    ('A100', 312, 'A100'),
    ('L40S', 362, 'L40S'),
    ('L40', 181, 'L40'),
    ('L4', 121, 'L4'),
    ('A10', 125, 'A10'),
]
SMOKE_UNET = dict(base_channels=32, channel_mults=(1, 2), image_size=16, attn_resolutions=(8,), norm_groups=8)


def gpu_peak(name: str) -> tuple[float | None, str]:
    "The dense bf16 peak in TFLOP/s of the device called `name`, from the table (None where it is not listed)."
    for part, tflops, spec in PEAK_BF16_TFLOPS:
        if part.lower() in name.lower():
            return float(tflops), f"{spec} datasheet, dense bf16"
    return None, f"{name!r} is not in PEAK_BF16_TFLOPS (give --peak-tflops)"


def sync(dev: torch.device):
    "Wait for the device's queued work (timing needs it on a GPU)."
    if dev.type == 'cuda':
        torch.cuda.synchronize(dev)


def autocast(dev: torch.device, bf16: bool = True):
    "bf16 autocast on the device type (or nothing)."
    return torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def timed(fn, dev: torch.device, iters: int, warmup: int) -> tuple[float, float]:
    "(median seconds per call after `warmup` untimed calls, seconds of the first call): each call synchronised."
    t0 = time.perf_counter()
    fn()
    sync(dev)
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    sync(dev)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first


# ---------------------------------------------------------------- sections


def device_section(args) -> dict:
    "The device's name, its bf16 peak from the table and a measured large bf16 matmul."
    dev = args.device
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f"CPU {torch.backends.cpu.get_cpu_capability()}"
    peak, why = (args.peak_tflops, '--peak-tflops') if args.peak_tflops else gpu_peak(name)
    n = args.matmul_n
    a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
    reps = 10 if dev.type == 'cuda' else 2
    t, _ = timed(lambda: [a @ b for _ in range(reps)], dev, iters=args.matmul_iters, warmup=2)
    matmul = 2 * n**3 * reps / t / 1e12
    out = dict(
        name=name,
        peak_bf16_tflops=peak,
        peak_source=why,
        matmul_n=n,
        matmul_bf16_tflops=matmul,
        matmul_share_of_peak=matmul / peak if peak else None,
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )
    if dev.type == 'cuda':
        p = torch.cuda.get_device_properties(dev)
        out.update(
            memory_gib=p.total_memory / 2**30, sm_count=p.multi_processor_count, capability=f"{p.major}.{p.minor}"
        )
    return out


def unet_config(args):
    "The `cifar10` preset (or the tiny smoke variant of it)."
    from ddpm_book.unet import UNetConfig

    return UNetConfig.preset('cifar10', **(SMOKE_UNET if args.smoke else {}))


def batch_for(cfg, n: int, dev: torch.device, seed: int = 0):
    "Random images, timesteps and noise targets for a training step (the speed does not depend on them)."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    return x.to(dev), t.to(dev), torch.randn(x.shape, generator=g).to(dev)


def step_fn(fn, model, opt, x, t, target, dev: torch.device, bf16: bool = True):
    "One training step: forward under autocast, MSE in fp32, backward, AdamW."

    def step():
        with autocast(dev, bf16):
            loss = F.mse_loss(fn(x, t).float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def flops_section(args) -> dict:
    "Model FLOPs per image of the training step (forward + backward), counted by FlopCounterMode on a batch of 2."
    from torch.utils.flop_counter import FlopCounterMode

    from ddpm_book.unet import UNet, count_parameters

    cfg, dev = unet_config(args), args.device
    model = UNet(cfg).to(dev).train()
    x, t, target = batch_for(cfg, 2, dev)
    counter = FlopCounterMode(display=False)
    with counter:
        F.mse_loss(model(x, t), target).backward()
    fwd = FlopCounterMode(display=False)
    with fwd, torch.no_grad():
        model(x, t)
    return dict(
        preset='cifar10'
        + (' (smoke: ' + ', '.join(f"{k}={v}" for k, v in SMOKE_UNET.items()) + ')' if args.smoke else ''),
        parameters=count_parameters(model),
        train_gflop_per_image=counter.get_total_flops() / 2 / 1e9,
        forward_gflop_per_image=fwd.get_total_flops() / 2 / 1e9,
    )


def train_step_section(args, report: dict) -> dict:
    "Images/s of the bf16 training step, eager and compiled, and its model-FLOP utilisation."
    from ddpm_book.unet import UNet

    cfg, dev = unet_config(args), args.device
    gflop = report['flops']['train_gflop_per_image']
    peak, matmul = report['device']['peak_bf16_tflops'], report['device']['matmul_bf16_tflops']
    x, t, target = batch_for(cfg, args.batch, dev)
    out = dict(
        batch=args.batch,
        precision='bf16 autocast',
        optimizer='AdamW (foreach)',
        compile_backend=args.compile_backend,
        runs={},
    )
    for mode in args.modes:
        torch.manual_seed(0)
        model = UNet(cfg).to(dev).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        fn = torch.compile(model, backend=args.compile_backend) if mode == 'compiled' else model
        s, first = timed(step_fn(fn, model, opt, x, t, target, dev), dev, args.iters, args.warmup)
        ips = args.batch / s
        tflops = ips * gflop / 1e3
        r = dict(
            step_ms=1e3 * s,
            first_step_s=first,
            images_per_s=ips,
            model_tflops=tflops,
            mfu=tflops / peak if peak else None,
            share_of_matmul=tflops / matmul,
        )
        if dev.type == 'cuda':
            r['max_memory_gib'] = torch.cuda.max_memory_allocated(dev) / 2**30
            torch.cuda.reset_peak_memory_stats(dev)
        out['runs'][mode] = r
        print(
            f"  train step {mode:>8}: {r['step_ms']:7.1f} ms/step  {ips:8.0f} img/s  {tflops:7.1f} TFLOP/s  MFU "
            + (f"{100 * r['mfu']:.1f} %" if peak else 'n/a')
            + f"  ({100 * r['share_of_matmul']:.1f} % of the measured matmul; first step {first:.1f} s)",
            flush=True,
        )
        del model, opt, fn
    if {'eager', 'compiled'} <= set(out['runs']):
        out['compiled_over_eager'] = out['runs']['compiled']['images_per_s'] / out['runs']['eager']['images_per_s']
    return out


class Counted(torch.nn.Module):
    "A network that counts its calls (the pipeline's NFE)."

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *a, **kw):
        self.calls += 1
        return self.net(*a, **kw)


def sampling_section(args) -> dict:
    "Images/s of Pipeline.sample at 10 and 50 network calls (bf16 autocast, random weights)."
    from ddpm_book.pipeline import Pipeline
    from ddpm_book.schedules import make_schedule
    from ddpm_book.unet import UNet

    cfg, dev = unet_config(args), args.device
    torch.manual_seed(0)
    net = Counted(UNet(cfg).to(dev).eval().requires_grad_(False))
    pipe = Pipeline(
        model=net, sched=make_schedule('linear', 1000), shape=(cfg.in_channels, cfg.image_size, cfg.image_size)
    )
    out = dict(n=args.sample_n, precision='bf16 autocast', weights='random (speed only)', runs=[])
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(args.sample_n, *pipe.shape, generator=g).to(dev)
    for sampler in args.samplers:
        for calls in args.calls:

            def run():
                with autocast(dev):
                    return pipe.sample(x_T=x_T, sampler=sampler, steps=calls)

            net.calls = 0
            s, first = timed(run, dev, iters=args.sample_iters, warmup=1)
            nfe = net.calls // (args.sample_iters + 1)
            r = dict(sampler=sampler, steps=calls, nfe=nfe, seconds=s, images_per_s=args.sample_n / s, first_s=first)
            out['runs'].append(r)
            print(
                f"  sampling {sampler:>10} {calls:>3} steps (NFE {nfe}): {s:7.3f} s per {args.sample_n}  "
                f"{r['images_per_s']:9.1f} img/s",
                flush=True,
            )
    return out


def ttq_section(args, seconds_left: float) -> dict:
    "benchmarks/time_to_quality.py on the device with a budget that fits the time left."
    import time_to_quality

    if args.smoke:
        argv = ['--quick']
    else:
        sweep_s, lrs = args.ttq_sweep_s, args.ttq_peer_lrs
        fixed = 30 + len(lrs) * (sweep_s + 3)  # calibration, reference features and judging, the sweep
        budget = min(args.ttq_budget_s, (seconds_left - fixed) / 2.2)  # two sides, judging
        if budget < 20:
            raise RuntimeError(f"only {seconds_left:.0f} s left: too little for the time-to-quality race")
        seg = budget / max(2, round(budget / args.ttq_segment_s))
        argv = ['--budget-s', f"{budget:.0f}", '--segment-s', f"{seg:.1f}", '--sweep-s', f"{sweep_s:g}"]
        argv += ['--slice-s', f"{min(10.0, seg):.1f}", '--peer-lrs', *(f"{v:g}" for v in lrs)]
    argv += ['--device', str(args.device)]
    print(f"  time_to_quality.py {' '.join(argv)}", flush=True)
    res = time_to_quality.main(argv)
    res['argv'] = argv
    return res


# ---------------------------------------------------------------- report


def plain(v):
    "JSON-safe: inf/nan become None (strict JSON), tuples become lists."
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, torch.device):
        return str(v)
    return v


def write(report: dict, path: Path):
    "The report as JSON, replaced whole (a reader never sees half a file)."
    from ddpm_book.core import atomic_write

    with atomic_write(path, 'w') as f:
        json.dump(plain(report), f, indent=1)


def summary(report: dict) -> list[str]:
    "The report's headline figures, one per line."
    d, lines = report.get('device', {}), []
    if d:
        lines.append(
            f"{d['name']}: peak bf16 {d['peak_bf16_tflops'] or 'n/a'} TFLOP/s ({d['peak_source']}); "
            f"measured {d['matmul_n']}^2 bf16 matmul {d['matmul_bf16_tflops']:.1f} TFLOP/s"
        )
    if 'flops' in report:
        f = report['flops']
        lines.append(
            f"{f['preset']}: {f['parameters']:,} parameters, {f['train_gflop_per_image']:.2f} GFLOP per image "
            f"per training step (forward {f['forward_gflop_per_image']:.2f})"
        )
    for mode, r in report.get('train_step', {}).get('runs', {}).items():
        mfu = f"{100 * r['mfu']:.1f} %" if r['mfu'] is not None else 'n/a'
        lines.append(
            f"train step bf16 {mode}: {r['images_per_s']:.0f} img/s (batch {report['train_step']['batch']}), "
            f"MFU {mfu}, {100 * r['share_of_matmul']:.1f} % of the measured matmul"
        )
    for r in report.get('sampling', {}).get('runs', []):
        lines.append(f"sampling {r['sampler']} NFE {r['nfe']}: {r['images_per_s']:.1f} img/s")
    t = report.get('time_to_quality')
    if t:
        lines.append(
            f"time to quality ({t['budget_s']:.0f} s per side on {t['device']}): threshold {t['threshold']:.2f}, "
            f"ours {t['ours_s']:.1f} s, peer {t['diffusers_s']:.1f} s, ratio {t['ratio']:.2f}; peer lr "
            f"{t['peer']['lr']:g} {t['peer']['precision']}"
        )
    for k, e in report.get('errors', {}).items():
        lines.append(f"FAILED {k}: {e.splitlines()[-1] if e else e}")
    return lines


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cuda', help="'cuda' (default), 'cuda:1'; 'cpu' only with --smoke")
    ap.add_argument('--smoke', action='store_true', help='a tiny config and few iterations: tests the code paths')
    ap.add_argument(
        '--out', default=None, help='the JSON report (default: $OUT, else gpu_report.json; a folder: in it)'
    )
    ap.add_argument(
        '--max-s', type=float, default=440, help='wall seconds for everything (sections that no longer fit are skipped)'
    )
    ap.add_argument('--peak-tflops', type=float, default=None, help="the device's dense bf16 peak (default: by name)")
    ap.add_argument('--matmul-n', type=int, default=8192)
    ap.add_argument('--matmul-iters', type=int, default=5)
    ap.add_argument('--batch', type=int, default=256, help='training batch of the step benchmark')
    ap.add_argument('--iters', type=int, default=20, help='timed training steps per mode')
    ap.add_argument('--warmup', type=int, default=5, help='untimed training steps per mode (the first compiles)')
    ap.add_argument('--modes', nargs='+', default=['eager', 'compiled'], choices=['eager', 'compiled'])
    ap.add_argument(
        '--compile-backend', default=None, help="torch.compile's backend (default 'inductor'; --smoke: 'aot_eager')"
    )
    ap.add_argument('--sample-n', type=int, default=256, help='images per sampling batch')
    ap.add_argument('--sample-iters', type=int, default=3)
    ap.add_argument('--samplers', nargs='+', default=['dpm_solver', 'ddim'])
    ap.add_argument('--calls', type=int, nargs='+', default=[10, 50], help='sampler steps (network calls)')
    ap.add_argument('--ttq-budget-s', type=float, default=120, help='training seconds per side of the race')
    ap.add_argument('--ttq-segment-s', type=float, default=20)
    ap.add_argument('--ttq-sweep-s', type=float, default=10, help="training seconds per LR of the peer's sweep")
    ap.add_argument('--ttq-peer-lrs', type=float, nargs='+', default=[1e-4, 3e-4, 1e-3, 2e-3])
    ap.add_argument('--skip', nargs='*', default=[], choices=['train_step', 'sampling', 'time_to_quality'])
    a = ap.parse_args(argv)
    from ddpm_book.core import get_device

    try:
        a.device = get_device(a.device)
    except ValueError as e:
        if 'cuda' in str(a.device):
            ap.exit(2, f"gpu_report: no CUDA GPU ({e}); to test the code paths here: --device cpu --smoke\n")
        ap.error(str(e))
    if a.device.type != 'cuda' and not a.smoke:
        ap.error(f"--device {a.device} is not a GPU: this report is for one CUDA GPU (use --smoke to test on the CPU)")
    if a.smoke:
        a.matmul_n, a.matmul_iters, a.batch, a.iters, a.warmup = 512, 2, 4, 2, 1
        a.sample_n, a.sample_iters, a.calls = 4, 1, [2, 4]
    a.compile_backend = a.compile_backend or ('aot_eager' if a.smoke else 'inductor')  # inductor: minutes on 2 cores
    a.out = Path(a.out or os.environ.get('OUT') or 'gpu_report.json')
    if a.out.is_dir():
        a.out = a.out / 'gpu_report.json'
    return a


def main(argv=None) -> dict:
    args = parse(argv)
    warnings.filterwarnings('ignore', message='Metric `Kernel Inception Distance`')
    t_start = time.perf_counter()
    report = dict(
        started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
        argv=sys.argv[1:] if argv is None else list(argv),
        smoke=args.smoke,
        device_arg=str(args.device),
        seconds={},
        errors={},
        skipped={},
    )
    sections = [
        ('device', lambda: device_section(args)),
        ('flops', lambda: flops_section(args)),
        ('train_step', lambda: train_step_section(args, report)),
        ('sampling', lambda: sampling_section(args)),
        ('time_to_quality', lambda: ttq_section(args, args.max_s - (time.perf_counter() - t_start))),
    ]
    needs = {'train_step': ('device', 'flops')}
    for name, fn in sections:
        left = args.max_s - (time.perf_counter() - t_start)
        if name in args.skip or any(n not in report for n in needs.get(name, ())) or left < 15:
            why = (
                '--skip' if name in args.skip else ('an earlier section failed' if left >= 15 else f"{left:.0f} s left")
            )
            report['skipped'][name] = why
            print(f"== {name}: skipped ({why})", flush=True)
            continue
        print(f"== {name} ({left:.0f} s left)", flush=True)
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception:
            report['errors'][name] = traceback.format_exc()
            print(f"== {name} FAILED:\n{report['errors'][name]}", file=sys.stderr, flush=True)
        report['seconds'][name] = time.perf_counter() - t0
        report['wall_s'] = time.perf_counter() - t_start
        write(report, args.out)
    print('\n'.join(['', f"gpu report ({report['wall_s']:.0f} s) -> {args.out}", *summary(report)]))
    if report['errors']:
        raise SystemExit(f"gpu_report: {len(report['errors'])} section(s) failed: {', '.join(report['errors'])}")
    return report


if __name__ == '__main__':
    main()
