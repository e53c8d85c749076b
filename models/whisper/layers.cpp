// Whisper's use of the shared CPU blocks.
#include "models/whisper/layers.h"

namespace flurry::whisper {

models::CpuContext cpu_context(WhisperState& st, float eps) {
  WhisperScratch& s = *st.scratch;
  models::CpuContext ctx;
  ctx.eps = eps;
  ctx.normed = s.normed.data();
  ctx.qkv = s.qkv.data();
  ctx.attn = s.attn.data();
  ctx.proj = s.proj.data();
  ctx.ffn = s.ffn.data();
  ctx.scores = s.scores.data();
  return ctx;
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
