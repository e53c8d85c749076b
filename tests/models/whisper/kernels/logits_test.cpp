// GPU next-token selection (models/whisper/gpu/logits.cuh) against the CPU logit rules of
// models/whisper/logit_rules.h, applied as DecodeRun::filter_row applies them (suppress_blank,
// suppress_tokens, apply_timestamp_rules), then std::max_element (greedy), log_softmax, and the
// beam search's partial_sort by (logprob desc, id asc).
//
// Exact checks: the filtered row (same values, same -inf entries), the argmax id and the top-k ids.
// Tolerance checks: logprobs, |gpu - cpu| <= 2e-5 + 1e-6 |cpu| (the CPU sums exp in double, the
// GPU in fp32 over ~52k terms: the normaliser differs by ~1e-6 absolute).
//
// Inputs: fresh random logits (normal, scale 2) with the timestamp block shifted by -6, 0 or +6 so
// that the "timestamps likelier than any text token" rule fires on some rows and not on others;
// random token histories (text and non-decreasing timestamps, lengths 0, 1, 2, 3, 10, 200, 447)
// so that every branch of the pair and monotonic rules is taken. A row whose forcing decision is
// within 1e-3 of the threshold (fp32 vs double could decide it either way) is drawn again.
// Padding columns of the logits must stay untouched; outputs are poisoned. With forced lengths
// (the benchmark's rule, apply_forced_length) rows get lengths below, at and above their history
// and some none, passed to the kernel as what is left (LogitsArgs::eot_after).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "models/whisper/decoding.h"
#include "models/whisper/gpu/logits.cuh"
#include "models/whisper/logit_rules.h"
#include "runtime/cuda/cuda_check.h"
#include "tests/common/test_util.h"
#include "tests/kernels/gpu_buffers.h"

namespace flurry {
namespace {

using test::DeviceBuffer;
namespace wh = flurry::whisper;

struct Vocab {
  int vocab, eot, sot, no_timestamps, timestamp_begin;
};
// large-v3, large-v2 and a small made-up vocabulary with the same layout.
constexpr Vocab kV3{51866, 50257, 50258, 50364, 50365};
constexpr Vocab kV2{51865, 50257, 50258, 50363, 50364};
constexpr Vocab kSmall{3001, 1500, 1501, 1999, 2000};

struct Options {
  bool suppress_blank = true;
  bool timestamps = true;
  int max_initial_timestamp_index = 50;
  int top_k = 5;
  bool want_logprobs = true;
  bool forced_lengths = false;
  float temperature = 0.0f;  // > 0: sampling with Problem::uniform (top_k must be 0)
};

struct Problem {
  Vocab v;
  int rows = 0;
  int64_t ld = 0, sampled_ld = 448;
  std::vector<float> logits;  // [rows, ld]; padding columns hold a sentinel
  std::vector<int32_t> sampled, n_sampled;
  std::vector<int32_t> forced;  // per row, 0: none (Options::forced_lengths)
  std::vector<double> uniform;  // per row (Options::temperature > 0)
  std::vector<int> suppress, blank;
};

constexpr float kPadSentinel = 12345.0f;

// Random history of n tokens: text ids, and timestamps that never decrease.
std::vector<int32_t> random_history(const Vocab& v, int n, std::mt19937_64& rng) {
  std::vector<int32_t> h;
  int ts = v.timestamp_begin;
  std::uniform_int_distribution<int> text(0, v.eot - 1), step(0, 30), coin(0, 2);
  for (int i = 0; i < n; ++i) {
    if (coin(rng) == 0) {
      ts = std::min(ts + step(rng), v.vocab - 1);
      h.push_back(ts);
    } else {
      h.push_back(text(rng));
    }
  }
  return h;
}

std::vector<float> cpu_filter(const Problem& p, const Options& o, int r, const float* row_in) {
  std::vector<float> row(row_in, row_in + p.v.vocab);
  const int n = p.n_sampled[static_cast<size_t>(r)];
  if (o.suppress_blank) wh::suppress_blank(row.data(), p.v.vocab, n, p.blank, p.v.eot);
  if (!p.suppress.empty()) wh::suppress_tokens(row.data(), p.v.vocab, p.suppress);
  if (o.timestamps) {
    wh::TimestampRules rules;
    rules.eot = p.v.eot;
    rules.no_timestamps = p.v.no_timestamps;
    rules.timestamp_begin = p.v.timestamp_begin;
    rules.max_initial_timestamp_index = o.max_initial_timestamp_index;
    std::vector<float> scratch;
    wh::apply_timestamp_rules(row.data(), p.v.vocab, p.sampled.data() + r * p.sampled_ld, n, rules, scratch);
  }
  if (o.forced_lengths) wh::apply_forced_length(row.data(), p.v.vocab, n, p.forced[static_cast<size_t>(r)], p.v.eot);
  return row;
}

// True when shifting the timestamp logits by +-1e-3 changes which entries the rules mask: the
// forcing rule is then too close to call between fp32 and double.
bool borderline(const Problem& p, const Options& o, int r, const std::vector<float>& row) {
  if (!o.timestamps) return false;
  std::vector<float> up = row, down = row;
  for (int i = p.v.timestamp_begin; i < p.v.vocab; ++i) {
    up[static_cast<size_t>(i)] += 1e-3f;
    down[static_cast<size_t>(i)] -= 1e-3f;
  }
  const std::vector<float> a = cpu_filter(p, o, r, up.data()), b = cpu_filter(p, o, r, down.data());
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isinf(a[i]) != std::isinf(b[i])) return true;
  }
  return false;
}

Problem make_problem(const Vocab& v, int rows, int64_t pad, const Options& o, std::mt19937_64& rng) {
  Problem p;
  p.v = v;
  p.rows = rows;
  p.ld = v.vocab + pad;
  p.logits.assign(static_cast<size_t>(rows * p.ld), kPadSentinel);
  p.sampled.assign(static_cast<size_t>(rows * p.sampled_ld), -1);
  p.n_sampled.assign(static_cast<size_t>(rows), 0);
  p.forced.assign(static_cast<size_t>(rows), 0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int r = 0; r < rows; ++r) p.uniform.push_back(r == 0 ? 0.0 : r == 1 ? std::nextafter(1.0, 0.0) : unit(rng));
  // SuppressTokens: ~90 random text ids plus the specials resolve_suppress_tokens adds.
  std::uniform_int_distribution<int> text(0, v.eot - 1);
  for (int i = 0; i < 90; ++i) p.suppress.push_back(text(rng));
  p.suppress.push_back(v.sot);
  p.suppress.push_back(v.sot + 1);
  std::sort(p.suppress.begin(), p.suppress.end());
  p.suppress.erase(std::unique(p.suppress.begin(), p.suppress.end()), p.suppress.end());
  p.blank = {std::min(220, v.eot - 1)};

  const int lengths[] = {0, 1, 2, 3, 10, 200, 447};
  const float shifts[] = {-6.0f, 0.0f, 6.0f};
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int r = 0; r < rows; ++r) {
    const int n = lengths[r % 7];
    const std::vector<int32_t> h = random_history(v, n, rng);
    std::copy(h.begin(), h.end(), p.sampled.begin() + r * p.sampled_ld);
    p.n_sampled[static_cast<size_t>(r)] = n;
    if (o.forced_lengths) {
      // none, still to come, exactly reached, passed (the kernel sees 0 left for the last two)
      const int kinds[] = {0, n + 1 + (r % 5), n, std::max(n - 2, 0)};
      p.forced[static_cast<size_t>(r)] = kinds[(r / 2) % 4];
    }
    std::vector<float> row(static_cast<size_t>(v.vocab));
    for (int attempt = 0;; ++attempt) {
      const float shift = shifts[(r / 7 + attempt) % 3];
      for (int i = 0; i < v.vocab; ++i) {
        row[static_cast<size_t>(i)] = normal(rng) + (i >= v.timestamp_begin ? shift : 0.0f);
      }
      if (!borderline(p, o, r, row)) break;
      EXPECT_LT(attempt, 20) << "could not draw a row away from the forcing threshold";
    }
    std::copy(row.begin(), row.end(), p.logits.begin() + r * p.ld);
  }
  return p;
}

struct GpuOut {
  std::vector<float> logits, logprobs, argmax_lp, topk_lp;
  std::vector<int32_t> argmax, topk;
  int32_t error = 0;
};

GpuOut run_gpu(const Problem& p, const Options& o) {
  const size_t rows = static_cast<size_t>(p.rows);
  std::vector<int32_t> suppress(p.suppress.begin(), p.suppress.end()), blank(p.blank.begin(), p.blank.end());
  DeviceBuffer d_logits(p.logits.size() * 4), d_lp(rows * p.v.vocab * 4), d_sampled(p.sampled.size() * 4),
      d_n(rows * 4), d_sup(suppress.size() * 4 + 4), d_blank(blank.size() * 4 + 4), d_arg(rows * 4),
      d_arg_lp(rows * 4), d_topk(rows * 10 * 4), d_topk_lp(rows * 10 * 4), d_err(4), d_left(rows * 4),
      d_unif(rows * 8);
  CUDA_CHECK(cudaMemcpy(d_unif.get(), p.uniform.data(), rows * 8, cudaMemcpyHostToDevice));
  std::vector<int32_t> left(rows, -1);
  for (size_t r = 0; r < rows && o.forced_lengths; ++r) {
    if (p.forced[r] > 0) left[r] = std::max(p.forced[r] - p.n_sampled[r], 0);
  }
  CUDA_CHECK(cudaMemcpy(d_left.get(), left.data(), rows * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_logits.get(), p.logits.data(), p.logits.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_sampled.get(), p.sampled.data(), p.sampled.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_n.get(), p.n_sampled.data(), rows * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_sup.get(), suppress.data(), suppress.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_blank.get(), blank.data(), blank.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemset(d_err.get(), 0, 4));
  for (DeviceBuffer* b : {&d_lp, &d_arg, &d_arg_lp, &d_topk, &d_topk_lp}) b->poison();

  LogitsArgs a;
  a.logits = static_cast<float*>(d_logits.get());
  a.rows = p.rows;
  a.vocab = p.v.vocab;
  a.ld = p.ld;
  a.sampled = static_cast<const int32_t*>(d_sampled.get());
  a.sampled_ld = p.sampled_ld;
  a.n_sampled = static_cast<const int32_t*>(d_n.get());
  a.rules.suppress_ids = static_cast<const int32_t*>(d_sup.get());
  a.rules.n_suppress = static_cast<int>(suppress.size());
  a.rules.suppress_blank = o.suppress_blank;
  a.rules.blank_ids = static_cast<const int32_t*>(d_blank.get());
  a.rules.n_blank = static_cast<int>(blank.size());
  a.rules.timestamps = o.timestamps;
  a.rules.eot = p.v.eot;
  a.rules.no_timestamps = p.v.no_timestamps;
  a.rules.timestamp_begin = p.v.timestamp_begin;
  a.rules.max_initial_timestamp_index = o.max_initial_timestamp_index;
  if (o.forced_lengths) a.eot_after = static_cast<const int32_t*>(d_left.get());
  if (o.temperature > 0.0f) {
    a.temperature = o.temperature;
    a.uniform = static_cast<const double*>(d_unif.get());
  }
  a.argmax = static_cast<int32_t*>(d_arg.get());
  a.argmax_logprob = static_cast<float*>(d_arg_lp.get());
  if (o.want_logprobs) {
    a.logprobs = static_cast<float*>(d_lp.get());
    a.logprobs_ld = p.v.vocab;
  }
  a.top_k = o.top_k;
  a.topk_ids = static_cast<int32_t*>(d_topk.get());
  a.topk_logprobs = static_cast<float*>(d_topk_lp.get());
  a.error = static_cast<int32_t*>(d_err.get());
  logits_select(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());

  GpuOut g;
  g.logits.resize(p.logits.size());
  CUDA_CHECK(cudaMemcpy(g.logits.data(), d_logits.get(), p.logits.size() * 4, cudaMemcpyDeviceToHost));
  g.logprobs = test::download(d_lp.get(), rows * p.v.vocab, DType::F32);
  g.argmax_lp = test::download(d_arg_lp.get(), rows, DType::F32);
  g.topk_lp = test::download(d_topk_lp.get(), rows * o.top_k, DType::F32);
  g.argmax.resize(rows);
  g.topk.resize(rows * o.top_k);
  CUDA_CHECK(cudaMemcpy(g.argmax.data(), d_arg.get(), rows * 4, cudaMemcpyDeviceToHost));
  if (o.top_k > 0) {
    CUDA_CHECK(cudaMemcpy(g.topk.data(), d_topk.get(), g.topk.size() * 4, cudaMemcpyDeviceToHost));
  }
  CUDA_CHECK(cudaMemcpy(&g.error, d_err.get(), 4, cudaMemcpyDeviceToHost));
  return g;
}

bool lp_close(float gpu, float cpu) {
  if (std::isinf(cpu) || std::isinf(gpu)) return gpu == cpu;
  return std::fabs(gpu - cpu) <= 2e-5 + 1e-6 * std::fabs(cpu);
}

void check(const Problem& p, const Options& o, const std::string& name) {
  const GpuOut g = run_gpu(p, o);
  EXPECT_EQ(g.error, 0) << name;
  const int vocab = p.v.vocab;
  int forced_rows = 0;
  for (int r = 0; r < p.rows; ++r) {
    const std::string rn = name + " row " + std::to_string(r) + " (history " +
                           std::to_string(p.n_sampled[static_cast<size_t>(r)]) + ")";
    const float* in = p.logits.data() + r * p.ld;
    const std::vector<float> want = cpu_filter(p, o, r, in);
    const float* got = g.logits.data() + r * p.ld;
    // Filtered row: identical, every entry.
    int mismatches = 0;
    for (int i = 0; i < vocab && mismatches < 5; ++i) {
      if (std::memcmp(&got[i], &want[static_cast<size_t>(i)], 4) != 0) {
        ADD_FAILURE() << rn << ": logit " << i << " is " << got[i] << ", CPU rules give "
                      << want[static_cast<size_t>(i)];
        ++mismatches;
      }
    }
    for (int64_t i = vocab; i < p.ld; ++i) ASSERT_EQ(got[i], kPadSentinel) << rn << ": padding written";
    bool text_open = false;
    for (int i = 0; i < p.v.timestamp_begin; ++i) text_open = text_open || !std::isinf(want[static_cast<size_t>(i)]);
    forced_rows += text_open ? 0 : 1;

    // Greedy: argmax of the filtered logits and its logprob.
    std::vector<float> lp(static_cast<size_t>(vocab));
    wh::log_softmax(want.data(), vocab, lp.data());
    int arg = static_cast<int>(std::max_element(want.begin(), want.end()) - want.begin());
    if (o.temperature > 0.0f) {
      std::vector<double> cdf;
      arg = wh::sample_inverse_cdf(want.data(), vocab, o.temperature, p.uniform[static_cast<size_t>(r)], cdf);
    }
    EXPECT_EQ(g.argmax[static_cast<size_t>(r)], arg) << rn << (o.temperature > 0.0f ? " (draw)" : "");
    EXPECT_TRUE(lp_close(g.argmax_lp[static_cast<size_t>(r)], lp[static_cast<size_t>(arg)]))
        << rn << ": argmax logprob " << g.argmax_lp[static_cast<size_t>(r)] << " vs "
        << lp[static_cast<size_t>(arg)];
    if (o.want_logprobs) {
      int bad = 0;
      for (int i = 0; i < vocab && bad < 5; ++i) {
        const float gv = g.logprobs[static_cast<size_t>(r) * vocab + i];
        if (!lp_close(gv, lp[static_cast<size_t>(i)])) {
          ADD_FAILURE() << rn << ": logprob " << i << " is " << gv << ", CPU " << lp[static_cast<size_t>(i)];
          ++bad;
        }
      }
    }
    // Beam search: top-k by (logprob desc, id asc).
    if (o.top_k > 0) {
      std::vector<int> idx(static_cast<size_t>(vocab));
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + o.top_k, idx.end(), [&](int x, int y) {
        const float lx = lp[static_cast<size_t>(x)], ly = lp[static_cast<size_t>(y)];
        return lx > ly || (lx == ly && x < y);
      });
      for (int k = 0; k < o.top_k; ++k) {
        const size_t at = static_cast<size_t>(r) * o.top_k + k;
        EXPECT_EQ(g.topk[at], idx[static_cast<size_t>(k)]) << rn << ": top-" << k;
        EXPECT_TRUE(lp_close(g.topk_lp[at], lp[static_cast<size_t>(idx[static_cast<size_t>(k)])]))
            << rn << ": top-" << k << " logprob";
      }
    }
  }
  std::printf("[logits] %s: %d rows, %d with every text token masked\n", name.c_str(), p.rows, forced_rows);
}

TEST(LogitsGpu, MatchesCpuRulesLargeV3) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogitsGpu.v3");
  const Options o;
  check(make_problem(kV3, 42, 0, o, rng), o, "v3_42rows");
  check(make_problem(kV3, 1, 0, o, rng), o, "v3_1row");
}

TEST(LogitsGpu, MatchesCpuRulesLargeV2PaddedRows) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogitsGpu.v2");
  Options o;
  o.top_k = 10;
  o.max_initial_timestamp_index = -1;  // no limit
  check(make_problem(kV2, 21, 7, o, rng), o, "v2_21rows_ld+7_top10");
}

TEST(LogitsGpu, RuleSubsets) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogitsGpu.subsets");
  for (int mask = 0; mask < 4; ++mask) {
    Options o;
    o.suppress_blank = (mask & 1) != 0;
    o.timestamps = (mask & 2) != 0;
    o.top_k = mask;  // 0..3, including no top-k at all
    o.want_logprobs = mask != 1;
    check(make_problem(kSmall, 14, 1, o, rng), o, "small_rules" + std::to_string(mask));
  }
}

TEST(LogitsGpu, ForcedLengths) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogitsGpu.forced");
  Options o;
  o.forced_lengths = true;
  const Problem p = make_problem(kV3, 28, 0, o, rng);
  check(p, o, "v3_forced");
  // The rule decided something: rows with EOT forced choose EOT at logprob 0.
  const GpuOut g = run_gpu(p, o);
  int ended = 0;
  for (int r = 0; r < p.rows; ++r) {
    const int f = p.forced[static_cast<size_t>(r)];
    if (f > 0 && p.n_sampled[static_cast<size_t>(r)] >= f) {
      EXPECT_EQ(g.argmax[static_cast<size_t>(r)], p.v.eot) << "row " << r;
      EXPECT_EQ(g.argmax_lp[static_cast<size_t>(r)], 0.0f) << "row " << r;
      ++ended;
    } else if (f > 0) {
      EXPECT_NE(g.argmax[static_cast<size_t>(r)], p.v.eot) << "row " << r;
    }
  }
  EXPECT_GE(ended, 5);
  o.timestamps = false;
  o.top_k = 0;
  check(make_problem(kSmall, 16, 3, o, rng), o, "small_forced_no_timestamps");
}

// Sampling (fallback temperatures): the draw of sample_inverse_cdf at the row's uniform (0, the
// largest double below 1, and random ones), with and without the timestamp rules, at three
// temperatures; every row's token must be the CPU's.
TEST(LogitsGpu, SamplingMatchesCpuInverseCdf) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogitsGpu.sampling");
  for (float t : {0.2f, 0.8f, 1.0f}) {
    Options o;
    o.top_k = 0;
    o.temperature = t;
    check(make_problem(kV3, 35, 0, o, rng), o, "v3_sample_t" + std::to_string(t));
    o.timestamps = false;
    o.forced_lengths = true;
    check(make_problem(kSmall, 24, 2, o, rng), o, "small_sample_forced_t" + std::to_string(t));
  }
}

TEST(LogitsGpu, ErrorFlags) {
  FLURRY_REQUIRE_GPU();
  auto rng = test::test_rng("LogitsGpu.errors");
  const Options o;
  Problem p = make_problem(kSmall, 3, 0, o, rng);
  p.suppress.push_back(p.v.vocab);  // out of range: skipped and flagged
  const GpuOut g = run_gpu(p, o);
  EXPECT_EQ(g.error, kLogitsBadSuppressId);
  // The other ids are still applied.
  for (int id : p.suppress) {
    if (id < p.v.vocab) {
      EXPECT_TRUE(std::isinf(g.logits[static_cast<size_t>(id)])) << id;
    }
  }
  Problem q = make_problem(kSmall, 2, 0, o, rng);
  q.n_sampled[1] = static_cast<int32_t>(q.sampled_ld + 5);
  EXPECT_EQ(run_gpu(q, o).error, kLogitsBadHistory);
}

TEST(LogitsGpu, RejectsBadArguments) {
  FLURRY_REQUIRE_GPU();
  DeviceBuffer buf(1 << 16);
  LogitsArgs a;
  a.logits = static_cast<float*>(buf.get());
  a.rows = 1;
  a.vocab = a.ld = 100;
  a.top_k = kLogitsMaxTopK + 1;
  a.topk_ids = static_cast<int32_t*>(buf.get());
  a.topk_logprobs = static_cast<float*>(buf.get());
  EXPECT_THROW(logits_select(a, nullptr), Error) << "top_k above the maximum";
  a.top_k = 1;
  a.rules.timestamps = true;
  a.rules.eot = 10;
  a.rules.timestamp_begin = 50;
  EXPECT_THROW(logits_select(a, nullptr), Error) << "timestamp rules without a history";
  a.ld = 99;
  a.rules.timestamps = false;
  EXPECT_THROW(logits_select(a, nullptr), Error) << "ld < vocab";
  a.ld = 100;
  a.uniform = reinterpret_cast<const double*>(buf.get());
  a.temperature = 0.5f;
  EXPECT_THROW(logits_select(a, nullptr), Error) << "sampling with a top-k";
  a.top_k = 0;
  a.temperature = 0.0f;
  EXPECT_THROW(logits_select(a, nullptr), Error) << "sampling at temperature 0";
}

}  // namespace
}  // namespace flurry
