#!/usr/bin/env python3
"""The sentence-transformers peer of the embedding benchmark (bench/embed/run_bench.sh): the shapes of
embed_bench (all-MiniLM-L6-v2, bert-base) as SentenceTransformer(Transformer -> Pooling(mean) ->
Normalize) in fp16 on the GPU, random weights, the same length distribution, a sweep of batch sizes.

    python3 bench/peers/st_embed_peer.py [--models minilm,base] [--passages N]
        [--batch-sizes 32,64,128,256,512] [--budget-s S] [--json-out F] [--quick]

- The model folder is built here: a BertConfig of the shape with random weights (transformers'
  init), a vocab.txt of 30522 entries ([PAD] [UNK] [CLS] [SEP] [MASK] and words w5 .. w30521), so a
  passage of n tokens is n - 2 words drawn from the vocabulary ([CLS]/[SEP] added by the tokenizer).
- Lengths as embed_bench draws them: 45% at the 256-token cap (a longer text, truncated by
  max_seq_length 256), the rest normal(150, 60) clamped to [8, 255].
- Two timings per batch size: "encode" is model.encode(texts, batch_size) as a user runs it
  (tokenization included, length-sorted by sentence-transformers itself); "forward" times only the
  model on pre-tokenized, length-sorted batches already on the GPU (the part flurry's embed_bench
  times: it feeds token ids). The report compares flurry with the best of each.

One JSON object per (model, batch size) on stdout and appended to --json-out.
"""

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time

import torch


def log(msg):
    print(msg, file=sys.stderr, flush=True)


SHAPES = {
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
VOCAB = 30522


def lengths(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.45:
            out.append(300)  # longer than the cap: truncated to 256 by max_seq_length
        else:
            out.append(int(min(255, max(8, round(rng.gauss(150.0, 60.0))))))
    return out


def build_model(name, tmp):
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = BertConfig(vocab_size=VOCAB, max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu",
                     layer_norm_eps=1e-12, **SHAPES[name])
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(d)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]:
            f.write(t + "\n")
        for i in range(5, VOCAB):
            f.write("w%d\n" % i)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}, f)
    tr = models.Transformer(d, max_seq_length=256)
    pool = models.Pooling(tr.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[tr, pool, models.Normalize()], device="cuda")
    model.half()
    model.eval()
    return model


def texts_for(lens, seed):
    rng = random.Random(seed + 1)
    return [" ".join("w%d" % rng.randrange(1000, VOCAB) for _ in range(n - 2)) for n in lens]


def time_encode(model, texts, bs):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.encode(texts, batch_size=bs, convert_to_numpy=True, show_progress_bar=False)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_forward(model, texts, bs):
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    batches = []
    for s in range(0, len(order), bs):
        f = model.tokenize([texts[i] for i in order[s:s + bs]])
        batches.append({k: v.to("cuda", non_blocking=True) for k, v in f.items()})
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for f in batches:
            out = model(f)["sentence_embedding"]
            out.float().cpu()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="minilm,base")
    ap.add_argument("--passages", type=int, default=50000)
    ap.add_argument("--batch-sizes", default="32,64,128,256,512")
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    start = time.time()
    if args.quick:
        args.passages = min(args.passages, 2000)
    if not torch.cuda.is_available():
        log("st_embed_peer: torch sees no CUDA device")
        return 1
    import sentence_transformers
    lens = lengths(args.passages, args.seed)
    tokens = sum(min(n, 256) for n in lens)
    texts = texts_for(lens, args.seed)
    tmp = tempfile.mkdtemp(prefix="st-embed-peer-")
    models = args.models.split(",")
    for mi, name in enumerate(models):
        model = build_model(name, tmp)
        model.encode(texts[:1024], batch_size=128, show_progress_bar=False)  # warm-up
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            left = args.budget_s - (time.time() - start)
            share = left / max(1, len(models) - mi)
            if left < 10 or share < 5:
                log("%s bs %d: skipped (budget)" % (name, bs))
                continue
            rec = {"framework": "sentence-transformers", "model": name, "dtype": "f16", "batch_size": bs,
                   "passages": len(texts), "tokens": tokens, "mean_len": tokens / max(1, len(texts)),
                   "sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__,
                   "gpu": torch.cuda.get_device_name(0)}
            for mode, fn in (("encode", time_encode), ("forward", time_forward)):
                s = fn(model, texts, bs)
                rec[mode + "_seconds"] = s
                rec[mode + "_tokens_per_s"] = tokens / s
                rec[mode + "_passages_per_s"] = len(texts) / s
            line = json.dumps(rec)
            print(line, flush=True)
            if args.json_out:
                with open(args.json_out, "a") as f:
                    f.write(line + "\n")
            log("%s bs %d: encode %.0f passages/s, forward %.0f passages/s" %
                (name, bs, rec["encode_passages_per_s"], rec["forward_passages_per_s"]))
        del model
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
