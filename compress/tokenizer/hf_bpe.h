// The BPE model of a Hugging Face tokenizer.json: vocabulary, merges ranked on pairs of ids, and
// the word encoder of the Rust crate's models/bpe (merge_word + Word::merge_all), with a bounded
// per-word cache. Internal to compress/tokenizer.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compress/tokenizer/hf_pipeline.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc::hf {

// Ids of tokenizer.json are below this bound: 16.7M tokens, 64x the largest vocabulary in use
// (Gemma 3's 262,144), and small enough that tables indexed by id stay cheap.
inline constexpr int64_t kMaxId = (int64_t{1} << 24) - 1;
// Ids no token names are allowed up to this many beyond the number of named tokens.
inline constexpr int64_t kMaxHoles = 1024;

// Reusable buffers of one encode call (the model itself is immutable).
struct BpeScratch {
  struct Symbol {
    int32_t id;          // -1 once merged into its left neighbour
    int32_t prev, next;  // neighbours, -1 at the ends
  };
  struct Candidate {  // a merge of symbols [pos] and [pos].next
    uint32_t rank, pos;
    int32_t left, right, merged;
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::vector<int32_t> ids;
  std::string unit;
  // Holds the model's cache mutex while an encode call uses the cache; when another thread
  // holds it, that call encodes without the cache (same result).
  std::unique_lock<std::mutex> cache_lock;
};

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object of type BPE (its options), `vocab` and `merges`
  // its vocabulary (ids already within [0, kMaxId]) and merges as parse_tokenizer_json read
  // them; `byte_level` says the words arrive as raw bytes, each standing for its GPT-2 alphabet
  // character (a ByteLevel pre-tokenizer). Checks every id, merge and option; errors name `w`'s
  // file and the key.
  BpeModel(const nlohmann::json& model, std::vector<std::pair<std::string, int64_t>> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, const Where& w,
           bool byte_level);
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // One more than the largest id of model.vocab.
  int32_t size() const { return static_cast<int32_t>(tokens_.size()); }
  // The token of `id` as stored in model.vocab ("" for an id it does not name).
  const std::string& token(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
  bool has(int32_t id) const { return id >= 0 && id < size() && named_[static_cast<size_t>(id)]; }
  // The id of `token` in model.vocab, -1 if absent.
  int32_t find(std::string_view token) const { return index_.find(token); }
  int32_t unk_id() const { return unk_id_; }
  bool byte_fallback() const { return byte_fallback_; }
  bool byte_level() const { return byte_level_; }
  // Merges in rank order, as ids of model.vocab.
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  // The id of "<0xXX>" for byte b, -1 when absent.
  int32_t byte_token(int b) const { return byte_tokens_[static_cast<size_t>(b)]; }

  // Appends the ids of one pre-tokenized word to `out` (the Rust crate's BPE::tokenize).
  void encode(std::string_view word, BpeScratch& sc, std::vector<int32_t>* out) const;

  // Takes the cache lock into `sc` if it is free.
  void lock_cache(BpeScratch& sc) const;

 private:
  struct MergeSlot {
    uint64_t key = kEmpty;  // left << 32 | right
    uint32_t rank = 0;
    int32_t merged = -1;
    static constexpr uint64_t kEmpty = ~uint64_t{0};
  };
  struct CacheSlot {
    uint64_t hash = 0;
    std::string key;
    std::vector<int32_t> ids;
  };
  static constexpr size_t kCacheSlots = size_t{1} << 15;
  static constexpr size_t kCacheMaxKey = 64;  // longer chunks are not cached
  static constexpr size_t kCutMin = 32;       // shorter words are not cut into chunks

  const MergeSlot* find_merge(int32_t left, int32_t right) const;
  void add_merge(int32_t left, int32_t right, uint32_t rank, int32_t merged);
  // Cuts `word` where no merge can join its two sides and encodes each chunk.
  void encode_chunks(std::string_view word, BpeScratch& sc, std::vector<int32_t>* out) const;
  // merge_word + merge_all on one chunk, through the cache.
  void encode_chunk(std::string_view chunk, BpeScratch& sc, std::vector<int32_t>* out) const;
  void merge_word(std::string_view word, BpeScratch& sc) const;
  // Adds the symbols of one unit (a character, or a byte in byte-level mode) not in the vocab:
  // its byte tokens, or unk (fused with a preceding unk when fuse_unk), or nothing.
  void add_unknown(std::string_view unit, BpeScratch& sc, int32_t* pending_unk) const;

  std::vector<std::string> tokens_;  // by id
  std::vector<bool> named_;          // by id: model.vocab names it
  tokenizer_internal::PieceIndex index_;  // token -> id; views into tokens_
  bool byte_level_;
  // Byte-level mode: the id of each byte's alphabet character (-1 if absent), and the raw
  // bytes each token stands for (for ignore_merges lookups of raw words).
  std::array<int32_t, 256> byte_units_{};
  std::string raw_arena_;
  tokenizer_internal::PieceIndex raw_index_;  // views into raw_arena_
  std::array<int32_t, 256> byte_tokens_{};    // "<0xXX>" ids
  std::vector<MergeSlot> merge_table_;        // open addressing, a power of two
  std::vector<std::pair<int32_t, int32_t>> merges_;
  // joinable_[a * 256 + b]: some merge joins a left part ending in byte a to a right part
  // starting with byte b. A word can be cut between two known units whose bytes are not
  // joinable: no merge ever crosses there, so the pieces encode independently.
  std::vector<bool> joinable_;
  bool can_cut_ = false;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix

  mutable std::mutex cache_mu_;
  mutable std::vector<CacheSlot> cache_;  // allocated on first use
};

}  // namespace slmc::hf
