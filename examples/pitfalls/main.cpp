// The classic pitfalls of sharing numpy arrays between processes, and what tilepool does
// about each (the Python twin, pitfalls.py, shows the pitfalls themselves).
//
// (a) Slices passed to pool.map are pickled copies: writes into them are lost, and the bytes
//     cross the pipes both ways. tilepool's share mode passes segment names, once, and tile
//     indices through the control block: no array byte crosses a pipe, and kernels write
//     their tiles straight into the output segment. (Copy mode does what pool.map does, and
//     counts the bytes.)
// (b) A view outliving its segment: every view (AnyArray, ArrayView) holds a shared_ptr to the
//     mapping, so it stays readable after the handle is destroyed and the name removed. The
//     one view that borrows, TileView, cannot be made from a temporary ArrayView (that
//     overload is deleted), so `seg.view<double>().tile(box)` does not compile.
// (c) Leaked segments: handles remove what they created on every exit path (return,
//     exception); only SIGKILL skips destructors. For that, job segments carry their owner's
//     pid and start time in their name ("tilepool-<pid>-<start>-..."), and `tilepool gc`
//     removes those whose owner is gone; `tilepool run` sweeps them before it starts, too.
// (d) A small /dev/shm: Segment::create reserves the space with posix_fallocate, so a segment
//     that does not fit is a clean Error(no_space) at creation, with nothing left behind,
//     never a SIGBUS later in the middle of a write.
//
// Python twin: pitfalls.py. Run: build/release/bin/example-pitfalls
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

#include "common/example_support.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/error.hpp"

namespace {

using tilepool::examples::segment_name;

constexpr std::int64_t kN = std::int64_t{1} << 18;  // 2 MiB of float64
constexpr std::int64_t kTile = kN / 16;

Eigen::Map<Eigen::ArrayXd> elements(const tilepool::ArraySegment& s) {
  return {s.view<double>().data(), s.view<double>().size()};
}

// (a) out = a + a over 16 tiles, in share mode and (for comparison) in copy mode.
double pitfall_a() {
  const auto a = tilepool::ArraySegment::create(segment_name("a"), tilepool::DType::float64, {kN});
  const auto out = tilepool::ArraySegment::create(segment_name("a-out"), tilepool::DType::float64, {kN});
  elements(a) = Eigen::ArrayXd::NullaryExpr(kN, [](Eigen::Index k) { return static_cast<double>(k % 13); });
  const tilepool::JobRequest job{"add", {tilepool::JobArray::of(a), tilepool::JobArray::of(a)},
                                 tilepool::JobArray::of(out), {kTile}, {}};

  tilepool::Pool pool = tilepool::Pool::start(tilepool::PoolOptions{.workers = 2, .mode = tilepool::Mode::share}, &job);
  const tilepool::JobStats shared = pool.run(job);
  const double total = elements(out).sum();
  const bool right = (elements(out) == 2.0 * elements(a)).all();
  std::printf("a: share mode (names once, tile indices through the control block): right=%s, %llu array bytes through pipes\n",
              right ? "True" : "False", static_cast<unsigned long long>(shared.bytes_copied));

  try {
    elements(out).setZero();
    tilepool::Pool copying = tilepool::Pool::start(tilepool::PoolOptions{.workers = 2, .mode = tilepool::Mode::copy});
    const tilepool::JobStats copied = copying.run(job);
    std::printf("a: copy mode (what pool.map over slices does): right=%s, %llu array bytes through pipes (there and back)\n",
                (elements(out) == 2.0 * elements(a)).all() ? "True" : "False",
                static_cast<unsigned long long>(copied.bytes_copied));
  } catch (const tilepool::Error& e) {
    std::printf("a: copy mode for comparison: %s\n", e.what());
  }
  return right ? total : -1;
}

// (b) A view keeps its mapping alive after the handle and the name are gone.
double pitfall_b() {
  tilepool::ArrayView<const double> view;
  std::string name;
  {
    const auto s = tilepool::ArraySegment::create(segment_name("b"), tilepool::DType::float64, {8});
    s.view<double>().data()[7] = 42.0;
    view = s.view<double>();
    name = s.name();
  }  // the creator's handle is destroyed here: the name is removed, the mapping is not
  std::printf("b: handle destroyed, name in /dev/shm: %s; the view still reads %.0f (it holds the mapping)\n",
              tilepool::segment_exists(name) ? "yes" : "no", view.data()[7]);
  return view.data()[7];
}

// (c) A child that is SIGKILLed after creating a job segment leaves it behind; the gc rule
// (owner pid + start time no longer alive) finds and removes it.
int pitfall_c() {
  std::fflush(nullptr);  // or the child would inherit, and might print again, our buffered output
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    try {
      tilepool::Segment leak = tilepool::Segment::create(tilepool::job_segment_name("leak"), 4096);
      ::raise(SIGKILL);  // no destructor runs: the name stays
    } catch (const std::exception& e) {
      std::fprintf(stderr, "c: child: %s\n", e.what());
    }
    ::_exit(1);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string prefix = "tilepool-" + std::to_string(child) + "-";
  int found = 0;
  int removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    ++found;
    // What `tilepool gc` does for every job segment: remove it if its owner is gone.
    const auto owner = tilepool::parse_job_segment_name(name);
    if (owner && !tilepool::owner_alive(*owner) && tilepool::remove_segment(name)) ++removed;
  }
  std::printf("c: a child killed with SIGKILL left %d job segment(s) named %s...; owner gone, so gc removed %d\n", found,
              prefix.c_str(), removed);
  return found - removed;
}

// (d) Asking for more than /dev/shm can hold fails at creation, and leaves nothing behind.
int pitfall_d() {
  struct statvfs st {};
  if (::statvfs("/dev/shm", &st) != 0 || st.f_blocks == 0) {
    std::printf("d: /dev/shm has no size limit here; nothing to show\n");
    return 0;
  }
  const std::size_t capacity = static_cast<std::size_t>(st.f_blocks) * st.f_frsize;
  const std::string name = segment_name("huge");
  try {
    const tilepool::Segment huge = tilepool::Segment::create(name, capacity + 4096);
    std::printf("d: unexpectedly created %zu bytes on a %zu-byte /dev/shm\n", huge.size(), capacity);
  } catch (const tilepool::Error& e) {
    std::printf("d: Segment::create(%zu bytes) on a %zu-byte /dev/shm: %s error up front: %s\n", capacity + 4096, capacity,
                e.code() == tilepool::Errc::no_space ? "no_space" : "other", e.what());
  }
  return tilepool::segment_exists(name) ? 1 : 0;
}

}  // namespace

int main() {
  try {
    const double a_sum = pitfall_a();
    const double b_last = pitfall_b();
    const int c_left = pitfall_c();
    const int d_left = pitfall_d();
    std::printf("result: a doubled sum=%.0f | b read after unlink=%.0f | c left=%d | d left=%d\n", a_sum, b_last, c_left,
                d_left);
    return a_sum >= 0 && c_left == 0 && d_left == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-pitfalls: error: %s\n", e.what());
    return 1;
  }
}
