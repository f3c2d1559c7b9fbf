#include "compress/report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

namespace slmc::report {

namespace {

// Colour-blind-safe palette (Okabe-Ito), cycled.
constexpr const char* kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                    "#E69F00", "#56B4E9", "#F0E442", "#000000"};
const char* colour(size_t i) { return kPalette[i % (sizeof kPalette / sizeof kPalette[0])]; }

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

struct Scale {
  double lo, hi;  // data range (log10 of it on a log axis)
  double p0, p1;  // pixel range
  bool log;
  double operator()(double v) const {
    const double t = log ? std::log10(v) : v;
    return p0 + (t - lo) / (hi - lo) * (p1 - p0);
  }
};

bool drawable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

// [lo, hi] of the drawable values, widened when empty or degenerate; log axes in log10 units.
std::pair<double, double> range_of(const std::vector<double>& vs, bool log) {
  double lo = INFINITY, hi = -INFINITY;
  for (double v : vs) {
    if (!drawable(v, log)) continue;
    const double t = log ? std::log10(v) : v;
    lo = std::min(lo, t);
    hi = std::max(hi, t);
  }
  if (!std::isfinite(lo)) return {0, 1};
  if (hi - lo < 1e-12) {
    const double pad = log ? 0.5 : (std::fabs(lo) > 0 ? std::fabs(lo) * 0.1 : 1.0);
    return {lo - pad, hi + pad};
  }
  const double pad = (hi - lo) * 0.06;
  return {lo - pad, hi + pad};
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target, bool log) {
  std::vector<double> out;
  if (!(hi > lo) || target < 1) return out;
  if (log) {
    const int d0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
    const int d1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
    const bool fine = d1 - d0 <= 2;
    for (int d = d0; d <= d1; ++d)
      for (double m : fine ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
        const double v = m * std::pow(10.0, d);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push_back(v);
      }
    return out;
  }
  const double raw = (hi - lo) / target;
  const int e = static_cast<int>(std::floor(std::log10(raw)));
  double m = 10;
  for (double c : {1.0, 2.0, 5.0, 10.0})
    if (c * std::pow(10.0, e) >= raw) {
      m = c;
      break;
    }
  // Tick k is k * m * 10^e, computed as an integer over a power of ten when e < 0 so that 0.6
  // prints as 0.6 (3 * 0.2 in floating point is 0.6000000000000001).
  const double scale = std::pow(10.0, std::abs(e));
  auto value = [&](double k) { return e < 0 ? k * m / scale : k * m * scale; };
  const double step = value(1);
  for (double k = std::ceil(lo / step - 1e-9); value(k) <= hi + step * 1e-9; k += 1)
    out.push_back(k == 0 ? 0.0 : value(k));
  return out;
}

std::string tick_label(double v, bool si) {
  char buf[32];
  if (si) {
    const char* suffix[] = {"", "k", "M", "G", "T"};
    int k = 0;
    double a = v;
    while (std::fabs(a) >= 1000 && k < 4) {
      a /= 1000;
      ++k;
    }
    std::snprintf(buf, sizeof buf, "%.3g%s", a, suffix[k]);
    return buf;
  }
  if (v != 0 && (std::fabs(v) < 1e-3 || std::fabs(v) >= 1e6)) {
    std::snprintf(buf, sizeof buf, "%.2g", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.4g", v);
  }
  return buf;
}

std::string svg_plot(const PlotSpec& spec, const std::vector<Series>& series) {
  const double left = 72, right = 16, top = 36, bottom = 74;
  const double w = spec.width, h = spec.height;
  std::vector<double> xs, ys;
  int64_t dropped = 0, drawn = 0;
  for (const Series& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (drawable(s.x[i], spec.x_log) && drawable(s.y[i], spec.y_log)) {
        xs.push_back(s.x[i]);
        ys.push_back(s.y[i]);
        ++drawn;
      } else {
        ++dropped;
      }
    }
  const auto [xlo, xhi] = range_of(xs, spec.x_log);
  const auto [ylo, yhi] = range_of(ys, spec.y_log);
  const Scale sx{xlo, xhi, left, w - right, spec.x_log};
  const Scale sy{ylo, yhi, h - bottom, top, spec.y_log};
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << spec.width << "\" height=\""
    << spec.height << "\" viewBox=\"0 0 " << spec.width << ' ' << spec.height
    << "\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\n";
  o << "<title>" << xml_escape(spec.title) << "</title>\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  o << "<text x=\"" << num(w / 2) << "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">"
    << xml_escape(spec.title) << "</text>\n";
  // Grid and ticks. The axis ranges are in log10 units on log axes.
  const double tx0 = spec.x_log ? std::pow(10.0, xlo) : xlo, tx1 = spec.x_log ? std::pow(10.0, xhi) : xhi;
  const double ty0 = spec.y_log ? std::pow(10.0, ylo) : ylo, ty1 = spec.y_log ? std::pow(10.0, yhi) : yhi;
  for (double t : nice_ticks(tx0, tx1, 6, spec.x_log)) {
    const double px = sx(t);
    o << "<line x1=\"" << num(px) << "\" y1=\"" << num(top) << "\" x2=\"" << num(px) << "\" y2=\""
      << num(h - bottom) << "\" stroke=\"#e5e5e5\"/>\n";
    o << "<text x=\"" << num(px) << "\" y=\"" << num(h - bottom + 16)
      << "\" text-anchor=\"middle\">" << xml_escape(tick_label(t, spec.x_si)) << "</text>\n";
  }
  for (double t : nice_ticks(ty0, ty1, 6, spec.y_log)) {
    const double py = sy(t);
    o << "<line x1=\"" << num(left) << "\" y1=\"" << num(py) << "\" x2=\"" << num(w - right)
      << "\" y2=\"" << num(py) << "\" stroke=\"#e5e5e5\"/>\n";
    o << "<text x=\"" << num(left - 6) << "\" y=\"" << num(py + 4) << "\" text-anchor=\"end\">"
      << xml_escape(tick_label(t, spec.y_si)) << "</text>\n";
  }
  o << "<rect x=\"" << num(left) << "\" y=\"" << num(top) << "\" width=\"" << num(w - left - right)
    << "\" height=\"" << num(h - top - bottom) << "\" fill=\"none\" stroke=\"#444\"/>\n";
  o << "<text x=\"" << num(left + (w - left - right) / 2) << "\" y=\"" << num(h - bottom + 34)
    << "\" text-anchor=\"middle\">" << xml_escape(spec.x_label + (spec.x_log ? " (log)" : ""))
    << "</text>\n";
  o << "<text transform=\"translate(16," << num(top + (h - top - bottom) / 2)
    << ") rotate(-90)\" text-anchor=\"middle\">"
    << xml_escape(spec.y_label + (spec.y_log ? " (log)" : "")) << "</text>\n";
  if (drawn == 0)
    o << "<text x=\"" << num(w / 2) << "\" y=\"" << num(h / 2)
      << "\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n";
  // Series.
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    const char* c = colour(k);
    if (s.line) {
      std::string pts;
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
        if (drawable(s.x[i], spec.x_log) && drawable(s.y[i], spec.y_log))
          pts += num(sx(s.x[i])) + "," + num(sy(s.y[i])) + " ";
      if (!pts.empty())
        o << "<polyline fill=\"none\" stroke=\"" << c << "\" stroke-width=\"1.5\" points=\"" << pts
          << "\"/>\n";
    }
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!drawable(s.x[i], spec.x_log) || !drawable(s.y[i], spec.y_log)) continue;
      const double px = sx(s.x[i]), py = sy(s.y[i]);
      if (s.points)
        o << "<circle cx=\"" << num(px) << "\" cy=\"" << num(py) << "\" r=\"4\" fill=\"" << c
          << "\"><title>" << xml_escape(s.name) << ": " << tick_label(s.x[i], spec.x_si) << ", "
          << tick_label(s.y[i], spec.y_si) << "</title></circle>\n";
      if (i < s.labels.size() && !s.labels[i].empty()) {
        // Labels go right of the point, or left of it near the right edge, so none is clipped.
        const bool flip = px + 6 + 6.5 * static_cast<double>(s.labels[i].size()) > w - right;
        o << "<text x=\"" << num(flip ? px - 6 : px + 6) << "\" y=\"" << num(py - 6) << "\" fill=\""
          << c << (flip ? "\" text-anchor=\"end\">" : "\">") << xml_escape(s.labels[i]) << "</text>\n";
      }
    }
  }
  // Legend: one row under the x axis label, so it never hides a point.
  double lx = left;
  for (size_t k = 0; k < series.size(); ++k) {
    if (series[k].name.empty()) continue;
    o << "<rect x=\"" << num(lx) << "\" y=\"" << num(h - 30) << "\" width=\"10\" height=\"10\" fill=\""
      << colour(k) << "\"/><text x=\"" << num(lx + 14) << "\" y=\"" << num(h - 21) << "\">"
      << xml_escape(series[k].name) << "</text>\n";
    lx += 30 + 6.5 * static_cast<double>(series[k].name.size());
  }
  if (dropped > 0)
    o << "<text x=\"" << num(left) << "\" y=\"" << num(h - 6) << "\" fill=\"#888\">" << dropped
      << " point(s) not drawable on this scale were left out</text>\n";
  o << "</svg>\n";
  return o.str();
}

std::string svg_bars(const std::string& title, const std::string& x_label,
                     const std::vector<std::string>& labels, const std::vector<double>& values,
                     const std::vector<std::string>& groups, int width) {
  const double bar = 14, gap = 3, top = 36, bottom = 44;
  size_t longest = 8;
  for (const std::string& l : labels) longest = std::max(longest, l.size());
  const double left = std::min<double>(8 + 6.2 * static_cast<double>(longest), width * 0.5);
  const double right = 16;
  const size_t n = std::min(labels.size(), values.size());
  const double h = top + bottom + static_cast<double>(n) * (bar + gap) + 20;
  double vmax = 0;
  for (size_t i = 0; i < n; ++i)
    if (std::isfinite(values[i])) vmax = std::max(vmax, values[i]);
  if (vmax <= 0) vmax = 1;
  const std::vector<double> ticks = nice_ticks(0, vmax * 1.05, 5, false);
  const double xmax = ticks.empty() ? vmax : std::max(vmax, ticks.back());
  const Scale sx{0, xmax, left, width - right, false};
  std::map<std::string, size_t> group_colour;
  for (size_t i = 0; i < n && i < groups.size(); ++i)
    group_colour.emplace(groups[i], group_colour.size());
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << num(h)
    << "\" viewBox=\"0 0 " << width << ' ' << num(h)
    << "\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\n";
  o << "<title>" << xml_escape(title) << "</title>\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  o << "<text x=\"" << num(width / 2.0) << "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">"
    << xml_escape(title) << "</text>\n";
  const double plot_bottom = top + static_cast<double>(n) * (bar + gap);
  for (double t : ticks) {
    const double px = sx(t);
    o << "<line x1=\"" << num(px) << "\" y1=\"" << num(top) << "\" x2=\"" << num(px) << "\" y2=\""
      << num(plot_bottom) << "\" stroke=\"#e5e5e5\"/>\n";
    o << "<text x=\"" << num(px) << "\" y=\"" << num(plot_bottom + 14)
      << "\" text-anchor=\"middle\">" << xml_escape(tick_label(t, false)) << "</text>\n";
  }
  for (size_t i = 0; i < n; ++i) {
    const double y = top + static_cast<double>(i) * (bar + gap);
    const double v = std::isfinite(values[i]) ? std::max(0.0, values[i]) : 0.0;
    const char* c = i < groups.size() ? colour(group_colour[groups[i]]) : colour(0);
    o << "<text x=\"" << num(left - 6) << "\" y=\"" << num(y + bar - 3) << "\" text-anchor=\"end\">"
      << xml_escape(labels[i]) << "</text>\n";
    o << "<rect x=\"" << num(left) << "\" y=\"" << num(y) << "\" width=\"" << num(sx(v) - left)
      << "\" height=\"" << num(bar) << "\" fill=\"" << c << "\"><title>" << xml_escape(labels[i])
      << ": " << tick_label(values[i], false)
      << (i < groups.size() ? " (" + xml_escape(groups[i]) + ")" : std::string()) << "</title></rect>\n";
  }
  o << "<text x=\"" << num(left + (width - left - right) / 2) << "\" y=\"" << num(plot_bottom + 32)
    << "\" text-anchor=\"middle\">" << xml_escape(x_label) << "</text>\n";
  double lx = left;
  for (const auto& [g, k] : group_colour) {
    o << "<rect x=\"" << num(lx) << "\" y=\"" << num(h - 16) << "\" width=\"10\" height=\"10\" fill=\""
      << colour(k) << "\"/><text x=\"" << num(lx + 14) << "\" y=\"" << num(h - 7) << "\">"
      << xml_escape(g) << "</text>\n";
    lx += 24 + 6.5 * static_cast<double>(g.size());
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace slmc::report
