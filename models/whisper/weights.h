// Whisper's weight table: every tensor of a Hugging Face Whisper checkpoint for a given config, and
// how it binds (self-attention q, k, v fused into one [3d, d] matrix with HF's head_dim^-0.5 query
// scale folded into the q rows and bias; cross-attention k, v fused into [2d, d]; k_proj has no
// bias, so its part of a fused bias is zero). The CPU model, the GPU upload, the test checkpoints and
// the benchmark's random large-v3 all read this one table.
//
// Keys (the names the models bind, without the checkpoint's "model." prefix), each with .weight and,
// for linears and layer norms, .bias:
//   encoder.conv1, encoder.conv2 ([d, c_in, 3]), encoder.embed_positions.weight, encoder.layer_norm,
//   encoder.layers.<i>.{self_attn_layer_norm, self_attn.qkv, self_attn.out_proj, final_layer_norm, fc1, fc2}
//   decoder.embed_tokens.weight, decoder.embed_positions.weight, decoder.layer_norm,
//   decoder.layers.<i>.{self_attn_layer_norm, self_attn.qkv, self_attn.out_proj, encoder_attn_layer_norm,
//                       encoder_attn.q, encoder_attn.kv, encoder_attn.out_proj, final_layer_norm, fc1, fc2}
//   proj_out.weight (only when the config unties it from embed_tokens)
#pragma once

#include <cstdint>
#include <string>

#include "io/safetensors.h"
#include "models/common/weight_table.h"
#include "models/whisper/config.h"

namespace flurry::whisper {

// The checkpoint's tensor-name prefix: "model." (WhisperForConditionalGeneration) or "" (a bare
// WhisperModel). Throws "not a Whisper checkpoint" when neither holds encoder.conv1.weight.
std::string detect_whisper_prefix(const Checkpoint& ck);

// The table for `c`, tensor names under `prefix` (proj_out.weight is always top-level, as HF saves it).
models::WeightTable whisper_weight_table(const WhisperConfig& c, const std::string& prefix = "model.");

// "encoder.layers.<i>." / "decoder.layers.<i>.": the start of a layer's keys.
std::string encoder_layer_key(int64_t i);
std::string decoder_layer_key(int64_t i);

// Validates the config, detects the prefix, checks the checkpoint against the table (missing tensor,
// wrong shape, wrong dtype) and refuses a checkpoint with more layers than the config. Returns the
// table to bind from. Every error names the checkpoint, the tensor and the reason.
models::WeightTable checked_whisper_table(const WhisperConfig& c, const Checkpoint& ck);

}  // namespace flurry::whisper
