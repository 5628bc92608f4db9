#pragma once
// Private to mpi/: one tilepool job across the nodes of an MPI job.

#include <exception>
#include <string>

#include "cluster.hpp"
#include "commands.hpp"

namespace tilepool::mpi {

/// Thrown on every rank when a step of the job failed on some rank: all ranks agreed on it.
class StepFailed : public std::exception {
 public:
  explicit StepFailed(Failure failure) : failure_(std::move(failure)) {}
  [[nodiscard]] const Failure& failure() const noexcept { return failure_; }
  [[nodiscard]] const char* what() const noexcept override { return failure_.error.what(); }

 private:
  Failure failure_;
};

/// Runs `options` (as `tilepool run` takes them) across the cluster's nodes: each node's leader
/// runs a pool on its contiguous block of tiles, reading only the bytes of each input that
/// those tiles need, and the leaders write their tiles into one .npy with MPI-IO, published
/// under the output's name by rank 0 after every node succeeded. Collective over
/// MPI_COMM_WORLD. Rank 0 prints the summary (or --json object) on stdout and returns 0.
/// Throws StepFailed on every rank if any rank failed, Error(interrupted) on a rank that got
/// SIGINT/SIGTERM; either way this node's workers and segments are gone and no output is
/// left under the output's name.
void run_distributed(const Cluster& cluster, const cli::RunOptions& options);

}  // namespace tilepool::mpi
