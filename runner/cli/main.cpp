// tilepool: run tile jobs over N-D arrays with a pool of processes that share the data.
#include <cstdio>

#include "commands.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"

namespace {

int run_cli(int argc, char** argv) {
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
    std::fprintf(stderr, "tilepool: error: %s\n", tilepool::one_line(tilepool::cli::parse_error_message(app, e, "tilepool")).c_str());
    return 2;
  } catch (const tilepool::Error& e) {
    // The library describes the data; each command has added the flags and remedies it offers.
    std::fprintf(stderr, "tilepool: error: %s\n", tilepool::one_line(e.what()).c_str());
    return tilepool::cli::exit_status(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tilepool: error: %s\n", tilepool::one_line(e.what()).c_str());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // The command is over and its result published (or not): the status is final, whatever a
  // plugin's static destructor would do at exit.
  tilepool::cli::guard_command("tilepool");
  tilepool::cli::end_process(run_cli(argc, argv));
}
