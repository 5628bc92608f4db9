#pragma once
// The range checks of the command line's numeric options, written once: `run`, `demo` and
// `tilepool-mpi run` attach the same validator to the same flag, so the same out-of-range value
// is the same one-line error (exit 2) in every subcommand.

#include <CLI/CLI.hpp>

namespace tilepool::cli {

/// --workers N: an integer from 0 (one per core) to kMaxWorkers.
CLI::Validator worker_count_range();
/// --tile-timeout SECONDS: a finite number from 0 (no timeout) to kMaxTileTimeoutSeconds (pool.hpp).
CLI::Validator tile_timeout_range();

}  // namespace tilepool::cli
