"""Seconds per image of the book's samplers on the UNet 'mnist' preset, with each sampler's accuracy on the exact test.

Every configuration ("sampler:steps") samples the same batch from the same randomly initialised UNet in the same
process (random weights cost exactly what trained ones cost, so no checkpoint is needed). On a shared machine the load
changes over minutes, so the configurations take turns in --rounds rounds: a long run of a memoryless sampler (DDPM,
DDIM, Euler, Heun: a step depends only on x_t, t and t_prev) is cut into one piece of its timesteps per round and its
time is the sum of the pieces; a short or multistep run (DPM-Solver++) is repeated whole every round and its time is
the median. Cutting changes nothing in the result: the pieces continue from the same x and the same generator.

Quality comes from the exact Gaussian test of chapter 10 (`ddpm_book.samplers.gaussian_test`), run with the same
sampler and steps: for deterministic samplers the rms distance to the exact probability-flow ODE answer, for all of
them the error of the sample mean + std (DDPM's only meaningful figure; its sampling-noise floor is printed).

The last line reads `summary s/img <config>=X ... speedup <fastest>_vs_<slowest>=Nx`.

    python benchmarks/sampling.py                                  # DDPM-1000, DDIM-50, DPM-Solver++-10/20, batch 16
    python benchmarks/sampling.py --device cpu --batch 4 --configs ddim:50 heun:10 dpm_solver:10
    python benchmarks/sampling.py --threads 1 --batch 4 --rounds 5   # on a busy shared CPU: 2 OpenMP threads fighting
                                                                     # other jobs for 2 cores ran ~10x slower than 1
"""
import argparse, statistics, time

import torch

from ddpm_book.core import get_device, cpu_native_bf16
from ddpm_book.schedules import make_schedule
from ddpm_book.unet import UNet, UNetConfig, count_parameters
from ddpm_book.sampling import sample, get_sampler, timestep_pairs
from ddpm_book.samplers import gaussian_test


def parse_config(s: str) -> tuple:
    "'sampler:steps' -> (sampler, steps), checked against the registered samplers."
    name, _, steps = s.partition(':')
    if not steps.isdigit() or int(steps) < 1: raise SystemExit(f"config {s!r} must look like 'sampler:steps', e.g. dpm_solver:10")
    try: get_sampler(name)
    except ValueError as e: raise SystemExit(str(e))
    return name, int(steps)


def sync(device: torch.device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


MEMORYLESS = ('ddpm', 'ddim', 'euler', 'heun')  # samplers whose steps keep no history: a run can be cut into pieces


class Timed:
    "One configuration: its pieces of timesteps and the seconds measured for them."
    def __init__(self, sampler: str, steps: int, rounds: int, T: int):
        self.sampler, self.steps, self.pairs = sampler, steps, timestep_pairs(T, steps)
        k = rounds if sampler in MEMORYLESS and steps >= 4 * rounds else 1
        n = len(self.pairs)
        self.pieces = [self.pairs[i * n // k:(i + 1) * n // k] for i in range(k)]
        self.times, self.x, self.gen = [], None, None

    @property
    def name(self) -> str: return f"{self.sampler}-{self.steps}"

    def run_round(self, r: int, model, sched, x_T, device):
        "Time this round's piece (cut runs) or one whole run (others)."
        if len(self.pieces) == 1: x, gen, pairs = x_T, torch.Generator(device=x_T.device).manual_seed(0), self.pairs
        elif r < len(self.pieces):
            if r == 0: self.x, self.gen = x_T, torch.Generator(device=x_T.device).manual_seed(0)
            x, gen, pairs = self.x, self.gen, self.pieces[r]
        else: return
        sync(device)
        t0 = time.perf_counter()
        out = sample(model, sched, x, sampler=self.sampler, timesteps=pairs, generator=gen)
        sync(device)
        self.times.append(time.perf_counter() - t0)
        if len(self.pieces) > 1: self.x = out

    def seconds(self) -> float:
        "Seconds for one whole run of the batch."
        return sum(self.times) if len(self.pieces) > 1 else statistics.median(self.times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--configs', nargs='+', default=['ddpm:1000', 'ddim:50', 'dpm_solver:10', 'dpm_solver:20'],
                    help="sampler:steps pairs (samplers: ddpm, ddim, euler, heun, dpm_solver)")
    ap.add_argument('--preset', default='mnist', help="ddpm_book UNet preset: 'mnist' or 'cifar10'")
    ap.add_argument('--batch', type=int, default=16, help='images per sampling run')
    ap.add_argument('--device', default='auto', help="'auto' (cuda, then mps, then cpu), 'cpu', 'cuda', 'cuda:1', ...")
    ap.add_argument('--rounds', type=int, default=10, help='rounds of turn-taking (see above)')
    ap.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument('--quality-n', type=int, default=4000, help='samples of the exact Gaussian test')
    a = ap.parse_args()
    if a.batch < 1 or a.rounds < 1: raise SystemExit("--batch and --rounds must be >= 1")
    if a.threads: torch.set_num_threads(a.threads)
    configs = [parse_config(c) for c in a.configs]
    try: device = get_device(a.device)
    except ValueError as e: raise SystemExit(str(e))

    cfg = UNetConfig.preset(a.preset)
    torch.manual_seed(0)
    model = UNet(cfg).to(device).eval()
    sched = make_schedule('linear', 1000)
    x_T = torch.randn(a.batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)).to(device)
    print(f"preset={a.preset} params={count_parameters(model):,} batch={a.batch} image={cfg.image_size}x{cfg.image_size} "
          f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"cpu={torch.backends.cpu.get_cpu_capability()} native bf16: {cpu_native_bf16()}")

    sample(model, sched, x_T, sampler='ddim', steps=2)  # warm-up: allocator, kernels, caches
    runs = [Timed(name, steps, a.rounds, sched.T) for name, steps in configs]
    for r in range(a.rounds):
        for run in runs: run.run_round(r, model, sched, x_T, device)
        print(f"  round {r + 1}/{a.rounds} (seconds of the last piece or run): " + ' '.join(f"{run.name}={run.times[-1]:.2f}" for run in runs if run.times), flush=True)

    quality = {c: gaussian_test(*c, n=a.quality_n) for c in configs}
    floor = gaussian_test('ddim', 1000, n=a.quality_n)['moment_err']  # ~ exact samples: the noise of the moment estimate
    print(f"\n{'config':<18}{'NFE':>6}{'s/run':>9}{'s/image':>10}{'ms/NFE/img':>12}{'ODE rms err':>13}{'moment err':>12}")
    per_image = {}
    for c, run in zip(configs, runs):
        med, q = run.seconds(), quality[c]
        per_image[c] = med / a.batch
        ode = f"{q['path_err']:.2e}" if q['path_err'] is not None else 'n/a'
        print(f"{c[0] + '-' + str(c[1]):<18}{q['nfe']:>6}{med:>9.2f}{per_image[c]:>10.4f}{1000 * per_image[c] / q['nfe']:>12.2f}"
              f"{ode:>13}{q['moment_err']:>12.3f}")
    print(f"(exact test: Gaussian data, {a.quality_n} samples, float64; moment err of exact samples = {floor:.3f})")
    fast, slow = min(per_image, key=per_image.get), max(per_image, key=per_image.get)
    name = lambda c: f"{c[0]}-{c[1]}"
    print("summary s/img " + ' '.join(f"{name(c)}={per_image[c]:.4f}" for c in configs)
          + f" speedup {name(fast)}_vs_{name(slow)}={per_image[slow] / per_image[fast]:.0f}x")


if __name__ == '__main__':
    main()
