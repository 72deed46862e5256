r"""Latent vs pixel text-to-image diffusion at equal training wall time (chapter 17b's comparison, bigger budget).

Chapter 17b's comparison, at a budget the notebook does not spend. Trains chapter 17's autoencoder, caches the latents,
then trains the same text-conditional UNet recipe on 4x8x8 latents and on 1x32x32 pixels for --budget-s seconds each,
and judges both with chapter 13's proxy FD (n samples, DPM-Solver 20 steps, guidance 2). Prints the figures, the
ratios latent/pixel, the CPU capability, and writes them as JSON (--out).

    python benchmarks/latent_vs_pixel.py --budget-s 240 --n 1000 --threads 1 \
        --out nbs/images/17_latent_vs_pixel_measured.json
"""

import argparse
import time
import json
import tempfile
import torch
from pathlib import Path
from dataclasses import replace

from ddpm_book.data import get_dataset
from ddpm_book.unet import UNetConfig
from ddpm_book.trainer import TrainConfig
from ddpm_book.text import TextUNet, TextUNetConfig, TextTrainer, CaptionedDataset, BPETokenizer
from ddpm_book.autoencoder import KLAutoencoder, AutoencoderConfig, AutoencoderTrainer, AETrainConfig, load_autoencoder
from ddpm_book.latent import LatentUNet, latent_text_dataset
from ddpm_book.pipeline import load_pipeline
from ddpm_book.evaluation import (
    proxy_extractor,
    extract_features,
    reference_features,
    frechet_distance,
    class_stats,
    floor,
)

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--budget-s', type=float, default=240)
ap.add_argument('--n', type=int, default=1000)
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--out', default=None, help='write the figures to this JSON file')
opts = ap.parse_args()
torch.set_num_threads(opts.threads)

BUDGET, N, B = opts.budget_s, opts.n, 32
root = Path(tempfile.mkdtemp(prefix='bench17_'))
data = get_dataset('mnist5k', image_size=32)
torch.manual_seed(0)
t0 = time.perf_counter()
atr = AutoencoderTrainer(
    KLAutoencoder(AutoencoderConfig(base_channels=16)),
    data,
    AETrainConfig(run_dir=str(root / 'ae'), steps=1000, batch_size=64, ckpt_every=0),
)
atr.fit()
ae_s = time.perf_counter() - t0
ae = load_autoencoder(root / 'ae')
x = get_dataset('mnist5k', split='test', image_size=32).x[:500]
rec = torch.nn.functional.mse_loss(ae.decode_latents(ae.encode_latents(x)), x).item()
print(f"AE 1000 steps in {ae_s:.0f}s, test MSE {rec:.4f}, s={ae.scale_factor.item():.4f}", flush=True)
t0 = time.perf_counter()
lat = latent_text_dataset(ae, data, root / 'cache')
enc_s = time.perf_counter() - t0
tok = BPETokenizer.train(lat.captions, vocab_size=1000, max_length=12)
U = UNetConfig(
    image_size=8,
    in_channels=4,
    base_channels=B,
    channel_mults=(1, 2, 2),
    num_res_blocks=1,
    attn_resolutions=(),
    num_heads=2,
    norm_groups=8,
    mid_attention=True,
)
TEXT = dict(dim=32, depth=1, num_heads=2)


def cfg(name):
    return TrainConfig(
        run_dir=str(root / name),
        steps=100_000,
        batch_size=32,
        lr=1e-3,
        warmup_steps=20,
        label_dropout=0.1,
        ema_decay=0.999,
        log_every=50,
        ckpt_every=0,
        sample_every=0,
        progress=False,
        precision='fp32',
    )


torch.manual_seed(0)
ltr = TextTrainer(LatentUNet.build(ae, tok, U, **TEXT), lat, cfg('latent'))
torch.manual_seed(0)
ptr = TextTrainer(
    TextUNet(TextUNetConfig.build(tok, replace(U, image_size=32, in_channels=1, out_channels=1), **TEXT)),
    CaptionedDataset(data),
    cfg('pixel'),
)
timing = {}
for name, tr in (('latent', ltr), ('pixel', ptr)):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < BUDGET:
        tr.fit(until=tr.step + 10)
    timing[name] = (time.perf_counter() - t0, tr.step)
    tr.save()
    print(name, timing[name], flush=True)
ext = proxy_extractor(image_size=32)
out = {}
for name in ('latent', 'pixel'):
    p, labels = load_pipeline(root / name), torch.arange(N) % 10
    t0 = time.perf_counter()
    xs = p.sample(
        N,
        prompts=[f'a handwritten {d}' for d in labels.tolist()],
        sampler='dpm_solver',
        steps=20,
        guidance=2.0,
        generator=torch.Generator().manual_seed(0),
        batch_size=250,
    )
    ss = time.perf_counter() - t0
    fd = frechet_distance(reference_features(ext, N, 32), extract_features(ext, xs))
    sec, steps = timing[name]
    out[name] = dict(
        train_s=round(sec, 1),
        steps=steps,
        ms_per_step=round(1000 * sec / steps, 1),
        images_per_s=round(steps * 32 / sec, 1),
        proxy_fd=round(fd, 2),
        **{k: round(v, 3) for k, v in class_stats(ext, xs, labels).items()},
        sample_s=round(ss, 1),
    )
    print(name, out[name], flush=True)
res = {
    'ae_train_s': round(ae_s),
    'ae_test_mse': rec,
    'encode_dataset_s': round(enc_s, 1),
    'floor_fd': floor(ext, N, 32)['fd'],
    'n': N,
    'extractor': ext.name,
    'budget_s': BUDGET,
    'threads': opts.threads,
    'cpu_capability': torch.backends.cpu.get_cpu_capability(),
    **out,
}
print(json.dumps(res, indent=1))
print(
    f"latent/pixel: steps {out['latent']['steps'] / out['pixel']['steps']:.2f}x, "
    f"images/s {out['latent']['images_per_s'] / out['pixel']['images_per_s']:.2f}x, "
    f"proxy FD {out['latent']['proxy_fd'] / out['pixel']['proxy_fd']:.2f}x, sampling time "
    f"{out['latent']['sample_s'] / out['pixel']['sample_s']:.2f}x ({torch.backends.cpu.get_cpu_capability()})"
)
if opts.out:
    json.dump(res, open(opts.out, 'w'), indent=1)
