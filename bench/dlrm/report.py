#!/usr/bin/env python3
"""The table of one DLRM benchmark run: pairs/s of flurry, PyTorch eager and torch.compile per model
and batch size, the ratios, and the targets (>= 100 M pairs/s on MLPerf Terabyte, >= 5x the peer).

    python3 bench/dlrm/report.py --flurry out/flurry.jsonl --peer out/peer.jsonl [--meta gpu=...]

Called by bench/dlrm/run_bench.sh; standard library only. Lines that are not JSON objects are
ignored, so logs can be given as they are. README.md in this folder says how to read it.
"""

import argparse
import json
import os
import sys

TARGET_PAIRS = 100e6  # MLPerf Terabyte, one H100
TARGET_RATIO = 5.0


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


def mps(v):
    return "-" if v is None else "%.2f" % (v / 1e6)


def ratio(a, b):
    return "-" if not a or not b else "%.2fx" % (a / b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flurry", help="dlrm_bench's JSON lines")
    ap.add_argument("--peer", help="torch_dlrm_peer.py's JSON lines")
    ap.add_argument("--meta", action="append", default=[], help="key=value printed in the header")
    ap.add_argument("--summary-json", help="also write the rows and the verdicts here")
    args = ap.parse_args()

    flurry = [r for r in load(args.flurry) if r.get("framework") == "flurry" and "pairs_per_s" in r]
    peer = load(args.peer)
    lines = []
    say = lines.append
    for m in args.meta:
        k, _, v = m.partition("=")
        say("%-8s %s" % (k + ":", v))
    if not flurry and not peer:
        say("no results (neither %s nor %s holds a JSON line)" % (args.flurry, args.peer))
        print("\n".join(lines))
        return 1

    models = []
    for r in flurry + peer:
        if r.get("model") and r["model"] not in models:
            models.append(r["model"])
    rows, verdicts = [], {}
    head = ("model", "batch", "flurry M/s", "ms/batch", "eager M/s", "compile M/s", "fl/eager", "fl/compile",
            "flurry TFLOP/s", "H2D GB/s", "stage|gpu|other ms")
    say("")
    say("pairs/s = samples scored per second, each batch timed from host inputs to host logits "
        "(H2D of the inputs and D2H of the logits included, both sides)")
    fmt = "%-9s %7s %11s %9s %10s %12s %9s %11s %15s %9s %20s"
    say(fmt % head)
    for model in models:
        # dlrm_bench prints one row per variant (graphs on/off, outer fusion on/off, forward or
        # pipeline); the table shows the fastest of each batch size, the JSON keeps them all.
        f_by = {}
        for r in flurry:
            if r["model"] == model and (r["batch"] not in f_by or r["pairs_per_s"] > f_by[r["batch"]]["pairs_per_s"]):
                f_by[r["batch"]] = r
        p_by = {}
        for r in peer:
            if r.get("model") == model and "pairs_per_s" in r:
                p_by.setdefault(r["batch"], {})[r.get("variant")] = r
        skipped = [r for r in peer if r.get("model") == model and "skipped" in r]
        for b in sorted(set(f_by) | set(p_by)):
            f, e, c = f_by.get(b), p_by.get(b, {}).get("eager"), p_by.get(b, {}).get("compile")
            fv = f["pairs_per_s"] if f else None
            ev = e["pairs_per_s"] if e else None
            cv = c["pairs_per_s"] if c else None
            tflops = "%.1f" % (fv * f["flops_per_sample"] / 1e12) if f and f.get("flops_per_sample") else "-"
            h2d = "%.1f" % (fv * f["h2d_bytes_per_sample"] / 1e9) if f and f.get("h2d_bytes_per_sample") else "-"
            split = "-"
            if f and f.get("time_ms_per_batch"):
                t = f["time_ms_per_batch"]
                split = "%.2f|%.2f|%.2f" % (t.get("stage", 0), t.get("gpu", 0), t.get("other", 0))
            say(fmt % (model, b, mps(fv), "%.3f" % f["ms_per_batch"] if f else "-", mps(ev), mps(cv), ratio(fv, ev),
                       ratio(fv, cv), tflops, h2d, split))
            rows.append({"model": model, "batch": b, "flurry": fv, "eager": ev, "compile": cv})
        for r in skipped:
            say("  peer %s batch %s: skipped (%s)" % (r.get("variant"), r.get("batch"), r["skipped"]))
        # Same tables on both sides? (the row caps are computed independently)
        f_rows = {r.get("table_rows_total") for r in f_by.values()}
        p_rows = {r.get("table_rows_total") for d in p_by.values() for r in d.values()}
        if f_rows and p_rows and f_rows != p_rows:
            say("  WARNING %s: flurry ran %s table rows, the peer %s: not the same model" % (model, f_rows, p_rows))
        checks = {r.get("check") for r in f_by.values() if r.get("check")}
        if checks:
            say("  %s: CPU reference check %s" % (model, ", ".join(sorted(checks))))

        best_f = max(f_by.values(), key=lambda r: r["pairs_per_s"], default=None)
        peer_all = [r for d in p_by.values() for r in d.values()]
        best_p = max(peer_all, key=lambda r: r["pairs_per_s"], default=None)
        v = {"flurry_best": best_f and best_f["pairs_per_s"], "flurry_best_batch": best_f and best_f["batch"],
             "peer_best": best_p and best_p["pairs_per_s"],
             "peer_best_variant": best_p and best_p.get("variant"), "peer_best_batch": best_p and best_p["batch"]}
        if best_f and best_p:
            v["ratio_best_vs_best"] = best_f["pairs_per_s"] / best_p["pairs_per_s"]
        verdicts[model] = v

    say("")
    say("targets:")
    for model, v in verdicts.items():
        parts = []
        if v["flurry_best"]:
            parts.append("flurry best %s M pairs/s (batch %s)" % (mps(v["flurry_best"]), v["flurry_best_batch"]))
            if model == "terabyte":
                met = v["flurry_best"] >= TARGET_PAIRS
                v["pairs_target_met"] = met
                parts.append("target >= %.0f M: %s" % (TARGET_PAIRS / 1e6, "met" if met else "NOT met"))
        if v.get("ratio_best_vs_best"):
            met = v["ratio_best_vs_best"] >= TARGET_RATIO
            v["ratio_target_met"] = met
            parts.append("vs the peer's best (%s, batch %s, %s M/s): %.2fx, target >= %.0fx: %s"
                         % (v["peer_best_variant"], v["peer_best_batch"], mps(v["peer_best"]),
                            v["ratio_best_vs_best"], TARGET_RATIO, "met" if met else "NOT met"))
        say("  %-9s %s" % (model, "; ".join(parts) if parts else "no result"))
    text = "\n".join(lines)
    print(text)
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump({"meta": dict(m.partition("=")[::2] for m in args.meta), "rows": rows, "verdicts": verdicts},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
