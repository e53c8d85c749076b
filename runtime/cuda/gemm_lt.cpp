#include "runtime/cuda/gemm_lt.h"

#include <cublasLt.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "runtime/cuda/cuda_check.h"
#include "runtime/log.h"

namespace flurry {

namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
    default: FLURRY_FAIL("cuBLASLt GEMM does not take dtype " << dtype_name(t));
  }
}

cublasLtEpilogue_t lt_epilogue(Epilogue e) {
  switch (e) {
    case Epilogue::None: return CUBLASLT_EPILOGUE_DEFAULT;
    case Epilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epilogue::BiasRelu: return CUBLASLT_EPILOGUE_RELU_BIAS;
    case Epilogue::BiasGeluTanh: return CUBLASLT_EPILOGUE_GELU_BIAS;  // tanh approximation
    case Epilogue::BiasGeluErf: break;
  }
  FLURRY_FAIL("cuBLASLt has no exact erf-GELU epilogue: use gemm_gpu() (runtime/cuda/gemm_gpu.h), "
              "which runs Bias in cuBLASLt and the exact GELU in its own kernel");
}

// Largest power of two (up to 256, cuBLASLt's default assumption) dividing the address and, for a
// batch, every batch entry's offset. The heuristic must not assume more than the pointers give.
uint32_t alignment_of(const void* p, int64_t stride_elems, size_t elem_bytes, int64_t batch) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p) | 256u;
  if (batch > 1 && stride_elems != 0) bits |= static_cast<uint64_t>(stride_elems) * elem_bytes;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

struct PlanKey {
  int64_t m, n, k, lda, ldb, ldc, stride_a, stride_b, stride_c, batch;
  uint64_t workspace;
  uint32_t align_a, align_b, align_c, align_bias;
  uint8_t trans_a, trans_b, ab_type, c_type, epilogue, pad[3];

  bool operator==(const PlanKey& o) const { return std::memcmp(this, &o, sizeof(PlanKey)) == 0; }
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& key) const {
    // FNV-1a over the key's bytes (the key is zero-initialised, padding included).
    const auto* p = reinterpret_cast<const unsigned char*>(&key);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(PlanKey); ++i) h = (h ^ p[i]) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

PlanKey make_key(const GemmArgs& g, size_t workspace_bytes) {
  PlanKey key;
  std::memset(&key, 0, sizeof key);
  key.m = g.m;
  key.n = g.n;
  key.k = g.k;
  key.lda = g.lda;
  key.ldb = g.ldb;
  key.ldc = g.ldc;
  key.batch = g.batch;
  if (g.batch > 1) {
    key.stride_a = g.stride_a;
    key.stride_b = g.stride_b;
    key.stride_c = g.stride_c;
  }
  key.workspace = workspace_bytes;
  const size_t ab = dtype_size(g.ab_type), c = dtype_size(g.c_type);
  key.align_a = alignment_of(g.a, g.stride_a, ab, g.batch);
  key.align_b = alignment_of(g.b, g.stride_b, ab, g.batch);
  key.align_c = alignment_of(g.c, g.stride_c, c, g.batch);
  key.align_bias = g.bias ? alignment_of(g.bias, 0, c, 1) : 0;
  key.trans_a = g.trans_a;
  key.trans_b = g.trans_b;
  key.ab_type = static_cast<uint8_t>(g.ab_type);
  key.c_type = static_cast<uint8_t>(g.c_type);
  key.epilogue = static_cast<uint8_t>(g.epilogue);
  return key;
}

// Descriptors and the chosen algorithm for one key. `found` false caches "no algorithm" too, so a
// caller falling back to an unfused epilogue does not query the heuristic on every call.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layout_a = nullptr, layout_b = nullptr, layout_c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (layout_c) (void)cublasLtMatrixLayoutDestroy(layout_c);
    if (layout_b) (void)cublasLtMatrixLayoutDestroy(layout_b);
    if (layout_a) (void)cublasLtMatrixLayoutDestroy(layout_a);
    if (desc) (void)cublasLtMatmulDescDestroy(desc);
  }
};

template <typename T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& value) {
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(T)));
}

// A column-major layout of `rows` x `cols` with leading dimension `ld`, batched when batch > 1.
cublasLtMatrixLayout_t make_layout(DType t, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, cuda_type(t), static_cast<uint64_t>(rows),
                                          static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                  sizeof count));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                  &stride, sizeof stride));
  }
  return layout;
}

}  // namespace

struct GemmLt::Impl {
  cublasLtHandle_t handle = nullptr;
  bool allow_tf32 = false;
  std::mutex mu;  // guards the cache and the per-call bias pointer on shared descriptors
  std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;

  ~Impl() {
    plans.clear();
    if (handle) (void)cublasLtDestroy(handle);
  }

  std::unique_ptr<Plan> build(const GemmArgs& g, size_t workspace_bytes, const PlanKey& key) const;
};

std::unique_ptr<Plan> GemmLt::Impl::build(const GemmArgs& g, size_t workspace_bytes,
                                          const PlanKey& key) const {
  auto plan = std::make_unique<Plan>();
  const cublasComputeType_t compute =
      (g.ab_type == DType::F32 && allow_tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, compute, CUDA_R_32F));
  // Swapped operands (see the header): cuBLASLt's A is our B, so its transa is our trans_b.
  const cublasOperation_t op_lt_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_lt_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, op_lt_a);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, op_lt_b);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, lt_epilogue(g.epilogue));
  if (epilogue_has_bias(g.epilogue)) {
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(cuda_type(g.c_type)));
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, int64_t{0});  // one bias for all
    // The heuristic reads the pointer's value for its alignment, so give it a real one.
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
  }
  // Column-major shapes of the stored operands: our row-major [r, c] is cuBLASLt's [c, r].
  plan->layout_a = g.trans_b ? make_layout(g.ab_type, g.k, g.n, g.ldb, g.batch, g.stride_b)
                             : make_layout(g.ab_type, g.n, g.k, g.ldb, g.batch, g.stride_b);
  plan->layout_b = g.trans_a ? make_layout(g.ab_type, g.m, g.k, g.lda, g.batch, g.stride_a)
                             : make_layout(g.ab_type, g.k, g.m, g.lda, g.batch, g.stride_a);
  plan->layout_c = make_layout(g.c_type, g.n, g.m, g.ldc, g.batch, g.stride_c);

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, const auto& v) {
    const cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof v);
    if (st != CUBLAS_STATUS_SUCCESS) (void)cublasLtMatmulPreferenceDestroy(pref);
    CUBLAS_CHECK(st);
  };
  set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(workspace_bytes));
  // Our A is cuBLASLt's B and vice versa; C and D are the same buffer.
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_b);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_a);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c);

  cublasLtMatmulHeuristicResult_t result{};
  int count = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->layout_a, plan->layout_b, plan->layout_c,
                                     plan->layout_c, pref, 1, &result, &count);
  (void)cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && count == 0)) {
    plan->found = false;  // no algorithm: cached, and reported by the caller
  } else {
    CUBLAS_CHECK(st);
    CUBLAS_CHECK(result.state);
    plan->algo = result.algo;
    plan->found = true;
  }
  LOG_DEBUG("cuBLASLt plan m=" << g.m << " n=" << g.n << " k=" << g.k << " batch=" << g.batch
                               << " " << dtype_name(g.ab_type) << "->" << dtype_name(g.c_type) << " "
                               << epilogue_name(g.epilogue)
                               << (plan->found ? " found" : " has no algorithm"));
  return plan;
}

GemmLt::GemmLt() : GemmLt(Options{}) {}

GemmLt::GemmLt(Options options) : options_(options), impl_(std::make_unique<Impl>()) {
  impl_->allow_tf32 = options.allow_tf32;
  CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
}

GemmLt::~GemmLt() = default;

size_t GemmLt::cached_plans() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->plans.size();
}

bool GemmLt::try_run(const GemmArgs& g, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  validate_gemm(g);
  (void)lt_epilogue(g.epilogue);  // refuses BiasGeluErf before any work
  FLURRY_CHECK(workspace != nullptr || workspace_bytes == 0,
               "cuBLASLt workspace of " << workspace_bytes << " bytes given as a null pointer");
  const PlanKey key = make_key(g, workspace_bytes);
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->plans.find(key);
  if (it == impl_->plans.end()) {
    it = impl_->plans.emplace(key, impl_->build(g, workspace_bytes, key)).first;
  }
  Plan& plan = *it->second;
  if (!plan.found) return false;
  if (epilogue_has_bias(g.epilogue)) set_desc(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
  // alpha and beta are host floats: the scale type of CUBLAS_COMPUTE_32F is fp32.
  CUBLAS_CHECK(cublasLtMatmul(impl_->handle, plan.desc, &g.alpha, g.b, plan.layout_a, g.a,
                              plan.layout_b, &g.beta, g.c, plan.layout_c, g.c, plan.layout_c,
                              &plan.algo, workspace, workspace_bytes, stream));
  return true;
}

void GemmLt::run(const GemmArgs& g, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!try_run(g, workspace, workspace_bytes, stream)) {
    FLURRY_FAIL("cuBLASLt has no algorithm for GEMM m=" << g.m << " n=" << g.n << " k=" << g.k
                << " trans_a=" << g.trans_a << " trans_b=" << g.trans_b << " batch=" << g.batch
                << " " << dtype_name(g.ab_type) << "->" << dtype_name(g.c_type) << " epilogue "
                << epilogue_name(g.epilogue) << " with " << workspace_bytes
                << " bytes of workspace");
  }
}

}  // namespace flurry
