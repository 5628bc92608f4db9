// tilepool-worker: a worker process of a share-mode or copy-mode pool (see worker.hpp).
#include <cstdio>

#include "tilepool/workers/worker.hpp"

int main(int argc, char** argv) {
  if (const auto status = tilepool::serve_as_worker_if_asked(argc, argv)) return *status;
  std::fprintf(stderr, "tilepool-worker: error: expected %s share|copy ... (tilepool starts its workers; run `tilepool run`)\n",
               tilepool::kWorkerFlag.data());
  return 2;
}
