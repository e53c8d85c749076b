// Pre-LN transformer pieces shared by Whisper's encoder and decoder.
#include "models/whisper/layers.h"

#include "runtime/check.h"
#include "runtime/ref/ops.h"

namespace flurry::whisper {

void apply_linear(const LinearW& l, const float* x, float* y, int64_t rows, Epilogue act) {
  if (l.b.empty()) {
    FLURRY_CHECK(act == Epilogue::None || act == Epilogue::Bias, "whisper: activation on a bias-free linear");
    linear_cpu(x, l.w.data(), nullptr, y, rows, l.in, l.out, Epilogue::None);
  } else {
    linear_cpu(x, l.w.data(), l.b.data(), y, rows, l.in, l.out, act);
  }
}

void ffn_sublayer(const LayerNormW& ln, const LinearW& fc1, const LinearW& fc2, float eps,
                  float* hidden, int64_t rows, int64_t d, WhisperState& st) {
  layernorm_cpu(hidden, nullptr, nullptr, ln.gamma.data(), ln.beta.data(), st.scratch->normed.data(), rows, d, eps);
  apply_linear(fc1, st.scratch->normed.data(), st.scratch->ffn.data(), rows, Epilogue::BiasGeluErf);
  apply_linear(fc2, st.scratch->ffn.data(), st.scratch->proj.data(), rows);
  add_cpu(hidden, st.scratch->proj.data(), hidden, rows * d);
}

}  // namespace flurry::whisper
