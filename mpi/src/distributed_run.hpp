#pragma once
// Private to mpi/: one tilepool job across the nodes of an MPI job.

#include <exception>
#include <filesystem>
#include <optional>
#include <string>

#include "cluster.hpp"
#include "commands.hpp"
#include "tilepool/shared/array_segment.hpp"

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

/// Rank 0's finished job, not yet under the output's name: the output file under its hidden
/// temporary name beside it (the publication module's named temporary, which the other nodes
/// opened by path for MPI-IO), and the report to print once it is published. It is published
/// only after MPI_Finalize (see main.cpp: the commit); destroyed unpublished, it removes the
/// temporary. Move-only.
class Publication {
 public:
  Publication(ArraySegment file, bool force, std::string report)
      : file_(std::move(file)), force_(force), report_(std::move(report)) {}

  /// The temporary's absolute path (a signal handler removes it if the job is stopped first).
  [[nodiscard]] std::filesystem::path temporary() const;
  /// Gives the file the output's name in one step (PendingFile::publish: never over an existing
  /// file unless --force), syncs the directory, then prints the report on stdout. Throws Error
  /// in the command line's words (exists, system); the temporary is then removed when this
  /// object is destroyed.
  void publish();

 private:
  ArraySegment file_;
  bool force_ = false;
  std::string report_;
};

/// Runs `options` (as `tilepool run` takes them) across the cluster's nodes: each node's leader
/// runs a pool on its contiguous block of tiles, reading only the bytes of each input that
/// those tiles need, and the leaders write their tiles into one .npy with MPI-IO under a
/// temporary name. Collective over MPI_COMM_WORLD. Returns, on rank 0 once every node
/// succeeded, the Publication that puts the file under the output's name (with the summary or
/// --json object to print); nullopt on the other ranks. Throws StepFailed on every rank if any
/// rank failed, Error(interrupted) on a rank that got SIGINT/SIGTERM; either way this node's
/// workers and segments are gone and no output is left under the output's name. When it
/// returns, this node's workers and segments are gone too: only the temporary remains.
std::optional<Publication> run_distributed(const Cluster& cluster, const cli::RunOptions& options);

}  // namespace tilepool::mpi
