// The segment store as a user sees it: listing, and collecting what killed runs left.
#include "tilepool/runner/store.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>

#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/shared/npy.hpp"
#include "tilepool/shared/publish.hpp"
#include "tilepool/shared/segment.hpp"

namespace tilepool {

std::vector<SegmentInfo> list_segments(const Backing& backing) {
  std::vector<SegmentInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(backing.directory(), ec)) {
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) continue;
    SegmentInfo info;
    info.name = entry.path().filename().string();
    info.bytes = static_cast<std::uintmax_t>(st.st_size);
    std::vector<std::byte> head(npy::kMaxHeaderBytes + npy::kPreambleBytes);
    std::ifstream f(entry.path(), std::ios::binary);
    f.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<std::size_t>(f.gcount()));
    try {
      const npy::Header h = npy::parse_header(head, info.name);
      info.kind = "array";
      info.what = fmt::format("{} {}", dtype_name(h.dtype), format_shape(h.shape));
    } catch (const Error&) {
      const bool control = head.size() >= 8 && std::equal(head.begin(), head.begin() + 8,
                                                          reinterpret_cast<const std::byte*>(ControlBlock::kMagic));
      info.kind = control ? "control" : "other";
    }
    if (const auto owner = parse_job_segment_name(info.name)) {
      info.state = owner_alive(*owner) ? fmt::format("live (pid {})", owner->pid) : fmt::format("stale (pid {} gone)", owner->pid);
    } else if (info.kind == "array") {
      info.state = "named";
    } else {
      continue;  // not ours to show: some other program's file
    }
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

namespace {

// Removes the job segments in `backing` whose owner `remove_if` picks; returns their names.
template <class Pick>
std::vector<std::string> remove_job_segments(const Backing& backing, Pick&& remove_if) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(backing.directory(), ec)) {
    const std::string name = entry.path().filename().string();
    const auto owner = parse_job_segment_name(name);
    if (!owner || !remove_if(*owner)) continue;
    try {
      if (remove_segment(name, backing)) removed.push_back(name);
    } catch (const Error&) {  // another user's leftovers are theirs to collect
    }
  }
  return removed;
}

}  // namespace

std::vector<std::string> collect_garbage(const Backing& backing) {
  return remove_job_segments(backing, [](const SegmentOwner& owner) { return !owner_alive(owner); });
}

void check_segment_publishable(const std::string& name, const Backing& backing) {
  try {
    check_publishable(backing.path_of(name), /*replace=*/false);
  } catch (const Error& e) {
    throw Error(e.code(), fmt::format("segment '{}': {}", name, e.what()), e.sys_errno());
  }
}

ArraySegment put_npy(const std::filesystem::path& file, const std::string& name, const Backing& backing) {
  validate_user_segment_name(name);
  if (segment_exists(name, backing)) throw Error(Errc::exists, fmt::format("segment '{}' already exists", name));
  check_segment_publishable(name, backing);  // before the copy, not after it
  const npy::Header h = npy::read_file_header(file);
  const std::uint64_t needed = npy::make_header(h.dtype, h.shape).size() + h.data_bytes;
  // The data is copied in, not reserved first (reserving would zero every page before it is
  // written): the room is checked here instead, before any of it is copied.
  struct statvfs st {};
  if (::statvfs(backing.directory().c_str(), &st) == 0) {
    const std::uint64_t free = static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize);
    if (free < needed) {
      throw Error(Errc::no_space, fmt::format("segment '{}': not enough space: needs {} bytes in {}, {} free", name, needed,
                                              escape_for_message(backing.directory().string()), free));
    }
  }
  ArraySegment segment = ArraySegment::load_npy(file, job_segment_name("put"), backing);
  throw_if_interrupted();  // nothing is published after Ctrl-C; the unpublished copy goes with `segment`
  segment.segment().publish(name, /*replace=*/false);
  return segment;
}

void remove_own_job_segments(const Backing& backing) noexcept {
  try {
    const ProcessOwner self = this_process();
    (void)remove_job_segments(backing, [&](const SegmentOwner& owner) { return owner == self; });
  } catch (...) {  // ending anyway: what is left, the next run's sweep removes
  }
}

}  // namespace tilepool
