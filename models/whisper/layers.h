// The pieces of a pre-LN transformer layer shared by Whisper's encoder and decoder (internal).
#pragma once

#include <cstdint>

#include "models/whisper/model.h"
#include "runtime/gemm.h"

namespace flurry::whisper {

// y[rows, l.out] = x[rows, l.in] W^T (+ b, then the epilogue's activation).
void apply_linear(const LinearW& l, const float* x, float* y, int64_t rows,
                  Epilogue act = Epilogue::Bias);

// hidden += fc2(gelu(fc1(LN(hidden)))) for `rows` rows of width d. Scratch from the state.
void ffn_sublayer(const LayerNormW& ln, const LinearW& fc1, const LinearW& fc2, float eps,
                  float* hidden, int64_t rows, int64_t d, WhisperState& st);

}  // namespace flurry::whisper
