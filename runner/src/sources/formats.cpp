// The array formats a job's inputs and outputs can be named in: the built-in `shm:NAME` and
// `FILE.npy`, and any format registered with register_array_format (tried first).
#include <fmt/format.h>

#include <mutex>
#include <vector>

#include "detail/or_list.hpp"
#include "sources/source_support.hpp"
#include "tilepool/runner/job.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace detail {
std::shared_ptr<ArraySource> npy_file_source(const std::string& path);
std::shared_ptr<OutputTarget> npy_file_target(const std::string& path);
std::shared_ptr<ArraySource> segment_source(const std::string& name, const Backing& backing);
std::shared_ptr<OutputTarget> segment_target(const std::string& name, const Backing& backing);
}  // namespace detail

namespace {

struct Formats {
  std::mutex mutex;
  std::vector<ArrayFormat> list;  // tried last-registered first
};

Formats& formats() {
  static Formats* f = [] {
    auto* made = new Formats;  // never destroyed: used until exit
    made->list.push_back(ArrayFormat{
        "npy", [](std::string_view text) { return !text.empty(); },
        [](const std::string& text, const Backing&) { return detail::npy_file_source(text); },
        [](const std::string& text, const Backing&) { return detail::npy_file_target(text); }, "FILE.npy"});
    made->list.push_back(ArrayFormat{
        "shm", [](std::string_view text) { return text.starts_with("shm:"); },
        [](const std::string& text, const Backing& b) { return detail::segment_source(text.substr(4), b); },
        [](const std::string& text, const Backing& b) { return detail::segment_target(text.substr(4), b); }, "shm:NAME"});
    return made;
  }();
  return *f;
}

const ArrayFormat* format_for(std::string_view text) {
  Formats& f = formats();
  const std::lock_guard lock(f.mutex);
  for (auto it = f.list.rbegin(); it != f.list.rend(); ++it) {
    if (it->accepts(text)) return &*it;
  }
  return nullptr;
}

}  // namespace

void register_array_format(ArrayFormat format) {
  Formats& f = formats();
  const std::lock_guard lock(f.mutex);
  f.list.push_back(std::move(format));
}

std::string array_forms() {
  Formats& f = formats();
  const std::lock_guard lock(f.mutex);
  std::vector<std::string_view> forms;
  for (const ArrayFormat& format : f.list) forms.emplace_back(format.form);
  return detail::or_list(forms);
}

std::shared_ptr<ArraySource> open_source(const std::string& text, const Backing& backing) {
  try {
    const ArrayFormat* format = format_for(text);
    if (format == nullptr) throw Error(Errc::usage, "expected " + array_forms());
    return format->source(text, backing);
  } catch (const Error& e) {
    throw SpecError(JobField::input, text, e);
  }
}

std::shared_ptr<OutputTarget> open_target(const std::string& text, const Backing& backing) {
  try {
    const ArrayFormat* format = format_for(text);
    if (format == nullptr || !format->target) throw Error(Errc::usage, "expected " + array_forms());
    return format->target(text, backing);
  } catch (const Error& e) {
    throw SpecError(JobField::output, text, e);
  }
}

JobArray ArraySource::open_ranges(const ArrayPlacement& placement, std::span<const ByteRange> /*ranges*/,
                                  std::uint64_t& /*bytes_read*/) {
  return open(placement);
}

}  // namespace tilepool
