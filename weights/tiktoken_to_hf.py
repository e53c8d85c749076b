#!/usr/bin/env python3
"""Converts openai-whisper's tiktoken vocabulary into a Hugging Face Whisper tokenizer folder.

openai-whisper ships its tokenizer as whisper/assets/multilingual.tiktoken (base64 token bytes and
rank per line) plus code (whisper/tokenizer.py) that appends the special tokens: <|endoftext|>,
<|startoftranscript|>, one <|xx|> per language, <|translate|>, <|transcribe|>, <|startoflm|>,
<|startofprev|>, <|nospeech|>, <|notimestamps|> and 1501 timestamps <|0.00|> ... <|30.00|>.
This script writes the same vocabulary in the layouts Hugging Face checkpoints carry, so flurry
and transformers can read it: tokenizer.json, vocab.json + merges.txt, tokenizer_config.json
(added_tokens_decoder), added_tokens.json and special_tokens_map.json.

The merges are recovered by transformers' own TikTokenConverter (every split of a token into two
tokens becomes a merge at that token's rank), and the language list is read from whisper/
tokenizer.py, so neither is written out here. Needs `tokenizers` and `transformers`.

  python weights/tiktoken_to_hf.py --tiktoken multilingual.tiktoken --tokenizer-py tokenizer.py \
      --num-languages 100 --out models-cache/whisper-large-v3-tokenizer
"""
import argparse
import ast
import base64
import json
import os
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers.convert_slow_tokenizer import TikTokenConverter


def read_ranks(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def read_languages(tokenizer_py):
    """Keys of the LANGUAGES dict in openai-whisper's tokenizer.py, in order."""
    with open(tokenizer_py, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LANGUAGES" for t in node.targets):
            return [ast.literal_eval(k) for k in node.value.keys]
    sys.exit(f"{tokenizer_py}: no LANGUAGES dict")


class _Converter(TikTokenConverter):
    """TikTokenConverter reading ranks already in memory (no tiktoken package needed)."""

    def __init__(self, ranks):
        super().__init__(vocab_file="<memory>")
        self._ranks = ranks

    def load_tiktoken_bpe(self, _):  # the base class calls self.load_tiktoken_bpe(vocab_file)
        return self._ranks


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiktoken", required=True)
    ap.add_argument("--tokenizer-py", required=True, help="openai-whisper's whisper/tokenizer.py")
    ap.add_argument("--num-languages", type=int, default=100, help="99 before large-v3, 100 from v3 on")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    ranks = read_ranks(args.tiktoken)
    vocab, merges = _Converter(ranks).extract_vocab_merges_from_model("<memory>")
    langs = read_languages(args.tokenizer_py)[: args.num_languages]
    specials = (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{c}|>" for c in langs] +
                ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                 "<|notimestamps|>"])
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]

    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # the GPT-2 pattern, as tiktoken's
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
    # Timestamps are added but not special, as in the Hub's Whisper tokenizers.
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in timestamps])
    n = tok.get_vocab_size(with_added_tokens=True)
    expected = len(ranks) + len(specials) + len(timestamps)
    if n != expected or tok.token_to_id("<|endoftext|>") != len(ranks):
        sys.exit(f"unexpected vocabulary size {n} (want {expected}) or <|endoftext|> id")

    # tiktoken returns a piece whole when it is a token; check BPE over these merges agrees on
    # every token that is one pre-tokenizer piece, so vocab.json + merges.txt (which cannot say
    # ignore_merges) encode as tiktoken does.
    disagree = 0
    for b, rank in ranks.items():
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(tok.pre_tokenizer.pre_tokenize_str(text)) == 1 and tok.encode(text, add_special_tokens=False).ids != [rank]:
            disagree += 1
    print(f"tokens that BPE does not rebuild whole: {disagree}", file=sys.stderr)

    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    tok.model.save(args.out)  # vocab.json, merges.txt
    added = tok.get_added_tokens_decoder()
    decoder = {str(i): {"content": a.content, "lstrip": a.lstrip, "normalized": a.normalized, "rstrip": a.rstrip,
                        "single_word": a.single_word, "special": a.special} for i, a in sorted(added.items())}
    write = lambda name, obj: json.dump(obj, open(os.path.join(args.out, name), "w", encoding="utf-8"),
                                        ensure_ascii=False, indent=1)
    write("tokenizer_config.json", {
        "tokenizer_class": "WhisperTokenizer", "add_prefix_space": False, "added_tokens_decoder": decoder,
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "additional_special_tokens": specials[1:], "model_max_length": 1024,
        "errors": "replace"})
    write("added_tokens.json", {a.content: i for i, a in sorted(added.items())})
    write("special_tokens_map.json", {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                                      "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                                      "additional_special_tokens": specials[1:]})
    print(f"wrote {args.out}: {n} tokens ({len(ranks)} byte-level, {len(langs)} languages)", file=sys.stderr)


if __name__ == "__main__":
    main()
