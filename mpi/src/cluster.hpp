#pragma once
// Private to mpi/: the ranks of a job grouped into nodes, and how ranks agree on a step's outcome.

#include <mpi.h>

#include <functional>
#include <optional>
#include <string>

#include "tilepool/shared/error.hpp"

namespace tilepool::mpi {

/// MPI_COMM_WORLD's ranks grouped into nodes: the ranks of a node share a node communicator,
/// and the node's rank 0 (its leader) is in the leaders communicator that joins the nodes.
/// Move-only; frees the communicators it made. Use from one thread.
class Cluster {
 public:
  /// Groups the ranks by the node they run on (MPI_Comm_split_type, MPI_COMM_TYPE_SHARED), or,
  /// with `rank_per_node`, makes every rank a node of its own (to run the multi-node paths on
  /// one machine). Collective over MPI_COMM_WORLD.
  static Cluster make(bool rank_per_node);
  Cluster(Cluster&& other) noexcept;
  Cluster& operator=(Cluster&&) = delete;
  Cluster(const Cluster&) = delete;
  ~Cluster();

  [[nodiscard]] int rank() const noexcept { return rank_; }  ///< in MPI_COMM_WORLD
  [[nodiscard]] int size() const noexcept { return size_; }
  [[nodiscard]] bool is_leader() const noexcept { return leaders_ != MPI_COMM_NULL; }
  /// This node's index among the nodes (its leader's rank in leaders()); -1 on other ranks.
  [[nodiscard]] int node() const noexcept { return node_; }
  [[nodiscard]] int nodes() const noexcept { return nodes_; }
  /// The leaders' communicator (leader of node i has rank i; world rank 0 is node 0's leader),
  /// MPI_COMM_NULL on ranks that are not leaders.
  [[nodiscard]] MPI_Comm leaders() const noexcept { return leaders_; }
  [[nodiscard]] const std::string& host() const noexcept { return host_; }

 private:
  Cluster() = default;
  int rank_ = 0;
  int size_ = 1;
  int node_ = -1;
  int nodes_ = 1;
  MPI_Comm node_comm_ = MPI_COMM_NULL;
  MPI_Comm leaders_ = MPI_COMM_NULL;
  std::string host_;
};

/// An error about the node that saw it (its view of the shared filesystem, its store), not about
/// the job: reported with that rank and host even when rank 0 saw it.
class NodeError : public Error {
 public:
  using Error::Error;
};

/// A step that failed somewhere: where, and the error as that rank saw it.
struct Failure {
  int rank = 0;
  std::string host;
  Error error;
  bool about_node = false;  ///< the error was a NodeError
};

/// Every rank says whether its part of a step failed; every rank learns the failure of the
/// lowest failing rank, or nullopt if none failed. Collective over MPI_COMM_WORLD. Polls
/// rather than blocks, calling `idle` between polls, so that SIGINT/SIGTERM (what mpirun sends
/// when another rank dies) ends the wait with Error(interrupted) and RAII cleans up.
/// `about_node`: `mine` was a NodeError (an optional holds a plain Error: the caller says).
std::optional<Failure> agree(const Cluster& cluster, const std::optional<Error>& mine, bool about_node,
                             const std::function<void()>& idle = {});

/// Throws Error(interrupted) if SIGINT/SIGTERM arrived (mpirun stopping the job).
void throw_if_interrupted();

/// Waits for `request` to complete, polling as agree() does.
void wait_polling(MPI_Request& request, const std::function<void()>& idle = {});

/// `root`'s `text` on every rank of `comm` (the others' argument is ignored). Collective.
std::string bcast_text(std::string text, int root, MPI_Comm comm);

/// Throws Error(system) naming `what` and MPI's text for `code` unless it is MPI_SUCCESS.
void check_mpi(int code, std::string_view what);

}  // namespace tilepool::mpi
