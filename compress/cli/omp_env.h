// The OpenMP wait policy slmc trains with (distill/README.md "Threads").
#pragma once

namespace slmc::cli {

// libgomp (LibTorch's and OpenBLAS's threads) spins idle threads after every parallel region by
// default; on a machine busy with other work those spinning threads take the cores the working
// ones need, and training ran ~5x slower here. libgomp reads OMP_WAIT_POLICY once, when it loads,
// before main: so for the training commands (train, distill, demo), when the variable is unset,
// this sets OMP_WAIT_POLICY=PASSIVE and re-executes the program with the same arguments (about
// 0.5 s of CPU to load LibTorch again; other commands are short or do not use OpenMP, and skip
// it). A value the user set is kept. Call first in main.
void ensure_omp_wait_policy(int argc, char** argv);

}  // namespace slmc::cli
