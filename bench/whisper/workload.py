#!/usr/bin/env python3
"""The Whisper benchmark's workload: LibriSpeech test-clean-like clips, generated from a seed.

    python3 bench/whisper/workload.py --out build/whisper-workload            # full: 2,620 clips
    python3 bench/whisper/workload.py --out build/whisper-workload-640 --scale 640
    python3 bench/whisper/workload.py --stats                                  # statistics only

Needs the standard library and numpy only, so it runs on the GPU host (the full audio is about
620 MB of 16-bit WAV: generated there, never carried).

The workload (bench/whisper/README.md has the reasoning):
  durations  2,620 clips, a log-normal (sigma 0.62) truncated to [2, 35] s by redrawing, its median
             chosen so that the truncated mean is 7.42 s, the draw rescaled to that mean exactly
             (then clamped to the bounds); rounded to whole 16 kHz samples.
             LibriSpeech test-clean: 2,620 utterances, 5.40 h, mean 7.42 s, 1.3 to 35.0 s.
  tokens     the forced decoded length (text tokens before end-of-text) of each clip:
             round(rate * duration * lognormal(0, 0.25)), clamped to [1, 220], the rate chosen from
             the draws so that the mean is 30 tokens (about 4 tokens per second of speech).
  audio      16 kHz mono 16-bit PCM WAV per clip: a voiced source (harmonics of a wandering f0,
             syllable-rate envelope) plus noise, drawn from (seed, clip id) so any clip can be
             regenerated alone. The content does not matter: weights are random and lengths forced.
  --scale N  N clips out of the full 2,620, picked evenly along the duration order (the shortest
             and the longest always in), keeping their ids: the subset has about the full mean and
             range, and its clips are the full workload's clips.

Output folder:
  manifest.tsv   header line "id<TAB>path<TAB>samples<TAB>seconds<TAB>tokens", then one line per
                 clip in id order; path is relative to the folder (wav/000123.wav)
  manifest.json  the parameters and the realised statistics
  wav/           the clips (skipped with --no-audio)
A folder whose manifest.json has the same seed and clips, and whose WAV files are all there with
the right sizes, is reused (nothing rewritten).
"""

import argparse
import concurrent.futures
import hashlib
import json
import math
import os
import struct
import sys
import time

import numpy as np

SAMPLE_RATE = 16000
FULL_CLIPS = 2620
MIN_S, MAX_S = 2.0, 35.0
TARGET_MEAN_S = 7.42  # LibriSpeech test-clean: 19,452 s / 2,620 clips
SIGMA = 0.62
TARGET_MEAN_TOKENS = 30.0
TOKEN_NOISE_SIGMA = 0.25
MIN_TOKENS, MAX_TOKENS = 1, 220
WINDOW_S = 30.0  # Whisper's window; longer clips are cut to it by both harnesses
FORMAT_VERSION = 1


def _phi(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def truncated_lognormal_mean(mu, sigma, lo, hi):
    """E[X | lo <= X <= hi] for X = exp(N(mu, sigma^2))."""
    a, b = (math.log(lo) - mu) / sigma, (math.log(hi) - mu) / sigma
    mass = _phi(b) - _phi(a)
    part = math.exp(mu + sigma * sigma / 2) * (_phi(b - sigma) - _phi(a - sigma))
    return part / mass


def fit_mu(target_mean, sigma, lo, hi):
    """Bisection on mu: the truncated mean grows monotonically with it."""
    a, b = math.log(lo) - 3, math.log(hi)
    for _ in range(200):
        m = 0.5 * (a + b)
        if truncated_lognormal_mean(m, sigma, lo, hi) < target_mean:
            a = m
        else:
            b = m
    return 0.5 * (a + b)


def draw_workload(seed, n=FULL_CLIPS):
    """Durations (samples) and forced token lengths of the full workload, in clip-id order."""
    rng = np.random.default_rng(seed)
    mu = fit_mu(TARGET_MEAN_S, SIGMA, MIN_S, MAX_S)
    out = np.empty(0)
    while out.size < n:  # truncation by redrawing: no mass piled up at the bounds
        d = np.exp(rng.normal(mu, SIGMA, size=2 * n))
        out = np.concatenate([out, d[(d >= MIN_S) & (d <= MAX_S)]])
    # One sample of 2,620 misses the fitted mean by about 0.1 s (std / sqrt(n)); rescale to hit it,
    # so that totals compare with LibriSpeech's (the clamp moves a handful of clips by < 1%).
    seconds = np.clip(out[:n] * (TARGET_MEAN_S / out[:n].mean()), MIN_S, MAX_S)
    samples = np.round(seconds * SAMPLE_RATE).astype(np.int64)
    noise = np.exp(rng.normal(0.0, TOKEN_NOISE_SIGMA, size=n))
    raw = samples / SAMPLE_RATE * noise
    rate = TARGET_MEAN_TOKENS / raw.mean()
    tokens = np.clip(np.round(rate * raw), MIN_TOKENS, MAX_TOKENS).astype(np.int64)
    return {"mu": mu, "tokens_per_second": float(rate), "samples": samples, "tokens": tokens}


def pick_subset(samples, count):
    """`count` clip ids spread evenly along the duration order, returned in id order."""
    n = samples.size
    if count >= n:
        return np.arange(n)
    order = np.argsort(samples, kind="stable")
    ranks = np.unique(np.round(np.linspace(0, n - 1, count)).astype(np.int64))
    return np.sort(order[ranks])


def synth_clip(seed, clip_id, n):
    """Deterministic speech-like int16 signal of n samples for (seed, clip_id)."""
    rng = np.random.default_rng([seed, clip_id])
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    f0 = rng.uniform(90.0, 240.0)
    # f0 wanders by a few percent at ~0.5-2 Hz, as intonation does; phase is the integral of f.
    f = f0 * (1.0 + 0.06 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    voiced = np.zeros(n)
    for h, amp in zip(range(1, 6), rng.uniform(0.2, 1.0, size=5) / np.arange(1, 6)):
        voiced += amp * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    # Syllable-rate envelope (3-6 Hz), so the signal has onsets and pauses like speech.
    env = np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t + rng.uniform(0, 2 * np.pi)))
    sig = 0.25 * env * voiced / max(1e-9, np.abs(voiced).max()) + 0.01 * rng.standard_normal(n)
    return np.clip(np.round(sig * 32767.0), -32768, 32767).astype("<i2")


def wav_bytes(n):
    return 44 + 2 * n


def write_wav(path, pcm):
    """Canonical 44-byte-header PCM WAV (mono, 16 kHz, 16-bit), written atomically."""
    data = pcm.tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)
    header += b"data" + struct.pack("<I", len(data))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(data)
    os.replace(tmp, path)


def clip_path(out, cid):
    return os.path.join(out, "wav", "%06d.wav" % cid)


def write_clip(job):
    out, seed, cid, n = job
    write_wav(clip_path(out, cid), synth_clip(seed, cid, n))


def stats(samples, tokens):
    s = samples / SAMPLE_RATE
    return {
        "clips": int(samples.size),
        "audio_seconds": round(float(s.sum()), 3),
        "processed_seconds": round(float(np.minimum(s, WINDOW_S).sum()), 3),
        "clips_over_30s": int((s > WINDOW_S).sum()),
        "seconds_mean": round(float(s.mean()), 4),
        "seconds_median": round(float(np.median(s)), 4),
        "seconds_min": round(float(s.min()), 4),
        "seconds_max": round(float(s.max()), 4),
        "tokens_total": int(tokens.sum()),
        "tokens_mean": round(float(tokens.mean()), 4),
        "tokens_min": int(tokens.min()),
        "tokens_max": int(tokens.max()),
        # Decoder forward passes with a 4-token prompt: 1 for the prompt + 1 per text token
        # (the last one produces end-of-text).
        "decoder_steps": int((tokens + 1).sum()),
    }


def describe(name, st):
    return (f"{name}: {st['clips']} clips, {st['audio_seconds']:.1f} s of audio "
            f"({st['processed_seconds']:.1f} s within 30 s windows, {st['clips_over_30s']} clips cut), "
            f"duration mean {st['seconds_mean']:.3f} s, median {st['seconds_median']:.3f}, "
            f"min {st['seconds_min']:.3f}, max {st['seconds_max']:.3f}; "
            f"tokens mean {st['tokens_mean']:.2f}, min {st['tokens_min']}, max {st['tokens_max']}, "
            f"total {st['tokens_total']}")


def folder_is_complete(out, meta, ids, samples):
    try:
        with open(os.path.join(out, "manifest.json")) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return False
    keys = ("format_version", "seed", "ids_sha")
    if any(old.get(k) != meta.get(k) for k in keys) or old.get("audio") != meta.get("audio"):
        return False
    if not meta["audio"]:
        return True
    for cid, n in zip(ids.tolist(), samples.tolist()):
        p = clip_path(out, cid)
        if not os.path.isfile(p) or os.path.getsize(p) != wav_bytes(int(n)):
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="output folder (manifest.tsv, manifest.json, wav/)")
    ap.add_argument("--seed", type=int, default=2620, help="workload seed (default 2620)")
    ap.add_argument("--scale", type=int, default=FULL_CLIPS,
                    help="number of clips, a subset of the full 2,620 (default: all)")
    ap.add_argument("--jobs", type=int, default=min(16, os.cpu_count() or 1),
                    help="processes writing clips (default: cores, at most 16)")
    ap.add_argument("--no-audio", action="store_true", help="write the manifest only, no WAV files")
    ap.add_argument("--stats", action="store_true", help="print the statistics and write nothing")
    args = ap.parse_args()
    if args.scale < 1:
        ap.error("--scale must be >= 1")
    if not args.stats and not args.out:
        ap.error("--out is required unless --stats")

    t0 = time.time()
    w = draw_workload(args.seed)
    full = stats(w["samples"], w["tokens"])
    ids = pick_subset(w["samples"], args.scale)
    samples, tokens = w["samples"][ids], w["tokens"][ids]
    sub = stats(samples, tokens)
    print(f"workload seed {args.seed}: log-normal mu {w['mu']:.4f} sigma {SIGMA} truncated to "
          f"[{MIN_S:g}, {MAX_S:g}] s; {w['tokens_per_second']:.3f} tokens/s")
    print(describe("full", full))
    if args.scale < FULL_CLIPS:
        print(describe(f"subset (--scale {args.scale})", sub))
    if args.stats:
        return 0

    ids_sha = hashlib.sha256(ids.tobytes() + samples.tobytes() + tokens.tobytes()).hexdigest()
    meta = {
        "format_version": FORMAT_VERSION, "seed": args.seed, "scale": int(ids.size),
        "sample_rate": SAMPLE_RATE, "window_seconds": WINDOW_S,
        "durations": {"distribution": "lognormal truncated by redrawing", "mu": w["mu"],
                      "sigma": SIGMA, "min": MIN_S, "max": MAX_S, "target_mean": TARGET_MEAN_S},
        "tokens": {"tokens_per_second": w["tokens_per_second"], "noise_sigma": TOKEN_NOISE_SIGMA,
                   "min": MIN_TOKENS, "max": MAX_TOKENS, "target_mean": TARGET_MEAN_TOKENS},
        "audio": not args.no_audio, "ids_sha": ids_sha, "stats": sub, "full_stats": full,
    }
    out = args.out
    if folder_is_complete(out, meta, ids, samples):
        print(f"{out}: up to date, reused ({time.time() - t0:.1f} s)")
        return 0
    os.makedirs(out, exist_ok=True)
    if not args.no_audio:
        os.makedirs(os.path.join(out, "wav"), exist_ok=True)
        todo = [(cid, n) for cid, n in zip(ids.tolist(), samples.tolist())
                if not (os.path.isfile(clip_path(out, cid)) and os.path.getsize(clip_path(out, cid)) == wav_bytes(n))]
        # Same seed and id give the same clip, so clips a partial earlier run wrote are kept.
        jobs = max(1, min(args.jobs, len(todo)))
        work = [(out, args.seed, cid, n) for cid, n in todo]
        if jobs > 1:
            with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
                list(pool.map(write_clip, work, chunksize=8))
        else:
            for w in work:
                write_clip(w)
        written = sum(wav_bytes(n) for _, n in todo)
        print(f"{out}/wav: {ids.size} clips, {written / 1e6:.1f} MB written")
    tmp = os.path.join(out, "manifest.tsv.tmp")
    with open(tmp, "w") as f:
        f.write("id\tpath\tsamples\tseconds\ttokens\n")
        for cid, n, k in zip(ids.tolist(), samples.tolist(), tokens.tolist()):
            f.write(f"{cid}\twav/{cid:06d}.wav\t{n}\t{n / SAMPLE_RATE:.4f}\t{k}\n")
    os.replace(tmp, os.path.join(out, "manifest.tsv"))
    tmp = os.path.join(out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))
    print(f"{out}/manifest.tsv: {ids.size} clips ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
