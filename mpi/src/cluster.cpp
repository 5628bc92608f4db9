#include "cluster.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <fmt/format.h>
#include <thread>
#include <utility>
#include <vector>

#include "tilepool/runner/pool.hpp"

namespace tilepool::mpi {

Cluster Cluster::make(bool rank_per_node) {
  Cluster c;
  // MPI errors (a peer that died, a failed write) come back as codes that check_mpi turns
  // into exceptions, so that RAII removes this node's segments; the default aborts on the spot.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &c.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &c.size_);
  char host[256] = {};
  (void)::gethostname(host, sizeof host - 1);
  c.host_ = host;
  if (rank_per_node) {
    check_mpi(MPI_Comm_split(MPI_COMM_WORLD, c.rank_, 0, &c.node_comm_), "MPI_Comm_split");
  } else {
    check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c.rank_, MPI_INFO_NULL, &c.node_comm_),
              "MPI_Comm_split_type");
  }
  int node_rank = 0;
  MPI_Comm_rank(c.node_comm_, &node_rank);
  const int leader = node_rank == 0 ? 1 : 0;
  // Keyed by world rank: world rank 0 leads node 0, and nodes are numbered in rank order.
  check_mpi(MPI_Comm_split(MPI_COMM_WORLD, leader == 1 ? 0 : MPI_UNDEFINED, c.rank_, &c.leaders_), "MPI_Comm_split");
  if (c.leaders_ != MPI_COMM_NULL) MPI_Comm_rank(c.leaders_, &c.node_);
  check_mpi(MPI_Allreduce(&leader, &c.nodes_, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  return c;
}

Cluster::Cluster(Cluster&& other) noexcept
    : rank_(other.rank_),
      size_(other.size_),
      node_(other.node_),
      nodes_(other.nodes_),
      node_comm_(std::exchange(other.node_comm_, MPI_COMM_NULL)),
      leaders_(std::exchange(other.leaders_, MPI_COMM_NULL)),
      host_(std::move(other.host_)) {}

Cluster::~Cluster() {
  if (leaders_ != MPI_COMM_NULL) MPI_Comm_free(&leaders_);
  if (node_comm_ != MPI_COMM_NULL) MPI_Comm_free(&node_comm_);
}

void check_mpi(int code, std::string_view what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw Error(Errc::system, fmt::format("{}: {}", what, std::string_view(text, static_cast<std::size_t>(len))));
}

void throw_if_interrupted() {
  if (const int sig = interrupt_signal(); sig != 0) {
    throw Error(Errc::interrupted, fmt::format("interrupted by {} while waiting for the other ranks; this node's workers "
                                               "stopped and its segments removed",
                                               sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : ::strsignal(sig)));
  }
}

void wait_polling(MPI_Request& request, const std::function<void()>& idle) {
  // Quick steps end quickly; a rank that waits for a long compute step polls every 2 ms.
  auto pause = std::chrono::microseconds(20);
  for (;;) {
    // Before the test, not only while waiting: a signal that came while this rank was inside a
    // blocking MPI call (a collective write) must stop the job even if the agreement completed.
    throw_if_interrupted();
    int done = 0;
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done != 0) return;
    if (idle) idle();
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(2));
  }
}

std::string bcast_text(std::string text, int root, MPI_Comm comm) {
  int length = static_cast<int>(text.size());
  check_mpi(MPI_Bcast(&length, 1, MPI_INT, root, comm), "MPI_Bcast");
  text.resize(static_cast<std::size_t>(length));
  check_mpi(MPI_Bcast(text.data(), length, MPI_CHAR, root, comm), "MPI_Bcast");
  return text;
}

std::optional<Failure> agree(const Cluster& cluster, const std::optional<Error>& mine, bool about_node,
                             const std::function<void()>& idle) {
  const int me = mine ? cluster.rank() : INT_MAX;
  int first = INT_MAX;
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Iallreduce(&me, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &request), "MPI_Iallreduce");
  wait_polling(request, idle);
  if (first == INT_MAX) return std::nullopt;
  // The failing rank tells everyone what went wrong: "code\0host\0message", the code prefixed
  // with 'N' for a NodeError.
  std::string text;
  if (cluster.rank() == first) {
    text = fmt::format("{}{}", about_node ? "N" : "", static_cast<int>(mine->code()));
    text.push_back('\0');
    text += cluster.host();
    text.push_back('\0');
    text += mine->what();
  }
  text = bcast_text(std::move(text), first, MPI_COMM_WORLD);
  const std::size_t a = text.find('\0');
  const std::size_t b = text.find('\0', a + 1);
  const bool node = text.starts_with('N');
  const std::string code = text.substr(node ? 1 : 0, a - (node ? 1 : 0));
  return Failure{first, text.substr(a + 1, b - a - 1), Error(static_cast<Errc>(std::stoi(code)), text.substr(b + 1)), node};
}

}  // namespace tilepool::mpi
