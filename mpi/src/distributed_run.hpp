#pragma once
// Private to mpi/: one tilepool job across the nodes of an MPI job.

#include <exception>
#include <filesystem>
#include <optional>
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

/// Rank 0's finished job, not yet under the output's name: the output file under its hidden
/// temporary name beside it, and the report to print once it is published. It is published
/// only after MPI_Finalize (see main.cpp: the commit); destroyed unpublished, it removes the
/// temporary. Move-only.
class Publication {
 public:
  Publication(std::filesystem::path temp, std::filesystem::path out, bool force, std::string host, std::string report)
      : temp_(std::move(temp)), out_(std::move(out)), force_(force), host_(std::move(host)), report_(std::move(report)) {}
  Publication(Publication&& other) noexcept;
  Publication& operator=(Publication&&) = delete;
  Publication(const Publication&) = delete;
  ~Publication();

  /// The temporary's absolute path (a signal handler removes it if the job is stopped first).
  [[nodiscard]] const std::filesystem::path& temp() const noexcept { return temp_; }
  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  /// Moves the temporary onto the output (`link`, which refuses an existing name, or `rename`
  /// with --force, as tilepool run does), syncs the directory, then prints the report on stdout.
  /// Throws Error(exists) or Error(system); the temporary is then removed by the destructor.
  void publish();

 private:
  std::filesystem::path temp_;
  std::filesystem::path out_;
  bool force_ = false;
  std::string host_;
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
