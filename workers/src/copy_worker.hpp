#pragma once
// Private to tilepool-worker: copy mode's worker loop (copy_worker.cpp).

#include <sys/types.h>

namespace tilepool {

/// Serves copy-mode requests on stdin/stdout until stdin ends (`tilepool-worker --copy`): each
/// tile's input bytes arrive on stdin, the tile is computed on small local arrays, and its output
/// bytes leave on stdout. Dies with `parent`. Returns the process exit status.
int run_copy_worker(pid_t parent);

/// Says "ready" on stdout (worker.cpp): from then on stdout carries the mode's protocol, and a
/// failure is no longer reported in place of "ready". Exits quietly if the runner is gone.
void say_ready();

}  // namespace tilepool
