#!/usr/bin/env python3
"""The Hugging Face peer of flurry's Whisper benchmark (bench/whisper/README.md).

    python3 bench/peers/hf_whisper_peer.py --workload W/manifest.tsv --batch-sizes 32,64,128,192 \
        --json build/whisper-bench/peer.json
    python3 bench/peers/hf_whisper_peer.py --workload W/manifest.tsv --tiny --device cpu \
        --batch-sizes 4 --json /tmp/peer.json                  # seconds on a laptop CPU
    python3 bench/peers/hf_whisper_peer.py --ceilings-only     # copy GB/s and GEMM TFLOP/s

What runs, as a user of transformers would write it at its best:
  model     WhisperForConditionalGeneration with the large-v3 config (d_model 1280, 32 + 32
            layers, 20 heads, FFN 5120, 128 mels, vocab 51866, 1500 / 448 positions), random
            weights from torch.manual_seed(--seed), fp16, attn_implementation="sdpa", on the GPU.
            Weights' values do not change the work: lengths are forced.
  audio     each clip's WAV read with the standard library (16-bit PCM -> float32 / 32768) and cut
            to its first 30 s (one window per clip; flurry's side does the same: short-form).
  features  WhisperFeatureExtractor(feature_size=128), torch STFT on --features-device (default:
            the model's device; --features-device cpu is what most users run).
  generate  model.generate(language="en", task="transcribe", return_timestamps=False), greedy, in
            batches of --batch-size clips in order of decreasing duration (a user can sort by
            duration; the decoded length is not known in advance), with the large-v3 generation
            config (suppress_tokens, begin_suppress_tokens). A LogitsProcessor forces each clip's
            length from the manifest: end-of-text is masked while the clip has fewer text tokens
            than its target, and forced when it has exactly that many, so every clip decodes
            exactly its target. The processor runs after transformers' own processors.
  timing    wall clock with torch.cuda.synchronize() at the ends; split into audio read, features,
            encoder (forward hooks on the encoder, synchronising) and the rest of generate
            ("decoder": decoder steps, logits processing, search bookkeeping). One untimed warm-up
            batch per batch size first. RTFx = seconds of audio (as the files last) / wall seconds.
  memory    torch.cuda.max_memory_allocated() per batch size (reset before each).

Writes one JSON document (--json) and prints it on the last line, prefixed by "RESULT ". Each batch
size runs the whole workload; the best RTFx is the headline and all are under "sweep". With
--budget-s, a batch size whose run would end past the budget (estimated from the last one) is
skipped and recorded as such, so a sweep cannot overrun a time-limited machine.
"""

import argparse
import json
import os
import platform
import sys
import time
import wave

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE

# Whisper large-v3 special tokens (its tokenizer: 100 languages, so every id from <|translate|> on
# is one above the multilingual v1/v2 models').
EOT = 50257
SOT = 50258
EN = 50259
TRANSLATE = 50359
TRANSCRIBE = 50360
PREV_SOT = 50362
NO_TIMESTAMPS = 50364
# large-v3's generation_config.json: the multilingual models' non-speech tokens plus specials.
SUPPRESS_TOKENS = [
    1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93, 359,
    503, 522, 542, 873, 893, 902, 918, 922, 931, 1350, 1853, 1982, 2460, 2627, 3246, 3253, 3268,
    3536, 3846, 3961, 4183, 4667, 6585, 6647, 7273, 9061, 9383, 10428, 10929, 11938, 12033, 12331,
    12562, 13793, 14157, 14635, 15265, 15618, 16553, 16604, 18362, 18956, 20075, 21675, 22520,
    26130, 26161, 26435, 28279, 29464, 31650, 32302, 32470, 36865, 42863, 47425, 49870, 50254,
    50258, 50359, 50360, 50361, 50362, 50363]
PROMPT = [SOT, EN, TRANSCRIBE, NO_TIMESTAMPS]


def read_manifest(path):
    base = os.path.dirname(os.path.abspath(path))
    clips = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        want = ["id", "path", "samples", "seconds", "tokens"]
        if header[:5] != want:
            raise SystemExit(f"{path}: header {header} is not {want}")
        for line in f:
            if not line.strip():
                continue
            cid, rel, n, _, k = line.rstrip("\n").split("\t")[:5]
            clips.append({"id": int(cid), "path": os.path.join(base, rel), "samples": int(n),
                          "tokens": int(k)})
    if not clips:
        raise SystemExit(f"{path}: no clips")
    return clips


def read_wav(path):
    """16 kHz mono 16-bit PCM as float32 in [-1, 1), cut to the first 30 s."""
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise SystemExit(f"{path}: want 16 kHz mono 16-bit, got {w.getparams()}")
        n = min(w.getnframes(), WINDOW_SAMPLES)
        pcm = np.frombuffer(w.readframes(n), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def make_config(tiny):
    from transformers import WhisperConfig
    # large-v3's config.json; --tiny keeps the layout (mels, vocab, positions) with small widths.
    width = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256) if tiny else \
        dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
             decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120)
    return WhisperConfig(
        vocab_size=51866, num_mel_bins=128, max_source_positions=1500, max_target_positions=448,
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
        pad_token_id=50256, bos_token_id=EOT, eos_token_id=EOT, decoder_start_token_id=SOT,
        begin_suppress_tokens=[220, EOT], suppress_tokens=SUPPRESS_TOKENS, use_cache=True, **width)


def make_generation_config():
    from transformers import GenerationConfig
    return GenerationConfig(
        bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT, decoder_start_token_id=SOT,
        max_length=448, begin_suppress_tokens=[220, EOT], suppress_tokens=SUPPRESS_TOKENS,
        is_multilingual=True, lang_to_id={"<|en|>": EN},
        task_to_id={"transcribe": TRANSCRIBE, "translate": TRANSLATE},
        no_timestamps_token_id=NO_TIMESTAMPS, prev_sot_token_id=PREV_SOT,
        max_initial_timestamp_index=50, return_timestamps=False, do_sample=False, num_beams=1)


class ForcedLengths:
    """Per-sequence forced length: row i emits exactly targets[i] text tokens, then end-of-text.

    transformers' min_new_tokens applies one length to the whole batch; this is its per-row form.
    Set `targets` (a LongTensor on the model's device, one per batch row) before each generate.
    The prompt length is taken from the first call (generate calls the processor first after the
    prompt's forward pass, when input_ids holds the prompt only)."""

    def __init__(self, eot):
        self.eot = eot
        self.targets = None
        self.prompt_len = None

    def reset(self, targets):
        self.targets = targets
        self.prompt_len = None

    def __call__(self, input_ids, scores):
        import torch
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        made = input_ids.shape[1] - self.prompt_len
        # Masks, not branches on device values: no host-device synchronisation per step.
        early = (self.targets > made)[:, None]
        at = (self.targets == made)[:, None]
        is_eot = torch.zeros_like(scores[:1], dtype=torch.bool)
        is_eot[0, self.eot] = True
        scores = scores.masked_fill(early & is_eot, -float("inf"))
        return scores.masked_fill(at & ~is_eot, -float("inf")).masked_fill(at & is_eot, 0.0)


class EncoderTimer:
    """Accumulates the encoder's wall time through forward hooks (one sync each side per batch)."""

    def __init__(self, encoder, sync):
        self.total = 0.0
        self._t = None
        self._sync = sync
        encoder.register_forward_pre_hook(self._pre)
        encoder.register_forward_hook(self._post)

    def _pre(self, module, args):
        self._sync()
        self._t = time.perf_counter()

    def _post(self, module, args, out):
        self._sync()
        self.total += time.perf_counter() - self._t


def text_lengths(sequences):
    """Text tokens before end-of-text in each row of generate's output. Whisper's generate strips
    the prompt and each row's final end-of-text, then pads rows with pad = end-of-text: a row's
    length is the index of its first end-of-text, or the row's width when it has none (the
    longest row). The prompt is stripped here too where a version of transformers keeps it."""
    seq = sequences.cpu().numpy()
    start = len(PROMPT) if seq.shape[1] >= len(PROMPT) and (seq[:, :len(PROMPT)] == PROMPT).all() else 0
    gen = seq[:, start:]
    lengths = []
    for row in gen:
        hit = np.nonzero(row == EOT)[0]
        lengths.append(int(hit[0]) if hit.size else int(row.size))
    return lengths


def run_batches(model, fe, clips, bs, args, forced, enc_timer, sync, device, dtype, limit=None,
                deadline=None):
    """Runs the clips in batches of bs. Returns wall seconds, the time split, text tokens, clips
    whose decoded length missed its target, and how many clips ran (fewer when the deadline, a
    time.perf_counter() value, passed between batches)."""
    import torch
    from transformers import LogitsProcessorList
    times = {"audio": 0.0, "features": 0.0, "generate": 0.0}
    tokens = mismatched = ran = 0
    enc0 = enc_timer.total
    sync()
    t_start = time.perf_counter()
    for b in range(0, len(clips), bs):
        if deadline and time.perf_counter() > deadline:
            break
        batch = clips[b:b + bs]
        t0 = time.perf_counter()
        audio = [read_wav(c["path"]) for c in batch]
        t1 = time.perf_counter()
        feats = fe(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                   device=args.features_device, return_attention_mask=False)
        x = feats["input_features"].to(device=device, dtype=dtype, non_blocking=True)
        sync()
        t2 = time.perf_counter()
        want = [min(c["tokens"], limit) if limit else c["tokens"] for c in batch]
        forced.reset(torch.tensor(want, device=device))
        with torch.inference_mode():
            out = model.generate(x, language="en", task="transcribe", return_timestamps=False,
                                 logits_processor=LogitsProcessorList([forced]),
                                 max_new_tokens=max(want) + 1, do_sample=False, num_beams=1)
        sync()
        t3 = time.perf_counter()
        got = text_lengths(out)
        mismatched += sum(1 for g, w in zip(got, want) if g != w)
        tokens += sum(want)
        ran += len(batch)
        times["audio"] += t1 - t0
        times["features"] += t2 - t1
        times["generate"] += t3 - t2
    wall = time.perf_counter() - t_start
    times["encoder"] = enc_timer.total - enc0
    times["decoder"] = times["generate"] - times["encoder"]
    return wall, times, tokens, mismatched, ran


def measure_ceilings(device):
    """Device-to-device copy GB/s (bytes read + written) and fp16 GEMM TFLOP/s through torch,
    CUDA events, median of the timed calls after warm-up; inputs random, never zeros."""
    import torch
    res = {}
    n = 1 << 30  # 1 GiB each way, far beyond L2
    a = torch.randint(0, 255, (n,), dtype=torch.uint8, device=device)
    b = torch.empty_like(a)

    def timed(fn, warm=3, iters=10):
        for _ in range(warm):
            fn()
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(iters)]
        for s, e in ev:
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return float(np.median([s.elapsed_time(e) for s, e in ev]))

    ms = timed(lambda: b.copy_(a))
    res["copy_gbps"] = round(2 * n / (ms * 1e-3) / 1e9, 1)
    del a, b
    g = torch.Generator(device=device).manual_seed(0)
    for name, (m, nn, k) in {"gemm_8192_tflops": (8192, 8192, 8192),
                             "gemm_enc_fc1_b8_tflops": (12000, 5120, 1280)}.items():
        x = torch.rand((m, k), generator=g, device=device, dtype=torch.float16) - 0.5
        w = torch.rand((nn, k), generator=g, device=device, dtype=torch.float16) - 0.5
        ms = timed(lambda: torch.matmul(x, w.t()), iters=20)
        res[name] = round(2.0 * m * nn * k / (ms * 1e-3) / 1e12, 1)
    res["how"] = "torch: copy_ of 1 GiB uint8 (read+write bytes), fp16 matmul x @ w.T, median"
    return res


def write_json(path, result):
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", help="manifest.tsv written by bench/whisper/workload.py")
    ap.add_argument("--batch-sizes", default="32,64,128,192",
                    help="comma list to sweep (default 32,64,128,192)")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--features-device", default=None, help="where the STFT runs (default: --device)")
    ap.add_argument("--dtype", default=None, choices=["fp16", "bf16", "fp32"],
                    help="default fp16 on cuda, fp32 on cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny widths, large-v3 layout (for tests)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the weights")
    ap.add_argument("--order", default="duration", choices=["duration", "manifest"],
                    help="batch clips by decreasing duration (default) or in manifest order")
    ap.add_argument("--max-clips", type=int, default=0, help="use only the first N clips (0: all)")
    ap.add_argument("--budget-s", type=float, default=0, help="skip batch sizes that would end later")
    ap.add_argument("--ceilings", action="store_true", help="also measure copy GB/s, GEMM TFLOP/s")
    ap.add_argument("--ceilings-only", action="store_true", help="measure the ceilings and exit")
    ap.add_argument("--save-weights", help="save the random model (safetensors) here for flurry")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()

    t_begin = time.perf_counter()
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    args.features_device = args.features_device or device
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        args.dtype or ("fp16" if cuda else "fp32")]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gpu = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    result = {"framework": "hf-transformers", "transformers": transformers.__version__,
              "torch": torch.__version__, "device": gpu, "dtype": str(dtype).replace("torch.", "")}
    if args.ceilings or args.ceilings_only:
        if not cuda:
            raise SystemExit("--ceilings needs a CUDA device")
        result["ceilings"] = measure_ceilings(device)
        print("ceilings:", json.dumps(result["ceilings"]), flush=True)
        if args.ceilings_only:
            print("RESULT " + json.dumps(result))
            return 0
    if not args.workload:
        ap.error("--workload is required")

    clips = read_manifest(args.workload)
    if args.max_clips:
        clips = clips[:args.max_clips]
    if args.order == "duration":
        clips.sort(key=lambda c: (-c["samples"], c["id"]))
    audio_s = sum(c["samples"] for c in clips) / SAMPLE_RATE
    processed_s = sum(min(c["samples"], WINDOW_SAMPLES) for c in clips) / SAMPLE_RATE

    config = make_config(args.tiny)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    with torch.device(device):  # initialise on the device: large-v3 on the CPU takes a minute
        model = WhisperForConditionalGeneration._from_config(
            config, attn_implementation="sdpa", dtype=dtype)
    model.eval()
    model.generation_config = make_generation_config()
    sync()
    init_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {'tiny' if args.tiny else 'large-v3'} {params / 1e6:.1f} M parameters, {result['dtype']}, "
          f"sdpa, on {gpu} ({init_s:.1f} s to build)", flush=True)
    if args.save_weights:
        model.save_pretrained(args.save_weights)
        print(f"weights saved to {args.save_weights}", flush=True)

    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=SAMPLE_RATE, hop_length=160,
                                 chunk_length=30, n_fft=400)
    forced = ForcedLengths(EOT)
    enc_timer = EncoderTimer(model.model.encoder, sync)
    batch_sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    deadline = t_begin + args.budget_s if args.budget_s else None
    result.update({
        "model": "tiny(large-v3 layout)" if args.tiny else "large-v3", "weights": f"random(seed {args.seed})",
        "parameters": params, "attention": "sdpa", "decoding": "greedy, no timestamps, forced lengths",
        "order": args.order, "features_device": args.features_device,
        "workload": os.path.abspath(args.workload), "clips": len(clips),
        "audio_seconds": round(audio_s, 3), "processed_seconds": round(processed_s, 3),
        "decoder_steps": sum(c["tokens"] + 1 for c in clips), "model_build_s": round(init_s, 3),
    })
    sweep = []
    best = None
    last_rate = None  # wall seconds per clip of the previous batch size
    for bs in batch_sizes:
        entry = {"batch_size": bs}
        sweep.append(entry)
        if deadline and time.perf_counter() > deadline:
            entry["skipped"] = "--budget-s already reached"
            print(f"batch {bs}: skipped ({entry['skipped']})", flush=True)
            continue
        if deadline and last_rate is not None:
            # A later size can be slower than the last one: 1.3x margin on the estimate.
            eta = time.perf_counter() - t_begin + 1.3 * last_rate * (len(clips) + bs)
            if eta > args.budget_s:
                entry["skipped"] = f"would end near {eta:.0f} s, past --budget-s {args.budget_s:.0f}"
                print(f"batch {bs}: skipped ({entry['skipped']})", flush=True)
                continue
        try:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            tw = time.perf_counter()
            # Warm-up: the first batch (the longest clips), lengths capped, untimed.
            run_batches(model, fe, clips[:bs], bs, args, forced, enc_timer, sync, device, dtype, limit=8)
            entry["warmup_s"] = round(time.perf_counter() - tw, 3)
            wall, times, tokens, bad, ran = run_batches(model, fe, clips, bs, args, forced, enc_timer,
                                                        sync, device, dtype, deadline=deadline)
        except torch.cuda.OutOfMemoryError as e:
            entry["error"] = "out of memory: " + str(e).split("\n")[0][:200]
            print(f"batch {bs}: {entry['error']}", flush=True)
            continue
        if ran < len(clips):
            entry["stopped"] = f"--budget-s reached after {ran} of {len(clips)} clips (longest first)"
            entry["wall_s"] = round(wall, 3)
            print(f"batch {bs}: {entry['stopped']}", flush=True)
            continue
        last_rate = wall / len(clips)
        entry.update({
            "wall_s": round(wall, 3), "rtfx": round(audio_s / wall, 2),
            "time_s": {k: round(v, 3) for k, v in times.items()},
            "tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
            "forced_length_mismatches": bad,
            "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        })
        print(f"batch {bs}: {wall:.2f} s, RTFx {entry['rtfx']:.1f}, audio {times['audio']:.2f} s, "
              f"features {times['features']:.2f} s, encoder {times['encoder']:.2f} s, "
              f"decoder {times['decoder']:.2f} s, {tokens} tokens, "
              f"peak {0 if not cuda else entry['peak_gpu_memory_bytes'] / 2**30:.1f} GiB, "
              f"length mismatches {bad}", flush=True)
        if best is None or entry["rtfx"] > best["rtfx"]:
            best = entry
            result.update({k: best[k] for k in ("batch_size", "wall_s", "rtfx", "time_s", "tokens",
                                                 "tokens_per_s", "forced_length_mismatches",
                                                 "peak_gpu_memory_bytes")})
        # Written after every batch size, so a run killed later still leaves its best so far.
        result["sweep"] = sweep
        result["total_s"] = round(time.perf_counter() - t_begin, 3)
        write_json(args.json, result)

    result["sweep"] = sweep
    result["total_s"] = round(time.perf_counter() - t_begin, 3)
    write_json(args.json, result)
    print("RESULT " + json.dumps(result))
    if not best:
        print("no batch size completed", file=sys.stderr)
        return 1
    if best["forced_length_mismatches"]:
        print(f"{best['forced_length_mismatches']} clips did not decode their forced length",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
