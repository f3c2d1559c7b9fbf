// tokenizer.json parsed in one pass with nlohmann's SAX interface: model.vocab and model.merges
// (a few hundred thousand entries in real files) go straight into flat lists, everything else
// becomes a json document. Builds no DOM node per vocabulary entry, which makes loading several
// times faster and smaller than a full parse. The same limits as checked_json::parse: nesting
// depth and duplicate keys are refused. Internal to compress/tokenizer.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace slmc::hf {

struct TokenizerJson {
  nlohmann::json doc;  // the file, without model.vocab / model.merges when those were taken
  // model.vocab when it was an object of integers, in file order.
  bool has_vocab = false;
  std::vector<std::pair<std::string, int64_t>> vocab;
  // model.merges when it was a list of "a b" strings or ["a", "b"] pairs, in file order.
  bool has_merges = false;
  std::vector<std::pair<std::string, std::string>> merges;
};

// Throws slmc::Error naming `origin` (and the key) for invalid JSON, nesting deeper than
// checked_json::kMaxDepth, a duplicate key, a vocabulary id that is not an integer in
// [0, max_id], or a merge that is neither "a b" (one space) nor a pair of strings.
TokenizerJson parse_tokenizer_json(std::string_view text, const std::string& origin,
                                   int64_t max_id);

}  // namespace slmc::hf
