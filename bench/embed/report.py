#!/usr/bin/env python3
"""The table of one embedding benchmark run: flurry's tokens/s and passages/s per model shape, the
sentence-transformers peer at its best batch size (end-to-end encode and model-only forward), the
ratios, flurry's GPU time per stage, and the projected time of the 9.6M-passage job on one GPU.

    python3 bench/embed/report.py --flurry out/flurry.jsonl --peer out/peer.jsonl [--meta gpu=...]

Called by bench/embed/run_bench.sh; standard library only. Lines that are not JSON objects are ignored.
"""

import argparse
import json
import os

JOB_PASSAGES = 9.6e6
TARGETS = {"minilm": dict(tokens_per_s=10e6, ratio=5.0, job_s=300.0), "base": dict(tokens_per_s=2e6)}


def load(path):
    out = []
    if not path or not os.path.isfile(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def fmt_rate(v):
    return "-" if not v else ("%.2fM" % (v / 1e6) if v >= 1e6 else "%.0f" % v)


def fmt_time(s):
    if not s:
        return "-"
    return "%.1f min" % (s / 60) if s >= 60 else "%.0f s" % s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flurry")
    ap.add_argument("--peer")
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--summary-json")
    args = ap.parse_args()
    flurry = {r["model"]: r for r in load(args.flurry) if r.get("framework") == "flurry"}
    peer = [r for r in load(args.peer) if r.get("framework") == "sentence-transformers"]
    lines = []
    say = lines.append
    for m in args.meta:
        k, _, v = m.partition("=")
        say("%-8s %s" % (k + ":", v))
    summary = {"models": {}}
    for name in sorted(set(flurry) | {p["model"] for p in peer}):
        f = flurry.get(name)
        rows = [p for p in peer if p["model"] == name]
        best_enc = max(rows, key=lambda p: p["encode_passages_per_s"], default=None)
        best_fwd = max(rows, key=lambda p: p["forward_passages_per_s"], default=None)
        say("")
        say("== %s ==" % name)
        if f:
            say("flurry          %s tokens/s  %s passages/s  (%d passages, mean %.1f tokens, %s, budget %d tokens)"
                % (fmt_rate(f["tokens_per_s"]), fmt_rate(f["passages_per_s"]), f["passages"], f["mean_len"],
                   f["dtype"], f["max_tokens"]))
            st = f.get("stage_ms", {})
            total = sum(st.values()) or 1.0
            say("  GPU ms/stage   " + "  ".join("%s %.1f (%.0f%%)" % (k, v, 100 * v / total) for k, v in st.items()))
        else:
            say("flurry          (no result)")
        for label, b, key in (("st encode", best_enc, "encode"), ("st forward", best_fwd, "forward")):
            if b:
                say("%-15s %s tokens/s  %s passages/s  (best batch size %d of %d tried)"
                    % (label, fmt_rate(b[key + "_tokens_per_s"]), fmt_rate(b[key + "_passages_per_s"]),
                       b["batch_size"], len(rows)))
        m = {"flurry": f}
        if f and best_enc:
            r = f["passages_per_s"] / best_enc["encode_passages_per_s"]
            say("ratio           %.2fx sentence-transformers encode (its best batch size)" % r)
            m["ratio_encode"] = r
        if f and best_fwd:
            r = f["passages_per_s"] / best_fwd["forward_passages_per_s"]
            say("                %.2fx sentence-transformers model-only forward" % r)
            m["ratio_forward"] = r
        if f:
            job = JOB_PASSAGES / f["passages_per_s"]
            say("9.6M passages   %s of GPU time on one GPU at this length distribution (flurry)" % fmt_time(job))
            m["job_s"] = job
            if best_enc:
                say("                %s with sentence-transformers" % fmt_time(JOB_PASSAGES / best_enc["encode_passages_per_s"]))
        t = TARGETS.get(name, {})
        verdicts = []
        if f and "tokens_per_s" in t:
            verdicts.append("tokens/s >= %s: %s" % (fmt_rate(t["tokens_per_s"]), "yes" if f["tokens_per_s"] >= t["tokens_per_s"] else "NO"))
        if "ratio" in t and "ratio_encode" in m:
            verdicts.append(">= %.0fx st: %s" % (t["ratio"], "yes" if m["ratio_encode"] >= t["ratio"] else "NO"))
        if "job_s" in t and "job_s" in m:
            verdicts.append("job <= 5 min: %s" % ("yes" if m["job_s"] <= t["job_s"] else "NO"))
        if verdicts:
            say("targets         " + "; ".join(verdicts))
        summary["models"][name] = m
    print("\n".join(lines))
    if args.summary_json:
        with open(args.summary_json, "w") as fo:
            json.dump(summary, fo, indent=2)


if __name__ == "__main__":
    main()
