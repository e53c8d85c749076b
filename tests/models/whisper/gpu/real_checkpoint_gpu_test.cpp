// The GPU pipeline with a real checkpoint (models-cache/whisper-base, head_dim 64) on real speech:
// the same transcripts as the CPU path, greedy without timestamps (token for token) and with
// openai-whisper's defaults (beam search 5, timestamps, temperature fallback: fork on the device).
#include <gtest/gtest.h>

#include "models/whisper/app/pipeline.h"
#include "models/whisper/gpu/gpu_decoder_model.h"
#include "models/whisper/gpu/whisper_gpu.h"
#include "tests/common/test_util.h"
#include "tests/models/whisper/e2e/e2e_util.h"

namespace flurry::whisper {
namespace {

TEST(WhisperGpuReal, JfkTranscriptsEqualCpu) {
  FLURRY_REQUIRE_GPU();
  const std::string dir = test::real_whisper_dir();
  if (dir.empty()) GTEST_SKIP() << "no real checkpoint: run tools/fetch_whisper_model.sh";
  const std::string wav = test::shared_data_path("speech/jfk.wav");
  if (wav.empty()) GTEST_SKIP() << "../shared/data/speech/jfk.wav absent";
  const WhisperAssets assets = load_whisper_assets(dir);
  WhisperGpuOptions o;
  o.plan.max_slots = 5;
  auto gpu = WhisperGpu::create(*assets.model, o);
  GpuDecoderModel decoder(*gpu);
  WindowBackend backend;
  backend.decoder = &decoder;
  backend.encode = [&](const float* mel) { decoder.encode_audio(0, mel); };

  TranscribeOptions greedy;
  greedy.temperatures = {0.0f};
  greedy.decode.without_timestamps = true;
  TranscribeOptions defaults;
  defaults.decode.beam_size = 5;
  defaults.decode.best_of = 5;
  for (const TranscribeOptions* opt : {&greedy, &defaults}) {
    double d_cpu = 0, d_gpu = 0;
    const Transcript c = transcribe_file(assets, wav, *opt, &d_cpu);
    const Transcript g = transcribe_file(assets, wav, *opt, &d_gpu, backend);
    EXPECT_EQ(g.text, c.text);
    EXPECT_EQ(g.language, c.language);
    ASSERT_EQ(g.segments.size(), c.segments.size());
    for (size_t i = 0; i < c.segments.size(); ++i) {
      EXPECT_EQ(g.segments[i].tokens, c.segments[i].tokens) << "segment " << i;
      EXPECT_NEAR(g.segments[i].avg_logprob, c.segments[i].avg_logprob, 2e-2) << "segment " << i;
    }
    std::printf("gpu: \"%s\"\n", g.text.c_str());
  }
}

}  // namespace
}  // namespace flurry::whisper
