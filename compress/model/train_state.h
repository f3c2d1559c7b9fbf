// What a training checkpoint holds besides tensors, and the data order, both torch-free so the
// checkpoint reader can be fuzzed on its own (tests/fuzz/fuzz_train_state.cpp).
//
// A checkpoint is one safetensors file (compress/io/safetensors.h): every trainable tensor as
// "param/<name>", AdamW's moments as "adam_m/<name>" and "adam_v/<name>" (fp32), and this state
// as JSON in the metadata key "slmc_train_state". Nothing in it depends on the clock, so two runs
// that did the same steps write byte-identical files.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/json_util.h"

namespace slmc {

inline constexpr const char* kTrainStateKey = "slmc_train_state";
inline constexpr int64_t kTrainStateVersion = 1;

// Where training windows start in the token stream. Two orders:
//  - random offsets (`slmc train`): every window starts at a uniformly drawn offset;
//  - shuffled windows (`slmc distill`): the stream is cut into n = N / ctx fixed windows
//    (window k covers stream[k * ctx, (k + 1) * ctx)), visited once per epoch in a seeded
//    permutation. Fixed windows are what a teacher-logit cache can be keyed by.
// A window at offset `off` has inputs BOS, stream[off .. off + ctx - 2] and targets
// stream[off .. off + ctx - 1]. The whole state is a short string, so a resumed run continues the
// same order.
class WindowSampler {
 public:
  enum class Order { kRandomOffsets, kShuffledWindows };

  // `n_tokens` stream tokens (>= ctx), windows of `ctx` targets.
  WindowSampler(Order order, int64_t n_tokens, int64_t ctx, uint64_t seed)
      : order_(order), n_tokens_(n_tokens), ctx_(ctx), seed_(seed), rng_(seed) {
    SLMC_CHECK(ctx >= 2 && n_tokens >= ctx, "training data has ", n_tokens,
               " tokens, fewer than one window of ", ctx);
    n_windows_ = n_tokens / ctx;
    if (order_ == Order::kShuffledWindows) shuffle_epoch();
  }

  Order order() const { return order_; }
  int64_t n_windows() const { return n_windows_; }
  int64_t epoch() const { return epoch_; }

  // The next `n` window offsets.
  std::vector<int64_t> next(int64_t n) {
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (order_ == Order::kRandomOffsets) {
        // The draw `slmc train` always made (so its runs are unchanged), clamped: its top value
        // N - ctx + 1 would read one token past the stream.
        std::uniform_int_distribution<int64_t> pick(0, n_tokens_ - ctx_ + 1);
        out.push_back(std::min(pick(rng_), n_tokens_ - ctx_));
      } else {
        if (pos_ == n_windows_) {
          ++epoch_;
          pos_ = 0;
          shuffle_epoch();
        }
        out.push_back(perm_[static_cast<size_t>(pos_++)] * ctx_);
      }
    }
    return out;
  }

  // "random <mt19937_64 state>" or "windows <epoch> <position>".
  std::string state() const {
    std::ostringstream os;
    if (order_ == Order::kRandomOffsets)
      os << "random " << rng_;
    else
      os << "windows " << epoch_ << " " << pos_;
    return os.str();
  }

  // Restores a state() string; throws naming `origin` if it does not fit this sampler.
  void restore(const std::string& s, const std::string& origin) {
    std::istringstream is(s);
    std::string kind;
    is >> kind;
    if (order_ == Order::kRandomOffsets) {
      SLMC_CHECK(kind == "random", origin, ": sampler state '", s.substr(0, 40),
                 "' is not a random-offset state");
      std::mt19937_64 r;
      is >> r;
      SLMC_CHECK(!is.fail(), origin, ": sampler state is not a valid generator state");
      rng_ = r;
      return;
    }
    int64_t epoch = -1, pos = -1;
    is >> epoch >> pos;
    SLMC_CHECK(kind == "windows" && !is.fail() && epoch >= 0 && epoch < (int64_t{1} << 40) &&
                   pos >= 0 && pos <= n_windows_,
               origin, ": sampler state '", s.substr(0, 40), "' does not fit ", n_windows_,
               " windows");
    epoch_ = epoch;
    pos_ = pos;
    shuffle_epoch();
  }

 private:
  // Fisher-Yates with an explicit generator per epoch (std::shuffle's algorithm is not
  // specified, so the order would depend on the standard library).
  void shuffle_epoch() {
    perm_.resize(static_cast<size_t>(n_windows_));
    for (int64_t i = 0; i < n_windows_; ++i) perm_[static_cast<size_t>(i)] = i;
    std::mt19937_64 g(seed_ ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(epoch_ + 1)));
    for (int64_t i = n_windows_ - 1; i > 0; --i) {
      const int64_t j = static_cast<int64_t>(g() % static_cast<uint64_t>(i + 1));
      std::swap(perm_[static_cast<size_t>(i)], perm_[static_cast<size_t>(j)]);
    }
  }

  Order order_;
  int64_t n_tokens_, ctx_;
  uint64_t seed_;
  int64_t n_windows_ = 0;
  std::mt19937_64 rng_;        // random offsets
  int64_t epoch_ = 0, pos_ = 0;  // shuffled windows
  std::vector<int64_t> perm_;
};

// Everything a resumed run needs besides tensors.
struct TrainState {
  int64_t step = 0;         // optimizer steps done
  int64_t tokens_seen = 0;  // global (all ranks)
  double tail_loss = 0;     // sum of the per-step losses over the run's last 10% of steps so far
  int64_t tail_n = 0;
  std::string sampler;      // WindowSampler::state()
  std::string torch_rng;    // hex of LibTorch's CPU generator state
  std::map<std::string, int64_t> adam_steps;        // AdamW step count per trainable tensor
  std::vector<std::pair<int64_t, double>> history;  // held-out (step, nats/token)
  std::string fingerprint;  // resolved options and input hashes; a resume must match it

  std::string to_json() const {
    nlohmann::json j;
    j["version"] = kTrainStateVersion;
    j["step"] = step;
    j["tokens_seen"] = tokens_seen;
    j["tail_loss"] = tail_loss;
    j["tail_n"] = tail_n;
    j["sampler"] = sampler;
    j["torch_rng"] = torch_rng;
    j["adam_steps"] = adam_steps;
    nlohmann::json h = nlohmann::json::array();
    for (const auto& e : history) h.push_back({e.first, e.second});
    j["history"] = h;
    j["fingerprint"] = fingerprint;
    return j.dump();
  }

  // Throws slmc::Error naming `origin` and the key for anything missing, mistyped or out of
  // range. Bounds: counts below 2^62, strings below 1 MiB (the fingerprint 4 MiB), history and
  // adam_steps below 2^20 entries.
  static TrainState from_json(const std::string& text, const std::string& origin) {
    namespace cj = checked_json;
    const nlohmann::json j = cj::parse(text, origin + " (" + kTrainStateKey + ")", 8);
    SLMC_CHECK(j.is_object(), origin, ": ", kTrainStateKey, " is not a JSON object");
    auto key = [&](const char* k) -> const nlohmann::json& {
      auto it = j.find(k);
      SLMC_CHECK(it != j.end(), origin, ": ", kTrainStateKey, " has no '", k, "'");
      return *it;
    };
    auto what = [&](const std::string& k) { return origin + ": " + kTrainStateKey + "." + k; };
    constexpr int64_t kBig = int64_t{1} << 62;
    const int64_t version = cj::get_int(key("version"), what("version"), 1, 1 << 20);
    SLMC_CHECK(version == kTrainStateVersion, origin, ": checkpoint version ", version,
               " (this slmc reads version ", kTrainStateVersion, ")");
    TrainState s;
    s.step = cj::get_int(key("step"), what("step"), 0, kBig);
    s.tokens_seen = cj::get_int(key("tokens_seen"), what("tokens_seen"), 0, kBig);
    s.tail_loss = cj::get_number(key("tail_loss"), what("tail_loss"), -1e300, 1e300);
    s.tail_n = cj::get_int(key("tail_n"), what("tail_n"), 0, kBig);
    s.sampler = cj::get_string(key("sampler"), what("sampler"));
    s.torch_rng = cj::get_string(key("torch_rng"), what("torch_rng"));
    s.fingerprint = cj::get_string(key("fingerprint"), what("fingerprint"), size_t{4} << 20);
    const nlohmann::json& steps = key("adam_steps");
    SLMC_CHECK(steps.is_object() && steps.size() < (size_t{1} << 20), what("adam_steps"),
               " must be an object of tensor name -> step count");
    for (auto it = steps.begin(); it != steps.end(); ++it)
      s.adam_steps[it.key()] = cj::get_int(it.value(), what("adam_steps." + it.key()), 0, kBig);
    const nlohmann::json& hist = key("history");
    SLMC_CHECK(hist.is_array() && hist.size() < (size_t{1} << 20), what("history"),
               " must be an array of [step, nll] pairs");
    for (size_t i = 0; i < hist.size(); ++i) {
      const nlohmann::json& e = hist[i];
      const std::string w = what("history[" + std::to_string(i) + "]");
      SLMC_CHECK(e.is_array() && e.size() == 2, w, " must be a [step, nll] pair");
      s.history.emplace_back(cj::get_int(e[0], w, 0, kBig), cj::get_number(e[1], w, -1e300, 1e300));
    }
    return s;
  }
};

// Hex of raw bytes and back (the generator state); from_hex throws naming `what`.
inline std::string to_hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}

inline std::vector<uint8_t> from_hex(const std::string& s, const std::string& what) {
  SLMC_CHECK(s.size() % 2 == 0, what, ": odd-length hex string");
  auto nib = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    fail(what, ": '", c, "' is not a lower-case hex digit");
  };
  std::vector<uint8_t> out(s.size() / 2);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<uint8_t>(nib(s[2 * i]) * 16 + nib(s[2 * i + 1]));
  return out;
}

}  // namespace slmc
