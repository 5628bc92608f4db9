// tilepool-mpi: one tilepool job across the nodes of an MPI job (mpirun, srun).
#include <mpi.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <optional>
#include <string_view>
#include <utility>

#include "cluster.hpp"
#include "commands.hpp"
#include "distributed_run.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/escape.hpp"

namespace {

// "rank 2 (node n07): " where it says something: a failure on another rank, a job failure, or
// what one node's view of the machine refused.
std::string origin(const tilepool::mpi::Failure& f) {
  const bool local_check = f.rank == 0 && !f.about_node && f.error.code() != tilepool::Errc::job_failed &&
                           f.error.code() != tilepool::Errc::system;
  return local_check ? std::string() : fmt::format("rank {} (node {}): ", f.rank, f.host);
}

// The commit. Rank 0 publishes the output only after MPI_Finalize returned on it, and
// MPI_Finalize returns only after its fence, which every rank enters and which the launcher
// releases: only mpirun releases it (each daemon reports its ranks' arrival to mpirun, which
// sends the release to every daemon). Ctrl-C makes mpirun order its daemons to stop the job; a
// daemon that got that order kills its ranks (SIGCONT, SIGTERM a second later, SIGKILL a
// second after that) before it handles anything else, a release included. So the output is
// published only if mpirun released the fence before it handled Ctrl-C. Until then, on rank 0,
// SIGINT/SIGTERM/SIGHUP remove the temporary and end the rank at once: it holds nothing else
// (run_distributed released its workers and segments), and inside MPI_Finalize it would never
// look at the interrupt flag again. The other ranks hold nothing: their flag is enough.
char g_commit_temp[PATH_MAX] = {};
char g_stop_message[3][256] = {};  // per signal: SIGINT, SIGTERM, SIGHUP

extern "C" void stop_before_commit(int sig) {
  (void)::unlink(g_commit_temp);
  const char* message = g_stop_message[sig == SIGINT ? 0 : sig == SIGTERM ? 1 : 2];
  (void)!::write(STDERR_FILENO, message, std::strlen(message));
  ::_exit(128 + sig);
}

// Rank 0, from here until the commit: a signal stops it (above); one that came before stops it now.
void guard_commit(const tilepool::mpi::Publication& publication) {
  std::snprintf(g_commit_temp, sizeof g_commit_temp, "%s", publication.temporary().c_str());
  const char* names[3] = {"SIGINT", "SIGTERM", "SIGHUP"};
  for (int i = 0; i < 3; ++i) {
    std::snprintf(g_stop_message[i], sizeof g_stop_message[i],
                  "tilepool-mpi: error: rank 0: interrupted by %s while the ranks finished the job; nothing published\n", names[i]);
  }
  struct sigaction sa {};
  sa.sa_handler = stop_before_commit;
  sigfillset(&sa.sa_mask);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  if (const int sig = tilepool::interrupt_signal(); sig != 0) stop_before_commit(sig);
}

// One rank's whole run; returns its exit status.
int run_rank(int argc, char** argv) {
  // Open MPI's MPI-IO (OMPIO) opens a shared-file-pointer component with every file. Across
  // hosts the only one that works, "lockedfile", creates FILE-JOBID-PID.lock beside the output's
  // temporary, which a stopped job leaves behind (the next run's sweep removes it once the
  // temporary's owner is dead); "individual" makes FILE.data.R / FILE.metadata.R files.
  // tilepool-mpi never uses a shared file pointer, so it allows only "sm", which works on one
  // host (its file lives in Open MPI's session directory) and elsewhere declines: no file
  // at all beside the output. An explicit OMPI_MCA_sharedfp (or --mca sharedfp) wins.
  (void)::setenv("OMPI_MCA_sharedfp", "sm", 0);
  // MPI_Finalize's fence is the job's commit point (guard_commit, below): it must not be
  // skipped, whatever --mca async_mpi_finalize says.
  (void)::setenv("OMPI_MCA_async_mpi_finalize", "0", 1);
  CLI::App app("tilepool-mpi: a tilepool job across nodes under MPI (mpirun -np N tilepool-mpi run ...)");
  app.require_subcommand(1);
  tilepool::cli::RunOptions options;
  bool rank_per_node = false;
  CLI::App* run = app.add_subcommand("run", "run a kernel over tiles of the inputs, the tiles split across nodes");
  tilepool::cli::add_run_options(run, options);
  run->add_flag("--rank-per-node", rank_per_node,
                "treat every rank as a node of its own (default: ranks on one host form a node; its first rank runs the node's pool)");
  // Help needs no MPI: started alone, MPI_Init starts a singleton runtime that needs Open MPI's
  // programs on PATH (with `env -i` it printed 38 lines of orte_init failure instead of help).
  if (std::any_of(argv + 1, argv + argc, [](const char* a) { return std::string_view(a) == "--help" || std::string_view(a) == "-h"; })) {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
  }
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every rank parsed the same arguments: rank 0 alone speaks.
    int code = e.get_exit_code() == 0 ? 0 : 2;
    if (rank == 0) {
      if (code == 0) {
        (void)app.exit(e);
      } else {
        std::fprintf(stderr, "tilepool-mpi: error: %s\n", tilepool::one_line(tilepool::cli::parse_error_message(app, e, "tilepool-mpi")).c_str());
      }
    }
    MPI_Finalize();
    return code;
  }
  tilepool::install_interrupt_handlers();
  // A rank whose launcher (orted, mpirun, slurmstepd) dies is stopped as mpirun stops it: with
  // SIGTERM, so that it stops its workers, removes its segments and publishes nothing (ranks
  // whose daemon was killed would otherwise go on: MPI traffic does not pass through it).
  // Ctrl-C does not kill the daemons: mpirun alone gets it (Open MPI puts each remote-shell
  // agent in a process group of its own) and orders the daemons to stop their ranks; what
  // makes that safe near the end of a job is the commit (guard_commit).
  const pid_t launcher = ::getppid();
  (void)::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != launcher) (void)::raise(SIGTERM);
  int code = 0;
  std::optional<tilepool::mpi::Publication> publication;
  std::string host;
  try {
    const tilepool::mpi::Cluster cluster = tilepool::mpi::Cluster::make(rank_per_node);
    host = cluster.host();
    tilepool::set_last_words_prefix(fmt::format("tilepool-mpi: error: rank {} (node {}): ", rank, host));
    if (auto finished = tilepool::mpi::run_distributed(cluster, options)) publication.emplace(std::move(*finished));
  } catch (const tilepool::mpi::StepFailed& e) {
    const tilepool::mpi::Failure& f = e.failure();
    if (rank == 0) std::fprintf(stderr, "tilepool-mpi: error: %s%s\n", origin(f).c_str(), tilepool::one_line(f.error.what()).c_str());
    code = tilepool::cli::exit_status(f.error);
  } catch (const tilepool::Error& e) {
    // Interrupted (mpirun stops the job after a rank died): this rank cleaned up and leaves;
    // the other ranks are being stopped too, so there is nobody to finalize with.
    std::fprintf(stderr, "tilepool-mpi: error: rank %d: %s\n", rank, tilepool::one_line(e.what()).c_str());
    return tilepool::cli::exit_status(e);
  }
  if (publication) guard_commit(*publication);
  MPI_Finalize();
  if (!publication) return code;
  // A fence can also end because the daemon died (its socket closed): then this rank's
  // launcher is gone, and PR_SET_PDEATHSIG's SIGTERM is on its way; do not wait for it.
  if (::getppid() != launcher) stop_before_commit(SIGTERM);
  // Committed: a signal from now on no longer undoes the job.
  tilepool::install_interrupt_handlers();
  try {
    publication->publish();
  } catch (const tilepool::Error& e) {
    const tilepool::mpi::Failure f{0, host, e, false};
    std::fprintf(stderr, "tilepool-mpi: error: %s%s\n", origin(f).c_str(), tilepool::one_line(e.what()).c_str());
    return tilepool::cli::exit_status(e);
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // Published (or not): the status is final, whatever a plugin's static destructor would do.
  tilepool::cli::end_process(run_rank(argc, argv));
}
