"""Time to quality: training seconds ddpm_book's `Trainer` and a tuned diffusers loop need to reach the same proxy FD.

Both train an unconditional denoiser of the same architecture (a ddpm_book UNet and the diffusers UNet2DModel with
the same levels, channels, blocks, attention and groups, from benchmarks/trainer_throughput.py; parameter counts are
printed) on the same 4,000 mnist5k 'train' digits (32x32) at the same batch size, in the same process:

- ours: `Trainer` with the settings `ours_settings` picks for the hardware found (precision 'auto', min-SNR weighting,
  stratified timesteps, a high peak LR with a short warm-up and a cosine planned to end at the budget from the measured
  speed, an EMA with a short warm-up);
- the peer: the loop of diffusers' examples/unconditional_image_generation/train_unconditional.py: UNet2DModel,
  DDPMScheduler(1000, linear).add_noise, epsilon MSE, AdamW(betas (0.95, 0.999), weight decay 1e-6, eps 1e-8), a
  cosine LR schedule after a linear warm-up, grad clip 1.0, --use_ema on (as in its README command) with its defaults
  (warm-up, inv_gamma 1, power 3/4, max decay 0.9999), and a DataLoader (shuffle, no workers) over PIL images through
  Resize/CenterCrop/ToTensor/Normalize; one channel ('L') instead of its convert('RGB'): the digits are grey and both
  models take one channel. The script's defaults (lr 1e-4, 500 warm-up steps, 100 epochs, fp32) would mostly measure
  its warm-up, so the peer gets the chance ours had: a short LR sweep (--peer-lrs, warm-up --peer-warmup, each LR
  trained --sweep-s seconds with its cosine ending there and judged at the end as the race judges; the best proxy FD
  wins), bf16 autocast where the hardware does bf16 natively (--theirs-precision auto, the rule ours follows) and a
  cosine planned to end at the race's budget (--theirs-horizon budget). `--peer-lrs 1e-4 --peer-warmup 500
  --theirs-precision no --theirs-horizon script` is the untuned script.

The contestants take turns in segments of equal training seconds, each cut into short turns (--slice-s; who goes
first alternates), so a busy machine slows all alike. At every segment boundary each is judged the same way, untimed:
n samples of the EMA weights by DDIM (eta 0, trailing timesteps, x0 clipped to [-1, 1], same starting noise), ours
through `ddpm_book.sampling.sample`, the peer's through diffusers' DDIMScheduler (checked to agree on one network at
start), and the proxy FD (`ddpm_book.evaluation`) against `reference_features(ext, n, image_size=32)`. The threshold F
is the best proxy FD the peer reaches within its budget (or --threshold); each side's time is when its curve first
reaches F, linear between boundaries. Both curves, the sweep table and the peer's chosen LR are printed; the last line
reads `time_to_quality threshold=F ours_s=X diffusers_s=Y ratio=Y/X peer=... cpu=CAPABILITY device=...`.

    python benchmarks/time_to_quality.py --quick                       # smoke test, 1-2 minutes
    python benchmarks/time_to_quality.py --threads 2                   # sweep 4 x 150 s, then 1,500 s per side
    python benchmarks/time_to_quality.py --device cuda --budget-s 120 --segment-s 20 --sweep-s 10   # on a GPU
    python benchmarks/time_to_quality.py --ablate --ablate-budget-s 60 --threads 2   # each lever reverted alone
"""

import argparse
import copy
import math
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_throughput import diffusers_same_size  # noqa: E402  (the sibling benchmark's same-size UNet2DModel)

from ddpm_book.core import check_float, check_int, choose_precision, cpu_native_bf16, get_device  # noqa: E402
from ddpm_book.data import get_dataset  # noqa: E402
from ddpm_book.sampling import sample  # noqa: E402
from ddpm_book.schedules import make_schedule  # noqa: E402
from ddpm_book.trainer import Trainer, TrainConfig  # noqa: E402
from ddpm_book.unet import UNet, UNetConfig, count_parameters  # noqa: E402

SCRIPT = dict(
    lr=1e-4,
    warmup_steps=500,
    adam_betas=(0.95, 0.999),
    weight_decay=1e-6,
    epochs=100,
    ema_max=0.9999,
    ema_inv_gamma=1.0,
    ema_power=0.75,
)  # train_unconditional.py's defaults


def ours_settings(precision: str, args) -> dict:
    "Our TrainConfig fields for this hardware: `precision` is what choose_precision('auto') resolved to."
    return dict(
        precision=precision,
        lr=args.ours_lr,
        warmup_steps=args.ours_warmup,
        weighting='min_snr',
        min_snr_gamma=5.0,
        t_sampling='stratified',
        ema_decay=args.ours_ema_decay,
        ema_warmup=args.ours_ema_warmup,
        grad_clip=1.0,
        channels_last=False,  # measured: no faster in fp32 and slower in bf16 on the CPU (see the closing note)
        compile=False,
    )  # measured: minutes of compiling, recompile-limit graph breaks, no faster step on the CPU


# ---------------------------------------------------------------- data


def to_pil(x: torch.Tensor) -> list:
    "Images (N, 1, H, W) in [-1, 1] as 8-bit grey PIL images (exact: mnist5k holds 8-bit levels)."
    u8 = ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    return [Image.fromarray(a, mode='L') for a in u8]


def script_transform(size: int):
    "train_unconditional.py's augmentations without the (default-off) flip."
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    return Compose(
        [Resize(size, interpolation=InterpolationMode.BILINEAR), CenterCrop(size), ToTensor(), Normalize([0.5], [0.5])]
    )


class PILDigits(torch.utils.data.Dataset):
    "PIL images transformed per item, as the script's `dataset.set_transform`; key 'input' (theirs) or 'x' (ours)."

    def __init__(self, x: torch.Tensor, key: str = 'input'):
        self.images, self.key, self.tf = to_pil(x), key, script_transform(x.shape[-1])
        self.name, self.image_shape = 'mnist5k-pil', tuple(x.shape[1:])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {self.key: self.tf(self.images[i])}


# ---------------------------------------------------------------- contestants


class Ours:
    "ddpm_book's Trainer, `fit(until=...)` in shrinking chunks that fill each segment; the cosine ends at the budget."

    def __init__(self, name: str, model, dataset, cfg: dict, budget_s: float, steps_per_s: float, replan: bool = True):
        self.name, self.budget_s, self.replanning = name, budget_s, replan
        planned = max(2, round(budget_s * steps_per_s))
        self.tr = Trainer(
            model, dataset, TrainConfig(**{**cfg, 'steps': planned if replan else cfg.get('steps', planned)})
        )
        self.seconds, self.rate = 0.0, steps_per_s

    @property
    def steps(self):
        return self.tr.step

    def train(self, seconds: float):
        "Train about `seconds` more (whole steps, stopping where the next one would overshoot by more than half)."
        end = self.seconds + seconds
        while self.tr.step < self.tr.cfg.steps:
            left = end - self.seconds
            if left * self.rate < 0.5:
                break
            k = max(1, int(left * self.rate * (0.6 if left * self.rate > 8 else 1)))
            t0, s0 = time.perf_counter(), self.tr.step
            self.tr.fit(until=min(self.tr.step + k, self.tr.cfg.steps))
            dt = time.perf_counter() - t0
            self.seconds += dt
            if self.tr.step > s0:
                self.rate = 0.5 * self.rate + 0.5 * (self.tr.step - s0) / dt

    def replan(self):
        "Set the cosine's length so that it ends when the budget does, at the speed measured so far."
        if self.replanning:
            self.tr.cfg.steps = max(self.tr.step + 1, self.tr.step + round((self.budget_s - self.seconds) * self.rate))

    def data_ms(self) -> float:
        "Mean data-fetch milliseconds per step, from the Trainer's own events.jsonl (nan before its first record)."
        import json

        path = Path(self.tr.run_dir) / 'metrics' / 'events.jsonl'
        recs = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []
        return statistics.fmean(r['data_fetch_ms'] for r in recs) if recs else math.nan

    def eval_net(self):
        "The EMA model as net(x, t) -> eps."
        return self.tr.ema.model


def diffusers_ema_decay(step: int) -> float:
    "diffusers' EMAModel.get_decay with use_ema_warmup and the script's defaults at optimisation step `step` (1-based)."
    s = max(0, step - 1)
    return 0.0 if s <= 0 else min(SCRIPT['ema_max'], 1 - (1 + s / SCRIPT['ema_inv_gamma']) ** -SCRIPT['ema_power'])


class Theirs:
    "The training loop of diffusers' train_unconditional.py (single process, no accelerate wrappers), step by step."

    def __init__(
        self,
        name: str,
        model,
        x: torch.Tensor,
        batch: int,
        precision: str,  # 'fp32' or 'bf16' (autocast, as the script's --mixed_precision bf16)
        horizon_steps: int,  # the cosine's length
        seed: int = 0,
        lr: float = SCRIPT['lr'],  # peak LR
        warmup_steps: int = SCRIPT['warmup_steps'],  # linear LR warm-up steps
        device='cpu',
    ):
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        self.device = torch.device(device)
        model = model.to(self.device)
        self.name, self.model, self.precision, self.lr, self.warmup = name, model.train(), precision, lr, warmup_steps
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=1000, beta_schedule='linear', prediction_type='epsilon'
        )
        self.opt = torch.optim.AdamW(
            model.parameters(),
            lr=lr,
            betas=SCRIPT['adam_betas'],
            weight_decay=SCRIPT['weight_decay'],
            eps=1e-8,
        )
        self.lr_scheduler = get_scheduler(
            'cosine', optimizer=self.opt, num_warmup_steps=warmup_steps, num_training_steps=horizon_steps
        )
        self.ema = EMAModel(
            model.parameters(),
            decay=SCRIPT['ema_max'],
            use_ema_warmup=True,
            inv_gamma=SCRIPT['ema_inv_gamma'],
            power=SCRIPT['ema_power'],
            model_cls=type(model),
            model_config=model.config,
        )
        self.loader = torch.utils.data.DataLoader(
            PILDigits(x), batch_size=batch, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(seed)
        )
        self._it, self.steps, self.seconds, self.data_s, self.horizon = iter(self.loader), 0, 0.0, 0.0, horizon_steps
        self._eval_model = copy.deepcopy(model).eval().requires_grad_(False)

    def _batch(self) -> torch.Tensor:
        try:
            return next(self._it)['input']
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)['input']

    def step(self):
        "One step of the script's inner loop."
        t0 = time.perf_counter()
        clean = self._batch().to(self.device)
        self.data_s += time.perf_counter() - t0
        noise = torch.randn(clean.shape, device=self.device)
        T = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, T, (clean.shape[0],), device=self.device).long()
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        bf16 = self.precision == 'bf16'
        with torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            pred = self.model(noisy, timesteps).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.lr_scheduler.step()
        self.opt.zero_grad()
        self.ema.step(self.model.parameters())
        self.steps += 1
        loss.detach().item()  # the script logs the loss every step (on a GPU this also waits for the step)

    def train(self, seconds: float):
        "Whole steps for `seconds` more, stopping where the next one would overshoot by more than half."
        end, last = self.seconds + seconds, self.seconds / max(self.steps, 1)
        while end - self.seconds > 0.5 * last:
            t0 = time.perf_counter()
            self.step()
            last = time.perf_counter() - t0
            self.seconds += last

    def eval_net(self):
        "The EMA weights in a UNet2DModel, as net(x, t) -> eps."
        self.ema.copy_to(self._eval_model.parameters())
        return lambda x, t: self._eval_model(x, t).sample


# ---------------------------------------------------------------- sampling and judging


@torch.no_grad()
def diffusers_ddim(net, x_T: torch.Tensor, steps: int) -> torch.Tensor:
    "DDIM with diffusers' DDIMScheduler (eta 0, trailing, x0 clipped and eps re-derived from it)."
    from diffusers import DDIMScheduler

    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule='linear', clip_sample=True, timestep_spacing='trailing')
    sch.set_timesteps(steps)
    x = x_T.clone()
    for t in sch.timesteps:
        eps = net(x, torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device))
        x = sch.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    return x


def ours_ddim(net, x_T: torch.Tensor, steps: int) -> torch.Tensor:
    "DDIM with ddpm_book's `sample` (eta 0, trailing, x0 clipped)."
    return sample(
        net, make_schedule('linear', 1000), x_T, sampler='ddim', steps=steps, eta=0.0, clip='clip', spacing='trailing'
    )


def check_samplers(cfg: UNetConfig, steps: int) -> float:
    "Max |difference| between the two DDIM implementations on one (random) network and the same noise."
    torch.manual_seed(1)
    net = diffusers_same_size(cfg).eval()
    fn = lambda x, t: net(x, t).sample
    x_T = torch.randn((4, cfg.in_channels, cfg.image_size, cfg.image_size), generator=torch.Generator().manual_seed(1))
    return (ours_ddim(fn, x_T, steps) - diffusers_ddim(fn, x_T, steps)).abs().max().item()


class Judge:
    "Proxy FD of n samples (fixed starting noise) against the n-digit reference."

    def __init__(self, n: int, steps: int, image_size: int, seed: int = 0, device='cpu'):
        from ddpm_book.evaluation import proxy_extractor, reference_features

        self.ext, self.steps = proxy_extractor(), steps
        self.ref = reference_features(self.ext, n, image_size=image_size)
        g = torch.Generator().manual_seed(1000 + seed)
        self.x_T = torch.randn((n, 1, image_size, image_size), generator=g).to(device)  # the same noise on any device
        self.seconds = 0.0

    def __call__(self, c) -> float:
        from ddpm_book.evaluation import extract_features, frechet_distance

        t0 = time.perf_counter()
        x = (ours_ddim if isinstance(c, Ours) else diffusers_ddim)(c.eval_net(), self.x_T, self.steps)
        ok = bool(torch.isfinite(x).all())  # a diverged run's samples score inf
        fd = frechet_distance(self.ref, extract_features(self.ext, x.float().cpu())) if ok else math.inf
        self.seconds += time.perf_counter() - t0
        return fd


# ---------------------------------------------------------------- the race


def speed(make, steps: int = 6) -> float:
    "Steps/s of a throwaway contestant (untimed warm-up too: it fills the allocator and oneDNN caches)."
    c = make()
    c.train(0) if isinstance(c, Ours) else None
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        c.tr.train_step() if isinstance(c, Ours) else c.step()
        times.append(time.perf_counter() - t0)
    return 1 / statistics.median(times[2:])


def train_segment(contestants: list, seconds: float, slice_s: float, flip: bool):
    "Each contestant trains `seconds` more, in turns of `slice_s` (the order alternates), so load spikes hit all alike."
    done, order = {c.name: 0.0 for c in contestants}, contestants[::-1] if flip else list(contestants)
    active = list(order)
    while active:
        for c in list(active):
            s0 = c.seconds
            c.train(min(slice_s, seconds - done[c.name]))
            done[c.name] += c.seconds - s0
            if c.seconds == s0 or seconds - done[c.name] < 1e-3:
                active.remove(c)
        active.reverse()
    for c in contestants:
        if hasattr(c, 'replan'):
            c.replan()


def race(contestants: list, budget_s: float, segment_s: float, slice_s: float, judge, every: bool = True) -> dict:
    "Segments of `segment_s` training seconds each; judge all at 0 and at every boundary (or only at the end)."
    curves = {c.name: [] for c in contestants}

    def judge_all(k):
        for c in contestants:
            curves[c.name].append((c.seconds, c.steps, judge(c)))
        print(
            f"{k:>3} "
            + '  '.join(
                "{}: {:7.1f} s {:6d} steps FD {:8.2f}".format(c.name, *curves[c.name][-1]) for c in contestants
            ),
            flush=True,
        )

    if every:
        judge_all(0)
    n_seg = math.ceil(budget_s / segment_s - 1e-9)
    for k in range(n_seg):
        train_segment(contestants, min(segment_s, budget_s - k * segment_s), slice_s, k % 2 == 1)
        if every or k == n_seg - 1:
            judge_all(k + 1)
    return curves


def time_to(curve: list, F: float) -> float:
    "Training seconds at which the curve [(s, steps, fd)] first reaches fd <= F, linear between points; inf if never."
    if curve[0][2] <= F:
        return curve[0][0]
    for (s0, _, f0), (s1, _, f1) in zip(curve, curve[1:]):
        if f1 <= F:
            return s0 + (s1 - s0) * (f0 - F) / (f0 - f1)
    return math.inf


# ---------------------------------------------------------------- setup


def peer_precision(args, device: torch.device) -> tuple[str, str]:
    "The peer's precision and why: --theirs-precision, 'auto' resolved by the rule ours follows (bf16 where native)."
    if args.theirs_precision in ('no', 'fp32'):
        return 'fp32', "--theirs-precision no (the script's default --mixed_precision no)"
    if args.theirs_precision == 'bf16':
        return 'bf16', '--theirs-precision bf16'
    return choose_precision('auto', device)


def build(args, precision: str, their_precision: str):
    "The architecture, the data and constructors of both contestants (and of ours with fields changed)."
    cfg = UNetConfig.preset('mnist', base_channels=args.width, dropout=0.0)  # dropout 0: UNet2DModel's default
    ds = get_dataset('mnist5k', split='train')
    if tuple(ds.x.shape[1:]) != (1, cfg.image_size, cfg.image_size):
        raise SystemExit(f"unexpected data shape {tuple(ds.x.shape)}")
    run_root = tempfile.mkdtemp(prefix='ttq_')
    base = dict(
        batch_size=args.batch,
        seed=args.seed,
        device=str(args.device),
        threads=args.threads,
        ckpt_every=0,
        sample_every=0,
        log_every=50,
        progress=False,
    )

    def model_pair():
        torch.manual_seed(args.seed)
        ours = UNet(cfg)
        torch.manual_seed(args.seed)
        theirs = diffusers_same_size(cfg)
        return ours, theirs

    def make_ours(name='ours', budget=args.budget_s, rate=1.0, data=ds, replan=True, **changes):
        fields = {**base, **ours_settings(precision, args), 'run_dir': f"{run_root}/{name}", **changes}
        c = Ours(name, model_pair()[0], data, fields, budget, rate, replan)
        return c

    def make_theirs(
        name='diffusers', budget=args.budget_s, rate=1.0, lr=SCRIPT['lr'], warmup=SCRIPT['warmup_steps']
    ) -> Theirs:
        per_epoch = math.ceil(len(ds) / args.batch)
        horizon = per_epoch * SCRIPT['epochs'] if args.theirs_horizon == 'script' else max(2, round(budget * rate))
        return Theirs(
            name,
            model_pair()[1],
            ds.x,
            args.batch,
            their_precision,
            horizon,
            args.seed,
            lr=lr,
            warmup_steps=warmup,
            device=args.device,
        )

    return cfg, ds, model_pair, make_ours, make_theirs


def print_header(args, precision: str, why: str, their: tuple, cfg: UNetConfig, model_pair):
    ours, theirs = model_pair()
    gpu = f"  GPU={torch.cuda.get_device_name(args.device)}" if args.device.type == 'cuda' else ''
    print(
        f"CPU capability={torch.backends.cpu.get_cpu_capability()}  "
        f"cpu_native_bf16={cpu_native_bf16()}  threads={torch.get_num_threads()}  torch={torch.__version__}  "
        f"device={args.device}{gpu}"
    )
    print(f"precision: ours {precision} ({why}); diffusers loop {their[0]} ({their[1]})")
    print(
        f"architecture: mnist preset, base {cfg.base_channels}, mults {cfg.channel_mults}, "
        f"attention at {cfg.attn_resolutions}, dropout 0; "
        f"parameters: ours {count_parameters(ours):,}  diffusers UNet2DModel {count_parameters(theirs):,}"
    )


def calibrate(make_ours, make_theirs, args):
    "Steps/s of both (throwaway copies, untimed), for planning the cosines."
    r_ours = speed(lambda: make_ours('calib-ours', budget=10))
    r_theirs = speed(lambda: make_theirs('calib-theirs', budget=10))
    print(
        f"measured speed (untimed warm-up): ours {r_ours:.2f} steps/s ({r_ours * args.batch:.0f} img/s), "
        f"diffusers loop {r_theirs:.2f} steps/s ({r_theirs * args.batch:.0f} img/s)"
    )
    return r_ours, r_theirs


def peer_sweep(args, make_theirs, r_theirs: float, judge) -> tuple[float, list]:
    "The peer's LR sweep: each LR trains --sweep-s seconds (turns, as in the race), judged at the end; the best wins."
    if len(args.peer_lrs) == 1:
        print(f"peer LR {args.peer_lrs[0]:g} given alone: no sweep")
        return args.peer_lrs[0], []
    cs = [
        make_theirs(f"lr={lr:g}", budget=args.sweep_s, rate=r_theirs, lr=lr, warmup=args.peer_warmup)
        for lr in args.peer_lrs
    ]
    horizon = (
        'the cosine ending at the sweep budget' if args.theirs_horizon == 'budget' else "the script's 100-epoch cosine"
    )
    print(
        f"peer LR sweep: {len(cs)} LRs, warm-up {args.peer_warmup} steps, {horizon}, {args.sweep_s:g} training s "
        f"each in turns of {args.slice_s:g} s, judged at the end as the race judges:"
    )
    curves = race(cs, args.sweep_s, args.sweep_s, args.slice_s, judge, every=False)
    rows = [
        dict(lr=lr, seconds=s, steps=st, fd=f) for lr, c in zip(args.peer_lrs, cs) for s, st, f in curves[c.name][-1:]
    ]
    best = min(rows, key=lambda r: r['fd'] if math.isfinite(r['fd']) else math.inf)
    print(f"\n{'peer lr':>8} {'steps':>6} {'train s':>8} {'proxy FD':>9}")
    for r in rows:
        mark = '  <- chosen' if r is best else ''
        print(f"{r['lr']:>8g} {r['steps']:>6d} {r['seconds']:>8.1f} {r['fd']:>9.2f}{mark}")
    print(f"peer's chosen LR: {best['lr']:g} (best proxy FD {best['fd']:.2f} after {args.sweep_s:g} s)\n")
    return best['lr'], rows


def print_curves(curves: dict):
    "Both curves side by side: cumulative training seconds and proxy FD at every segment boundary."
    names = list(curves)
    print('\ncurves: cumulative training seconds and proxy FD at each segment boundary')
    print(f"{'k':>3} " + ' '.join(f"{n + ' s':>14} {n + ' FD':>14}" for n in names))
    for k, pts in enumerate(zip(*(curves[n] for n in names))):
        print(f"{k:>3} " + ' '.join(f"{s:>14.1f} {f:>14.2f}" for s, _, f in pts))


def main_race(args, precision, their_precision, cfg, make_ours, make_theirs) -> dict:
    "The peer's LR sweep, the race at its chosen LR, both curves and the last line; returns the figures."
    r_ours, r_theirs = calibrate(make_ours, make_theirs, args)
    judge = Judge(args.n, args.steps, cfg.image_size, args.seed, args.device)
    fd_floor = floor_fd(judge, args.n)
    print(
        f"judge: proxy FD ({judge.ext.name}), n={args.n}, DDIM {args.steps} steps (NFE "
        f"{args.steps}), eta 0, EMA weights; real-vs-real floor at n={args.n}: {fd_floor:.2f}"
    )
    print(
        "sampler check: max |ours DDIM - diffusers DDIMScheduler| on one network = "
        f"{check_samplers(cfg, args.steps):.2e}"
    )
    t0 = time.perf_counter()
    lr, sweep_rows = peer_sweep(args, make_theirs, r_theirs, judge)
    sweep_wall = time.perf_counter() - t0
    ours, theirs = make_ours(rate=r_ours), make_theirs(rate=r_theirs, lr=lr, warmup=args.peer_warmup)
    print(
        f"ours: {ours_settings(precision, args)}, batch {args.batch}, cosine planned over "
        f"{ours.tr.cfg.steps} steps (re-planned every segment)"
    )
    peer = dict(
        name='diffusers train_unconditional.py loop', lr=lr, warmup_steps=args.peer_warmup, precision=their_precision
    )
    print(
        f"diffusers loop: lr {lr:g} (chosen), warm-up {args.peer_warmup}, {their_precision}, "
        f"{ {k: v for k, v in SCRIPT.items() if k not in ('lr', 'warmup_steps')} }, batch {args.batch}, "
        f"cosine over {theirs.horizon} steps "
        + (
            '(the script default of 100 epochs)'
            if args.theirs_horizon == 'script'
            else '(planned from the measured speed and the budget)'
        )
    )
    print(
        f"segments of {args.segment_s:g} s (taken in turns of {args.slice_s:g} s), budget "
        f"{args.budget_s:g} training s each; "
        "cumulative training seconds, steps, proxy FD:"
    )
    judge.seconds, t0 = 0.0, time.perf_counter()
    curves = race([ours, theirs], args.budget_s, args.segment_s, args.slice_s, judge)
    wall = time.perf_counter() - t0
    print(
        f"wall {wall:.0f} s (sweep {sweep_wall:.0f} s before it), of which judging {judge.seconds:.0f} s; diffusers "
        "DataLoader (PIL + transforms) "
        f"{theirs.data_s:.1f} s = {100 * theirs.data_s / max(theirs.seconds, 1e-9):.1f}% of its training time "
        f"({1000 * theirs.data_s / max(theirs.steps, 1):.1f} ms/step); ours (in-memory tensor, "
        f"Trainer's DataLoader of indices) {ours.data_ms():.1f} ms/step"
    )
    print_curves(curves)
    best_peer = min(f for _, _, f in curves['diffusers'][1:])
    F_ = args.threshold if args.threshold is not None else best_peer
    how = (
        'given by --threshold' if args.threshold is not None else "the diffusers loop's best proxy FD within its budget"
    )
    x, y = time_to(curves['ours'], F_), time_to(curves['diffusers'], F_)
    ratio = y / x if x > 0 else math.inf
    print(f"threshold F = {F_:.2f} ({how}); times are training seconds, linear between segment boundaries")
    if fd_floor > 0:
        print(
            f"the peer's best proxy FD {best_peer:.2f} = {best_peer / fd_floor:.2f}x the real-vs-real floor "
            f"{fd_floor:.2f} (a budget long enough brings it within 2x)"
        )
    cap = torch.backends.cpu.get_cpu_capability()
    sweep_txt = '/'.join(f"{v:g}" for v in args.peer_lrs)
    print(
        f"time_to_quality threshold={F_:.2f} ours_s={x:.1f} diffusers_s={y:.1f} ratio={ratio:.2f} "
        f"peer=diffusers-loop(lr={lr:g} from {sweep_txt},warmup={args.peer_warmup},{their_precision}) "
        f"ours={precision} cpu={cap} device={args.device}"
    )
    return dict(
        device=str(args.device),
        cpu_capability=cap,
        threads=torch.get_num_threads(),
        budget_s=args.budget_s,
        segment_s=args.segment_s,
        n=args.n,
        ddim_steps=args.steps,
        floor_fd=fd_floor,
        ours=dict(precision=precision, settings=ours_settings(precision, args)),
        peer=peer,
        sweep=dict(lrs=list(args.peer_lrs), seconds_each=args.sweep_s, rows=sweep_rows, wall_s=sweep_wall),
        curves={k: [dict(seconds=s, steps=st, fd=f) for s, st, f in v] for k, v in curves.items()},
        threshold=F_,
        ours_s=x,
        diffusers_s=y,
        ratio=ratio,
        wall_s=wall,
        judge_s=judge.seconds,
    )


def floor_fd(judge, n: int) -> float:
    "The proxy's real-vs-real FD at this n (0 if the split is too small for two disjoint sets)."
    from ddpm_book.evaluation import floor

    try:
        return floor(judge.ext, n)['fd']
    except ValueError:
        return 0.0


# ---------------------------------------------------------------- ablation


def levers(args, precision: str, ds) -> list:
    "(name, what is reverted, make_ours keyword changes) for each lever, reverted alone to the diffusers-style choice."
    out = []
    if precision != 'fp32':
        out.append(('precision', f"{precision} -> fp32", dict(precision='fp32')))
    out += [
        ('weighting', 'min_snr -> uniform', dict(weighting='uniform')),
        ('t_sampling', 'stratified -> uniform timesteps', dict(t_sampling='uniform')),
        (
            'lr_schedule',
            f"lr {args.ours_lr:g}, warm-up {args.ours_warmup}, cosine to the budget -> the script's "
            "lr 1e-4, 500 warm-up, "
            f"cosine over 100 epochs, betas (0.95, 0.999), wd 1e-6",
            dict(
                lr=SCRIPT['lr'],
                warmup_steps=SCRIPT['warmup_steps'],
                adam_betas=SCRIPT['adam_betas'],
                weight_decay=SCRIPT['weight_decay'],
                steps=math.ceil(len(ds) / args.batch) * SCRIPT['epochs'],
                replan=False,
            ),
        ),
        (
            'ema',
            f"decay {args.ours_ema_decay}, warm-up w={args.ours_ema_warmup:g} -> diffusers' EMA "
            "(power 3/4, max 0.9999)",
            dict(ema='diffusers'),
        ),
        (
            'data',
            'in-memory tensor -> DataLoader of PIL images + torchvision transforms',
            dict(data=PILDigits(ds.x, key='x')),
        ),
    ]
    return out


def ablate(args, precision, cfg, ds, make_ours, make_theirs):
    "Ours, ours with each lever reverted alone, and the diffusers loop, round-robin at a short fixed budget."
    r_ours, r_theirs = calibrate(make_ours, make_theirs, args)
    b = args.ablate_budget_s
    cs = [make_ours('ours', budget=b, rate=r_ours)]
    for name, what, ch in levers(args, precision, ds):
        ch = dict(ch)
        ema = ch.pop('ema', None)
        c = make_ours(f"-{name}", budget=b, rate=r_ours * (0.6 if name == 'precision' else 1), **ch)
        if ema == 'diffusers':  # diffusers' decay curve in our EMA (our n counts from 0, its step from 1)
            c.tr.ema.decay = lambda n=None, e=c.tr.ema: diffusers_ema_decay((e.num_updates if n is None else n) + 1)
        c.what = what
        cs.append(c)
    cs.append(make_theirs('diffusers', budget=b, rate=r_theirs))
    peer = cs[-1]
    peer.what = (
        f"the diffusers loop with the script's lr 1e-4 and 500 warm-up steps, {peer.precision}, "
        f"cosine over {peer.horizon} steps (reference)"
    )
    cs[0].what = 'nothing (our settings)'
    judge = Judge(args.n, args.steps, cfg.image_size, args.seed, args.device)
    seg = b / max(1, round(b / args.ablate_segment_s))
    print(
        f"ablation: {len(cs)} contestants round-robin, {b:g} training s each in segments of {seg:g} "
        f"s; proxy FD n={args.n}, DDIM {args.steps}"
    )
    curves = race(cs, b, seg, args.slice_s, judge, every=False)
    best = curves['ours'][-1][2]
    print(f"\n{'variant':<13} {'steps':>6} {'train s':>8} {'proxy FD':>10} {'vs ours':>8}  reverted")
    for c in cs:
        s, st, f = curves[c.name][-1]
        print(f"{c.name:<13} {st:>6d} {s:>8.1f} {f:>10.2f} {f - best:>+8.2f}  {c.what}")


# ---------------------------------------------------------------- main


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--budget-s', type=float, default=1500, help='training seconds per contestant in the race')
    ap.add_argument(
        '--segment-s', type=float, default=150, help='training seconds per segment (a judging point after each)'
    )
    ap.add_argument('--n', type=int, default=256, help='samples per proxy FD (and real images in the reference)')
    ap.add_argument('--steps', type=int, default=10, help='DDIM steps (= NFE) of the judging sampler')
    ap.add_argument(
        '--slice-s',
        type=float,
        default=10,
        help='within a segment the contestants take turns of this many training seconds',
    )
    ap.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch decides)')
    ap.add_argument('--device', default='cpu', help="where both train and sample: 'cpu' (default), 'cuda', 'cuda:1'")
    ap.add_argument('--batch', type=int, default=64, help='batch size of both')
    ap.add_argument(
        '--width', type=int, default=32, help="base channels of the shared architecture (the 'mnist' preset: 32)"
    )
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument(
        '--threshold', type=float, default=None, help="F (default: the diffusers loop's best proxy FD in its budget)"
    )
    ap.add_argument(
        '--peer-lrs',
        type=float,
        nargs='+',
        default=None,
        help="the peer's LR sweep (default 1e-4 3e-4 1e-3 2e-3; --quick: 3e-4 2e-3); one value: no sweep",
    )
    ap.add_argument('--peer-warmup', type=int, default=50, help="the peer's linear LR warm-up steps (script: 500)")
    ap.add_argument('--sweep-s', type=float, default=150, help='training seconds of each LR of the sweep')
    ap.add_argument(
        '--theirs-precision',
        default='auto',
        choices=['auto', 'no', 'fp32', 'bf16'],
        help="the diffusers loop's --mixed_precision: 'auto' (default) bf16 where native as ours, "
        "'no' (= fp32, the script's default) or 'bf16'",
    )
    ap.add_argument(
        '--theirs-horizon',
        default='budget',
        choices=['script', 'budget'],
        help="the diffusers cosine's length: planned from its speed and the budget (default) or the script's "
        "100 epochs",
    )
    ap.add_argument('--ours-lr', type=float, default=2e-3)
    ap.add_argument('--ours-warmup', type=int, default=50)
    ap.add_argument('--ours-ema-decay', type=float, default=0.999)
    ap.add_argument('--ours-ema-warmup', type=float, default=10.0)
    ap.add_argument(
        '--ablate',
        action='store_true',
        help='instead of the race: each of our levers reverted alone, at --ablate-budget-s',
    )
    ap.add_argument('--ablate-budget-s', type=float, default=60)
    ap.add_argument('--ablate-segment-s', type=float, default=20)
    ap.add_argument('--quick', action='store_true', help='smoke test: tiny sweep, budget, n and steps')
    a = ap.parse_args(argv)
    if a.quick:
        a.budget_s, a.segment_s, a.slice_s, a.n, a.steps, a.ablate_budget_s, a.ablate_segment_s = 8, 4, 2, 32, 4, 4, 2
        a.sweep_s = 4
        a.peer_lrs = a.peer_lrs or [3e-4, 2e-3]
    a.peer_lrs = a.peer_lrs or [1e-4, 3e-4, 1e-3, 2e-3]
    try:
        for v in a.peer_lrs:
            check_float('--peer-lrs', v, 0, lo_open=True)
        check_int('--peer-warmup', a.peer_warmup, 0)
        for name in ('budget_s', 'segment_s', 'slice_s', 'sweep_s'):
            check_float(f"--{name.replace('_', '-')}", getattr(a, name), 0, lo_open=True)
        a.device = get_device(a.device)
    except ValueError as e:
        ap.error(str(e) + ('' if 'cuda' not in str(e) else ' (no CUDA GPU here)'))
    return a


def main(argv=None) -> dict | None:
    "Run the race (or the ablation) as the command line says; the race's figures as a dict."
    args = parse(argv)
    warnings.filterwarnings('ignore', message='Metric `Kernel Inception Distance`')
    if args.threads:
        torch.set_num_threads(args.threads)
    precision, why = choose_precision('auto', args.device)
    their = peer_precision(args, args.device)
    cfg, ds, model_pair, make_ours, make_theirs = build(args, precision, their[0])
    print_header(args, precision, why, their, cfg, model_pair)
    if args.ablate:
        ablate(args, precision, cfg, ds, make_ours, make_theirs)
        return None
    return main_race(args, precision, their[0], cfg, make_ours, make_theirs)


if __name__ == '__main__':
    main()
