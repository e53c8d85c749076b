#include "models/whisper/gpu/gpu_decoder_model.h"

#include "runtime/check.h"

namespace flurry::whisper {

void GpuDecoderModel::encode_audio(int index, const float* mel) { encode_audios(index, 1, &mel); }

void GpuDecoderModel::encode_audios(int first, int n, const float* const* mels) {
  upload_mels(g_, n, mels);
  encode_windows(g_, first, n);
}

int GpuDecoderModel::vocab_size() const { return static_cast<int>(g_.model->config().vocab_size); }
int GpuDecoderModel::n_text_ctx() const { return static_cast<int>(g_.state->max_tokens); }

void GpuDecoderModel::begin(const std::vector<int>& audio_of_seq) {
  const WhisperGpuState& s = *g_.state;
  FLURRY_CHECK(static_cast<int>(audio_of_seq.size()) <= s.plan.max_slots,
               "whisper gpu: " << audio_of_seq.size() << " sequences but the plan has " << s.plan.max_slots
                               << " decoder slots (raise --batch-size or lower --beam_size/--best_of)");
  for (int a : audio_of_seq) {
    FLURRY_CHECK(a >= 0 && a < s.plan.max_windows && s.encoded[static_cast<size_t>(a)],
                 "sequence reads audio " << a << ", which was not encoded");
  }
  audio_ = audio_of_seq;
  pos_.assign(audio_.size(), 0);
}

void GpuDecoderModel::forward(const std::vector<std::vector<int>>& tokens, float* last_logits,
                              const std::vector<int>& aux_pos, float* aux_logits) {
  FLURRY_CHECK(tokens.size() == audio_.size(),
               "forward got tokens for " << tokens.size() << " sequences, " << audio_.size() << " are running");
  FLURRY_CHECK(aux_pos.empty() || aux_pos.size() == tokens.size(), "forward: aux_pos for " << aux_pos.size()
                                                                                        << " of " << tokens.size()
                                                                                        << " sequences");
  std::vector<GpuSeq> seqs(tokens.size());
  for (size_t s = 0; s < tokens.size(); ++s) {
    GpuSeq& q = seqs[s];
    q.slot = static_cast<int>(s);
    q.audio = audio_[s];
    q.pos = pos_[s];
    q.tokens = tokens[s].data();
    q.n_new = static_cast<int>(tokens[s].size());
    q.aux = aux_pos.empty() ? -1 : aux_pos[s];
    FLURRY_CHECK(aux_pos.empty() || (q.aux >= 0 && q.aux < q.n_new),
                 "aux position " << q.aux << " past the " << q.n_new << " tokens given");
  }
  decoder_forward(g_, seqs, last_logits, aux_pos.empty() ? nullptr : aux_logits);
  for (size_t s = 0; s < tokens.size(); ++s) pos_[s] += static_cast<int>(tokens[s].size());
}

void GpuDecoderModel::fork(const std::vector<int>& parent) {
  const WhisperGpuState& s = *g_.state;
  const int n_new = static_cast<int>(parent.size());
  const int n_old = static_cast<int>(audio_.size());
  FLURRY_CHECK(n_new <= s.plan.max_slots, "fork to " << n_new << " sequences; the plan has " << s.plan.max_slots
                                                     << " decoder slots");
  for (int p : parent) FLURRY_CHECK(p >= 0 && p < n_old, "fork from sequence " << p);
  const int spare = s.plan.max_slots;  // the state holds max_slots + 1 cache slots
  // src[i]: the slot whose cache new sequence i needs; readers[j]: pending copies reading slot j.
  std::vector<int> src(parent), len(static_cast<size_t>(n_new));
  for (int i = 0; i < n_new; ++i) len[i] = pos_[static_cast<size_t>(parent[i])];
  std::vector<int> readers(static_cast<size_t>(spare + 1), 0);
  std::vector<bool> pending(static_cast<size_t>(n_new), false);
  int left = 0;
  for (int i = 0; i < n_new; ++i) {
    if (src[i] != i) {
      pending[i] = true;
      ++readers[src[i]];
      ++left;
    }
  }
  while (left > 0) {
    bool progressed = false;
    for (int i = 0; i < n_new; ++i) {
      if (!pending[i] || readers[i] > 0) continue;
      copy_slot(g_, src[i], i, len[i]);  // nobody still needs slot i's old contents
      pending[i] = false;
      --readers[src[i]];
      --left;
      progressed = true;
    }
    if (progressed) continue;
    // Only cycles remain: park one slot in the spare and redirect its readers there.
    int v = 0;
    while (!pending[v]) ++v;
    copy_slot(g_, v, spare, pos_[static_cast<size_t>(v)]);
    for (int i = 0; i < n_new; ++i) {
      if (pending[i] && src[i] == v) {
        src[i] = spare;
        --readers[v];
        ++readers[spare];
      }
    }
  }
  std::vector<int> audio(static_cast<size_t>(n_new)), pos(static_cast<size_t>(n_new));
  for (int i = 0; i < n_new; ++i) {
    audio[i] = audio_[static_cast<size_t>(parent[i])];
    pos[i] = pos_[static_cast<size_t>(parent[i])];
  }
  audio_ = std::move(audio);
  pos_ = std::move(pos);
}

}  // namespace flurry::whisper
