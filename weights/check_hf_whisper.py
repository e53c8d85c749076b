#!/usr/bin/env python3
"""Cross-check a converted Whisper folder with Hugging Face transformers.

Loads MODEL_DIR with WhisperForConditionalGeneration + WhisperProcessor, transcribes a 16 kHz mono
16-bit WAV with greedy decoding and prints the generated token ids and the text as JSON. Needs torch
and transformers (the fixtures venv has them); the conversion itself does not.

  python weights/check_hf_whisper.py models-cache/whisper-base /work/shared/data/speech/jfk.wav \
      [--language en] [--expect "And so my fellow Americans, ..."]
"""

import argparse
import json
import sys
import wave

import numpy as np


def read_wav(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getframerate() != 16000:
            raise SystemExit("%s: want 16-bit 16 kHz PCM, got %d-byte %d Hz"
                             % (path, w.getsampwidth(), w.getframerate()))
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            pcm = pcm.reshape(-1, w.getnchannels()).mean(axis=1)
    return (pcm.astype(np.float32) / 32768.0)


def normalise(s):
    return " ".join("".join(c.lower() if c.isalnum() else " " for c in s).split())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("wav")
    ap.add_argument("--language", default=None, help="e.g. en (multilingual models only)")
    ap.add_argument("--expect", default=None, help="fail unless the text matches (case and "
                                                   "punctuation are ignored)")
    args = ap.parse_args()

    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    torch.set_num_threads(2)
    processor = WhisperProcessor.from_pretrained(args.model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(args.model_dir, dtype=torch.float32)
    model.eval()
    audio = read_wav(args.wav)
    feats = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    kwargs = {"num_beams": 1, "do_sample": False}
    if args.language and model.generation_config.is_multilingual:
        kwargs.update(language=args.language, task="transcribe")
    with torch.no_grad():
        out = model.generate(feats, return_dict_in_generate=True, **kwargs)
    ids = out.sequences[0].tolist()  # decoder prompt + generated tokens + <|endoftext|>
    text = processor.decode(ids, skip_special_tokens=True).strip()
    print(json.dumps({"token_ids": ids, "text": text}, ensure_ascii=False))
    if args.expect is not None and normalise(text) != normalise(args.expect):
        print("MISMATCH: expected %r" % args.expect, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
