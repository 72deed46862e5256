"""Seconds per image of the book's samplers against diffusers' schedulers driving the same UNet, and exact-test errors.

A configuration is "sampler:steps" or "sampler:steps:spacing" (spacing: a time grid in `GRIDS`: 'leading', 'trailing',
'linspace' or a grid that follows the noise schedule, 'logsnr', 'karras', 'quadratic'); without one each sampler runs
on its own default grid (`get_sampler(name).default_grid`), and the tables say which grid was used.
`import ddpm_book.solvers` registers chapter 10a's samplers (dpmpp_3m, unipc, unipc_bh1, unipc_2) and time grids.

Every configuration samples the same batch from the same randomly initialised UNet in the same process (random weights
cost exactly what trained ones cost, so no checkpoint is needed; the zero-initialised output layer gets small random
weights so that the network's output is not 0, which would make every sampler's answer trivial). The peer is diffusers'
own scheduler for the same sampler (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler 2M/3M 'dpmsolver++',
UniPCMultistepScheduler bh2/bh1, order 3/2, all with a zero final sigma) driving that UNet on the same batch through
our timesteps, in the loop of diffusers' pipelines; the table prints ours/peer (seconds per image) and the largest
difference of the two outputs relative to the largest value (~1e-6 when both compute the same thing; n/a for DDPM,
whose noise differs). `same t` says whether the peer visits exactly our (t, t_prev) pairs (DDIMScheduler steps to
t - T//N, so it can't follow a non-uniform grid). Euler and Heun have no peer. Without diffusers (an optional dev
dependency) the peer is skipped with a message. Two differences are expected (diffusers 0.42): dpmpp_3m differs from
diffusers' 3M by ~1e-3..1e-1 (ours weights the second difference D2 by 1 - 2(h - phi)/h^2, phi = 1 - e^-h, the exact
integral of the quadratic, and uses the Taylor form on its order-2 steps; diffusers weights D2 by half that and uses the
midpoint form), and diffusers' UniPC bh1 returns NaN on the final step to sigma = 0 (its B(h) = h is infinite there).

On a shared machine the load changes over minutes, so the runs (ours and the peer alternately) take turns in --rounds
rounds: a long run of a memoryless sampler (DDPM, DDIM, Euler: a step depends only on x_t, t and t_prev) is cut into
one piece of its timesteps per round and its time is the sum of the pieces; a short or multistep run
(DPM-Solver++ 2M/3M and UniPC carry the model outputs of earlier steps; Heun takes an Euler step first) is repeated
whole every round and its time is the median. Cutting changes nothing in the result: the pieces continue from the same x
and the same generator.

Quality comes from the exact Gaussian test of chapter 10 (`ddpm_book.samplers.gaussian_test`) on the linear and the
cosine schedule (T=1000), run with the same sampler, steps and time grid: for deterministic samplers the rms distance
to the exact probability-flow ODE answer and its ratio to DDIM-50's on the same schedule, for all of them the error of
the sample mean + std (DDPM's only meaningful figure; its sampling-noise floor is printed).

The last line reads `summary s/img <config>=X ... speedup <fastest>_vs_<slowest>=Nx ours/diffusers <config>=R ...`.

    python benchmarks/sampling.py     # DDPM-1000, DDIM-50, DPM-Solver++ 2M/3M and UniPC at 10 and 5, batch 16
    python benchmarks/sampling.py --device cpu --batch 4 --configs ddim:50 heun:10 unipc:10:karras dpmpp_3m:10
    python benchmarks/sampling.py --threads 1 --batch 4 --rounds 5   # on a busy shared CPU: 2 OpenMP threads fighting
                                                                     # other jobs for 2 cores ran ~10x slower than 1
"""

import argparse
import statistics
import time

import torch

from ddpm_book.core import get_device, cpu_native_bf16
from ddpm_book.schedules import make_schedule
from ddpm_book.unet import UNet, UNetConfig, count_parameters
from ddpm_book.sampling import sample, get_sampler, timestep_pairs, SAMPLERS, GRIDS
from ddpm_book.samplers import gaussian_test
import ddpm_book.solvers  # noqa: F401 -- registers dpmpp_3m, unipc, unipc_bh1, unipc_2 and their time grids

try:
    import diffusers
except ImportError as e:
    diffusers, DIFFUSERS_ERROR = None, e

DEFAULT_CONFIGS = [
    'ddpm:1000',
    'ddim:50',
    'dpm_solver:10',
    'dpmpp_3m:10',
    'unipc:10',
    'dpm_solver:5',
    'dpmpp_3m:5',
    'unipc:5',
]
MEMORYLESS = (
    'ddpm',
    'ddim',
    'euler',
)  # steps keep no history: a run can be cut into pieces (not Heun: Euler on a run's first step)
ZERO_END = dict(final_sigmas_type='zero')  # the last step lands on clean data, as ours do (t_prev = -1)
PEERS = {  # our sampler -> diffusers' scheduler class and its settings for the same algorithm
    'ddpm': ('DDPMScheduler', dict(variance_type='fixed_small', clip_sample=False)),
    'ddim': ('DDIMScheduler', dict(clip_sample=False, set_alpha_to_one=True)),
    'dpm_solver': ('DPMSolverMultistepScheduler', dict(solver_order=2, algorithm_type='dpmsolver++', **ZERO_END)),
    'dpmpp_3m': ('DPMSolverMultistepScheduler', dict(solver_order=3, algorithm_type='dpmsolver++', **ZERO_END)),
    'unipc': ('UniPCMultistepScheduler', dict(solver_order=3, solver_type='bh2', **ZERO_END)),
    'unipc_bh1': ('UniPCMultistepScheduler', dict(solver_order=3, solver_type='bh1', **ZERO_END)),
    'unipc_2': ('UniPCMultistepScheduler', dict(solver_order=2, solver_type='bh2', **ZERO_END)),
}


class Config:
    "One 'sampler:steps[:spacing]' entry, checked: the sampler, its steps, the time grid given and the one used."

    def __init__(self, s: str):
        parts = s.split(':')
        if len(parts) not in (2, 3) or not parts[1].isdigit() or int(parts[1]) < 1:
            raise SystemExit(
                f"config {s!r} must look like 'sampler:steps' or 'sampler:steps:spacing', e.g. "
                "dpm_solver:10 or unipc:10:karras"
            )
        try:
            spec = get_sampler(parts[0])
        except ValueError as e:
            raise SystemExit(str(e))
        if len(parts) == 3 and parts[2] not in GRIDS:
            raise SystemExit(f"config {s!r}: spacing must be one of {tuple(GRIDS)}, got {parts[2]!r}")
        self.sampler, self.steps, self.given = parts[0], int(parts[1]), parts[2] if len(parts) == 3 else None
        self.grid = self.given or spec.default_grid  # the sampler's default when none is given

    @property
    def name(self) -> str:
        return f"{self.sampler}-{self.steps}" + (f"-{self.given}" if self.given else '')

    def pairs(self, sched) -> list:
        try:
            return timestep_pairs(sched.T, self.steps, self.grid, sched=sched)
        except ValueError as e:
            raise SystemExit(f"config {self.name}: {e}")

    def pieces(self, rounds: int) -> int:
        "Into how many pieces a run is cut: one per round for long memoryless runs, else 1 (timed whole)."
        return rounds if self.sampler in MEMORYLESS and self.steps >= 4 * rounds else 1


def sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Timed:
    "One timed sampler (ours or the peer) on one configuration: its pieces of timesteps, seconds and final output."

    def __init__(self, run, pairs: list, k: int):  # run(x, pairs, generator, start) -> x
        n = len(pairs)
        self.run, self.pieces = run, [pairs[i * n // k : (i + 1) * n // k] for i in range(k)]
        self.times, self.x, self.gen, self.out = [], None, None, None

    def run_round(self, r: int, x_T, device):
        "Time this round's piece (cut runs) or one whole run (others)."
        whole = len(self.pieces) == 1
        if not whole and r >= len(self.pieces):
            return
        if whole or r == 0:
            self.x, self.gen = x_T, torch.Generator(device=x_T.device).manual_seed(0)
        sync(device)
        t0 = time.perf_counter()
        out = self.run(self.x, self.pieces[0 if whole else r], self.gen, whole or r == 0)
        sync(device)
        self.times.append(time.perf_counter() - t0)
        self.x = self.out = out

    def seconds(self) -> float:
        "Seconds for one whole run of the batch."
        return sum(self.times) if len(self.pieces) > 1 else statistics.median(self.times)


def ours(model, sched, sampler: str):
    "Our `sample()` as run(x, pairs, generator, start)."
    return lambda x, pairs, gen, start: sample(model, sched, x, sampler=sampler, timesteps=pairs, generator=gen)


def make_scheduler(sampler: str, sched):
    "diffusers' scheduler for `sampler` on our betas, or None (no diffusers, or no counterpart)."
    if diffusers is None or sampler not in PEERS:
        return None
    cls, kw = PEERS[sampler]
    return getattr(diffusers, cls)(
        num_train_timesteps=sched.T, trained_betas=sched.betas.tolist(), prediction_type='epsilon', **kw
    )


def set_timesteps(sch, ts: list):
    "Put `sch` on our timesteps ts, noisiest first (DDIM, UniPC take no timesteps=: override what set_timesteps made)."
    if isinstance(sch, (diffusers.DDPMScheduler, diffusers.DPMSolverMultistepScheduler)):
        return sch.set_timesteps(timesteps=ts)
    sch.set_timesteps(len(ts))
    sch.timesteps = torch.tensor(ts, dtype=torch.int64)
    if isinstance(sch, diffusers.UniPCMultistepScheduler):
        ab = sch.alphas_cumprod[ts]
        sch.sigmas = torch.cat([((1 - ab) / ab).sqrt(), torch.zeros(1)]).float()


def peer_pairs(sch, ts: list, T: int) -> list:
    "The (t, t_prev) pairs `sch` takes on timesteps ts (DDIMScheduler steps to t - T//N; t_prev = -1 is clean data)."
    if isinstance(sch, diffusers.DDIMScheduler):
        return [(t, max(t - T // len(ts), -1)) for t in ts]
    return list(zip(ts, ts[1:] + [-1]))


def peer(model, sch, ts: list):
    "diffusers' scheduler driving our model in the loop of its pipelines, as run(x, pairs, generator, start)."
    kw = lambda gen: {'generator': gen} if isinstance(sch, diffusers.DDPMScheduler) else {}

    @torch.no_grad()
    def run(x, pairs, gen, start):
        if start:
            set_timesteps(sch, ts)
        for t, _ in pairs:
            eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
            x = sch.step(eps, t, x, **kw(gen)).prev_sample
        return x

    return run


def make_runs(cfg: Config, model, sched, rounds: int) -> tuple:
    "Ours and the peer (None without one) for one configuration, and whether the peer visits our timesteps."
    pairs, k = cfg.pairs(sched), cfg.pieces(rounds)
    sch = make_scheduler(cfg.sampler, sched)
    if sch is None:
        return Timed(ours(model, sched, cfg.sampler), pairs, k), None, None
    ts = [t for t, _ in pairs]
    return (
        Timed(ours(model, sched, cfg.sampler), pairs, k),
        Timed(peer(model, sch, ts), pairs, k),
        peer_pairs(sch, ts, sched.T) == pairs,
    )


def warm_up(model, sched, x_T):
    "Two DDIM steps of ours and of the peer: allocator, kernels, caches, diffusers' first-call costs."
    sample(model, sched, x_T, sampler='ddim', steps=2)
    sch = make_scheduler('ddim', sched)
    ts = [sched.T - 1, sched.T // 2]
    if sch is not None:
        peer(model, sch, ts)(x_T, list(zip(ts, ts[1:] + [-1])), None, True)


def nontrivial(model):
    "Small random weights in the zero-initialised output layer, so that the network's output is not 0."
    torch.nn.init.normal_(model.conv_out.weight, std=0.02)
    return model


def quality(configs: list, n: int) -> tuple:
    "Exact-test results per config and schedule, DDIM-50's per schedule, and the moment-error floor."
    scheds = {'linear': make_schedule('linear', 1000), 'cosine': make_schedule('cosine', 1000)}
    q = {
        c.name: {k: gaussian_test(c.sampler, c.steps, sched=s, n=n, spacing=c.given) for k, s in scheds.items()}
        for c in configs
    }
    ref = {k: gaussian_test('ddim', 50, sched=s, n=n) for k, s in scheds.items()}
    return q, ref, gaussian_test('ddim', 1000, n=n)['moment_err']  # ~ exact samples: the noise of the moment estimate


def fmt(v, spec: str, width: int) -> str:
    return f"{'n/a' if v is None else format(v, spec):>{width}}"


def out_diff(a, b) -> str:
    "max |a - b| / max |a| of our output a and the peer's b, formatted; 'peer NaN' when b has NaNs."
    return 'peer NaN' if b.isnan().any() else f"{((a - b).abs().max() / a.abs().max()).item():.1e}"


def speed_table(configs, runs, q, batch: int) -> dict:
    "Print seconds per image, ours and the peer's, and return ours/peer per config."
    print(
        f"\n{'config':<22}{'grid':>10}{'NFE':>5}{'s/run':>8}{'s/image':>9}{'ms/NFE/img':>11}"
        f"{'peer s/img':>11}{'ours/peer':>10}{'same t':>7}{'out diff':>10}"
    )
    ratios = {}
    for c, (mine, theirs, same) in zip(configs, runs):
        nfe, s = q[c.name]['linear']['nfe'], mine.seconds() / batch
        p = theirs.seconds() / batch if theirs else None
        if p:
            ratios[c.name] = s / p
        diff = out_diff(mine.out, theirs.out) if theirs and not get_sampler(c.sampler).stochastic else 'n/a'
        grid = c.grid + ('' if c.given else '*')
        same_t = 'n/a' if same is None else 'yes' if same else 'NO'
        print(
            f"{c.name:<22}{grid:>10}{nfe:>5}{mine.seconds():>8.2f}{s:>9.4f}{1000 * s / nfe:>11.2f}"
            f"{fmt(p, '.4f', 11)}{fmt(ratios.get(c.name), '.2f', 10)}{same_t:>7}{diff:>10}"
        )
    print(
        "(* the sampler's default grid; peer: diffusers' scheduler, same UNet, batch and timesteps; "
        "out diff: max|ours - peer| / max|ours|)"
    )
    return ratios


def quality_table(configs, q, ref, floor: float, n: int):
    "Print each config's exact-test errors on both schedules and the ratio to DDIM-50's."
    print(
        f"\n{'config':<22}" + ''.join(f"{k + ' ODE err':>16}{'/DDIM-50':>9}{'moment':>8}" for k in ('linear', 'cosine'))
    )
    for c in configs:
        cells = []
        for k in ('linear', 'cosine'):
            e = q[c.name][k]['path_err']
            cells.append(
                f"{fmt(e, '.2e', 16)}{fmt(e and e / ref[k]['path_err'], '.2f', 9)}{q[c.name][k]['moment_err']:>8.3f}"
            )
        print(f"{c.name:<22}" + ''.join(cells))
    print(
        f"(exact test: Gaussian data, {n} samples, float64, T=1000; "
        f"DDIM-50 ODE err linear {ref['linear']['path_err']:.2e}, "
        f"cosine {ref['cosine']['path_err']:.2e}; moment err of exact samples = {floor:.3f})"
    )


def summary(configs, runs, ratios: dict, batch: int):
    per_image = {c.name: mine.seconds() / batch for c, (mine, _, _) in zip(configs, runs)}
    fast, slow = min(per_image, key=per_image.get), max(per_image, key=per_image.get)
    print(
        "summary s/img "
        + ' '.join(f"{k}={v:.4f}" for k, v in per_image.items())
        + f" speedup {fast}_vs_{slow}={per_image[slow] / per_image[fast]:.0f}x"
        + (" ours/diffusers " + ' '.join(f"{k}={v:.2f}" for k, v in ratios.items()) if ratios else '')
    )


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument(
        '--configs',
        nargs='+',
        default=DEFAULT_CONFIGS,
        help=f"sampler:steps[:spacing] entries (samplers: {', '.join(SAMPLERS)}; spacing: a time "
        f"grid, one of {', '.join(GRIDS)}; "
        "default: the sampler's own)",
    )
    ap.add_argument('--preset', default='mnist', help="ddpm_book UNet preset: 'mnist' or 'cifar10'")
    ap.add_argument('--batch', type=int, default=16, help='images per sampling run')
    ap.add_argument('--device', default='auto', help="'auto' (cuda, then mps, then cpu), 'cpu', 'cuda', 'cuda:1', ...")
    ap.add_argument('--rounds', type=int, default=10, help='rounds of turn-taking (see the module docstring)')
    ap.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument('--quality-n', type=int, default=4000, help='samples of the exact Gaussian test')
    ap.add_argument('--no-peer', action='store_true', help="skip diffusers' schedulers (the peer)")
    a = ap.parse_args()
    if a.batch < 1 or a.rounds < 1:
        raise SystemExit("--batch and --rounds must be >= 1")
    return a


def main():
    global diffusers
    a = parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    configs = [Config(c) for c in a.configs]
    try:
        device = get_device(a.device)
    except ValueError as e:
        raise SystemExit(str(e))
    if a.no_peer:
        diffusers = None

    cfg = UNetConfig.preset(a.preset)
    torch.manual_seed(0)
    model = nontrivial(UNet(cfg)).to(device).eval()
    sched = make_schedule('linear', 1000)
    x_T = torch.randn(
        a.batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)
    ).to(device)
    print(
        f"preset={a.preset} params={count_parameters(model):,} batch={a.batch} image={cfg.image_size}x{cfg.image_size} "
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"cpu={torch.backends.cpu.get_cpu_capability()} native bf16: {cpu_native_bf16()}"
    )
    print(
        f"peer: diffusers {diffusers.__version__} schedulers (same UNet, batch, timesteps)"
        if diffusers
        else "peer: skipped "
        f"({'--no-peer' if a.no_peer else f'diffusers is not importable: {DIFFUSERS_ERROR}'}); no "
        "ours/peer ratios"
    )

    runs = [make_runs(c, model, sched, a.rounds) for c in configs]
    warm_up(model, sched, x_T)
    for r in range(a.rounds):
        for mine, theirs, _ in runs:
            for run in (mine, theirs) if theirs else (mine,):
                run.run_round(r, x_T, device)
        print(
            f"  round {r + 1}/{a.rounds} (seconds of the last piece or run, ours/peer): "
            + ' '.join(
                f"{c.name}={m.times[-1]:.2f}" + (f"/{p.times[-1]:.2f}" if p else '')
                for c, (m, p, _) in zip(configs, runs)
            ),
            flush=True,
        )

    q, ref, floor = quality(configs, a.quality_n)
    ratios = speed_table(configs, runs, q, a.batch)
    quality_table(configs, q, ref, floor, a.quality_n)
    summary(configs, runs, ratios, a.batch)


if __name__ == '__main__':
    main()
