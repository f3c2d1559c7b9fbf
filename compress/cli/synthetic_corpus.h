// The demo's corpus, made here from a seeded grammar so the main job needs no downloaded data:
// short stories whose facts stay consistent (who has how many of what, and the sums), so a model
// that learns the structure visibly beats one that only learns spelling.
#pragma once

#include <cstdint>
#include <string>

namespace slmc::cli {

// `n_stories` stories separated by blank lines; same seed, same bytes.
std::string synthetic_stories(int64_t n_stories, uint64_t seed);

}  // namespace slmc::cli
