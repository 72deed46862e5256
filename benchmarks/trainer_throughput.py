"""Training throughput (images/s) of ddpm_book's `Trainer` vs a minimal plain loop around diffusers' `UNet2DModel`.

Both train the same architecture (ddpm_book's UNet preset, default 'mnist', and a UNet2DModel with the same
levels, channels, residual blocks, attention sites, heads and GroupNorm groups; parameter counts are printed) on
the offline MNIST digits at the same batch size and precision. The Trainer's step is the full one (data fetch,
timestep/noise draw, loss, backward, clipping, AdamW, EMA update); the plain loop does only data indexing, noise,
forward, MSE, backward and AdamW. The two alternate in chunks of steps, so a busy machine slows both alike; the
figure is the median over chunks. Not a test: it prints numbers.

    python benchmarks/trainer_throughput.py                       # mnist preset, batch 32, fp32
    python benchmarks/trainer_throughput.py --precision bf16 --chunks 6 --chunk-steps 4
"""

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ddpm_book.core import choose_precision, cpu_native_bf16
from ddpm_book.data import get_dataset
from ddpm_book.schedules import make_schedule
from ddpm_book.trainer import Trainer, TrainConfig
from ddpm_book.unet import UNet, UNetConfig


def diffusers_same_size(cfg: UNetConfig):
    "A diffusers UNet2DModel with the levels, channels, blocks, attention and groups of `cfg`."
    from diffusers import UNet2DModel

    attn = [r in cfg.attn_resolutions for r in cfg.resolutions]
    return UNet2DModel(
        sample_size=cfg.image_size,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        block_out_channels=tuple(cfg.channels(l) for l in range(cfg.levels)),
        layers_per_block=cfg.num_res_blocks,
        down_block_types=tuple('AttnDownBlock2D' if a else 'DownBlock2D' for a in attn),
        up_block_types=tuple('AttnUpBlock2D' if a else 'UpBlock2D' for a in reversed(attn)),
        attention_head_dim=cfg.channels(-1) // cfg.num_heads,
        add_attention=cfg.mid_attention,
        norm_num_groups=cfg.norm_groups,
        dropout=cfg.dropout,
        resnet_time_scale_shift='scale_shift' if cfg.scale_shift else 'default',
    )


class PlainLoop:
    "The smallest honest DDPM training loop around diffusers' UNet2DModel."

    def __init__(self, model, data_x, batch, T, precision, seed=0):
        self.model, self.x, self.batch, self.precision = model.train(), data_x, batch, precision
        self.opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
        self.alpha_bar = make_schedule('linear', T).alpha_bar.float()
        self.g, self.T, self.k = torch.Generator().manual_seed(seed), T, 0

    def steps(self, n):
        for _ in range(n):
            idx = torch.randint(0, len(self.x), (self.batch,), generator=self.g)
            x0 = self.x[idx]
            t = torch.randint(0, self.T, (self.batch,), generator=self.g)
            eps = torch.randn(x0.shape, generator=self.g)
            ab = self.alpha_bar[t].view(-1, 1, 1, 1)
            x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
            with torch.autocast('cpu', dtype=torch.bfloat16) if self.precision == 'bf16' else nullcontext():
                loss = F.mse_loss(self.model(x_t, t).sample.float(), eps)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='mnist')
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument(
        '--precision',
        default='auto',
        choices=['auto', 'fp32', 'bf16'],
        help="'auto' (default): bf16 where the CPU computes it natively, else fp32 (ddpm_book.core.choose_precision)",
    )
    ap.add_argument('--chunks', type=int, default=5, help='timed chunks per contender')
    ap.add_argument('--chunk-steps', type=int, default=5, help='optimizer steps per chunk')
    ap.add_argument('--threads', type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    requested = a.precision
    a.precision, why = choose_precision(a.precision, 'cpu')  # both contenders run at the resolved precision
    cfg = UNetConfig.preset(a.preset)
    ds = get_dataset('mnist5k', image_size=cfg.image_size)
    torch.manual_seed(0)
    ours, theirs = UNet(cfg), diffusers_same_size(cfg)
    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
    run_dir = tempfile.mkdtemp()
    total = (a.chunks + 1) * a.chunk_steps
    tr = Trainer(
        ours,
        ds,
        TrainConfig(
            run_dir=run_dir,
            steps=total,
            batch_size=a.batch,
            precision=a.precision,
            warmup_steps=10,
            log_every=a.chunk_steps,
            ckpt_every=0,
            sample_every=0,
            progress=False,
            device='cpu',
        ),
    )
    plain = PlainLoop(theirs, ds.x, a.batch, 1000, a.precision)
    print(f"CPU capability={torch.backends.cpu.get_cpu_capability()}  native bf16: {cpu_native_bf16()}")
    print(
        f"preset={a.preset} batch={a.batch} image={cfg.image_size} precision={a.precision} "
        f"(requested {requested}: {why}) "
        f"threads={torch.get_num_threads()} torch={torch.__version__}\nparameters: ddpm_book UNet "
        f"{n_ours:,}  diffusers UNet2DModel {n_theirs:,}"
    )
    tr.fit(until=a.chunk_steps)
    plain.steps(a.chunk_steps)  # warm-up chunk, untimed
    times = {'trainer': [], 'plain': []}
    for _ in range(a.chunks):
        t0 = time.perf_counter()
        tr.fit(until=tr.step + a.chunk_steps)
        times['trainer'].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain.steps(a.chunk_steps)
        times['plain'].append(time.perf_counter() - t0)
    ips = {k: a.chunk_steps * a.batch / statistics.median(v) for k, v in times.items()}
    import json
    from pathlib import Path

    logged = [
        json.loads(l)['images_per_s'] for l in (Path(run_dir) / 'metrics' / 'events.jsonl').read_text().splitlines()
    ]
    print(
        f"Trainer (full step incl. EMA, clipping, metrics): {ips['trainer']:.1f} images/s "
        f"(wall clock per chunk; the Trainer's own events.jsonl median: {statistics.median(logged[1:]):.1f})"
    )
    print(f"plain loop, diffusers UNet2DModel:                {ips['plain']:.1f} images/s")
    print(f"ratio trainer/plain = {ips['trainer'] / ips['plain']:.2f}")


if __name__ == '__main__':
    main()
