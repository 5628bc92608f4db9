// fork's copy-on-write, in C++: children read the parent's big array without copying it.
//
// The parent fills a 32 MiB array in its own private memory (a std::vector) and then forks.
// A forked child sees the same pages: the kernel shares them until someone writes, and only
// then copies the page written. Two reader children each sum half of the array (an Eigen map
// over the inherited memory), measuring their memory in /proc/self/smaps_rollup before and
// after: Rss stays flat (the pages were mapped at fork) and Private_Dirty, the memory a process
// has of its own, does not grow: nothing was copied. A third child writes to half the array:
// its Private_Dirty grows by the 16 MiB it wrote, and the parent still sees the original values.
// Results go back through a MAP_SHARED | MAP_ANONYMOUS mapping made before the fork: the one
// place a forked child's writes are seen by its parent. (tilepool's fork mode works this way.)
//
// Python twin: fork_cow.py. Run: build/release/bin/example-fork_cow
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/example_support.hpp"

namespace {

constexpr Eigen::Index kElements = Eigen::Index{4} * 1024 * 1024;  // 32 MiB of float64
constexpr Eigen::Index kHalf = kElements / 2;
constexpr double kMiB = 1024.0 * 1024.0;

// A process's memory, in bytes, from /proc/self/smaps_rollup.
struct Memory {
  double rss = 0;            // pages mapped in this process, shared or not
  double pss = 0;            // each page divided by the number of processes that map it
  double private_dirty = 0;  // pages this process wrote and holds alone: what it copied
};

Memory memory() {
  Memory m;
  std::ifstream in("/proc/self/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string key;
    double kib = 0;
    fields >> key >> kib;
    if (key == "Rss:") m.rss = kib * 1024;
    if (key == "Pss:") m.pss = kib * 1024;
    if (key == "Private_Dirty:") m.private_dirty = kib * 1024;
  }
  return m;
}

// What each child reports back to the parent.
struct Report {
  double sum = 0;
  Memory before;
  Memory after;
};

// Where children write their reports: readers 0 and 1, then the writer.
struct Reports {
  Report child[3];
};

// An anonymous MAP_SHARED mapping holding one T: made before fork(), shared by the children.
template <class T>
class SharedAnonymous {
 public:
  SharedAnonymous() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    value_ = new (p) T{};
  }
  SharedAnonymous(const SharedAnonymous&) = delete;
  SharedAnonymous& operator=(const SharedAnonymous&) = delete;
  ~SharedAnonymous() {
    value_->~T();
    ::munmap(value_, sizeof(T));
  }
  T& operator*() const noexcept { return *value_; }

 private:
  T* value_ = nullptr;
};

double report(const char* name, const Report& r) {
  const double copied = r.after.private_dirty - r.before.private_dirty;
  std::printf("%s: Rss %5.1f -> %5.1f MiB, Pss %5.1f -> %5.1f MiB, Private_Dirty %5.1f -> %5.1f MiB (copied %.1f MiB)\n", name,
              r.before.rss / kMiB, r.after.rss / kMiB, r.before.pss / kMiB, r.after.pss / kMiB,
              r.before.private_dirty / kMiB, r.after.private_dirty / kMiB, copied / kMiB);
  return copied;
}

}  // namespace

int main() {
  try {
    // The big array, in the parent's private memory, made before the fork: children inherit
    // it, nobody copies it.
    std::vector<double> data(static_cast<std::size_t>(kElements));
    Eigen::Map<Eigen::ArrayXd> all(data.data(), kElements);
    all = Eigen::ArrayXd::NullaryExpr(kElements, [](Eigen::Index k) { return static_cast<double>(k % 1000); });

    const SharedAnonymous<Reports> reports;
    tilepool::examples::run_forked(2, [&](int reader) {
      Report& r = (*reports).child[reader];
      r.before = memory();
      r.sum = all.segment(reader * kHalf, kHalf).sum();  // reads the inherited pages: no copy
      r.after = memory();
    });
    tilepool::examples::run_forked(1, [&](int) {
      Report& r = (*reports).child[2];
      r.before = memory();
      all.head(kHalf) += 1.0;  // writes: the kernel copies every page written, for this child only
      r.sum = all.head(kHalf).sum();
      r.after = memory();
    });

    const Reports& got = *reports;
    const double read0_copied = report("reader 0", got.child[0]);
    const double read_copied = std::max(read0_copied, report("reader 1", got.child[1]));
    const double write_copied = report("writer  ", got.child[2]);
    const double sum = got.child[0].sum + got.child[1].sum;
    const bool readers_copied_nothing = read_copied < 2 * kMiB;
    const bool writer_copied_its_half = write_copied >= 0.9 * kHalf * sizeof(double);
    const bool stayed_private = data[0] == 0 && got.child[2].sum == all.head(kHalf).sum() + kHalf;
    std::printf("the parent still sees the original values: %s\n", stayed_private ? "True" : "False");
    std::printf("result: 2 children summed %lld inherited float64: sum=%.0f readers copied nothing=%s "
                "writer copied its half=%s writes stayed private=%s\n",
                static_cast<long long>(kElements), sum, readers_copied_nothing ? "yes" : "no",
                writer_copied_its_half ? "yes" : "no", stayed_private ? "yes" : "no");
    return readers_copied_nothing && writer_copied_its_half && stayed_private ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-fork_cow: error: %s\n", e.what());
    return 1;
  }
}
