#!/usr/bin/env python3
"""The PyTorch peer of the DLRM benchmark (bench/dlrm/README.md): the models of dlrm_bench in plain
PyTorch, timed the way a user would run them for batch inference.

    python3 bench/peers/torch_dlrm_peer.py [--models terabyte,seed] [--batch-sizes 4096,16384,65536]
        [--modes eager,compile] [--budget-s S] [--compile-budget-s S] [--json-out F] [--quick]

- Models as models/dlrm/config.h defines them (the shapes dlrm_bench builds, the same row caps):
  one nn.EmbeddingBag(mode="sum") per table (the seed: one shared table pooled by one bag of nine
  features), bottom MLP with ReLU after every layer, the interaction (dot over strict_lower pairs
  with the bottom output first; the seed's outer product over upper_with_diag pairs; DCNv2 low-rank
  cross layers x_{l+1} = x0 * (W (V x_l) + b) + x_l), top MLP with ReLU after all but the logit.
  Random weights, built directly on the GPU in fp16 (no checkpoint: the values do not change the
  work).
- Batches as dlrm_bench draws them: dense uniform [0, 1) fp32, bag b holds hotness[b] indices per
  sample, each a Zipf(alpha) rank mapped to a row by (rank - 1) * 2654435761 mod rows, bag-major
  CSR with int32 offsets. Same distribution and sizes, not the same bits (a torch generator here).
- Per batch, timed on the host clock: the host tensors (pinned) copied to the GPU, the per-bag
  offsets rebased there, forward, the logits copied back to the host (which waits for the GPU).
  This is what flurry's forward() includes (H2D of the inputs, D2H of the logits).
- eager, and torch.compile (dynamic=False: one graph per batch size) when --modes has it, within
  --compile-budget-s (a compile that would overrun it is skipped, one that runs past it is
  interrupted and recorded).

One JSON object per (model, batch size, mode) on stdout, and appended to --json-out.
"""

import argparse
import json
import math
import os
import signal
import sys
import time

import torch
from torch import nn

# MLPerf DLRM Terabyte (Criteo 1TB, --max-ind-range=40000000), C1..C26.
TERABYTE_ROWS = [39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10, 2208,
                 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36]
# MLPerf DLRM-v2 (DCNv2, multi-hot Criteo 1TB): rows and indices per sample.
V2_ROWS = [40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10, 2209, 11938, 155,
           4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36]
V2_HOTNESS = [3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1]
ROW_PRIME = 2654435761  # a prime larger than any table: rank -> row is a bijection of [0, rows)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- models ---------------------------------------------------------------------------------------

def row_cap(rows, max_rows, budget_bytes, bytes_per_row):
    """The largest cap <= max_rows whose tables, each min(rows, cap), fit budget_bytes (dlrm_bench's rule)."""
    def fits(cap):
        return sum(min(r, cap) for r in rows) * bytes_per_row <= budget_bytes
    if fits(max_rows):
        return max_rows
    lo, hi = 1, max_rows
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def model_spec(name, max_rows, budget_bytes):
    """The shapes of dlrm_bench's model `name`: dict with tables, bag->table, hotness, MLPs, interaction."""
    if name in ("terabyte", "dcnv2"):
        full = TERABYTE_ROWS if name == "terabyte" else V2_ROWS
        cap = row_cap(full, max_rows, budget_bytes, 128 * 2)
        spec = {"name": name, "dense": 13, "dim": 128, "tables": [min(r, cap) for r in full],
                "bag_table": list(range(26)), "bottom": [512, 256, 128], "top": [1024, 1024, 512, 256, 1],
                "row_cap": cap, "full_rows": sum(full)}
        if name == "terabyte":
            spec.update(interaction="dot", hotness=[1] * 26)
        else:
            spec.update(interaction="dcnv2", hotness=list(V2_HOTNESS), layers=3, rank=512)
        return spec
    if name == "seed":
        return {"name": name, "dense": 5, "dim": 128, "tables": [142], "bag_table": [0], "hotness": [9],
                "bottom": [256, 128], "top": [128, 128, 1], "interaction": "outer", "row_cap": 142, "full_rows": 142}
    raise SystemExit("torch_dlrm_peer: unknown model %r (terabyte, seed, dcnv2)" % name)


def mlp(widths, n_in, final_relu, device, dtype):
    layers = []
    for i, w in enumerate(widths):
        layers.append(nn.Linear(n_in, w, device=device, dtype=dtype))
        if i + 1 < len(widths) or final_relu:
            layers.append(nn.ReLU())
        n_in = w
    return nn.Sequential(*layers)


class CrossLayer(nn.Module):
    """TorchRec's LowRankCrossNet layer: x0 * (W (V x) + b) + x."""

    def __init__(self, width, rank, device, dtype):
        super().__init__()
        self.V = nn.Linear(width, rank, bias=False, device=device, dtype=dtype)
        self.W = nn.Linear(rank, width, bias=True, device=device, dtype=dtype)

    def forward(self, x0, x):
        return x0 * self.W(self.V(x)) + x


class DLRM(nn.Module):
    def __init__(self, spec, device, dtype):
        super().__init__()
        d = spec["dim"]
        self.embs = nn.ModuleList()
        for rows in spec["tables"]:
            e = nn.EmbeddingBag(rows, d, mode="sum", device=device, dtype=dtype)
            with torch.no_grad():
                r = max(1.0 / math.sqrt(rows), 0.01)
                e.weight.uniform_(-r, r)
            self.embs.append(e)
        self.bag_table = list(spec["bag_table"])
        self.bottom = mlp(spec["bottom"], spec["dense"], True, device, dtype)
        self.kind = spec["interaction"]
        bags = len(self.bag_table)
        n = 1 + bags
        if self.kind == "dot":
            li, lj = torch.tril_indices(n, n, offset=-1, device=device)  # (1,0), (2,0), (2,1), ...: row by row
            self.register_buffer("li", li, persistent=False)
            self.register_buffer("lj", lj, persistent=False)
            top_in = d + n * (n - 1) // 2
        elif self.kind == "outer":
            z = d * n
            iu, ju = torch.triu_indices(z, z, device=device)  # (0,0), (0,1), ..., (1,1), ...: row by row
            self.register_buffer("iu", iu, persistent=False)
            self.register_buffer("ju", ju, persistent=False)
            top_in = d + z * (z + 1) // 2
        elif self.kind == "dcnv2":
            width = d * n
            self.cross = nn.ModuleList(CrossLayer(width, spec["rank"], device, dtype) for _ in range(spec["layers"]))
            top_in = width
        else:
            raise ValueError(self.kind)
        self.top = mlp(spec["top"], top_in, False, device, dtype)

    def forward(self, dense, indices, offsets, bounds):
        """dense [B, num_dense]; indices the batch's CSR indices; offsets [bags, B] per-bag start
        positions rebased to each bag's first index; bounds: python ints, bag b's indices are
        indices[bounds[b]:bounds[b + 1]]."""
        x = self.bottom(dense)
        pooled = [self.embs[t](indices[bounds[b]:bounds[b + 1]], offsets[b]) for b, t in enumerate(self.bag_table)]
        if self.kind == "dot":
            t = torch.cat([x] + pooled, dim=1).view(x.shape[0], -1, x.shape[1])
            z = torch.bmm(t, t.transpose(1, 2))
            top_in = torch.cat([x, z[:, self.li, self.lj]], dim=1)
        elif self.kind == "outer":
            z = torch.cat([x] + pooled, dim=1)
            top_in = torch.cat([x, (z.unsqueeze(2) * z.unsqueeze(1))[:, self.iu, self.ju]], dim=1)
        else:
            x0 = torch.cat([x] + pooled, dim=1)
            top_in = x0
            for layer in self.cross:
                top_in = layer(x0, top_in)
        return self.top(top_in).squeeze(1)


def flops_per_sample(spec):
    """Multiply-adds x 2 of the MLPs and cross layers plus the interaction's products (as dlrm_bench)."""
    f, n_in = 0, spec["dense"]
    for w in spec["bottom"]:
        f += 2 * n_in * w
        n_in = w
    d, n = spec["dim"], 1 + len(spec["bag_table"])
    if spec["interaction"] == "dot":
        f += 2 * (n * (n - 1) // 2) * d
        n_in = d + n * (n - 1) // 2
    elif spec["interaction"] == "outer":
        f += (d * n) * (d * n + 1) // 2
        n_in = d + (d * n) * (d * n + 1) // 2
    else:
        f += spec["layers"] * 2 * 2 * (d * n) * spec["rank"]
        n_in = d * n
    for w in spec["top"]:
        f += 2 * n_in * w
        n_in = w
    return float(f)


# ---- workload -------------------------------------------------------------------------------------

class Zipf:
    """Ranks 1..n with P(k) ~ k^-s by rejection-inversion (Hörmann and Derflinger 1996), vectorised;
    the same sampler dlrm_bench uses, on a torch generator."""

    def __init__(self, n, s):
        self.n, self.s = n, s
        self.h_x1 = self._h_int_scalar(1.5) - 1.0
        self.h_n = self._h_int_scalar(n + 0.5)
        self.sq = 2.0 - self._h_int_inv_scalar(self._h_int_scalar(2.5) - 2.0 ** -s)

    @staticmethod
    def _helper1_scalar(x):
        return math.log1p(x) / x if abs(x) > 1e-8 else 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))

    @staticmethod
    def _helper2_scalar(x):
        return math.expm1(x) / x if abs(x) > 1e-8 else 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))

    def _h_int_scalar(self, x):
        lx = math.log(x)
        return self._helper2_scalar((1.0 - self.s) * lx) * lx

    def _h_int_inv_scalar(self, x):
        t = max(x * (1.0 - self.s), -1.0)
        return math.exp(self._helper1_scalar(t) * x)

    @staticmethod
    def _helper1(x):
        small = x.abs() <= 1e-8
        safe = torch.where(small, torch.ones_like(x), x)
        return torch.where(small, 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x)), torch.log1p(safe) / safe)

    @staticmethod
    def _helper2(x):
        small = x.abs() <= 1e-8
        safe = torch.where(small, torch.ones_like(x), x)
        return torch.where(small, 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x)), torch.expm1(safe) / safe)

    def _h_int(self, x):
        lx = torch.log(x)
        return self._helper2((1.0 - self.s) * lx) * lx

    def _h_int_inv(self, x):
        t = torch.clamp(x * (1.0 - self.s), min=-1.0)
        return torch.exp(self._helper1(t) * x)

    def sample(self, count, gen):
        out = torch.ones(count, dtype=torch.int64)
        if self.n <= 1 or count == 0:
            return out
        todo = torch.arange(count)
        while todo.numel() > 0:
            v = self.h_n + torch.rand(todo.numel(), generator=gen, dtype=torch.float64) * (self.h_x1 - self.h_n)
            x = self._h_int_inv(v)
            k = torch.clamp(torch.floor(x + 0.5), 1, self.n)
            accept = (k - x <= self.sq) | (v >= self._h_int(k + 0.5) - torch.exp(-self.s * torch.log(k)))
            out[todo[accept]] = k[accept].to(torch.int64)
            todo = todo[~accept]
        return out


def make_batch(spec, n, alpha, seed, pin):
    """dense [n, num_dense] fp32, indices int32 (bag-major), offsets [bags * n + 1] int32: features.h."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(n, spec["dense"], generator=gen, dtype=torch.float32)
    parts, offs, pos = [], [], 0
    for b, t in enumerate(spec["bag_table"]):
        rows, h = spec["tables"][t], spec["hotness"][b]
        ranks = Zipf(rows, alpha).sample(n * h, gen)
        parts.append(((ranks - 1) * ROW_PRIME % rows).to(torch.int32))
        offs.append(torch.arange(n, dtype=torch.int64) * h + pos)
        pos += n * h
    offsets = torch.cat(offs + [torch.tensor([pos])]).to(torch.int32)
    indices = torch.cat(parts)
    if pin:
        dense, indices, offsets = dense.pin_memory(), indices.pin_memory(), offsets.pin_memory()
    return {"n": n, "dense": dense, "indices": indices, "offsets": offsets}


def run_batch(fn, batch, bags, device, dtype):
    """One timed step: H2D of the host batch, offsets rebased per bag, forward, logits to the host."""
    n = batch["n"]
    host_off = batch["offsets"]
    bounds = tuple(host_off[0:bags * n + 1:n].tolist())  # each bag's first index, then the end
    dense = batch["dense"].to(device, non_blocking=True).to(dtype)
    indices = batch["indices"].to(device, non_blocking=True)
    offsets = host_off.to(device, non_blocking=True)
    rel = offsets[:bags * n].view(bags, n) - offsets[0:bags * n:n].view(bags, 1)
    logits = fn(dense, indices, rel, bounds)
    return logits.float().cpu()


# ---- timing ---------------------------------------------------------------------------------------

class CompileTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CompileTimeout()


def time_mode(fn, pool, spec, args, device, dtype, deadline):
    """Warm-up, then timed batches until min-iters and min-time are both reached (or the deadline)."""
    bags = len(spec["bag_table"])
    for i in range(args.warmup):
        run_batch(fn, pool[i % len(pool)], bags, device, dtype)
    times, t0, i = [], time.perf_counter(), 0
    while len(times) < args.max_iters:
        now = time.perf_counter()
        if len(times) >= args.min_iters and (now - t0 >= args.min_time_s or now >= deadline):
            break
        t = time.perf_counter()
        run_batch(fn, pool[i % len(pool)], bags, device, dtype)
        times.append((time.perf_counter() - t) * 1e3)
        i += 1
    wall = time.perf_counter() - t0
    srt = sorted(times)
    return {"batches": len(times), "wall_s": wall, "ms_per_batch": srt[len(srt) // 2],
            "ms_per_batch_mean": sum(times) / len(times), "ms_per_batch_min": srt[0], "ms_per_batch_max": srt[-1],
            "pairs_per_s": len(times) * pool[0]["n"] / wall}


def emit(rec, args):
    line = json.dumps(rec)
    print(line, flush=True)
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(line + "\n")


def run_model(name, args, device, dtype, device_name, state):
    spec = model_spec(name, args.max_rows, args.table_budget_gb * 1e9)
    rows_total = sum(spec["tables"])
    log("[%s] %d tables, %.1f M rows (cap %d), %.2f GB of tables; %s interaction"
        % (name, len(spec["tables"]), rows_total / 1e6, spec["row_cap"],
           rows_total * spec["dim"] * torch.tensor([], dtype=dtype).element_size() / 1e9, spec["interaction"]))
    t = time.perf_counter()
    torch.manual_seed(args.seed)
    model = DLRM(spec, device, dtype).eval()
    if device.type == "cuda":
        torch.cuda.synchronize()
    build_s = time.perf_counter() - t
    base = {"model": name, "dtype": str(dtype).replace("torch.", ""), "device": device_name,
            "torch": torch.__version__, "zipf_alpha": args.alpha, "seed": args.seed, "pool": args.pool,
            "tables": len(spec["tables"]), "bags": len(spec["bag_table"]), "table_rows_total": rows_total,
            "table_rows_uncapped": spec["full_rows"], "row_cap": spec["row_cap"],
            "indices_per_sample": sum(spec["hotness"]), "interaction": spec["interaction"],
            "flops_per_sample": flops_per_sample(spec),
            "timed": "host clock per batch: H2D of pinned inputs, offsets rebased, forward, D2H of logits"}
    compiled = None
    for n in args.batch_sizes:
        t = time.perf_counter()
        pool = [make_batch(spec, n, args.alpha, args.seed * 1000003 + n * 131 + p, device.type == "cuda")
                for p in range(args.pool)]
        workload_s = time.perf_counter() - t
        for mode in args.modes:
            rec = dict(base, framework="torch-" + mode, variant=mode, batch=n,
                       indices_per_batch=int(pool[0]["indices"].numel()), workload_s=workload_s,
                       setup_s={"build_s": build_s})
            left = state["deadline"] - time.perf_counter()
            if left < 5:
                emit(dict(rec, skipped="out of time (--budget-s)"), args)
                continue
            try:
                with torch.inference_mode():
                    if mode == "eager":
                        res = time_mode(model, pool, spec, args, device, dtype, state["deadline"])
                    else:
                        if state["compile_broken"]:
                            emit(dict(rec, skipped="torch.compile disabled after an earlier timeout/failure"), args)
                            continue
                        if compiled is None:
                            compiled = torch.compile(model, dynamic=False, mode=args.compile_mode)
                        compile_left = min(args.compile_budget_s - state["compile_spent"],
                                           state["deadline"] - time.perf_counter())
                        guess = state["last_compile_s"] * 1.2 if state["last_compile_s"] else 0
                        if compile_left < max(guess, 10):
                            emit(dict(rec, skipped="compile budget (%.0f s left, last compile %.0f s)"
                                      % (compile_left, state["last_compile_s"] or 0)), args)
                            continue
                        signal.signal(signal.SIGALRM, _alarm)
                        signal.alarm(max(1, int(compile_left)))
                        try:
                            t = time.perf_counter()
                            run_batch(compiled, pool[0], len(spec["bag_table"]), device, dtype)  # compiles
                            compile_s = time.perf_counter() - t
                        finally:
                            signal.alarm(0)
                            state["compile_spent"] += time.perf_counter() - t
                        state["last_compile_s"] = compile_s
                        rec["setup_s"]["compile_s"] = compile_s
                        rec["compile_mode"] = args.compile_mode
                        res = time_mode(compiled, pool, spec, args, device, dtype, state["deadline"])
            except CompileTimeout:
                state["compile_broken"] = True
                emit(dict(rec, skipped="torch.compile still compiling at the compile budget"), args)
                continue
            except torch.cuda.OutOfMemoryError as e:
                torch.cuda.empty_cache()
                emit(dict(rec, skipped="out of memory: %s" % str(e).splitlines()[0]), args)
                continue
            except Exception as e:  # a compile failure must not lose the eager numbers
                if mode != "compile":
                    raise
                state["compile_broken"] = True
                emit(dict(rec, skipped="torch.compile failed: %s: %s" % (type(e).__name__, str(e).splitlines()[0]
                                                                          if str(e) else "")), args)
                continue
            rec.update(res)
            log("[%s] %s batch %d: %.2f M pairs/s, %.3f ms/batch median, %d batches"
                % (name, mode, n, res["pairs_per_s"] / 1e6, res["ms_per_batch"], res["batches"]))
            emit(rec, args)
        del pool
    del model, compiled
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="terabyte,seed", help="comma list of terabyte, seed, dcnv2")
    ap.add_argument("--batch-sizes", default="4096,16384,65536")
    ap.add_argument("--modes", default="eager,compile", help="eager and/or compile")
    ap.add_argument("--max-rows", type=int, default=40000000)
    ap.add_argument("--table-budget-gb", type=float, default=60.0)
    ap.add_argument("--alpha", type=float, default=1.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--min-iters", type=int, default=20)
    ap.add_argument("--min-time-s", type=float, default=2.0)
    ap.add_argument("--max-iters", type=int, default=100000)
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop starting new measurements after this")
    ap.add_argument("--compile-budget-s", type=float, default=240.0, help="total seconds torch.compile may take")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode (default, max-autotune-no-cudagraphs)")
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke test, fp32)")
    ap.add_argument("--json-out", help="append the JSON lines here too")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: --max-rows 20000 --batch-sizes 256,2048 --pool 2 --warmup 1 --min-iters 3 "
                         "--min-time-s 0 (unless given explicitly)")
    args = ap.parse_args()
    if args.quick:
        given = set(a.split("=")[0] for a in sys.argv[1:])
        for flag, value in (("--max-rows", 20000), ("--batch-sizes", "256,2048"), ("--pool", 2), ("--warmup", 1),
                            ("--min-iters", 3), ("--min-time-s", 0.0)):
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
    args.models = [m for m in args.models.split(",") if m]
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b]
    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        if m not in ("eager", "compile"):
            raise SystemExit("torch_dlrm_peer: --modes takes eager and/or compile, not %r" % m)

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("torch_dlrm_peer: torch sees no CUDA device (use --device cpu for a smoke test)")
        dtype, device_name = torch.float16, torch.cuda.get_device_name(device)
    else:
        dtype, device_name = torch.float32, "cpu"
    start = time.perf_counter()
    state = {"deadline": start + args.budget_s, "compile_spent": 0.0, "last_compile_s": None,
             "compile_broken": False}
    log("torch_dlrm_peer: torch %s on %s, %s; models %s; batches %s; modes %s"
        % (torch.__version__, device_name, dtype, args.models, args.batch_sizes, args.modes))
    for name in args.models:
        run_model(name, args, device, dtype, device_name, state)


if __name__ == "__main__":
    main()
