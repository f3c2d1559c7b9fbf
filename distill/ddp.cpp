#include "distill/ddp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "compress/core/error.h"
#include "compress/core/fnv1a.h"

namespace slmc::distill {

namespace {

// c10d logs connection retries and failures through glog on stderr; slmc reports them as one
// error line instead. SLMC_DDP_DEBUG=1 keeps glog's messages.
void quiet_glog() {
  const char* dbg = std::getenv("SLMC_DDP_DEBUG");
  if (dbg == nullptr || std::string(dbg) != "1") FLAGS_minloglevel = 3;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::string first_line(const std::string& s) {
  std::string l = s.substr(0, s.find('\n'));
  return l.size() > 300 ? l.substr(0, 300) + "..." : l;
}

}  // namespace

std::pair<std::string, int> parse_master(const std::string& s, const std::string& what) {
  std::string host;
  std::string port;
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find(']');
    SLMC_CHECK(close != std::string::npos && close + 1 < s.size() && s[close + 1] == ':', what,
               " '", s, "' must be host:port ([v6-address]:port)");
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    SLMC_CHECK(colon != std::string::npos && colon > 0, what, " '", s, "' must be host:port");
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  size_t used = 0;
  long p = -1;
  try {
    p = std::stol(port, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SLMC_CHECK(used == port.size() && !port.empty() && p >= 1 && p <= 65535, what, " '", s,
             "': port '", port, "' must be in [1, 65535]");
  return {host, static_cast<int>(p)};
}

struct GlooCollective::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

GlooCollective::GlooCollective(const DdpOptions& o, const std::string& fingerprint)
    : impl_(new Impl), rank_(o.rank), world_(o.world) {
  SLMC_CHECK(o.world >= 1 && o.world <= 4096, "--world-size ", o.world, " must be in [1, 4096]");
  SLMC_CHECK(o.rank >= 0 && o.rank < o.world, "--rank ", o.rank, " must be in [0, world size ",
             o.world, ")");
  SLMC_CHECK(o.timeout_s > 0 && o.timeout_s <= 86400, "--ddp-timeout ", o.timeout_s,
             " must be in (0, 86400] seconds");
  const auto [host, port] = parse_master(o.master, "--master");
  quiet_glog();
  const auto timeout =
      std::chrono::milliseconds(static_cast<int64_t>(std::llround(o.timeout_s * 1000)));
  const std::string where = "rendezvous at " + o.master + " (rank " + std::to_string(o.rank) +
                            " of " + std::to_string(o.world) + ")";
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(port);
    so.isServer = o.rank == 0;
    so.numWorkers = o.world;
    so.waitWorkers = true;
    so.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(host, so);
  } catch (const std::exception& e) {
    fail(where, ": not reached within ", o.timeout_s, " s (", first_line(e.what()), ")");
  }
  // Every rank publishes its fingerprint and compares all of them with rank 0's.
  const std::string mine = Fnv1a64().add(fingerprint).hex();
  try {
    impl_->store->set("slmc/fingerprint/" + std::to_string(o.rank),
                      std::vector<uint8_t>(mine.begin(), mine.end()));
    const std::vector<uint8_t> r0 = impl_->store->get("slmc/fingerprint/0");
    for (int r = 1; r < o.world; ++r) {
      const std::vector<uint8_t> other = impl_->store->get("slmc/fingerprint/" + std::to_string(r));
      SLMC_CHECK(other == r0, where, ": rank ", r,
                 " runs with other options or inputs than rank 0 (fingerprints ",
                 std::string(other.begin(), other.end()), " vs ", std::string(r0.begin(), r0.end()),
                 "): give every rank the same options, data and models");
    }
  } catch (const c10::Error& e) {
    fail(where, ": ranks did not all publish their options within ", o.timeout_s, " s (",
         first_line(e.what_without_backtrace()), ")");
  }
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create();
    const std::string bind = !o.bind.empty() ? o.bind : is_loopback(host) ? "127.0.0.1" : "";
    opts->devices.push_back(bind.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                         : c10d::ProcessGroupGloo::createDeviceForHostname(bind));
    opts->timeout = std::max<std::chrono::milliseconds>(timeout, std::chrono::minutes(30));
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, o.rank, o.world, opts);
  } catch (const std::exception& e) {
    fail(where, ": cannot connect the process group (", first_line(e.what()), ")");
  }
}

GlooCollective::~GlooCollective() = default;

void GlooCollective::allreduce_sum(torch::Tensor& t) {
  SLMC_CHECK(t.is_contiguous() && t.device().is_cpu(), "allreduce: needs a contiguous CPU tensor");
  std::vector<at::Tensor> v{t};
  try {
    impl_->pg->allreduce(v)->wait();
  } catch (const std::exception& e) {
    fail("data-parallel all-reduce failed on rank ", rank_, " of ", world_,
         " (another rank stopped?): ", first_line(e.what()));
  }
}

std::vector<std::string> own_arguments() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  size_t start = 0;
  while (start < all.size()) {
    const size_t end = all.find('\0', start);
    args.push_back(all.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  SLMC_CHECK(!args.empty(), "cannot read this process's arguments from /proc/self/cmdline");
  args.erase(args.begin());
  return args;
}

namespace {

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  SLMC_CHECK(fd >= 0, "cannot open a socket to find a free port: ", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  SLMC_CHECK(ok, "cannot find a free port on 127.0.0.1: ", std::strerror(errno));
  return ntohs(a.sin_port);
}

// `args` without every occurrence of `flag` and its value ("--flag V" or "--flag=V").
std::vector<std::string> without_flag(const std::vector<std::string>& args, const std::string& flag) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag) {
      ++i;
      continue;
    }
    if (args[i].rfind(flag + "=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

}  // namespace

int launch_local(int n, const std::vector<std::string>& args_in, int threads) {
  SLMC_CHECK(n >= 1 && n <= 256, "--nproc ", n, " must be in [1, 256]");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int per = threads > 0 ? threads : std::max(1, cores / n);
  std::vector<std::string> args = without_flag(without_flag(args_in, "--nproc"), "--threads");
  const std::string master = "127.0.0.1:" + std::to_string(free_port());
  std::fprintf(stderr, "launching %d processes (%d thread%s each), rendezvous %s\n", n, per,
               per == 1 ? "" : "s", master.c_str());
  std::vector<pid_t> pids;
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> a = {"slmc", "--threads", std::to_string(per)};
    a.insert(a.end(), args.begin(), args.end());
    for (const std::string& s : {std::string("--world-size"), std::to_string(n),
                                 std::string("--rank"), std::to_string(r),
                                 std::string("--master"), master})
      a.push_back(s);
    std::vector<char*> argv;
    for (std::string& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    SLMC_CHECK(pid >= 0, "cannot start rank ", r, ": ", std::strerror(errno));
    if (pid == 0) {
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "slmc: error: cannot run /proc/self/exe: %s\n", std::strerror(errno));
      ::_exit(2);
    }
    pids.push_back(pid);
  }
  int result = 0;
  size_t left = pids.size();
  while (left > 0) {
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    bool ours = false;
    for (pid_t& p : pids)
      if (p == pid) {
        p = -1;
        ours = true;
      }
    if (!ours) continue;
    --left;
    const int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (code != 0 && result == 0) {
      result = code;
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGTERM);
    }
  }
  return result;
}

}  // namespace slmc::distill
