// tilepool-add-floor: the end-to-end floor of an `add` job, with no framework. Reads two .npy
// files of float64 with read() into fresh memory, adds them on N std::threads (each a
// contiguous half, third, ... of the elements), writes the sum with write() to a new .npy. What
// a job costs when nothing is shared, supervised or tiled: scripts/compare_python.py times it
// beside `tilepool run` on the same files.
//
// Usage: tilepool-add-floor OUT.npy A.npy B.npy [THREADS]   (THREADS: default 2)
// Exits 2 with one line for bad arguments (not float64, shapes differ).
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tilepool/shared/npy.hpp"

namespace {

// Memory that is not zero-filled first: read() writes each page once, as a loader would.
struct Array {
  tilepool::npy::Header header;
  std::unique_ptr<double[]> data;
  [[nodiscard]] std::size_t size() const noexcept { return header.data_bytes / sizeof(double); }
};

Array read_npy(const char* path) {
  Array a{tilepool::npy::read_file_header(path), nullptr};
  if (a.header.dtype != tilepool::DType::float64) throw std::runtime_error(std::string(path) + ": expected float64");
  a.data.reset(new double[a.size()]);
  tilepool::npy::read_file_data(path, a.header, std::as_writable_bytes(std::span(a.data.get(), a.size())));
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::fprintf(stderr, "usage: tilepool-add-floor OUT.npy A.npy B.npy [THREADS]\n");
    return 2;
  }
  try {
    const int threads = argc == 5 ? std::max(1, std::atoi(argv[4])) : 2;
    const Array a = read_npy(argv[2]);
    const Array b = read_npy(argv[3]);
    if (a.header.shape != b.header.shape) throw std::runtime_error("the inputs' shapes differ");
    const std::size_t n = a.size();
    std::unique_ptr<double[]> sum(new double[n]);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const std::size_t lo = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
        const std::size_t hi = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
        for (std::size_t i = lo; i < hi; ++i) sum[i] = a.data[i] + b.data[i];
      });
    }
    for (std::thread& t : pool) t.join();
    tilepool::npy::write_file(argv[1], tilepool::DType::float64, a.header.shape,
                              std::as_bytes(std::span(sum.get(), n)), /*overwrite=*/true);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tilepool-add-floor: %s\n", e.what());
    return 2;
  }
  return 0;
}
