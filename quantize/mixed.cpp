#include "quantize/mixed.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "compress/core/error.h"

namespace slmc::quant {

namespace {

struct Option {
  uint64_t bytes;
  double error;
  size_t index;  // into the caller's options
};

// A step along one tensor's lower convex hull: moving from hull point k - 1 to k costs `bytes`
// more and saves `gain` error.
struct Segment {
  size_t t;  // tensor, in search order
  size_t k;
  uint64_t bytes;
  double gain;
  double rate;  // gain per byte
};

class Allocator {
 public:
  Allocator(const std::vector<TensorChoices>& tensors, uint64_t budget, uint64_t max_nodes)
      : budget_(budget), max_nodes_(max_nodes) {
    prepare(tensors);
  }

  // Returns, per tensor in the caller's order, the index into its options.
  std::vector<size_t> solve() {
    lp_greedy();
    local_search();
    branch_and_bound();
    // The search may stop at its node limit with an incumbent it found itself; polish it.
    if (aborted_) local_search();
    std::vector<size_t> out(n_);
    for (size_t t = 0; t < n_; ++t) out[order_[t]] = eff_[t][best_[t]].index;
    return out;
  }

 private:
  void prepare(const std::vector<TensorChoices>& tensors) {
    n_ = tensors.size();
    std::vector<std::vector<Option>> eff(n_);
    for (size_t t = 0; t < n_; ++t) {
      std::vector<Option> all;
      for (size_t i = 0; i < tensors[t].options.size(); ++i)
        all.push_back({tensors[t].options[i].bytes, tensors[t].options[i].error, i});
      std::sort(all.begin(), all.end(), [](const Option& a, const Option& b) {
        if (a.bytes != b.bytes) return a.bytes < b.bytes;
        if (a.error != b.error) return a.error < b.error;
        return a.index < b.index;
      });
      // Keep the efficient options only: an option with more bytes must have less error. Some
      // optimum uses efficient options only, and bytes then strictly increase while the error
      // strictly decreases along the list.
      for (const Option& o : all)
        if (eff[t].empty() || o.error < eff[t].back().error) eff[t].push_back(o);
    }
    // Search order: the tensors whose choice matters most (largest error range) first, so the
    // branch and bound decides the big questions near the root.
    order_.resize(n_);
    std::iota(order_.begin(), order_.end(), size_t{0});
    std::stable_sort(order_.begin(), order_.end(), [&](size_t a, size_t b) {
      return eff[a].front().error - eff[a].back().error >
             eff[b].front().error - eff[b].back().error;
    });
    eff_.resize(n_);
    for (size_t t = 0; t < n_; ++t) eff_[t] = eff[order_[t]];

    // Lower convex hull of each tensor's (bytes, error) points: the options a Lagrangian
    // relaxation (minimise error + lambda * bytes) can pick for some lambda.
    hull_.assign(n_, {});
    for (size_t t = 0; t < n_; ++t) {
      std::vector<size_t>& h = hull_[t];
      for (size_t k = 0; k < eff_[t].size(); ++k) {
        while (h.size() >= 2) {
          const Option& a = eff_[t][h[h.size() - 2]];
          const Option& b = eff_[t][h.back()];
          const Option& c = eff_[t][k];
          // Drop b unless a -> b saves more per byte than b -> c.
          const long double ab = static_cast<long double>(a.error - b.error) *
                                 static_cast<long double>(c.bytes - b.bytes);
          const long double bc = static_cast<long double>(b.error - c.error) *
                                 static_cast<long double>(b.bytes - a.bytes);
          if (ab > bc) break;
          h.pop_back();
        }
        h.push_back(k);
      }
    }
    segments_.clear();
    for (size_t t = 0; t < n_; ++t)
      for (size_t k = 1; k < hull_[t].size(); ++k) {
        const Option& a = eff_[t][hull_[t][k - 1]];
        const Option& b = eff_[t][hull_[t][k]];
        const uint64_t db = b.bytes - a.bytes;
        const double gain = a.error - b.error;
        segments_.push_back({t, k, db, gain, gain / static_cast<double>(db)});
      }
    // Best rate first; within a tensor the rates strictly decrease, and the tie-break on k keeps
    // them in hull order even if two rates round to the same double.
    std::sort(segments_.begin(), segments_.end(), [](const Segment& a, const Segment& b) {
      if (a.rate != b.rate) return a.rate > b.rate;
      if (a.t != b.t) return a.t < b.t;
      return a.k < b.k;
    });
    // Bytes and error of the cheapest option of tensors t.. (the search's feasibility test and
    // the base of its bound).
    suffix_min_bytes_.assign(n_ + 1, 0);
    suffix_base_error_.assign(n_ + 1, 0.0);
    for (size_t t = n_; t-- > 0;) {
      suffix_min_bytes_[t] = suffix_min_bytes_[t + 1] + eff_[t][0].bytes;
      suffix_base_error_[t] = suffix_base_error_[t + 1] + eff_[t][0].error;
    }
  }

  uint64_t bytes_of(const std::vector<size_t>& c) const {
    uint64_t b = 0;
    for (size_t t = 0; t < n_; ++t) b += eff_[t][c[t]].bytes;
    return b;
  }
  double error_of(const std::vector<size_t>& c) const {
    double e = 0;
    for (size_t t = 0; t < n_; ++t) e += eff_[t][c[t]].error;
    return e;
  }
  void set_best(const std::vector<size_t>& c) {
    best_ = c;
    best_error_ = error_of(c);
  }

  // The Lagrangian solution: walking the hull segments by decreasing rate is walking lambda down
  // from infinity, and the last point that fits is the relaxation's best integral answer under
  // the budget. Segments that no longer fit are skipped and the walk goes on (greedy fill).
  void lp_greedy() {
    std::vector<size_t> pos(n_, 0);  // hull position per tensor
    uint64_t room = budget_ - suffix_min_bytes_[0];
    for (const Segment& s : segments_)
      if (s.k == pos[s.t] + 1 && s.bytes <= room) {
        pos[s.t] = s.k;
        room -= s.bytes;
      }
    std::vector<size_t> c(n_);
    for (size_t t = 0; t < n_; ++t) c[t] = hull_[t][pos[t]];
    set_best(c);
  }

  // Improves best_ by moves until none helps: first single upgrades by the largest error saved
  // per extra byte (spending what is left of the budget, off the hull too), then exchanges of
  // two tensors' choices (one gives bytes back, the other spends them).
  void local_search() {
    std::vector<size_t> c = best_;
    uint64_t bytes = bytes_of(c);
    double error = error_of(c);
    // Every round lowers the error strictly; the cap only bounds pathological instances.
    const size_t max_rounds = 4 * n_ + 16;
    for (size_t round = 0; round < max_rounds; ++round) {
      // Single upgrades (efficient options: more bytes always means less error).
      bool moved = false;
      for (;;) {
        double best_rate = -1;
        size_t bt = 0, bk = 0;
        for (size_t t = 0; t < n_; ++t)
          for (size_t k = c[t] + 1; k < eff_[t].size(); ++k) {
            const uint64_t extra = eff_[t][k].bytes - eff_[t][c[t]].bytes;
            if (extra > budget_ - bytes) break;  // later options are larger still
            const double rate = (eff_[t][c[t]].error - eff_[t][k].error) /
                                static_cast<double>(extra);
            if (rate > best_rate) {
              best_rate = rate;
              bt = t;
              bk = k;
            }
          }
        if (best_rate < 0) break;
        bytes = bytes - eff_[bt][c[bt]].bytes + eff_[bt][bk].bytes;
        error = error - eff_[bt][c[bt]].error + eff_[bt][bk].error;
        c[bt] = bk;
        moved = true;
      }
      // The best pair exchange: tensor a moves to option i, tensor b to option j.
      double best_gain = 0;
      size_t ba = 0, bi = 0, bb = 0, bj = 0;
      const double tol = 1e-12 * std::max(error, 0.0);
      for (size_t a = 0; a < n_; ++a)
        for (size_t i = 0; i < eff_[a].size(); ++i) {
          if (i == c[a]) continue;
          const int64_t da = static_cast<int64_t>(eff_[a][i].bytes - eff_[a][c[a]].bytes);
          const double ga = eff_[a][c[a]].error - eff_[a][i].error;
          for (size_t b = a + 1; b < n_; ++b)
            for (size_t j = 0; j < eff_[b].size(); ++j) {
              if (j == c[b]) continue;
              const int64_t db = static_cast<int64_t>(eff_[b][j].bytes - eff_[b][c[b]].bytes);
              const int64_t d = da + db;
              if (d > 0 && static_cast<uint64_t>(d) > budget_ - bytes) continue;
              const double gain = ga + (eff_[b][c[b]].error - eff_[b][j].error);
              if (gain > best_gain + tol) {
                best_gain = gain;
                ba = a, bi = i, bb = b, bj = j;
              }
            }
        }
      if (best_gain > tol) {
        bytes = bytes - eff_[ba][c[ba]].bytes - eff_[bb][c[bb]].bytes + eff_[ba][bi].bytes +
                eff_[bb][bj].bytes;
        c[ba] = bi;
        c[bb] = bj;
        error = error_of(c);
        moved = true;
      }
      if (!moved) break;
    }
    if (error_of(c) < best_error_) set_best(c);
  }

  // Lower bound on the error of tensors k.. given `room` bytes: the linear relaxation, i.e. the
  // cheapest options plus the best-rate hull segments, the last one taken fractionally.
  double lp_bound(size_t k, uint64_t room) const {
    double bound = suffix_base_error_[k];
    room -= suffix_min_bytes_[k];
    for (const Segment& s : segments_) {
      if (s.t < k) continue;
      if (s.bytes <= room) {
        bound -= s.gain;
        room -= s.bytes;
      } else {
        bound -= s.gain * (static_cast<double>(room) / static_cast<double>(s.bytes));
        break;
      }
    }
    return bound;
  }

  // Exact depth-first branch and bound over the efficient options, pruned by the LP bound. It
  // proves the incumbent optimal on small and easy instances; on hard ones it stops after
  // max_nodes_ nodes and keeps the best it found.
  void branch_and_bound() {
    cur_.assign(n_, 0);
    nodes_ = 0;
    aborted_ = false;
    if (max_nodes_ == 0) {
      aborted_ = n_ > 0;
      return;
    }
    dfs(0, 0, 0.0);
  }

  void dfs(size_t k, uint64_t used, double error) {
    if (++nodes_ > max_nodes_) {
      aborted_ = true;
      return;
    }
    if (k == n_) {
      if (error < best_error_) {
        best_ = cur_;
        best_error_ = error;
      }
      return;
    }
    const uint64_t room = budget_ - used;
    // Relative slack: sums in a different order must not keep an equal solution alive.
    if (error + lp_bound(k, room) >= best_error_ * (1 - 1e-12)) return;
    for (size_t i = eff_[k].size(); i-- > 0;) {  // least error first
      const uint64_t b = eff_[k][i].bytes;
      if (b > room || room - b < suffix_min_bytes_[k + 1]) continue;
      cur_[k] = i;
      dfs(k + 1, used + b, error + eff_[k][i].error);
      if (aborted_) return;
    }
  }

  uint64_t budget_;
  uint64_t max_nodes_;
  size_t n_ = 0;
  std::vector<size_t> order_;              // search position -> caller's tensor index
  std::vector<std::vector<Option>> eff_;   // per search position: efficient options
  std::vector<std::vector<size_t>> hull_;  // indices into eff_ on the lower convex hull
  std::vector<Segment> segments_;
  std::vector<uint64_t> suffix_min_bytes_;
  std::vector<double> suffix_base_error_;
  std::vector<size_t> best_, cur_;  // indices into eff_
  double best_error_ = 0;
  uint64_t nodes_ = 0;
  bool aborted_ = false;
};

}  // namespace

Allocation allocate_formats(const std::vector<TensorChoices>& tensors, uint64_t budget_bytes,
                            uint64_t max_search_nodes) {
  SLMC_CHECK(!tensors.empty(), "allocate_formats: no tensors to allocate");
  uint64_t min_total = 0, weights = 0;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  for (const TensorChoices& t : tensors) {
    SLMC_CHECK(t.n_weights > 0, "allocate_formats: tensor '", t.name, "' has ", t.n_weights,
               " weights");
    SLMC_CHECK(!t.options.empty(), "allocate_formats: tensor '", t.name, "' has no format options");
    uint64_t min_bytes = kMax;
    for (const FormatCost& c : t.options) {
      SLMC_CHECK(std::isfinite(c.error) && c.error >= 0, "allocate_formats: tensor '", t.name,
                 "' has error ", c.error, " for format ", codec::format_info(c.format).name,
                 " (must be finite and >= 0)");
      min_bytes = std::min(min_bytes, c.bytes);
    }
    SLMC_CHECK(min_total <= kMax - min_bytes, "allocate_formats: sizes overflow 64 bits");
    min_total += min_bytes;
    weights += static_cast<uint64_t>(t.n_weights);
  }
  SLMC_CHECK(min_total <= budget_bytes, "allocate_formats: the smallest format of every tensor ",
             "takes ", min_total, " bytes, over the budget of ", budget_bytes, " bytes");

  Allocator a(tensors, budget_bytes, max_search_nodes);
  Allocation r;
  r.choice = a.solve();
  for (size_t t = 0; t < tensors.size(); ++t) {
    const FormatCost& c = tensors[t].options[r.choice[t]];
    r.bytes += c.bytes;
    r.error += c.error;
  }
  r.bits_per_weight = 8.0 * static_cast<double>(r.bytes) / static_cast<double>(weights);
  return r;
}

}  // namespace slmc::quant
