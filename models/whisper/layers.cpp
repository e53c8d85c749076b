// Whisper's use of the shared CPU blocks.
#include "models/whisper/layers.h"

namespace flurry::whisper {

models::CpuContext cpu_context(WhisperState& st, float eps) {
  return st.scratch->blocks.context(eps);
}

models::AttentionOptions attention_options(int64_t heads, int64_t head_dim, bool causal) {
  models::AttentionOptions o;
  o.norm = models::NormPlacement::Pre;
  o.heads = heads;
  o.head_dim = head_dim;
  o.scale = 1.0f;  // folded into the q rows of the fused projection (models/whisper/weights.h)
  o.causal = causal;
  return o;
}

}  // namespace flurry::whisper
