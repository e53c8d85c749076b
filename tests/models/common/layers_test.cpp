// The shared CPU blocks (models/common/layers.h): pre-LN and post-LN attention and FFN blocks equal
// the composition of the reference ops they stand for, a masked key or a later (causal) position
// does not change the output, and the blocks write every element.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "models/common/layers.h"
#include "runtime/ref/ops.h"
#include "tests/common/test_util.h"

namespace flurry::models {
namespace {

constexpr int64_t kD = 16, kHeads = 2, kFfn = 24;

struct Weights {
  LayerNormW ln, ln2;
  LinearW qkv, out, fc1, fc2;
};

LinearW random_linear(int64_t in, int64_t out, std::mt19937_64& rng) {
  LinearW l;
  l.in = in;
  l.out = out;
  l.w = test::random_vector(static_cast<size_t>(in * out), rng, -0.4f, 0.4f);
  l.b = test::random_vector(static_cast<size_t>(out), rng, -0.1f, 0.1f);
  return l;
}

Weights random_weights(std::mt19937_64& rng) {
  Weights w;
  for (LayerNormW* ln : {&w.ln, &w.ln2}) {
    ln->gamma = test::random_vector(kD, rng, 0.8f, 1.2f);
    ln->beta = test::random_vector(kD, rng, -0.1f, 0.1f);
  }
  w.qkv = random_linear(kD, 3 * kD, rng);
  w.out = random_linear(kD, kD, rng);
  w.fc1 = random_linear(kD, kFfn, rng);
  w.fc2 = random_linear(kFfn, kD, rng);
  return w;
}

// Scratch for `rows` rows, poisoned so an unwritten element shows.
struct Scratch {
  explicit Scratch(int64_t rows)
      : normed(static_cast<size_t>(rows * kD), NAN), qkv(static_cast<size_t>(rows * 3 * kD), NAN),
        attn(static_cast<size_t>(rows * kD), NAN), proj(static_cast<size_t>(rows * kD), NAN),
        ffn(static_cast<size_t>(rows * kFfn), NAN), scores(static_cast<size_t>(attention_scratch_floats(rows, rows))) {}
  CpuContext ctx() {
    return CpuContext{1e-5f, normed.data(), qkv.data(), attn.data(), proj.data(), ffn.data(), scores.data()};
  }
  std::vector<float> normed, qkv, attn, proj, ffn, scores;
};

// The block spelled out with the reference ops.
std::vector<float> reference_attention(const Weights& w, std::vector<float> h, int64_t rows, NormPlacement norm,
                                       bool causal, const uint8_t* key_valid) {
  std::vector<float> x(h.size()), qkv(static_cast<size_t>(rows * 3 * kD)), att(h.size()), proj(h.size());
  if (norm == NormPlacement::Pre) {
    layernorm_cpu(h.data(), nullptr, nullptr, w.ln.gamma.data(), w.ln.beta.data(), x.data(), rows, kD, 1e-5f);
  } else {
    x = h;
  }
  linear_cpu(x.data(), w.qkv.w.data(), w.qkv.b.data(), qkv.data(), rows, kD, 3 * kD, Epilogue::Bias);
  AttentionArgs a;
  a.q = qkv.data();
  a.k = qkv.data() + kD;
  a.v = qkv.data() + 2 * kD;
  a.q_ld = a.k_ld = a.v_ld = 3 * kD;
  a.out = att.data();
  a.out_ld = kD;
  a.heads = kHeads;
  a.head_dim = kD / kHeads;
  a.q_len = a.kv_len = rows;
  a.scale = 0.5f;
  a.causal = causal;
  a.key_valid = key_valid;
  attention_cpu(a);
  linear_cpu(att.data(), w.out.w.data(), w.out.b.data(), proj.data(), rows, kD, kD, Epilogue::Bias);
  if (norm == NormPlacement::Pre) {
    add_cpu(h.data(), proj.data(), h.data(), rows * kD);
  } else {
    layernorm_cpu(h.data(), proj.data(), nullptr, w.ln.gamma.data(), w.ln.beta.data(), x.data(), rows, kD, 1e-5f);
    h = x;
  }
  return h;
}

AttentionOptions options(NormPlacement norm, bool causal, const uint8_t* key_valid) {
  AttentionOptions o;
  o.norm = norm;
  o.heads = kHeads;
  o.head_dim = kD / kHeads;
  o.scale = 0.5f;
  o.causal = causal;
  o.key_valid = key_valid;
  return o;
}

TEST(CommonLayers, AttentionBlockEqualsTheReferenceOps) {
  auto rng = test::test_rng("common_layers_attention");
  const Weights w = random_weights(rng);
  const std::vector<uint8_t> mask = {1, 1, 0, 1, 1, 1, 0};
  for (int64_t rows : {1, 7}) {
    for (NormPlacement norm : {NormPlacement::Pre, NormPlacement::Post}) {
      for (int variant = 0; variant < 3; ++variant) {
        const bool causal = variant == 1;
        const uint8_t* kv = variant == 2 && rows == 7 ? mask.data() : nullptr;
        const std::vector<float> h0 = test::random_vector(static_cast<size_t>(rows * kD), rng);
        std::vector<float> h = h0;
        Scratch s(rows);
        attention_block({&w.ln, &w.qkv, &w.out}, options(norm, causal, kv), h.data(), rows, kD,
                        self_attention_kv(kD, rows), s.ctx());
        const std::vector<float> ref = reference_attention(w, h0, rows, norm, causal, kv);
        for (float x : h) ASSERT_TRUE(std::isfinite(x));
        EXPECT_EQ(h, ref) << "rows " << rows << " post " << (norm == NormPlacement::Post) << " variant " << variant;
      }
    }
  }
}

TEST(CommonLayers, MaskedKeysAndLaterPositionsDoNotMatter) {
  auto rng = test::test_rng("common_layers_mask");
  const Weights w = random_weights(rng);
  const int64_t rows = 7;
  const std::vector<uint8_t> mask = {1, 1, 1, 1, 1, 0, 1};
  std::vector<float> a = test::random_vector(static_cast<size_t>(rows * kD), rng), b = a;
  for (int64_t j = 0; j < kD; ++j) b[static_cast<size_t>(5 * kD + j)] += 1.0f;  // change only the masked row
  Scratch s(rows);
  const auto run = [&](std::vector<float>& h, bool causal, const uint8_t* m) {
    attention_block({&w.ln, &w.qkv, &w.out}, options(NormPlacement::Post, causal, m), h.data(), rows, kD,
                    self_attention_kv(kD, rows), s.ctx());
  };
  std::vector<float> ca = a, cb = b;
  run(ca, false, mask.data());
  run(cb, false, mask.data());
  for (int64_t r = 0; r < rows; ++r) {
    if (r == 5) continue;  // the changed row's own residual differs
    for (int64_t j = 0; j < kD; ++j) {
      const size_t i = static_cast<size_t>(r * kD + j);
      ASSERT_EQ(ca[i], cb[i]) << "row " << r;
    }
  }
  // Causal: rows before the changed one see nothing of it.
  ca = a;
  cb = b;
  run(ca, true, nullptr);
  run(cb, true, nullptr);
  EXPECT_TRUE(std::equal(ca.begin(), ca.begin() + 5 * kD, cb.begin()));
  EXPECT_FALSE(std::equal(ca.begin() + 6 * kD, ca.end(), cb.begin() + 6 * kD));
}

TEST(CommonLayers, FfnBlockEqualsTheReferenceOps) {
  auto rng = test::test_rng("common_layers_ffn");
  const Weights w = random_weights(rng);
  for (int64_t rows : {1, 5}) {
    for (NormPlacement norm : {NormPlacement::Pre, NormPlacement::Post}) {
      const std::vector<float> h0 = test::random_vector(static_cast<size_t>(rows * kD), rng);
      std::vector<float> h = h0, x(h0.size()), f(static_cast<size_t>(rows * kFfn)), p(h0.size()), ref = h0;
      Scratch s(rows);
      ffn_block(w.ln2, w.fc1, w.fc2, norm, h.data(), rows, kD, s.ctx());
      const bool pre = norm == NormPlacement::Pre;
      if (pre) {
        layernorm_cpu(h0.data(), nullptr, nullptr, w.ln2.gamma.data(), w.ln2.beta.data(), x.data(), rows, kD, 1e-5f);
      } else {
        x = h0;
      }
      linear_cpu(x.data(), w.fc1.w.data(), w.fc1.b.data(), f.data(), rows, kD, kFfn, Epilogue::Bias);
      gelu_erf_inplace(f.data(), rows * kFfn);  // erf GELU, as Whisper and BERT use
      linear_cpu(f.data(), w.fc2.w.data(), w.fc2.b.data(), p.data(), rows, kFfn, kD, Epilogue::Bias);
      if (pre) {
        add_cpu(ref.data(), p.data(), ref.data(), rows * kD);
      } else {
        layernorm_cpu(h0.data(), p.data(), nullptr, w.ln2.gamma.data(), w.ln2.beta.data(), ref.data(), rows, kD,
                      1e-5f);
      }
      EXPECT_TRUE(test::close_in_norm("ffn", h, ref, 1e-6)) << "rows " << rows << " pre " << pre;
    }
  }
}

}  // namespace
}  // namespace flurry::models
