#!/usr/bin/env python3
"""Table, ratio and physical limit of one Whisper benchmark run; a draft bench/RESULTS.md entry.

    python3 bench/whisper/report.py --manifest W/manifest.json --peer R/peer.json \
        [--flurry R/flurry.json] [--gemm-csv R/gemm_bench.csv] [--meta date=... --meta gpu=...] \
        [--draft R/RESULTS-entry.md]

Called by bench/whisper/run_bench.sh; standard library only. The arithmetic of the limit is in
bench/whisper/README.md ("Physical limit"); the functions below are that arithmetic.
"""

import argparse
import json
import os
import sys

# Whisper large-v3 shapes.
D, FFN, LAYERS, MELS = 1280, 5120, 32, 128
FRAMES_IN, FRAMES = 3000, 1500  # log-mel frames per 30 s window; encoder positions after conv2
VOCAB = 51866
FP16 = 2


def encoder_flops_per_window():
    """Multiply-adds x 2 of the encoder stack for one 30 s window (conv front end + 32 layers)."""
    conv1 = 2 * FRAMES_IN * D * MELS * 3
    conv2 = 2 * FRAMES * D * D * 3
    linear = 2 * FRAMES * D * (3 * D + D + 2 * FFN)   # QKV, output projection, fc1, fc2
    attention = 2 * 2 * FRAMES * FRAMES * D           # Q K^T and P V over all heads
    return conv1 + conv2 + LAYERS * (linear + attention)


def cross_kv_flops_per_window():
    """The decoder's cross-attention K and V projections of the encoder output, once per window."""
    return LAYERS * 2 * (2 * FRAMES * D * D)


def cross_kv_bytes_per_step():
    """Bytes of cross-attention K and V one sequence reads per decoder step (fp16, all layers)."""
    return LAYERS * 2 * FRAMES * D * FP16


def limit(windows, steps, audio_s, gemm_tflops, copy_gbps):
    """Seconds and RTFx if the encoder side ran at the GEMM ceiling and the decoder's cross-
    attention reads at the copy bandwidth, one after the other (no overlap)."""
    flops = windows * (encoder_flops_per_window() + cross_kv_flops_per_window())
    t_enc = flops / (gemm_tflops * 1e12)
    t_dec = steps * cross_kv_bytes_per_step() / (copy_gbps * 1e9)
    return {"encoder_s": t_enc, "decoder_s": t_dec, "total_s": t_enc + t_dec,
            "rtfx": audio_s / (t_enc + t_dec), "flops": flops,
            "bytes": steps * cross_kv_bytes_per_step()}


def load(path):
    if not path or not os.path.isfile(path):
        return None
    with open(path) as f:
        text = f.read().strip()
    try:
        return json.loads(text)
    except ValueError:
        # A log: take the last line that parses as a JSON object (RESULT-prefixed or bare).
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith("RESULT "):
                line = line[len("RESULT "):]
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
    return None


def gemm_ceiling(path):
    """Best plain-cuBLASLt f16 TFLOP/s over gemm_bench's Whisper encoder rows, or None."""
    if not path or not os.path.isfile(path):
        return None
    rows = [l.strip().split(",") for l in open(path) if l.strip() and not l.startswith("#")]
    if not rows:
        return None
    head = rows[0]
    try:
        ci, di, pi = head.index("case"), head.index("dtype"), head.index("plain TFLOP/s")
    except ValueError:
        return None
    vals = [float(r[pi]) for r in rows[1:] if len(r) > pi and r[ci].startswith("whisper-l3-enc")
            and r[di] in ("f16", "float16", "F16")]
    return max(vals) if vals else None


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}"
    return f"{v:,.{nd}f}"


def derived(r, windows, steps):
    """Rates from a result's stage times, computed the same way for both sides."""
    if not r or "wall_s" not in r or "tiny" in str(r.get("model", "")):
        return {}  # rates are in large-v3 FLOPs and bytes
    windows, steps = r.get("clips", windows), r.get("decoder_steps", steps)
    t = r.get("time_s") or {}
    enc, dec = t.get("encoder"), t.get("decoder")
    out = {
        "encoder_tflops": r.get("encoder_tflops") or
        (windows * encoder_flops_per_window() / enc / 1e12 if enc else None),
        "decoder_gbps": r.get("decoder_gbps") or
        (steps * cross_kv_bytes_per_step() / dec / 1e9 if dec else None),
    }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", required=True, help="manifest.json of the workload")
    ap.add_argument("--peer", help="the peer's JSON (or its log)")
    ap.add_argument("--flurry", help="whisper_bench's JSON line (or its log): the product pipeline, or the "
                    "engine when the pipeline could not run")
    ap.add_argument("--engine", help="whisper_bench's JSON line for the token-level scheduler alone, when "
                    "--flurry is the product pipeline")
    ap.add_argument("--capped", help="whisper_bench's JSON line for the product under --max-gpu-memory")
    ap.add_argument("--gemm-csv", help="gemm_bench --csv output")
    ap.add_argument("--meta", action="append", default=[], help="key=value for the entry header")
    ap.add_argument("--draft", help="append the draft RESULTS.md entry here")
    ap.add_argument("--json", help="write the combined summary here")
    args = ap.parse_args()

    with open(args.manifest) as f:
        wl = json.load(f)["stats"]
    windows, steps, audio_s = wl["clips"], wl["decoder_steps"], wl["audio_seconds"]
    peer, fl, eng, cap = load(args.peer), load(args.flurry), load(args.engine), load(args.capped)
    meta = dict(kv.split("=", 1) for kv in args.meta)

    ceil = dict((peer or {}).get("ceilings") or {})
    if fl and fl.get("ceilings"):
        ceil.update({"flurry_" + k: v for k, v in fl["ceilings"].items()})
    g = gemm_ceiling(args.gemm_csv)
    if g:
        ceil["gemm_bench_f16_whisper_enc_tflops"] = g
    gemm = g or ceil.get("gemm_enc_fc1_b8_tflops") or ceil.get("flurry_gemm_tflops")
    copy = ceil.get("flurry_copy_gbps") or ceil.get("copy_gbps")

    lines = []

    def out(s=""):
        lines.append(s)
        print(s)

    out(f"workload: {windows} clips, {audio_s:,.1f} s of audio, {wl['tokens_total']:,} forced text "
        f"tokens, {steps:,} decoder steps (mean {wl['seconds_mean']:.2f} s, {wl['tokens_mean']:.1f} tokens)")
    dp, df = derived(peer, windows, steps), derived(fl, windows, steps)
    rows = [("RTFx", "rtfx", 1), ("wall s", "wall_s", 2), ("batch size", "batch_size", 0),
            ("tokens/s", "tokens_per_s", 0)]
    width = 34
    out(f"{'':{width}} {'flurry':>12} {'HF peer':>12} {'flurry/HF':>10}")

    def row(name, a, b, ratio=True, nd=1):
        r = (a / b) if (ratio and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b) else None
        out(f"{name:{width}} {fmt(a, nd):>12} {fmt(b, nd):>12} {fmt(r, 2) if r else '':>10}")

    for name, key, nd in rows:
        row(name, (fl or {}).get(key), (peer or {}).get(key), ratio=key in ("rtfx", "tokens_per_s"), nd=nd)
    for stage in ("audio", "mel", "features", "encoder", "decoder", "generate"):
        a = ((fl or {}).get("time_s") or {}).get(stage)
        b = ((peer or {}).get("time_s") or {}).get(stage)
        if a is not None or b is not None:
            row(f"  {stage} s", a, b, ratio=False, nd=2)
    row("encoder TFLOP/s (stack only)", df.get("encoder_tflops"), dp.get("encoder_tflops"), ratio=False)
    row("decoder cross-KV GB/s (effective)", df.get("decoder_gbps"), dp.get("decoder_gbps"), ratio=False)
    gib = lambda r: (r or {}).get("peak_gpu_memory_bytes") and r["peak_gpu_memory_bytes"] / 2**30
    row("peak GPU memory GiB", gib(fl), gib(peer), ratio=False)
    row("forced-length mismatches", (fl or {}).get("forced_length_mismatches"),
        (peer or {}).get("forced_length_mismatches"), ratio=False, nd=0)
    if peer and peer.get("sweep"):
        out("HF sweep: " + ", ".join(
            f"bs {e['batch_size']}: " + (f"RTFx {e['rtfx']:.1f}" if "rtfx" in e else
                                         e.get("error") or e.get("skipped", "?"))
            for e in peer["sweep"]))
    if not fl:
        out("flurry: no result (whisper_bench missing or failed; see run.log and flurry.log)")
    if fl:
        out(f"flurry row: {'the product pipeline (--pipeline)' if fl.get('schedule') == 'pipeline' else 'the engine (token-level scheduler)'}")
    if eng and eng.get("rtfx"):
        out(f"engine (token-level scheduler, same workload): RTFx {eng['rtfx']:.1f}, wall {eng['wall_s']:.2f} s, "
            f"batch {eng.get('batch_size')}, forced-length mismatches {eng.get('forced_length_mismatches')}")
        if fl and fl.get("rtfx") and fl.get("schedule") == "pipeline":
            out(f"product / engine: {fl['rtfx'] / eng['rtfx']:.2f} (target >= 0.90)")
    if cap and cap.get("rtfx"):
        gib = (cap.get("max_gpu_memory_bytes") or 0) / 2**30
        peak = (cap.get("peak_gpu_memory_bytes") or 0) / 2**30
        out(f"product under --max-gpu-memory {gib:.0f} GiB: RTFx {cap['rtfx']:.1f}, batch {cap.get('batch_size')}, "
            f"peak {peak:.1f} GiB, forced-length mismatches {cap.get('forced_length_mismatches')}")
        if fl and fl.get("rtfx"):
            out(f"capped / full memory: {cap['rtfx'] / fl['rtfx']:.2f} (target >= 0.60)")

    out("ceilings (same run): " + (", ".join(f"{k} {v}" for k, v in ceil.items() if k != "how") or "none"))
    summary = {"meta": meta, "workload": wl, "peer": peer, "flurry": fl, "engine": eng, "capped": cap, "ceilings": ceil}
    if gemm and copy:
        lim = limit(windows, steps, audio_s, gemm, copy)
        summary["limit"] = lim
        out(f"physical limit at {gemm:.0f} TFLOP/s and {copy:.0f} GB/s: encoder side "
            f"{lim['flops'] / 1e15:.2f} PFLOP -> {lim['encoder_s']:.2f} s, cross-KV reads "
            f"{lim['bytes'] / 1e12:.2f} TB -> {lim['decoder_s']:.2f} s; RTFx <= {lim['rtfx']:,.0f}")
        for name, r in (("flurry", fl), ("HF peer", peer)):
            if r and r.get("rtfx"):
                out(f"  {name} at {100 * r['rtfx'] / lim['rtfx']:.1f}% of the limit")
    for name, r in (("flurry", fl), ("HF peer", peer)):
        if r and r.get("clips") not in (None, windows):
            out(f"warning: {name} ran {r['clips']} clips, the workload has {windows}: not comparable")
    if fl and peer and fl.get("rtfx") and peer.get("rtfx"):
        summary["ratio"] = fl["rtfx"] / peer["rtfx"]
        out(f"flurry / HF: {summary['ratio']:.2f}x (target >= 5x; RTFx target >= 1,000)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if args.draft:
        with open(args.draft, "a") as f:
            f.write("\n## whisper_bench (large-v3, random fp16 weights, forced lengths)\n\n```\n")
            for k in ("date", "gpu", "commit", "command"):
                f.write(f"{k + ':':8} {meta.get(k, '')}\n")
            f.write("\n".join(lines) + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
