#include "export/slm_export.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/tensor_names.h"
#include "export/format/slm_format.h"

namespace slmc {

namespace {

// Rows are quantized in chunks of about this many weights: small enough to balance two threads
// over a model's few large matrices, large enough that scheduling costs nothing.
constexpr int64_t kChunkWeights = int64_t{1} << 16;

struct Chunk {
  size_t tensor;
  int64_t r0, r1;  // rows [r0, r1)
};

// Distortion sums of one chunk; reduced per tensor in chunk order, so the report does not depend
// on which thread ran what.
struct ChunkStats {
  double err2 = 0, ref2 = 0, max_abs = 0;
  int64_t zeroed = 0;
  int64_t bad_index = -1;  // first non-finite weight (flat index in the tensor), -1 if none
  float bad_value = 0;
};

struct Work {
  const float* src;  // (rows, cols) fp32
  int64_t rows, cols;
  codec::Format format;
  size_t row_bytes;
  bool lossy;
  std::vector<uint8_t> out;  // rows * row_bytes
};

// True if any of x[0..n) is NaN or infinite. Tests exponent bits, which vectorizes (std::isfinite
// in a loop does not).
bool any_non_finite(const float* x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t j = 0; j < n; ++j) {
    uint32_t bits;
    std::memcpy(&bits, x + j, 4);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad != 0;
}

// Adds the distortion of one row to `s`. Four interleaved double accumulators break the
// dependency chain of one running sum (about 4x faster); the order is fixed, so the result is
// deterministic.
void add_row_stats(const float* x, const float* y, int64_t n, ChunkStats* s) {
  double e2[4] = {0, 0, 0, 0}, r2[4] = {0, 0, 0, 0};
  double max_abs = 0;
  int64_t zeroed = 0;
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    for (int k = 0; k < 4; ++k) {
      const double ref = x[j + k], e = ref - static_cast<double>(y[j + k]);
      e2[k] += e * e;
      r2[k] += ref * ref;
      max_abs = std::max(max_abs, std::fabs(e));
      zeroed += y[j + k] == 0.0f && x[j + k] != 0.0f;
    }
  }
  for (; j < n; ++j) {
    const double ref = x[j], e = ref - static_cast<double>(y[j]);
    e2[0] += e * e;
    r2[0] += ref * ref;
    max_abs = std::max(max_abs, std::fabs(e));
    zeroed += y[j] == 0.0f && x[j] != 0.0f;
  }
  s->err2 += (e2[0] + e2[1]) + (e2[2] + e2[3]);
  s->ref2 += (r2[0] + r2[1]) + (r2[2] + r2[3]);
  s->max_abs = std::max(s->max_abs, max_abs);
  s->zeroed += zeroed;
}

void run_chunk(const Chunk& c, Work& w, ChunkStats* s, std::vector<float>* scratch) {
  scratch->resize(static_cast<size_t>(w.cols));
  for (int64_t r = c.r0; r < c.r1; ++r) {
    const float* x = w.src + r * w.cols;
    if (any_non_finite(x, w.cols)) {  // export fails; the codecs never see NaN or Inf
      for (int64_t j = 0; j < w.cols; ++j)
        if (!std::isfinite(x[j])) {
          s->bad_index = r * w.cols + j;
          s->bad_value = x[j];
          return;
        }
    }
    uint8_t* dst = w.out.data() + static_cast<size_t>(r) * w.row_bytes;
    codec::quantize_row_ref(w.format, x, w.cols, dst);
    if (!w.lossy) continue;
    codec::dequantize_row_ref(w.format, dst, w.cols, scratch->data());
    add_row_stats(x, scratch->data(), w.cols, s);
  }
}

}  // namespace

codec::Format slm_tensor_format(const TensorDecl& decl, codec::Format type, bool* fallback) {
  *fallback = false;
  const bool matrix = decl.shape.size() == 2 && (decl.is_linear || decl.name == names::kTokenEmbd ||
                                                 decl.name == names::kOutput);
  if (!matrix) return codec::Format::kF32;
  if (codec::row_fits(type, decl.shape[1])) return type;
  *fallback = true;  // only block formats can refuse a row; F16 holds any
  return codec::Format::kF16;
}

ExportReport quantize_for_export(const LoadedModel& m, codec::Format type,
                                 const TensorFormatRule& rule, int n_threads,
                                 const std::map<std::string, codec::QTensor>* packed,
                                 std::unique_ptr<Progress>* progress_out,
                                 std::vector<std::vector<uint8_t>>* bytes) {
  check_tensors(m.spec, m.tensors, m.path);
  const codec::FormatInfo& type_info = codec::format_info(type);

  ExportReport rep;
  rep.type = type;
  std::vector<Work> work;
  std::vector<Chunk> chunks;
  for (const TensorDecl& d : expected_tensors(m.spec)) {
    const HostTensor& t = m.tensors.at(d.name);
    TensorExport te;
    te.name = d.name;
    te.shape = d.shape;
    const codec::QTensor* pre = nullptr;
    if (packed != nullptr) {
      auto it = packed->find(d.name);
      if (it != packed->end()) pre = &it->second;
    }
    if (pre != nullptr) {
      // Stored by a pass: its bytes are the artifact, written as they are.
      SLMC_CHECK(pre->shape == d.shape, "export: packed tensor ", d.name, " has shape ",
                 shape_str(pre->shape), ", the model expects ", shape_str(d.shape));
      te.format = pre->format;
      te.note = "as quantized";
    } else {
      te.format = rule(d, type, &te.fallback);
    }
    if (te.fallback) {
      te.note = str_cat(d.shape[1], " columns are not a multiple of ", type_info.block_size,
                        ": stored as ", codec::format_info(te.format).name);
      ++rep.n_fallback;
    }
    te.lossy = te.format != codec::Format::kF32;
    te.n_weights = t.numel();
    Work w;
    w.src = t.data.data();
    w.cols = d.shape.back();
    w.rows = te.n_weights / w.cols;
    w.format = te.format;
    w.row_bytes = codec::row_bytes(te.format, w.cols);
    w.lossy = te.lossy;
    w.out.resize(w.row_bytes * static_cast<size_t>(w.rows));
    te.bytes = w.out.size();
    if (pre != nullptr) {
      SLMC_CHECK(pre->bytes.size() == w.out.size(), "export: packed tensor ", d.name, " holds ",
                 pre->bytes.size(), " bytes, ", codec::format_info(pre->format).name, " needs ",
                 w.out.size());
      w.out = pre->bytes;
      te.lossy = false;  // its distortion was reported by the pass that quantized it
      rep.n_weights += te.n_weights;
      rep.tensor_bytes += te.bytes;
      rep.tensors.push_back(std::move(te));
      work.push_back(std::move(w));
      continue;
    }
    const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkWeights / w.cols);
    for (int64_t r = 0; r < w.rows; r += rows_per_chunk)
      chunks.push_back({work.size(), r, std::min(w.rows, r + rows_per_chunk)});
    rep.n_weights += te.n_weights;
    rep.tensor_bytes += te.bytes;
    rep.tensors.push_back(std::move(te));
    work.push_back(std::move(w));
  }

  // Quantize: threads pull chunks; the calling thread also draws the progress bar.
  unsigned n =
      n_threads > 0 ? static_cast<unsigned>(n_threads) : std::thread::hardware_concurrency();
  n = std::max(1u, std::min<unsigned>(n, static_cast<unsigned>(std::max<size_t>(1, chunks.size()))));
  std::vector<ChunkStats> stats(chunks.size());
  std::atomic<size_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<bool> stop{false};
  std::exception_ptr error;
  std::mutex error_mu;
  *progress_out = std::make_unique<Progress>("export " + std::string(type_info.name),
                                             rep.n_weights, "w");
  Progress& progress = **progress_out;
  const auto worker = [&](bool draw) {
    std::vector<float> scratch;
    for (size_t c; !stop && (c = next++) < chunks.size();) {
      try {
        run_chunk(chunks[c], work[chunks[c].tensor], &stats[c], &scratch);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        stop = true;
      }
      done += (chunks[c].r1 - chunks[c].r0) * work[chunks[c].tensor].cols;
      if (draw) progress.update(done);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < n; ++i) threads.emplace_back(worker, false);
  worker(true);
  for (std::thread& t : threads) t.join();
  if (error) std::rethrow_exception(error);

  // Reduce the statistics per tensor, in chunk order.
  std::vector<ChunkStats> per_tensor(work.size());
  for (size_t c = 0; c < chunks.size(); ++c) {
    ChunkStats& t = per_tensor[chunks[c].tensor];
    const ChunkStats& s = stats[c];
    if (s.bad_index >= 0 && t.bad_index < 0) {
      t.bad_index = s.bad_index;
      t.bad_value = s.bad_value;
    }
    t.err2 += s.err2;
    t.ref2 += s.ref2;
    t.max_abs = std::max(t.max_abs, s.max_abs);
    t.zeroed += s.zeroed;
  }
  for (size_t i = 0; i < work.size(); ++i) {
    const ChunkStats& s = per_tensor[i];
    TensorExport& te = rep.tensors[i];
    SLMC_CHECK(s.bad_index < 0, m.path, ": tensor ", te.name, " holds ", s.bad_value,
               " at flat index ", s.bad_index, "; only finite weights can be exported");
    if (!te.lossy) continue;
    te.rel_l2 = s.ref2 > 0 ? std::sqrt(s.err2 / s.ref2) : 0.0;
    te.max_abs = s.max_abs;
    te.zero_frac = static_cast<double>(s.zeroed) / static_cast<double>(te.n_weights);
  }

  bytes->clear();
  for (Work& w : work) bytes->push_back(std::move(w.out));
  progress.update(rep.n_weights);  // other threads may have finished last
  return rep;
}

ExportReport export_slm(const LoadedModel& m, codec::Format type, const Tokenizer* tok,
                        const std::string& out, int n_threads,
                        const std::map<std::string, codec::QTensor>* packed) {
  const auto start = std::chrono::steady_clock::now();
  SLMC_CHECK(!out.empty(), "export: no output path");
  std::unique_ptr<Progress> progress;
  std::vector<std::vector<uint8_t>> bytes;
  ExportReport rep =
      quantize_for_export(m, type, slm_tensor_format, n_threads, packed, &progress, &bytes);
  rep.path = out;
  format::SlmWriter writer;
  writer.set_spec_json(m.spec.to_json());
  if (tok != nullptr) {
    SLMC_CHECK(tok->kind() == "byte" || !tok->blob().empty(), "tokenizer ", tok->source(), " (",
               tok->kind(), ") has no file bytes to embed");
    writer.set_tokenizer(tok->kind(), tok->blob());
    rep.tokenizer_kind = tok->kind();
    rep.tokenizer_bytes = tok->blob().size();
  }
  for (size_t i = 0; i < bytes.size(); ++i)
    writer.add_tensor(rep.tensors[i].name, rep.tensors[i].format, rep.tensors[i].shape,
                      std::move(bytes[i]));
  writer.write(out);

  std::error_code ec;
  rep.file_bytes = std::filesystem::file_size(out, ec);
  SLMC_CHECK(!ec, out, ": cannot stat what was just written: ", ec.message());
  rep.bits_per_weight =
      rep.n_weights > 0 ? 8.0 * static_cast<double>(rep.tensor_bytes) / rep.n_weights : 0.0;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char summary[96];
  std::snprintf(summary, sizeof summary, "%s bytes, %.3f bits/weight",
                with_commas(rep.file_bytes).c_str(), rep.bits_per_weight);
  progress->finish(summary);
  return rep;
}

std::string export_report_table(const ExportReport& r) {
  std::string s =
      str_cat(r.path, ": ", r.container, ", matrices in ", codec::format_info(r.type).name, ", tokenizer ",
              r.tokenizer_kind.empty()
                  ? "none"
                  : r.tokenizer_kind + " (" + with_commas(r.tokenizer_bytes) + " bytes)",
              "\n\n");
  size_t wname = 6;
  for (const TensorExport& t : r.tensors) wname = std::max(wname, t.name.size());
  char line[512];
  std::snprintf(line, sizeof line, "  %-*s  %-12s  %-7s  %12s  %9s  %9s  %7s  %s\n",
                static_cast<int>(wname), "tensor", "shape", "format", "bytes", "rel_l2", "max_abs",
                "zero%", "note");
  s += line;
  for (const TensorExport& t : r.tensors) {
    char rel[32], mx[32], zf[32];
    std::snprintf(rel, sizeof rel, "%.3e", t.rel_l2);
    std::snprintf(mx, sizeof mx, "%.3e", t.max_abs);
    std::snprintf(zf, sizeof zf, "%.2f", 100.0 * t.zero_frac);
    std::snprintf(line, sizeof line, "  %-*s  %-12s  %-7s  %12s  %9s  %9s  %7s  %s\n",
                  static_cast<int>(wname), t.name.c_str(), shape_str(t.shape).c_str(),
                  codec::format_info(t.format).name, with_commas(t.bytes).c_str(),
                  t.lossy ? rel : "-", t.lossy ? mx : "-", t.lossy ? zf : "-", t.note.c_str());
    s += line;
  }
  std::snprintf(line, sizeof line,
                "\n  total: %zu tensors, %s weights, %s tensor bytes, %.3f bits/weight; file %s "
                "bytes; %d fell back to another format; %.3f s\n",
                r.tensors.size(), with_commas(static_cast<uint64_t>(r.n_weights)).c_str(),
                with_commas(r.tensor_bytes).c_str(), r.bits_per_weight,
                with_commas(r.file_bytes).c_str(), r.n_fallback, r.seconds);
  s += line;
  return s;
}

std::string export_report_json(const ExportReport& r) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["path"] = r.path;
  j["format"] = r.container;
  j["type"] = codec::format_info(r.type).name;
  j["tokenizer"] = r.tokenizer_kind.empty()
                       ? ordered_json(nullptr)
                       : ordered_json{{"kind", r.tokenizer_kind}, {"bytes", r.tokenizer_bytes}};
  ordered_json ts = ordered_json::array();
  for (const TensorExport& t : r.tensors) {
    ordered_json e;
    e["name"] = t.name;
    e["shape"] = t.shape;
    e["format"] = codec::format_info(t.format).name;
    e["bytes"] = t.bytes;
    e["n_weights"] = t.n_weights;
    e["fallback"] = t.fallback;
    if (!t.note.empty()) e["note"] = t.note;
    if (t.lossy) {
      e["rel_l2"] = t.rel_l2;
      e["max_abs"] = t.max_abs;
      e["zero_frac"] = t.zero_frac;
    }
    ts.push_back(std::move(e));
  }
  j["tensors"] = std::move(ts);
  j["totals"] = {{"n_tensors", r.tensors.size()},
                 {"n_weights", r.n_weights},
                 {"tensor_bytes", r.tensor_bytes},
                 {"file_bytes", r.file_bytes},
                 {"bits_per_weight", r.bits_per_weight},
                 {"n_fallback", r.n_fallback},
                 {"seconds", r.seconds}};
  return j.dump(2);
}

}  // namespace slmc
