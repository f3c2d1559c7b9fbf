// Plots as standalone SVG text: no library, no script, no external reference, so a report is one
// self-contained file that any browser (or a Markdown viewer, from a sibling .svg file) shows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slmc::report {

// Escapes text for XML/HTML content and attribute values (&, <, >, ", ').
std::string xml_escape(const std::string& s);

// Tick values for an axis over [lo, hi]: "nice" steps (1, 2, 5 x 10^k) giving about `target`
// ticks on a linear axis; on a log axis the decades (and 2x, 5x when there are few decades).
// lo < hi is assumed (callers widen an empty range); log axes need lo > 0.
std::vector<double> nice_ticks(double lo, double hi, int target, bool log);

// A tick label: short, without trailing zeros ("0.05", "1.2e+06" -> "1.2M" for byte axes).
std::string tick_label(double v, bool si);

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<std::string> labels;  // per point, drawn beside it ("" = none); may be empty
  bool line = false;                // join the points in order
  bool points = true;
};

struct PlotSpec {
  std::string title;
  std::string x_label, y_label;
  bool x_log = false, y_log = false;
  bool x_si = false, y_si = false;  // tick labels with k/M/G suffixes (bytes, parameters)
  int width = 640, height = 400;
};

// A scatter/line chart of `series` (up to 8 get distinct colours; more cycle). Points with a
// non-finite coordinate, or a non-positive one on a log axis, are left out and counted in a note
// under the plot. No series or no drawable point gives a plot that says so.
std::string svg_plot(const PlotSpec& spec, const std::vector<Series>& series);

// Horizontal bars, one per label (tensors), value on the x axis; `groups` (same length as labels,
// or empty) colours bars by group (format names) with a legend.
std::string svg_bars(const std::string& title, const std::string& x_label,
                     const std::vector<std::string>& labels, const std::vector<double>& values,
                     const std::vector<std::string>& groups, int width = 640);

}  // namespace slmc::report
