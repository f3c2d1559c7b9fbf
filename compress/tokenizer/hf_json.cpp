#include "compress/tokenizer/hf_json.h"

#include <cmath>
#include <unordered_set>

#include "compress/core/error.h"
#include "compress/core/json_util.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc::hf {

namespace {

using json = nlohmann::json;

// Builds the document like nlohmann's own DOM parser, except under model.vocab and
// model.merges, whose entries go to the flat lists.
class Sax {
 public:
  Sax(TokenizerJson* out, const std::string& origin, int64_t max_id)
      : out_(out), origin_(origin), max_id_(max_id) {}

  bool null() { return scalar(json(nullptr)); }
  bool boolean(bool b) { return scalar(json(b)); }
  bool number_integer(json::number_integer_t v) {
    if (mode() == Mode::kVocab) return vocab_id(v >= 0 && v <= max_id_, v, json(v));
    return scalar(json(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (mode() == Mode::kVocab) {
      return vocab_id(v <= static_cast<uint64_t>(max_id_), static_cast<int64_t>(std::min<uint64_t>(v, INT64_MAX)), json(v));
    }
    return scalar(json(v));
  }
  bool number_float(json::number_float_t v, const json::string_t&) {
    if (mode() == Mode::kVocab) {
      if (!std::isfinite(v) || v != std::floor(v)) fail_vocab("is not an integer", json(v));
      // Range first: converting an out-of-range double is undefined.
      const bool in_range = v >= 0 && v <= static_cast<double>(max_id_);
      return vocab_id(in_range, in_range ? static_cast<int64_t>(v) : 0, json(v));
    }
    return scalar(json(v));
  }
  bool string(json::string_t& s) {
    switch (mode()) {
      case Mode::kVocab:
        fail_vocab("must be an integer", json(s));
      case Mode::kMerges: {
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          fail_merge("must be two tokens separated by one space, got ", checked_json::excerpt(json(s)));
        }
        out_->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        ++top().count;
        return true;
      }
      case Mode::kPair:
        if (top().count >= 2) fail_pair();
        top().pair[top().count++] = std::move(s);
        return true;
      default:
        return scalar(json(std::move(s)));
    }
  }
  bool binary(json::binary_t&) { return scalar(json(nullptr)); }  // not produced by JSON text

  bool start_object(std::size_t) { return open(/*object=*/true); }
  bool start_array(std::size_t) { return open(/*object=*/false); }

  bool key(json::string_t& k) {
    Frame& f = top();
    if (f.mode == Mode::kDom && !f.keys.insert(k).second) {
      fail(origin_, ": duplicate key \"", k.substr(0, 60), k.size() > 60 ? "...\"" : "\"");
    }
    f.key = std::move(k);
    return true;
  }

  bool end_object() {
    frames_.pop_back();
    return true;
  }

  bool end_array() {
    if (mode() == Mode::kPair) {
      Frame& f = top();
      if (f.count != 2) fail_pair();
      out_->merges.emplace_back(std::move(f.pair[0]), std::move(f.pair[1]));
      frames_.pop_back();
      ++top().count;
      return true;
    }
    frames_.pop_back();
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    fail(origin_, ": not valid JSON: ", e.what());
  }

 private:
  enum class Mode { kDom, kVocab, kMerges, kPair };
  struct Frame {
    Mode mode;
    bool object;
    json* value;  // kDom: the container being filled
    bool is_model = false;  // the object at the top level's "model"
    std::string key;        // objects: the key of the next value
    size_t count = 0;       // kMerges: entries so far; kPair: strings so far
    std::unordered_set<std::string> keys;
    std::string pair[2];
  };

  Mode mode() const { return frames_.empty() ? Mode::kDom : frames_.back().mode; }

  // An object or a list begins: the top level, model.vocab (an object), model.merges (a list),
  // one ["a", "b"] merge, or any other container of the document.
  bool open(bool object) {
    switch (mode()) {
      case Mode::kVocab:
        fail_vocab(object ? "must be an integer, got an object" : "must be an integer, got a list",
                   json());
      case Mode::kMerges:
        if (object) fail_pair();
        push(Mode::kPair, false, nullptr);
        return true;
      case Mode::kPair:
        fail_pair();
      default:
        break;
    }
    if (frames_.empty()) {
      out_->doc = object ? json::object() : json::array();
      push(Mode::kDom, object, &out_->doc);
      return true;
    }
    if (at_model_key(object ? "vocab" : "merges")) {
      (object ? out_->has_vocab : out_->has_merges) = true;
      mark_key_taken();
      push(object ? Mode::kVocab : Mode::kMerges, object, nullptr);
      return true;
    }
    push(Mode::kDom, object, &add(object ? json::object() : json::array()));
    return true;
  }
  Frame& top() { return frames_.back(); }

  void push(Mode m, bool object, json* value) {
    if (frames_.size() >= static_cast<size_t>(checked_json::kMaxDepth)) {
      fail(origin_, ": nesting deeper than ", checked_json::kMaxDepth, " levels");
    }
    const bool is_model = m == Mode::kDom && object && frames_.size() == 1 &&
                          frames_[0].object && frames_[0].key == "model";
    frames_.push_back(Frame{m, object, value, is_model, {}, 0, {}, {}});
  }

  bool at_model_key(const char* k) const {
    const Frame& f = frames_.back();
    return f.mode == Mode::kDom && f.is_model && f.key == k;
  }

  // The model object keeps a null under the key, so "missing key" errors do not fire.
  void mark_key_taken() { (*top().value)[top().key] = nullptr; }

  // Adds `v` to the container on top and returns it.
  json& add(json&& v) {
    Frame& f = top();
    if (f.object) return (*f.value)[f.key] = std::move(v);
    f.value->push_back(std::move(v));
    return f.value->back();
  }

  bool scalar(json&& v) {
    switch (mode()) {
      case Mode::kVocab:
        fail_vocab("must be an integer", v);
      case Mode::kMerges:
      case Mode::kPair:
        fail_pair();
      default:
        break;
    }
    if (frames_.empty()) {
      out_->doc = std::move(v);
    } else {
      add(std::move(v));
    }
    return true;
  }

  bool vocab_id(bool in_range, int64_t id, const json& v) {
    if (!in_range) fail_vocab("is outside [0, " + std::to_string(max_id_) + "]", v);
    out_->vocab.emplace_back(std::move(top().key), id);
    return true;
  }

  [[noreturn]] void fail_vocab(const std::string& problem, const json& v) {
    const std::string at = origin_ + ": model.vocab[" + tokenizer_internal::quote(top().key) + "]";
    if (v.is_null()) fail(at, " ", problem);
    fail(at, " = ", checked_json::excerpt(v), " ", problem);
  }
  [[noreturn]] void fail_merge(const std::string& problem, const std::string& value) {
    fail(origin_, ": model.merges[", top().count, "] ", problem, value);
  }
  [[noreturn]] void fail_pair() {
    const size_t index = mode() == Mode::kPair ? frames_[frames_.size() - 2].count : top().count;
    fail(origin_, ": model.merges[", index, "] must be \"a b\" or [\"a\", \"b\"]");
  }

  TokenizerJson* out_;
  const std::string& origin_;
  int64_t max_id_;
  std::vector<Frame> frames_;
};

}  // namespace

TokenizerJson parse_tokenizer_json(std::string_view text, const std::string& origin,
                                   int64_t max_id) {
  TokenizerJson out;
  Sax sax(&out, origin, max_id);
  nlohmann::json::sax_parse(text.begin(), text.end(), &sax);
  return out;
}

}  // namespace slmc::hf
