// Data parallelism over LibTorch's c10d: a TCPStore rendezvous (rank 0 serves it at the master
// address) and a ProcessGroupGloo for the all-reduce, behind the trainer's Collective interface.
// The local launcher starts N copies of this process on one machine.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compress/model/trainer.h"

namespace slmc::distill {

struct DdpOptions {
  int world = 1;
  int rank = 0;
  std::string master;        // "host:port" of rank 0's rendezvous (TCPStore)
  std::string bind;          // address of this machine the other ranks reach ("" = loopback when
                             // the master is loopback, else this host's name)
  double timeout_s = 60;     // rendezvous: every rank must arrive within this
};

// Parses "host:port" (host a name, an IPv4 address, or [IPv6]); throws naming `what`.
std::pair<std::string, int> parse_master(const std::string& s, const std::string& what);

class GlooCollective : public Collective {
 public:
  // Joins the rendezvous; throws slmc::Error naming the master address when it cannot be reached
  // (or not every rank arrives) within the timeout. `fingerprint` must be equal on every rank
  // (resolved options and input hashes): a rank with other options fails them all, naming it.
  GlooCollective(const DdpOptions& o, const std::string& fingerprint);
  ~GlooCollective() override;
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  void allreduce_sum(torch::Tensor& t) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_, world_;
};

// Runs `args` (this program's arguments without argv[0]) as `n` processes of rank 0..n-1 with
// --world-size n --rank r --master 127.0.0.1:<free port> appended, and `--threads` split
// between them unless `threads` > 0 gives each its own count. Returns the first non-zero exit
// status (the other processes are stopped then), or 0.
int launch_local(int n, const std::vector<std::string>& args, int threads);

// This process's command line (argv without argv[0]), from /proc/self/cmdline.
std::vector<std::string> own_arguments();

}  // namespace slmc::distill
