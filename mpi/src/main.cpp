// tilepool-mpi: one tilepool job across the nodes of an MPI job (mpirun, srun).
#include <mpi.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>

#include "cluster.hpp"
#include "commands.hpp"
#include "distributed_run.hpp"

namespace {

// "rank 2 (node n07): " where it says something: a failure on another rank, a job failure, or
// what one node's view of the machine refused.
std::string origin(const tilepool::mpi::Failure& f) {
  const bool local_check = f.rank == 0 && !f.about_node && f.error.code() != tilepool::Errc::job_failed &&
                           f.error.code() != tilepool::Errc::system;
  return local_check ? std::string() : fmt::format("rank {} (node {}): ", f.rank, f.host);
}

}  // namespace

int main(int argc, char** argv) {
  // Open MPI's MPI-IO (OMPIO) opens a shared-file-pointer component with every file. Across
  // hosts the only one that works, "lockedfile", creates FILE-JOBID-PID.lock beside the output,
  // which a stopped job leaves behind; "individual" makes FILE.data.R / FILE.metadata.R files.
  // tilepool-mpi never uses a shared file pointer, so it allows only "sm", which works on one
  // host (its file lives in Open MPI's session directory) and elsewhere declines: no file
  // at all beside the output. An explicit OMPI_MCA_sharedfp (or --mca sharedfp) wins.
  (void)::setenv("OMPI_MCA_sharedfp", "sm", 0);
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  CLI::App app("tilepool-mpi: a tilepool job across nodes under MPI (mpirun -np N tilepool-mpi run ...)");
  app.require_subcommand(1);
  tilepool::cli::RunOptions options;
  bool rank_per_node = false;
  CLI::App* run = app.add_subcommand("run", "run a kernel over tiles of the inputs, the tiles split across nodes");
  tilepool::cli::add_run_options(run, options);
  run->add_flag("--rank-per-node", rank_per_node,
                "treat every rank as a node of its own (default: ranks on one host form a node; its first rank runs the node's pool)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every rank parsed the same arguments: rank 0 alone speaks.
    int code = e.get_exit_code() == 0 ? 0 : 2;
    if (rank == 0) {
      if (code == 0) {
        (void)app.exit(e);
      } else {
        std::fprintf(stderr, "tilepool-mpi: error: %s\n", tilepool::cli::parse_error_message(app, e, "tilepool-mpi").c_str());
      }
    }
    MPI_Finalize();
    return code;
  }
  tilepool::install_interrupt_handlers();
  // A rank whose launcher (orted, mpirun, slurmstepd) dies is stopped as mpirun stops it: with
  // SIGTERM, so that it stops its workers, removes its segments and publishes nothing. Ctrl-C
  // at a terminal reaches the whole foreground group: mpirun and, through the remote-shell
  // agent, the orteds, which die of it without stopping their ranks; those ranks would go on
  // and publish the output of a job the user stopped.
  const pid_t launcher = ::getppid();
  (void)::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != launcher) (void)::raise(SIGTERM);
  int code = 0;
  try {
    const tilepool::mpi::Cluster cluster = tilepool::mpi::Cluster::make(rank_per_node);
    tilepool::mpi::run_distributed(cluster, options);
  } catch (const tilepool::mpi::StepFailed& e) {
    const tilepool::mpi::Failure& f = e.failure();
    if (rank == 0) std::fprintf(stderr, "tilepool-mpi: error: %s%s\n", origin(f).c_str(), f.error.what());
    code = tilepool::cli::exit_status(f.error);
  } catch (const tilepool::Error& e) {
    // Interrupted (mpirun stops the job after a rank died): this rank cleaned up and leaves;
    // the other ranks are being stopped too, so there is nobody to finalize with.
    std::fprintf(stderr, "tilepool-mpi: error: rank %d: %s\n", rank, e.what());
    return tilepool::cli::exit_status(e);
  }
  MPI_Finalize();
  return code;
}
