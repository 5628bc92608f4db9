// tilepool: run tile jobs over N-D arrays with a pool of processes that share the data.
#include <cstdio>

#include "commands.hpp"
#include "tilepool/shared/error.hpp"

namespace {

int exit_status(const tilepool::Error& e) {
  switch (e.code()) {
    case tilepool::Errc::usage:
    case tilepool::Errc::bad_input:
    case tilepool::Errc::exists:
    // Segments reserve their pages (posix_fallocate) when they are made, before any work: a
    // full store is bad input, like the other checks made then.
    case tilepool::Errc::no_space: return 2;
    case tilepool::Errc::interrupted: return 128 + tilepool::interrupt_signal();
    case tilepool::Errc::system:
    case tilepool::Errc::job_failed: break;
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("tilepool: tile-based batch jobs over N-D arrays, on worker processes that share the data");
  app.require_subcommand(1);
  tilepool::cli::RunOptions run_options;
  tilepool::cli::add_run_command(app, run_options);
  tilepool::cli::add_demo_command(app);
  tilepool::cli::add_segment_commands(app);
  tilepool::cli::add_kernels_command(app);
  try {
    app.parse(argc, argv);
    return 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tilepool: error: %s (see tilepool --help)\n", e.what());
    return 2;
  } catch (const tilepool::Error& e) {
    // The library describes the data; the command line adds the remedy it offers.
    const char* remedy = e.code() == tilepool::Errc::no_space ? " (for a larger store, use --backing file:DIR)" : "";
    std::fprintf(stderr, "tilepool: error: %s%s\n", e.what(), remedy);
    return exit_status(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tilepool: error: %s\n", e.what());
    return 1;
  }
}
