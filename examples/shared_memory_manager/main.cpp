// SharedMemory + SharedMemoryManager, in C++: RAII handles own the segments' lifetime.
//
// In Python a manager process tracks segments and unlinks them all when the with-block ends.
// In C++ the scope is the manager: ArraySegment::create returns a handle that owns its name
// and removes it when the handle is destroyed, however the scope is left (return, exception).
// A process that attaches (ArraySegment::attach) gets a handle that never removes the name:
// only the creator does, so there is nothing like Python's resource-tracker wart to work
// around. The parent fills an input segment; another program (this executable started again
// with --child: a process that inherits nothing) attaches both segments by name, doubles the
// input into the output and exits. When the parent's scope ends, nothing is left in /dev/shm.
//
// Python twin: shared_memory_manager.py. Run: build/release/bin/example-shared_memory_manager
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/example_support.hpp"
#include "tilepool/shared/array_segment.hpp"

namespace {

namespace bp = boost::process;

constexpr std::int64_t kN = 1000;

// The array of a segment as one Eigen column.
Eigen::Map<Eigen::ArrayXd> elements(const tilepool::ArraySegment& s) {
  return {s.view<double>().data(), s.view<double>().size()};
}

// The other program: attach by name, compute, exit. Its handles never remove the names.
int child(const std::string& in_name, const std::string& out_name) {
  const auto src = tilepool::ArraySegment::attach(in_name);  // shape and dtype come from the segment
  const auto dst = tilepool::ArraySegment::attach(out_name);
  elements(dst) = 2.0 * elements(src);
  return src.segment().owns_name() || dst.segment().owns_name() ? 1 : 0;  // attachers never own
}

int count_present(const std::vector<std::string>& names) {
  int n = 0;
  for (const auto& name : names) n += tilepool::segment_exists(name) ? 1 : 0;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 4 && std::string(argv[1]) == "--child") return child(argv[2], argv[3]);

    std::vector<std::string> names;
    double total = 0;
    bool right = false;
    int inside = 0;
    {  // `with SharedMemoryManager() as smm:` -- the handles made here own their names
      const auto src = tilepool::ArraySegment::create(tilepool::examples::segment_name("in"), tilepool::DType::float64, {kN});
      const auto dst = tilepool::ArraySegment::create(tilepool::examples::segment_name("out"), tilepool::DType::float64, {kN});
      names = {src.name(), dst.name()};
      std::printf("this scope owns %s and %s\n", src.name().c_str(), dst.name().c_str());
      elements(src) = Eigen::ArrayXd::NullaryExpr(kN, [](Eigen::Index k) { return static_cast<double>(k % 7); });

      // Another program, given nothing but the names.
      bp::child other(tilepool::examples::self_executable().string(), bp::args({"--child", src.name(), dst.name()}));
      other.wait();
      if (other.exit_code() != 0) throw std::runtime_error("the child failed");

      total = elements(dst).sum();
      right = (elements(dst) == 2.0 * elements(src)).all();
      inside = count_present(names);
    }  // the creator's handles are destroyed here: they remove both names
    const int left = count_present(names);
    std::printf("segments in /dev/shm inside the scope: %d, after it: %d\n", inside, left);
    std::printf("result: a child attached by name and doubled %lld float64: sum=%.0f right=%s "
                "segments left after the owner's scope=%d\n",
                static_cast<long long>(kN), total, right ? "yes" : "no", left);
    return right && left == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-shared_memory_manager: error: %s\n", e.what());
    return 1;
  }
}
