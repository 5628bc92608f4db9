// SharedArray's create / attach / list / delete workflow, in C++.
//
//   SharedArray.create("shm://NAME", shape, dtype)  ->  ArraySegment::create(NAME, dtype, shape)
//                                                         + segment().release_name() to outlive us
//   SharedArray.attach("shm://NAME")                 ->  ArraySegment::attach(NAME)
//   SharedArray.list()                               ->  the files in /dev/shm (tilepool ls)
//   SharedArray.delete("NAME")                       ->  remove_segment(NAME) (tilepool rm NAME)
//
// A tilepool segment is an NPY file in /dev/shm, so the array needs nothing but its name:
// shape and dtype come from its header, and numpy attaches the same segment with
// np.load("/dev/shm/NAME", mmap_mode="r+"). From the shell: tilepool put FILE.npy NAME,
// tilepool ls, tilepool get NAME FILE.npy, tilepool rm NAME (see cli.sh).
//
// Python twin: sharedarray_create_attach.py. Run: build/release/bin/example-sharedarray_create_attach
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

#include "common/example_support.hpp"
#include "tilepool/shared/array_segment.hpp"

namespace {

namespace bp = boost::process;

// The array of a segment as one Eigen column.
Eigen::Map<Eigen::ArrayXd> elements(const tilepool::ArraySegment& s) {
  return {s.view<double>().data(), s.view<double>().size()};
}

// Another program: attaches by name and adds 1 in place.
int add_one(const std::string& name) {
  const auto a = tilepool::ArraySegment::attach(name);
  elements(a) += 1.0;
  return 0;
}

// SharedArray.list(): is `name` among the segments in /dev/shm?
bool listed(const std::string& name) {
  for (const auto& entry : std::filesystem::directory_iterator(tilepool::Backing{}.directory())) {
    if (entry.path().filename() == name) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name;
  try {
    if (argc == 3 && std::string(argv[1]) == "--add-one") return add_one(argv[2]);

    name = tilepool::examples::segment_name("sharedarray");
    const tilepool::Shape shape{100, 100};
    {
      // SharedArray.create: a new zero-filled array under a name (fails if the name is taken).
      auto a = tilepool::ArraySegment::create(name, tilepool::DType::float64, shape);
      elements(a) = Eigen::ArrayXd::NullaryExpr(elements(a).size(), [](Eigen::Index k) { return static_cast<double>(k % 10); });
      a.segment().release_name();  // the creator lets go of the name: the array stays after this handle
    }

    bp::child other(tilepool::examples::self_executable().string(), bp::args({"--add-one", name}));
    other.wait();
    if (other.exit_code() != 0) throw std::runtime_error("the child failed");

    const auto b = tilepool::ArraySegment::attach(name);  // SharedArray.attach: the name alone
    const tilepool::ArrayView<const double> view = b.view<double>();
    const double total = elements(b).sum();
    const bool is_listed = listed(name);
    std::printf("%s: %s %s, in /dev/shm: %s\n", name.c_str(), std::string(tilepool::dtype_name(b.dtype())).c_str(),
                tilepool::format_shape(b.shape()).c_str(), is_listed ? "True" : "False");

    tilepool::remove_segment(name);  // SharedArray.delete
    const bool deleted = !tilepool::segment_exists(name);
    std::printf("after delete: name gone: %s, the attached array still reads: b[0, :3] = [%.1f, %.1f, %.1f]\n",
                deleted ? "True" : "False", view.data()[0], view.data()[1], view.data()[2]);
    std::printf("result: created %s float64 by name, another process attached it and added 1: sum=%.0f listed=%s deleted=%s\n",
                tilepool::format_shape(shape).c_str(), total, is_listed ? "yes" : "no", deleted ? "yes" : "no");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-sharedarray_create_attach: error: %s\n", e.what());
    // The name was released on purpose, so no handle removes it if we failed half-way.
    try {
      if (!name.empty()) (void)tilepool::remove_segment(name);
    } catch (const std::exception&) {  // already reported the first error; this one adds nothing
    }
    return 1;
  }
}
