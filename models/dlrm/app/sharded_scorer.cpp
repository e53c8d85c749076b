#include "models/dlrm/app/sharded_scorer.h"

#include "runtime/check.h"
#include "runtime/log.h"

namespace flurry::dlrm {

std::unique_ptr<dist::Communicator> shard_control_communicator(dist::DistContext& ctx) {
  if (ctx.size() == 1) return dist::make_communicator(ctx, dist::CommKind::Self);
#if FLURRY_HAVE_MPI
  FLURRY_CHECK(ctx.thread_level() >= MPI_THREAD_MULTIPLE,
               "--shard-tables across " << ctx.size() << " ranks needs MPI_THREAD_MULTIPLE (the work dispatcher "
                                        << "talks MPI on its own thread while the scoring thread is in an "
                                        << "exchange); this MPI library gives thread level " << ctx.thread_level());
  return dist::make_communicator(ctx, dist::CommKind::Mpi);
#else
  FLURRY_FAIL("--shard-tables across " << ctx.size() << " ranks needs a build with MPI (this one has none)");
#endif
}

ShardedCpuScorer::ShardedCpuScorer(const DlrmAssets& a, dist::DistContext& ctx) {
  own_comm_ = shard_control_communicator(ctx);
  init(a, *own_comm_);
}

ShardedCpuScorer::ShardedCpuScorer(const DlrmAssets& a, dist::Communicator& comm) { init(a, comm); }

void ShardedCpuScorer::init(const DlrmAssets& a, dist::Communicator& comm) {
  plan_ = plan_tables(a.cfg, comm.size(), 4);
  if (comm.rank() == 0) LOG_INFO("shard plan: " << plan_.describe(a.cfg));
  model_ = load_dlrm_cpu(a.cfg, *a.ck, plan_.owned_by(comm.rank()));
  auto pool = [this](int64_t bag, const int32_t* offsets, const int32_t* indices, int64_t n, void* out, int64_t ld_out) {
    const BagConfig& b = model_.cfg.bags[static_cast<size_t>(bag)];
    const TableConfig& t = model_.cfg.tables[static_cast<size_t>(b.table)];
    FLURRY_CHECK(table_bound(model_, b.table), "shard exchange: asked to pool table '" << t.name << "', not owned here");
    embedding_bag_ref(model_.tables[static_cast<size_t>(b.table)].data(), t.rows, t.dim, offsets, indices, n, b.pooling,
                      static_cast<float*>(out), ld_out);
  };
  exchange_ = std::make_unique<ShardExchange>(model_.cfg, plan_, comm, comm, pool);
}

void ShardedCpuScorer::score(const DlrmBatch& batch, float* logits) {
  FLURRY_CHECK(!finished_, "sharded scorer: a batch after finish()");
  if (batch.n == 0) return;
  const int64_t w = exchange_->pooled_width();
  pooled_.resize(static_cast<size_t>(batch.n * w));
  exchange_->step(&batch, false, pooled_.data(), w);
  dlrm_forward_pooled(model_, batch, pooled_.data(), w, scratch_, logits);
}

void ShardedCpuScorer::finish() {
  if (finished_) return;
  finished_ = true;
  exchange_->drain();
}

Json ShardedCpuScorer::manifest() const {
  Json j = plan_.to_json(model_.cfg);
  j["device"] = "cpu";
  return j;
}

}  // namespace flurry::dlrm
