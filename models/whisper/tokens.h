// Whisper's special tokens, found by name in the checkpoint's tokenizer, never by fixed id (the ids
// move between model generations: v3 added <|yue|>, turning every id after it by one), completed
// by generation_config.json's suppress lists. The result is the one special-token type the
// decoding, the logit rules and the in-flight scheduler read (SpecialTokens, logit_rules.h).
#pragma once

#include <nlohmann/json.hpp>

#include "io/bpe_tokenizer.h"
#include "models/whisper/logit_rules.h"

namespace flurry::whisper {

// Throws flurry::Error naming the first missing token when the tokenizer is not Whisper's, or a
// token between <|startoftranscript|> and <|translate|> that is not a language token.
// `generation_config`: suppress_tokens (what the suppress option "-1" stands for) and
// begin_suppress_tokens (the blank, preferred over the tokenizer's encoding of " "); both optional.
SpecialTokens resolve_special_tokens(const BpeTokenizer& tok,
                                     const nlohmann::json& generation_config = nlohmann::json::object());

}  // namespace flurry::whisper
