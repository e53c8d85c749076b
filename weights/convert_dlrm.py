"""Converts PyTorch DLRM state_dicts to flurry's DLRM folder: model.safetensors (tensor names of
models/dlrm/config.h), config.json and, when a feature spec is given, features.json.

Sources (--from):
  seed      the food-truck seed module (tests/fixtures/dlrm/train_seed.py): emb.weight (one shared
            EmbeddingBag), bottom.<2i>.weight/bias, top.<2i>.weight/bias (Sequential Linear/ReLU),
            interaction outer over upper_with_diag pairs.
  fb-dlrm   facebookresearch/dlrm DLRM_Net: emb_l.<i>.weight, bot_l.<k>.*, top_l.<k>.* (Sequential
            Linear/activation alternating). Dot interaction over strict_lower pairs
            (lower_with_diag with --interaction-itself), output [bottom, pairs]; --interaction cat
            for arch_interaction_op=cat. The top MLP's final sigmoid is dropped: flurry outputs
            logits. Features C1..C26 and dense I1..I13 by default (--features/--dense to rename).
  torchrec  TorchRec DLRM and DLRM_DCN: sparse_arch.embedding_bag_collection.embedding_bags.<t>.weight,
            dense_arch.model._mlp.<i>._linear.*, over_arch.model.0._mlp.<i>._linear.* and the final
            over_arch.model.1.* Linear; DLRM_DCN's inter_arch.crossnet.{V,W}_kernels.<l> and
            bias.<l> (detected from the keys). Dot interaction over strict_upper pairs of
            [dense, sparse...], output [dense, pairs]. A table with several features gives one bag
            per feature (--table-features t=f1,f2); feature name = table name without a "t_" prefix
            by default.

Widths, table sizes and layer counts come from the tensor shapes; feature names, pooling and
interaction variants that the state_dict does not hold come from flags. Checkpoints are read with
torch.load(weights_only=True) (a dict holding "state_dict" or "model_state_dict" is unwrapped; a
"module." or TorchRec "model." prefix is removed). flurry itself never unpickles: only this script
does.

    python weights/convert_dlrm.py --from fb-dlrm dlrm.pt -o models-cache/dlrm-kaggle \
        [--features-json spec.json] [--dtype float32|float16|bfloat16] [--check]
    python weights/convert_dlrm.py --from torchrec model.pt -o out/ --pooling mean \
        --table-pooling t_cat_3=sum --table-features t_shared=cat_0,cat_1
    python weights/convert_dlrm.py --check-only out/   # re-read a folder and print its tensors

In-process use (tests/fixtures/dlrm/*.py):
    from convert_dlrm import convert_seed, convert_fb_dlrm, convert_torchrec, write_folder
    tensors, config = convert_fb_dlrm(model.state_dict(), features=[...], dense=[...])
    write_folder(out_dir, tensors, config, features_spec, dtype="float32", check=True)
"""
import argparse
import json
import os
import re
import sys
from collections import OrderedDict

import torch

try:
    from safetensors.torch import load_file as _st_load, save_file as _st_save
except ImportError:  # pragma: no cover
    _st_load = _st_save = None


class ConvertError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# Helpers


def unwrap_state_dict(obj):
    """The state_dict inside what torch.load returned (or an nn.Module's), prefixes removed."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ConvertError("expected a state_dict (a dict of tensors), got %s" % type(obj).__name__)
    for key in ("state_dict", "model_state_dict", "model"):
        if key in obj and isinstance(obj[key], dict) and not torch.is_tensor(obj[key]):
            obj = obj[key]
            break
    sd = OrderedDict((k, v) for k, v in obj.items() if torch.is_tensor(v))
    if not sd:
        raise ConvertError("no tensors in the state_dict")
    changed = True
    while changed:
        changed = False
        for prefix in ("module.", "_orig_mod.", "model."):
            if all(k.startswith(prefix) for k in sd):
                sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items())
                changed = True
    return sd


def load_checkpoint(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return unwrap_state_dict(obj)


def _linear_chain(sd, pattern, what):
    """Linear layers named by a regex with one integer group (the position), in position order:
    [(weight, bias, position)]; checks that consecutive layers chain."""
    found = {}
    rx = re.compile(pattern)
    for k, v in sd.items():
        m = rx.fullmatch(k)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = v
    layers = []
    for pos in sorted(found):
        d = found[pos]
        if "weight" not in d:
            raise ConvertError("%s layer %d has no weight" % (what, pos))
        w = d["weight"]
        if w.dim() != 2:
            raise ConvertError("%s layer %d: weight of shape %s is not a Linear's" % (what, pos, tuple(w.shape)))
        b = d.get("bias")
        if b is None:
            b = torch.zeros(w.shape[0], dtype=w.dtype)
        if b.shape != (w.shape[0],):
            raise ConvertError("%s layer %d: bias %s does not fit weight %s" % (what, pos, tuple(b.shape), tuple(w.shape)))
        if layers and layers[-1][0].shape[0] != w.shape[1]:
            raise ConvertError("%s layer %d takes %d inputs but the layer before gives %d"
                               % (what, pos, w.shape[1], layers[-1][0].shape[0]))
        layers.append((w, b, pos))
    return layers


def _mlp_tensors(prefix, layers):
    out = OrderedDict()
    for i, (w, b, _) in enumerate(layers):
        out["%s.%d.weight" % (prefix, i)] = w
        out["%s.%d.bias" % (prefix, i)] = b
    return out


def _claim(sd, used):
    rest = [k for k in sd if k not in used]
    if rest:
        raise ConvertError("unmapped tensors (not a plain model of this kind?): %s" % ", ".join(rest[:8]))


def _interaction_width(config):
    """The width the top MLP must take, computed as flurry does."""
    tables = {t["name"]: t for t in config["embedding_tables"]}
    bottom_out = config["bottom_mlp"][-1] if config["bottom_mlp"] else len(config["dense_features"])
    dims = [tables[b["table"]]["embedding_dim"] for b in config["embedding_bags"]]
    n = 1 + len(dims)
    inter = config["interaction"]
    concat = bottom_out + sum(dims)
    pairs = lambda p, m: m * (m - 1) // 2 if p.startswith("strict") else m * (m + 1) // 2  # noqa: E731
    if inter["type"] == "dot":
        return (bottom_out if inter.get("include_dense", True) else 0) + pairs(inter["pairs"], n)
    if inter["type"] == "outer":
        return bottom_out + pairs(inter["pairs"], concat)
    return concat


def _finish(tensors, config):
    first_top = tensors["top_mlp.0.weight"]
    want = _interaction_width(config)
    if first_top.shape[1] != want:
        raise ConvertError("the top MLP takes %d inputs but the interaction (%s) gives %d: check the "
                           "interaction flags and the feature/bag layout" % (first_top.shape[1],
                                                                           json.dumps(config["interaction"]), want))
    if config["top_mlp"][-1] != 1:
        raise ConvertError("the top MLP ends in %d outputs, not one logit" % config["top_mlp"][-1])
    return tensors, config


def _config(dense, tables, bags, bottom, top, interaction, bottom_final_relu=True):
    return OrderedDict([
        ("model_type", "dlrm"),
        ("dense_features", list(dense)),
        ("embedding_tables", [OrderedDict([("name", n), ("num_embeddings", int(r)), ("embedding_dim", int(d))])
                              for n, r, d in tables]),
        ("embedding_bags", [OrderedDict([("name", n), ("table", t), ("pooling", p), ("features", list(f))])
                            for n, t, p, f in bags]),
        ("bottom_mlp", [int(w.shape[0]) for w, _, _ in bottom]),
        ("bottom_final_relu", bool(bottom_final_relu)),
        ("interaction", interaction),
        ("top_mlp", [int(w.shape[0]) for w, _, _ in top]),
    ])


# ---------------------------------------------------------------------------------------------------
# Sources

SEED_CATEGORICAL = ["menu_item", "menu_type", "truck_brand", "item_category", "item_subcategory", "city",
                    "country", "gender", "marital_status"]
SEED_DENSE = ["sale_price", "age", "avg_monthly_purchase", "avg_weekly_purchase", "avg_yearly_purchase"]


def convert_seed(state_dict, features=None, dense=None, table="shared", bag="food", pooling="sum"):
    """The seed's module: one shared EmbeddingBag pooling all categorical features of a sample."""
    sd = unwrap_state_dict(state_dict)
    features = list(features or SEED_CATEGORICAL)
    dense = list(dense or SEED_DENSE)
    emb = sd.get("emb.weight")
    if emb is None or emb.dim() != 2:
        raise ConvertError("the seed module has an 'emb.weight' [rows, dim] (its EmbeddingBag)")
    bottom = _linear_chain(sd, r"bottom\.(\d+)\.(weight|bias)", "bottom MLP")
    top = _linear_chain(sd, r"top\.(\d+)\.(weight|bias)", "top MLP")
    _claim(sd, {"emb.weight"} | {k for k in sd if re.fullmatch(r"(bottom|top)\.\d+\.(weight|bias)", k)})
    if bottom[0][0].shape[1] != len(dense):
        raise ConvertError("the bottom MLP takes %d inputs, %d dense features named" % (bottom[0][0].shape[1], len(dense)))
    tensors = OrderedDict([("embeddings.%s.weight" % table, emb)])
    tensors.update(_mlp_tensors("bottom_mlp", bottom))
    tensors.update(_mlp_tensors("top_mlp", top))
    config = _config(dense, [(table, emb.shape[0], emb.shape[1])], [(bag, table, pooling, features)], bottom, top,
                     OrderedDict([("type", "outer"), ("pairs", "upper_with_diag")]))
    return _finish(tensors, config)


def convert_fb_dlrm(state_dict, features=None, dense=None, interaction="dot", interaction_itself=False,
                    pooling="sum"):
    """facebookresearch/dlrm's DLRM_Net (plain EmbeddingBags; no QR/MD embeddings)."""
    sd = unwrap_state_dict(state_dict)
    emb = {}
    for k, v in sd.items():
        m = re.fullmatch(r"emb_l\.(\d+)\.weight", k)
        if m:
            emb[int(m.group(1))] = v
        elif k.startswith("emb_l."):
            raise ConvertError("'%s': only plain EmbeddingBag tables are supported (no QR/MD embeddings)" % k)
    if not emb or sorted(emb) != list(range(len(emb))):
        raise ConvertError("expected emb_l.0.weight .. emb_l.<n-1>.weight")
    bottom = _linear_chain(sd, r"bot_l\.(\d+)\.(weight|bias)", "bottom MLP")
    top = _linear_chain(sd, r"top_l\.(\d+)\.(weight|bias)", "top MLP")
    _claim(sd, {k for k in sd if re.fullmatch(r"(emb_l\.\d+\.weight|(bot_l|top_l)\.\d+\.(weight|bias))", k)})
    n = len(emb)
    features = list(features or ["C%d" % (i + 1) for i in range(n)])
    if len(features) != n:
        raise ConvertError("%d tables but %d feature names" % (n, len(features)))
    ndense = bottom[0][0].shape[1] if bottom else None
    dense = list(dense or ["I%d" % (i + 1) for i in range(ndense or 13)])
    if ndense is not None and ndense != len(dense):
        raise ConvertError("the bottom MLP takes %d inputs, %d dense features named" % (ndense, len(dense)))
    tables, bags = [], []
    tensors = OrderedDict()
    for i in range(n):
        name = features[i]
        tables.append((name, emb[i].shape[0], emb[i].shape[1]))
        bags.append((name, name, pooling, [name]))
        tensors["embeddings.%s.weight" % name] = emb[i]
    tensors.update(_mlp_tensors("bottom_mlp", bottom))
    tensors.update(_mlp_tensors("top_mlp", top))
    if interaction == "dot":
        inter = OrderedDict([("type", "dot"), ("pairs", "lower_with_diag" if interaction_itself else "strict_lower"),
                             ("include_dense", True)])
    elif interaction == "cat":
        inter = OrderedDict([("type", "cat")])
    else:
        raise ConvertError("facebookresearch/dlrm interactions are dot or cat, not %r" % interaction)
    return _finish(tensors, _config(dense, tables, bags, bottom, top, inter))


def convert_torchrec(state_dict, dense=None, features_by_table=None, pooling="sum", pooling_by_table=None,
                     interaction=None):
    """TorchRec's DLRM (dot, strict_upper) or DLRM_DCN (low-rank cross net), unsharded."""
    sd = unwrap_state_dict(state_dict)
    features_by_table = dict(features_by_table or {})
    pooling_by_table = dict(pooling_by_table or {})
    ebc = re.compile(r"sparse_arch\.embedding_bag_collection\.embedding_bags\.([^.]+)\.weight")
    tables, bags = [], []
    tensors = OrderedDict()
    used = set()
    for k, v in sd.items():  # the state_dict keeps the collection's table order
        m = ebc.fullmatch(k)
        if not m:
            continue
        used.add(k)
        t = m.group(1)
        tables.append((t, v.shape[0], v.shape[1]))
        tensors["embeddings.%s.weight" % t] = v
        feats = features_by_table.pop(t, None) or [t[2:] if t.startswith("t_") else t]
        p = pooling_by_table.pop(t, pooling)
        for f in feats:
            bags.append((f, t, p, [f]))
    if not tables:
        raise ConvertError("no sparse_arch.embedding_bag_collection.embedding_bags.<table>.weight tensors")
    if features_by_table or pooling_by_table:
        raise ConvertError("no such tables: %s" % ", ".join(sorted(set(features_by_table) | set(pooling_by_table))))
    bottom = _linear_chain(sd, r"dense_arch\.model\._mlp\.(\d+)\._linear\.(weight|bias)", "dense arch")
    over = _linear_chain(sd, r"over_arch\.model\.0\._mlp\.(\d+)\._linear\.(weight|bias)", "over arch")
    final = _linear_chain(sd, r"over_arch\.model\.(1)\.(weight|bias)", "over arch final")
    if len(final) != 1:
        raise ConvertError("expected the over arch's final Linear over_arch.model.1.weight")
    top = over + final
    for i in range(1, len(top)):
        if top[i][0].shape[1] != top[i - 1][0].shape[0]:
            raise ConvertError("over arch: the final Linear takes %d inputs, the MLP gives %d"
                               % (top[i][0].shape[1], top[i - 1][0].shape[0]))
    used |= {k for k in sd if re.fullmatch(r"(dense_arch\.model\._mlp\.\d+\._linear|over_arch\.model\.0\._mlp\.\d+\._linear|over_arch\.model\.1)\.(weight|bias)", k)}
    cross = {}
    for k, v in sd.items():
        m = re.fullmatch(r"inter_arch\.crossnet\.(V_kernels|W_kernels|bias)\.(\d+)", k)
        if m:
            cross.setdefault(int(m.group(2)), {})[m.group(1)] = v
            used.add(k)
    _claim(sd, used)
    ndense = bottom[0][0].shape[1]
    dense = list(dense or ["dense_%d" % i for i in range(ndense)])
    if len(dense) != ndense:
        raise ConvertError("the dense arch takes %d inputs, %d dense features named" % (ndense, len(dense)))
    tensors.update(_mlp_tensors("bottom_mlp", bottom))
    tensors.update(_mlp_tensors("top_mlp", top))
    kind = interaction or ("dcnv2" if cross else "dot")
    if kind == "dcnv2":
        if not cross or sorted(cross) != list(range(len(cross))):
            raise ConvertError("a DCNv2 interaction needs inter_arch.crossnet.{V_kernels,W_kernels,bias}.0..L-1")
        rank = None
        for l in range(len(cross)):
            c = cross[l]
            if set(c) != {"V_kernels", "W_kernels", "bias"}:
                raise ConvertError("cross layer %d lacks one of V_kernels, W_kernels, bias" % l)
            v, w, b = c["V_kernels"], c["W_kernels"], c["bias"]
            r, n = v.shape
            if w.shape != (n, r) or b.shape != (n,) or (rank is not None and r != rank):
                raise ConvertError("cross layer %d: V %s, W %s, bias %s do not form a rank-%s layer"
                                   % (l, tuple(v.shape), tuple(w.shape), tuple(b.shape), rank or r))
            rank = r
            tensors["interaction.cross.%d.V" % l] = v
            tensors["interaction.cross.%d.W" % l] = w
            tensors["interaction.cross.%d.bias" % l] = b
        inter = OrderedDict([("type", "dcnv2"), ("layers", len(cross)), ("rank", int(rank))])
    elif kind == "dot":
        if cross:
            raise ConvertError("the state_dict holds a cross net: use --interaction dcnv2 (or leave it out)")
        inter = OrderedDict([("type", "dot"), ("pairs", "strict_upper"), ("include_dense", True)])
    else:
        raise ConvertError("TorchRec interactions are dot or dcnv2, not %r" % kind)
    return _finish(tensors, _config(dense, tables, bags, bottom, top, inter))


# ---------------------------------------------------------------------------------------------------
# Writing and checking

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def write_folder(out_dir, tensors, config, features_spec=None, dtype="float32", check=True):
    """Writes model.safetensors, config.json [and features.json]; returns the tensors as stored."""
    if _st_save is None:
        raise ConvertError("the safetensors package is needed (pip install safetensors)")
    os.makedirs(out_dir, exist_ok=True)
    stored = OrderedDict((k, v.detach().to("cpu", DTYPES[dtype]).contiguous()) for k, v in tensors.items())
    _st_save(stored, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    if features_spec is not None:
        with open(os.path.join(out_dir, "features.json"), "w") as f:
            json.dump(features_spec, f, indent=2, ensure_ascii=False)
            f.write("\n")
    if check:
        check_folder(out_dir, stored)
    return stored


def check_folder(out_dir, expected=None, verbose=False):
    """Re-reads the folder: every tensor present with its shape and (if given) bit-exact values; the
    config's widths agree with the tensors."""
    path = os.path.join(out_dir, "model.safetensors")
    got = _st_load(path)
    with open(os.path.join(out_dir, "config.json")) as f:
        config = json.load(f)
    if expected is not None:
        if set(got) != set(expected):
            raise ConvertError("%s: tensors differ: missing %s, extra %s" % (
                path, sorted(set(expected) - set(got)), sorted(set(got) - set(expected))))
        for k, v in expected.items():
            if got[k].dtype != v.dtype or got[k].shape != v.shape or not torch.equal(got[k], v):
                raise ConvertError("%s: tensor %s does not read back as written" % (path, k))
    want = OrderedDict()
    for t in config["embedding_tables"]:
        want["embeddings.%s.weight" % t["name"]] = (t["num_embeddings"], t["embedding_dim"])
    tables = {t["name"]: t for t in config["embedding_tables"]}
    width = len(config["dense_features"])
    for i, w in enumerate(config["bottom_mlp"]):
        want["bottom_mlp.%d.weight" % i] = (w, width)
        want["bottom_mlp.%d.bias" % i] = (w,)
        width = w
    if config["interaction"]["type"] == "dcnv2":
        n = width + sum(tables[b["table"]]["embedding_dim"] for b in config["embedding_bags"])
        r = config["interaction"]["rank"]
        for l in range(config["interaction"]["layers"]):
            want["interaction.cross.%d.V" % l] = (r, n)
            want["interaction.cross.%d.W" % l] = (n, r)
            want["interaction.cross.%d.bias" % l] = (n,)
    width = _interaction_width(config)
    for i, w in enumerate(config["top_mlp"]):
        want["top_mlp.%d.weight" % i] = (w, width)
        want["top_mlp.%d.bias" % i] = (w,)
        width = w
    if set(want) != set(got):
        raise ConvertError("%s: config.json wants %s, the file has %s" % (
            out_dir, sorted(set(want) - set(got)), sorted(set(got) - set(want))))
    for k, shape in want.items():
        if tuple(got[k].shape) != tuple(shape):
            raise ConvertError("%s: %s is %s, config.json implies %s" % (out_dir, k, tuple(got[k].shape), shape))
    if verbose:
        for k in sorted(got):
            print("%-40s %-10s %s" % (k, str(got[k].dtype).replace("torch.", ""), list(got[k].shape)))
    return got


# ---------------------------------------------------------------------------------------------------
# CLI


def _pairs(items, what):
    out = {}
    for s in items or []:
        if "=" not in s:
            raise ConvertError("%s wants NAME=VALUE, got %r" % (what, s))
        k, v = s.split("=", 1)
        out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch DLRM state_dict -> flurry DLRM folder",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("checkpoint", nargs="?", help="a .pt state_dict (torch.save)")
    ap.add_argument("-o", "--out", help="output folder")
    ap.add_argument("--from", dest="source", choices=["seed", "fb-dlrm", "torchrec"])
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="stored dtype (default float32)")
    ap.add_argument("--features", help="categorical feature names, comma separated (seed, fb-dlrm)")
    ap.add_argument("--dense", help="dense feature names, comma separated")
    ap.add_argument("--features-json", help="a feature spec (features.h) to copy in as features.json")
    ap.add_argument("--pooling", choices=["sum", "mean"], default="sum", help="pooling of every bag")
    ap.add_argument("--table-pooling", action="append", metavar="TABLE=sum|mean", help="torchrec: per table")
    ap.add_argument("--table-features", action="append", metavar="TABLE=F1,F2", help="torchrec: a table's features")
    ap.add_argument("--interaction", choices=["dot", "cat", "dcnv2"], help="override the interaction kind")
    ap.add_argument("--interaction-itself", action="store_true",
                    help="fb-dlrm trained with --arch-interaction-itself (pairs lower_with_diag)")
    ap.add_argument("--check", action="store_true", help="re-read the written folder and compare every tensor")
    ap.add_argument("--check-only", metavar="DIR", help="only check an existing folder and list its tensors")
    args = ap.parse_args(argv)

    try:
        if args.check_only:
            check_folder(args.check_only, verbose=True)
            print("ok: %s" % args.check_only)
            return 0
        if not (args.checkpoint and args.out and args.source):
            ap.error("needs CHECKPOINT, --from and -o (or --check-only DIR)")
        sd = load_checkpoint(args.checkpoint)
        feats = args.features.split(",") if args.features else None
        dense = args.dense.split(",") if args.dense else None
        if args.source == "seed":
            tensors, config = convert_seed(sd, features=feats, dense=dense, pooling=args.pooling)
        elif args.source == "fb-dlrm":
            tensors, config = convert_fb_dlrm(sd, features=feats, dense=dense, interaction=args.interaction or "dot",
                                              interaction_itself=args.interaction_itself, pooling=args.pooling)
        else:
            tf = {k: v.split(",") for k, v in _pairs(args.table_features, "--table-features").items()}
            tensors, config = convert_torchrec(sd, dense=dense, features_by_table=tf, pooling=args.pooling,
                                               pooling_by_table=_pairs(args.table_pooling, "--table-pooling"),
                                               interaction=args.interaction)
        spec = None
        if args.features_json:
            with open(args.features_json) as f:
                spec = json.load(f)
        stored = write_folder(args.out, tensors, config, spec, dtype=args.dtype, check=args.check)
        n = sum(v.numel() for v in stored.values())
        print("wrote %s: %d tensors, %d parameters, %s%s" % (args.out, len(stored), n, args.dtype,
                                                          " (checked)" if args.check else ""))
        return 0
    except ConvertError as e:
        print("convert_dlrm: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
