"""Training throughput (forward + backward, images/s) of ddpm_book's UNet vs diffusers' UNet2DModel.

Both networks get the same architecture (levels, channels, residual blocks per level, attention
resolutions and heads, mid attention, GroupNorm groups, dropout, timestep injection); their parameter
counts are printed and must agree within 10 %. Every measured variant ("runner") does one training step
in turn, round-robin, so that a busy machine slows them all alike; the figure is the median step time.

Before the runs it measures the machine's matmul ceiling (a 4096 x 4096 matmul, GFLOP/s on the threads in use,
fp32 and, where the CPU has native bf16, bf16) and the network's FLOPs per image (forward + backward,
`torch.utils.flop_counter`), so that each of our settings is also stated as a % of that ceiling.

The 'ours fast_()' runners use the network's fast option, `UNet.fast_()` (chapter 06: the same weights and outputs
up to rounding). The last line reads `ratio vs diffusers: fp32 X.XXx (fast_() X'x), bf16 Y.YYx (fast_() Y'x) | best
Z.ZZx (setting) | matmul ceiling: fp32 A % (fast_() A' %) of N GFLOP/s, bf16 B % (...) of M GFLOP/s | cpu CAP`:
ours / diffusers in images/s in fp32 eager and in bf16 autocast (each against diffusers in the same precision; bf16
only where native), our fastest setting against diffusers fp32 eager, our fp32 and bf16 steps as achieved model
GFLOP/s over the matmul ceiling, and
`torch.backends.cpu.get_cpu_capability()` (run with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` for AVX2
kernels). On a shared machine `--threads 1 --clock cpu` (the process's CPU time) is the steadier measure.

    python benchmarks/unet_throughput.py                     # mnist preset, batch 32, eager runners (~2 min on 2 cores)
    python benchmarks/unet_throughput.py --threads 1 --clock cpu                # one thread, CPU time per step
    python benchmarks/unet_throughput.py --compile --only 'fp32 eager' 'bf16'   # + torch.compile (minutes to compile)
    python benchmarks/unet_throughput.py --preset cifar10 --batch 8 --iters 6
"""

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ddpm_book.core import choose_precision, cpu_native_bf16
from ddpm_book.unet import UNet, UNetConfig, count_parameters

CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def matmul_ceiling(dtype=torch.float32, n: int = 4096, reps: int = 3) -> float:
    "GFLOP/s of an n x n matmul in `dtype` on the threads in use (best of `reps`, after one warm-up)."
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float('inf')
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def step_flops(model, x, t, target, is_diffusers=False) -> int:
    "FLOPs of one training step (forward + backward of the MSE loss), counted by torch.utils.flop_counter."
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        out = model(x, t)
        F.mse_loss(out.sample if is_diffusers else out, target).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def diffusers_twin(cfg: UNetConfig):
    "diffusers' UNet2DModel with the architecture of `cfg`."
    from diffusers import UNet2DModel

    attn = [r in cfg.attn_resolutions for r in cfg.resolutions]
    heads_dims = {cfg.channels(l) // cfg.num_heads for l, a in enumerate(attn) if a} | (
        {cfg.channels(-1) // cfg.num_heads} if cfg.mid_attention else set()
    )
    if cfg.num_heads > 1 and len(heads_dims) > 1:
        raise ValueError(
            f"diffusers' UNet2DModel has one attention_head_dim for all levels; this config needs {sorted(heads_dims)}"
        )
    return UNet2DModel(
        sample_size=cfg.image_size,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        block_out_channels=tuple(cfg.channels(l) for l in range(cfg.levels)),
        layers_per_block=cfg.num_res_blocks,
        down_block_types=tuple('AttnDownBlock2D' if a else 'DownBlock2D' for a in attn),
        up_block_types=tuple('AttnUpBlock2D' if a else 'UpBlock2D' for a in reversed(attn)),
        attention_head_dim=None if cfg.num_heads == 1 else heads_dims.pop(),
        add_attention=cfg.mid_attention,
        norm_num_groups=cfg.norm_groups,
        dropout=cfg.dropout,
        downsample_type='conv',
        resnet_time_scale_shift='scale_shift' if cfg.scale_shift else 'default',
        norm_eps=cfg.norm_eps,
        downsample_padding=0 if cfg.resample == 'conv_same' else 1,
        **(
            dict(flip_sin_to_cos=False, freq_shift=1)
            if cfg.time_embedding == 'ddpm'
            else dict(flip_sin_to_cos=True, freq_shift=0)
        ),
    )  # chapter 06's conventions


class Runner:
    "One model under one setting; `step()` does a forward + backward and returns its duration."

    def __init__(
        self, name, model, x, t, target, channels_last=False, bf16=False, compile=False, is_diffusers=False, clock=None
    ):
        self.name, self.bf16, self.is_diffusers, self.clock = name, bf16, is_diffusers, clock or time.perf_counter
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=fmt).train()
        self.x, self.t, self.target = x.to(memory_format=fmt), t, target.to(memory_format=fmt)
        self.fn = torch.compile(self.model) if compile else self.model
        self.times, self.first_call_s = [], None

    def step(self):
        t0 = self.clock()
        with torch.autocast('cpu', dtype=torch.bfloat16) if self.bf16 else nullcontext():
            out = self.fn(self.x, self.t)
            out = out.sample if self.is_diffusers else out
            loss = F.mse_loss(out.float(), self.target)
        loss.backward()
        for p in self.model.parameters():
            p.grad = None
        dt = self.clock() - t0
        if self.first_call_s is None:
            self.first_call_s = dt
        return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='mnist', help="ddpm_book UNet preset: 'mnist' or 'cifar10'")
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--image-size', type=int, default=None, help='default: the preset\'s image_size')
    ap.add_argument('--iters', type=int, default=10, help='timed steps per runner')
    ap.add_argument('--warmup', type=int, default=3, help='untimed steps per runner (the first includes compilation)')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s choice)')
    ap.add_argument(
        '--clock', default='wall', choices=sorted(CLOCKS), help="step time: 'wall' or 'cpu' (this process's CPU time)"
    )
    ap.add_argument(
        '--compile', action='store_true', help='add torch.compile runners (compilation takes minutes on 2 cores)'
    )
    ap.add_argument(
        '--diffusers-fast',
        action='store_true',
        help='also run diffusers with channels_last + bf16 (diffusers bf16 autocast runs wherever bf16 is native)',
    )
    ap.add_argument(
        '--only',
        nargs='*',
        default=None,
        help='keep only the runners whose name contains one of these words '
        "('ours fp32 eager' and the diffusers references always run), e.g. --only 'ours fp32' 'compile bf16'",
    )
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = UNetConfig.preset(a.preset, **({'image_size': a.image_size} if a.image_size else {}))

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    t = torch.randint(0, 1000, (a.batch,), generator=g)
    target = torch.randn(x.shape, generator=g)
    ours, theirs = UNet(cfg), diffusers_twin(cfg)
    n_ours, n_theirs = count_parameters(ours), count_parameters(theirs)
    if abs(n_ours / n_theirs - 1) > 0.10:
        raise SystemExit(f"parameter counts differ by more than 10 %: {n_ours:,} vs {n_theirs:,}")

    def mk(name, diff=False, fast=False, **kw):
        m = diffusers_twin(cfg) if diff else UNet(cfg).fast_(fast)
        return Runner(name, m, x, t, target, is_diffusers=diff, clock=CLOCKS[a.clock], **kw)

    auto, why = choose_precision('auto', 'cpu')
    native = cpu_native_bf16()[0]
    runners = [
        mk('diffusers fp32 eager', diff=True),
        mk('ours fp32 eager'),
        mk(f"ours auto ({auto})", bf16=auto == 'bf16'),
        mk('ours channels_last', channels_last=True),
        mk('ours bf16 autocast', bf16=True),
        mk('ours channels_last+bf16', channels_last=True, bf16=True),
        mk('ours fast_() fp32', fast=True),
        mk('ours fast_() bf16', fast=True, bf16=True),
    ]
    if native or a.diffusers_fast:  # the bf16 ratio needs diffusers in bf16
        runners += [mk('diffusers bf16 autocast', diff=True, bf16=True)]
    if a.diffusers_fast:
        runners += [mk('diffusers channels_last+bf16', diff=True, channels_last=True, bf16=True)]
    if a.compile:
        runners += [
            mk('ours compile fp32', compile=True),
            mk('ours compile bf16', bf16=True, compile=True),
            mk('ours compile fast_() bf16', bf16=True, compile=True, fast=True),
            mk('ours compile channels_last+bf16', channels_last=True, bf16=True, compile=True),
        ]
    if a.only:
        keep = ('diffusers fp32 eager', 'diffusers bf16 autocast', 'ours fp32 eager')  # the ratios need these
        runners = [r for r in runners if r.name in keep or any(w in r.name for w in a.only)]

    print(
        f"preset={a.preset} batch={a.batch} image={cfg.image_size}x{cfg.image_size} threads={torch.get_num_threads()} "
        f"torch={torch.__version__} cpu={torch.backends.cpu.get_cpu_capability()} native bf16: {cpu_native_bf16()}"
    )
    print(f"precision 'auto' here: {auto} ({why})")
    print(f"parameters: ours {n_ours:,}  diffusers UNet2DModel {n_theirs:,}  (ours/diffusers {n_ours / n_theirs:.3f})")
    flops = {
        'ours': step_flops(ours, x, t, target),
        'diffusers': step_flops(theirs, x, t, target, True),
    }
    print(
        f"FLOPs per image (forward + backward): ours {flops['ours'] / a.batch / 1e9:.2f} G, "
        f"diffusers {flops['diffusers'] / a.batch / 1e9:.2f} G"
    )
    ceiling = {'fp32': matmul_ceiling(torch.float32)}
    if native:
        ceiling['bf16'] = matmul_ceiling(torch.bfloat16)
    print('matmul ceiling (4096^2, GFLOP/s on these threads): ' + ', '.join(f"{k} {v:.0f}" for k, v in ceiling.items()))
    for r in runners:
        for _ in range(a.warmup):
            r.step()
    for _ in range(a.iters):
        for r in runners:
            r.times.append(r.step())

    ref = a.batch / statistics.median(runners[0].times)
    print(f"\n{'runner':<34}{'images/s':>10}{'ms/step':>10}{'vs diffusers fp32':>19}{'model GFLOP/s':>15}")
    speed = {}
    for r in runners:
        med = statistics.median(r.times)
        speed[r.name] = a.batch / med
        gflops = flops['diffusers' if r.is_diffusers else 'ours'] / med / 1e9
        print(f"{r.name:<34}{speed[r.name]:>10.1f}{1000 * med:>10.0f}{speed[r.name] / ref:>18.2f}x{gflops:>15.1f}")
    for r in runners:
        if r.fn is not r.model:
            print(f"compile + first step of '{r.name}': {r.first_call_s:.1f} s (excluded from throughput)")
    best = max((n for n in speed if n.startswith('ours')), key=speed.get)
    print(f"best setting for ours: {best}")
    gflop = flops['ours'] / a.batch / 1e9  # per image

    def summary(prec, plain, fast, peer):
        "'fp32 1.05x (fast_() 1.09x)'-style ratio vs `peer` and % of the matmul ceiling, for the runners that ran."
        names = [n for n in (plain, fast) if n in speed]
        if not names or peer not in speed or prec not in ceiling:
            return None, None
        ratio = [f"{speed[n] / speed[peer]:.2f}x" for n in names]
        pct = [f"{100 * speed[n] * gflop / ceiling[prec]:.0f} %" for n in names]
        label = lambda v: v[0] + (f" (fast_() {v[1]})" if len(v) > 1 else '')  # noqa: E731
        return f"{prec} {label(ratio)}", f"{prec} {label(pct)} of {ceiling[prec]:.0f} GFLOP/s"

    parts = [
        summary('fp32', 'ours fp32 eager', 'ours fast_() fp32', 'diffusers fp32 eager'),
        summary('bf16', 'ours bf16 autocast', 'ours fast_() bf16', 'diffusers bf16 autocast'),
    ]
    print(
        f"ratio vs diffusers: {', '.join(p[0] for p in parts if p[0])} | best {speed[best] / ref:.2f}x ({best}) | "
        f"matmul ceiling: {', '.join(p[1] for p in parts if p[1])} | cpu {torch.backends.cpu.get_cpu_capability()}"
    )


if __name__ == '__main__':
    main()
