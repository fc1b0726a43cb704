"""Speech features: batched log-mel extraction against per-utterance extraction, and the share of a
training step that goes to the features, both measured in this run.

1. Extraction: clips/s of `LogMel` on padded batches of waveforms (one STFT + mel projection call per
   batch, masks and per-utterance normalisation as tensor ops; what the methods run on the device)
   against the usual per-utterance pipeline (a dataset item computes its clip's log-mel with
   torchaudio's MelSpectrogram and normalises it; the batch is padded afterwards), on the same clips,
   with the same outputs (checked).
2. Share of a training step: time of the features alone against a whole masked-speech and APC step
   (features, masking, transformer forward, L1 loss, backward, AdamW) on the same batch.

    python bench/speech_features.py                    # CPU: spoken_words clips, batch 32, transformer_tiny
    python bench/speech_features.py --device cuda --batch-size 128
    python bench/speech_features.py --synthetic        # noise clips of the spoken words' lengths (nothing synthesised)

Prints each figure and the ratio batched / per-utterance (higher is better for ssl-zoo).
"""

import argparse

import torch
import torchaudio
from text_throughput import timed, training_step

from ssl_zoo.api import compose
from ssl_zoo.build import build_datamodule
from ssl_zoo.data.base import Waves
from ssl_zoo.methods.apc import APC
from ssl_zoo.methods.masked_speech import MaskedSpeech
from ssl_zoo.nn.logmel import LogMel
from ssl_zoo.nn.transformer import Transformer


def per_utterance(waves, lengths, mel: torchaudio.transforms.MelSpectrogram, frames: int):
    """The per-item pipeline: each clip's log-mel alone, normalised, then padded into a batch."""
    out = torch.zeros(len(lengths), frames, mel.n_mels, device=waves.device)
    for i, n in enumerate(lengths.tolist()):
        feats = (mel(waves[i, :n]) + 1e-6).log().T  # (T_i, n_mels)
        out[i, : len(feats)] = (feats - feats.mean()) / (feats.std(unbiased=False) + 1e-5)
    return out


def synthetic_batch(batch: int, sample_rate: int, max_samples: int, g: torch.Generator) -> Waves:
    """Noise clips 0.2-0.9 s long, zero-padded: the spoken words' shapes, for a machine without espeak-ng."""
    lengths = (torch.rand(batch, generator=g) * 0.7 + 0.2).mul(sample_rate).long().clamp_max(max_samples)
    audio = 0.1 * torch.randn(batch, int(lengths.max()), generator=g)
    audio[torch.arange(audio.shape[1]) >= lengths[:, None]] = 0.0
    return Waves(audio, lengths)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--synthetic", action="store_true", help="noise clips of the spoken words' lengths (0.2-0.9 s) instead "
                   "of the spoken words (which are synthesised with espeak-ng on first use)")
    args = p.parse_args()
    device = torch.device(args.device)

    data = build_datamodule(compose("data=spoken_words", f"data.batch_size={args.batch_size}"))
    if args.synthetic:
        g = torch.Generator().manual_seed(0)
        batches = [synthetic_batch(args.batch_size, data.sample_rate, data.max_samples, g).to(device) for _ in range(args.batches)]
    else:
        data.setup()
        order = torch.randperm(len(data.all_clips), generator=torch.Generator().manual_seed(0)).tolist()
        batches = [data.all_clips.__getitems__(order[i * args.batch_size : (i + 1) * args.batch_size])[0].to(device)
                   for i in range(args.batches)]
    clips = args.batch_size * args.batches
    logmel = LogMel(data.sample_rate, **data.features).to(device)
    mel = logmel.mel

    def batched():
        for waves in batches:
            logmel(waves.audio, waves.lengths)

    def one_by_one():
        for waves in batches:
            per_utterance(waves.audio, waves.lengths, mel, int(logmel.frames(waves.lengths).max()))

    for waves in batches[:2]:  # the same features either way
        feats, mask = logmel(waves.audio, waves.lengths)
        assert torch.allclose(feats, per_utterance(waves.audio, waves.lengths, mel, feats.shape[1]), atol=1e-3)
    with torch.no_grad():
        ours_s = timed(batched, args.warmup, args.steps, device)
        ref_s = timed(one_by_one, args.warmup, args.steps, device)
    print(f"log-mel extraction, {clips} clips in batches of {args.batch_size} ({args.device}):")
    print(f"  batched       {clips / ours_s:9.0f} clips/s")
    print(f"  per utterance {clips / ref_s:9.0f} clips/s")
    print(f"  ratio batched / per-utterance: {ref_s / ours_s:.2f}")

    waves = batches[0]
    with torch.no_grad():
        features_s = timed(lambda: logmel(waves.audio, waves.lengths), args.warmup, args.steps, device)
    print(f"share of a training step spent on features (batch {args.batch_size}, transformer_tiny):")
    for method_class in (MaskedSpeech, APC):
        torch.manual_seed(0)
        backbone = Transformer(input_dim=logmel.n_mels, block_size=data.max_frames(), n_layer=4, n_head=4, n_embd=128)
        method = method_class(backbone, sample_rate=data.sample_rate, features=data.features).to(device)
        step_s = timed(training_step(method, lambda: method.ssl_step(waves)[0], args, device), args.warmup, args.steps, device)
        print(f"  {method.name:14s} step {1000 * step_s:7.1f} ms, features {1000 * features_s:5.1f} ms: {100 * features_s / step_s:.1f}%")


if __name__ == "__main__":
    main()
