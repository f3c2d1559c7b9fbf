// Distillation losses against PyTorch (tests/distill/gen_kd_golden.py, float64, written from the
// definitions without slmc's code), and the truncated-teacher loss against the full one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "distill/losses.h"
#include "tests/test_util.h"

namespace slmc::distill {
namespace {

using slmc::testing::TempDir;

// fp32 losses against float64 references: a few ulps of the terms summed over V = 50 columns.
constexpr double kLossRelTol = 2e-5;
// Gradients: entries are O(1 / N); fp32 softmax differences leave ~1e-7 absolute.
constexpr double kGradAbsTol = 2e-6;

struct Golden {
  double fkl, rkl, fkl_topk, rkl_topk;
  std::vector<double> g_fkl, g_rkl, g_fkl_topk, g_rkl_topk;
};

template <typename T>
void put(std::string* s, const T* p, size_t n) {
  s->append(reinterpret_cast<const char*>(p), n * sizeof(T));
}

struct Case {
  int64_t n, v, k;
  double T;
  double scale;  // logit spread: larger = more peaked distributions
};

struct CaseData {
  torch::Tensor s, t;
  TopK tk;
};

// Inputs for every case, then the generator once for all of them (python3 and torch load in
// seconds; one process, not one per case). Fails the test, naming the command, if it cannot run.
std::vector<Golden> references(const std::vector<CaseData>& cases, const TempDir& dir) {
  std::string args;
  for (size_t i = 0; i < cases.size(); ++i) {
    const CaseData& c = cases[i];
    const int64_t n = c.s.size(0), v = c.s.size(1), k = c.tk.indices.size(1);
    std::string in;
    const int64_t dims[3] = {n, v, k};
    put(&in, dims, 3);
    put(&in, &c.tk.temperature, 1);
    put(&in, c.s.contiguous().data_ptr<float>(), static_cast<size_t>(n * v));
    put(&in, c.t.contiguous().data_ptr<float>(), static_cast<size_t>(n * v));
    put(&in, c.tk.indices.contiguous().data_ptr<int64_t>(), static_cast<size_t>(n * k));
    const std::string name = dir.file("in" + std::to_string(i));
    slmc::testing::write_bytes(name, in);
    args += " '" + name + "' '" + dir.file("out" + std::to_string(i)) + "'";
  }
  const char* env = std::getenv("SLMC_PYTHON");
  const std::string python = env && *env ? env : "/usr/bin/python3";
  const std::string cmd = "'" + python + "' '" SLMC_SOURCE_DIR "/tests/distill/gen_kd_golden.py'" +
                          args + " > '" + dir.file("log") + "' 2>&1";
  std::vector<Golden> out(cases.size());
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << "golden generator failed: " << cmd << "\n"
                  << slmc::testing::read_bytes(dir.file("log"));
    return {};
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string bytes = slmc::testing::read_bytes(dir.file("out" + std::to_string(i)));
    const size_t nv = static_cast<size_t>(cases[i].s.numel());
    if (bytes.size() != (4 + 4 * nv) * sizeof(double)) {
      ADD_FAILURE() << "golden output " << i << " has " << bytes.size() << " bytes";
      return {};
    }
    const double* d = reinterpret_cast<const double*>(bytes.data());
    Golden& g = out[i];
    g.fkl = d[0];
    g.rkl = d[1];
    g.fkl_topk = d[2];
    g.rkl_topk = d[3];
    g.g_fkl.assign(d + 4, d + 4 + nv);
    g.g_rkl.assign(d + 4 + nv, d + 4 + 2 * nv);
    g.g_fkl_topk.assign(d + 4 + 2 * nv, d + 4 + 3 * nv);
    g.g_rkl_topk.assign(d + 4 + 3 * nv, d + 4 + 4 * nv);
  }
  return out;
}

// Loss value and gradient w.r.t. the student logits.
std::pair<double, torch::Tensor> eval(const std::function<torch::Tensor(const torch::Tensor&)>& f,
                                      const torch::Tensor& s) {
  auto x = s.clone().set_requires_grad(true);
  auto l = f(x);
  l.backward();
  return {l.item<double>(), x.grad().clone()};
}

void expect_close(const std::pair<double, torch::Tensor>& got, double want,
                  const std::vector<double>& want_grad, const char* what) {
  EXPECT_NEAR(got.first, want, kLossRelTol * std::max(1.0, std::fabs(want))) << what;
  auto g = got.second.reshape({-1}).to(torch::kFloat64);
  ASSERT_EQ(g.numel(), static_cast<int64_t>(want_grad.size())) << what;
  double worst = 0;
  for (int64_t i = 0; i < g.numel(); ++i)
    worst = std::max(worst, std::fabs(g[i].item<double>() - want_grad[static_cast<size_t>(i)]));
  EXPECT_LE(worst, kGradAbsTol) << what;
}

TEST(KdGoldenTest, MatchesPyTorch) {
  const std::vector<Case> cases = {{7, 50, 50, 1.0, 3.0}, {7, 50, 50, 2.0, 3.0}, {7, 50, 8, 1.0, 3.0},
                                   {5, 50, 1, 2.0, 2.0},  {6, 50, 49, 1.0, 4.0}, {9, 259, 64, 1.0, 5.0},
                                   {9, 259, 64, 2.0, 5.0}};
  std::vector<CaseData> data;
  for (const Case& c : cases) {
    torch::manual_seed(static_cast<uint64_t>(c.n * 1000 + c.k));
    CaseData d;
    d.s = torch::randn({c.n, c.v}) * c.scale;
    d.t = torch::randn({c.n, c.v}) * c.scale + 0.5 * d.s;  // correlated, like a trained pair
    d.tk = top_k(d.t, c.k, c.T);
    data.push_back(d);
  }
  const TempDir dir;
  const std::vector<Golden> golden = references(data, dir);
  ASSERT_EQ(golden.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const CaseData& d = data[i];
    const Golden& g = golden[i];
    SCOPED_TRACE("case n " + std::to_string(c.n) + " v " + std::to_string(c.v) + " k " +
                 std::to_string(c.k) + " T " + std::to_string(c.T));
    const double T = c.T;
    expect_close(eval([&](const torch::Tensor& x) { return forward_kl(x, d.t, T); }, d.s), g.fkl,
                 g.g_fkl, "forward_kl");
    expect_close(eval([&](const torch::Tensor& x) { return reverse_kl(x, d.t, T); }, d.s), g.rkl,
                 g.g_rkl, "reverse_kl");
    expect_close(eval([&](const torch::Tensor& x) { return forward_kl_topk(x, d.tk, T); }, d.s),
                 g.fkl_topk, g.g_fkl_topk, "forward_kl_topk");
    expect_close(eval([&](const torch::Tensor& x) { return reverse_kl_topk(x, d.tk, T); }, d.s),
                 g.rkl_topk, g.g_rkl_topk, "reverse_kl_topk");
    if (c.k == c.v) {  // no truncation: the golden's bucketed loss is the full one
      EXPECT_NEAR(g.fkl_topk, g.fkl, 1e-12 * std::max(1.0, g.fkl));
      EXPECT_NEAR(g.rkl_topk, g.rkl, 1e-12 * std::max(1.0, g.rkl));
    }
  }
}

// At k = vocab the truncated loss is the full-vocabulary loss, value and gradient, in fp32.
TEST(KdLossTest, TopKAtFullVocabEqualsFullLoss) {
  torch::manual_seed(3);
  const int64_t n = 64, v = 259;
  const auto s = torch::randn({n, v}) * 4;
  const auto t = torch::randn({n, v}) * 4;
  for (double T : {1.0, 2.0, 0.5}) {
    const TopK tk = top_k(t, v, T);
    EXPECT_TRUE(torch::all(torch::isinf(tk.rest_lse)).item<bool>());
    const auto full_f = eval([&](const torch::Tensor& x) { return forward_kl(x, t, T); }, s);
    const auto topk_f = eval([&](const torch::Tensor& x) { return forward_kl_topk(x, tk, T); }, s);
    const auto full_r = eval([&](const torch::Tensor& x) { return reverse_kl(x, t, T); }, s);
    const auto topk_r = eval([&](const torch::Tensor& x) { return reverse_kl_topk(x, tk, T); }, s);
    EXPECT_NEAR(topk_f.first, full_f.first, 1e-5 * full_f.first) << "T " << T;
    EXPECT_NEAR(topk_r.first, full_r.first, 1e-5 * full_r.first) << "T " << T;
    // Gradients O(1/N) with logits spread by 4: the two routes round differently by a few
    // fp32 ulps of the per-row sums (measured 2.3e-7).
    EXPECT_LE((topk_f.second - full_f.second).abs().max().item<double>(), 1e-6) << "T " << T;
    EXPECT_LE((topk_r.second - full_r.second).abs().max().item<double>(), 1e-6) << "T " << T;
    EXPECT_FALSE(torch::any(torch::isnan(topk_f.second)).item<bool>());
    EXPECT_FALSE(torch::any(torch::isnan(topk_r.second)).item<bool>());
  }
}

// A teacher whose rest mass underflows to zero gives finite losses and gradients.
TEST(KdLossTest, EmptyRestMassStaysFinite) {
  const int64_t n = 4, v = 10;
  auto t = torch::full({n, v}, -200.0f);
  t.narrow(1, 0, 2).fill_(50.0f);  // two tokens carry all the mass
  const TopK tk = top_k(t, 2, 1.0);
  const auto s = torch::randn({n, v});
  for (auto f : {forward_kl_topk, reverse_kl_topk}) {
    const auto r = eval([&](const torch::Tensor& x) { return f(x, tk, 1.0); }, s);
    EXPECT_TRUE(std::isfinite(r.first));
    EXPECT_FALSE(torch::any(torch::isnan(r.second)).item<bool>());
  }
}

TEST(KdLossTest, TemperatureMismatchIsRefused) {
  const auto t = torch::randn({3, 10});
  const TopK tk = top_k(t, 4, 2.0);
  slmc::testing::expect_error([&] { forward_kl_topk(torch::randn({3, 10}), tk, 1.0); },
                              {"temperature 2", "at 1"});
}

TEST(KdLossTest, HiddenLosses) {
  torch::manual_seed(5);
  const auto a = torch::randn({6, 16}), b = torch::randn({6, 16});
  EXPECT_NEAR(hidden_mse(a, b).item<double>(), (a - b).pow(2).mean().item<double>(), 1e-6);
  EXPECT_NEAR(hidden_mse(a, a).item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(hidden_cosine(a, 3 * a).item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(hidden_cosine(a, -a).item<double>(), 2.0, 1e-6);
  const auto manual = 1 - (a * b).sum(1) / (a.norm(2, 1) * b.norm(2, 1));
  EXPECT_NEAR(hidden_cosine(a, b).item<double>(), manual.mean().item<double>(), 1e-6);
}

}  // namespace
}  // namespace slmc::distill
