// Whisper's use of the shared CPU blocks (models/common/layers.h): the context over a state's
// scratch, and the pre-LN attention options of its encoder and decoder (internal).
#pragma once

#include "models/common/layers.h"
#include "models/whisper/model.h"

namespace flurry::whisper {

// The blocks' scratch: the state's buffers (sized for max(n_ctx, max_tokens) rows).
models::CpuContext cpu_context(WhisperState& st, float eps);

// Pre-LN, `heads` heads of head_dim, the query scale folded into the weights at load time.
models::AttentionOptions attention_options(int64_t heads, int64_t head_dim, bool causal);

}  // namespace flurry::whisper
