// The segment store as a user sees it: listing, and collecting what killed runs left.
#include "tilepool/runner/store.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <optional>
#include <set>

#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/shared/npy.hpp"
#include "tilepool/shared/publish.hpp"
#include "tilepool/shared/segment.hpp"

namespace tilepool {

namespace {

// The entry at `path` as `tilepool ls` shows it, or nullopt if it is none of ours: not a regular
// file of this uid, or neither an array (NPY) nor a job segment.
std::optional<SegmentInfo> describe_segment(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) return std::nullopt;
  SegmentInfo info;
  info.name = path.filename().string();
  info.bytes = static_cast<std::uintmax_t>(st.st_size);
  std::vector<std::byte> head(npy::kMaxHeaderBytes + npy::kPreambleBytes);
  std::ifstream f(path, std::ios::binary);
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
    return std::nullopt;  // not ours: some other program's file
  }
  return info;
}

// Whether the regular file at `path` is empty or starts with the NPY magic or a control
// block's: what any segment, even one truncated after its header, starts with. Throws
// Error(system) if it cannot be read.
bool starts_like_a_segment(const std::filesystem::path& path) {
  std::array<char, 8> head{};
  std::ifstream f(path, std::ios::binary);
  f.read(head.data(), head.size());
  if (f.bad() || !f.is_open()) throw system_error(fmt::format("{}: reading its first bytes", escape_for_message(path.string())), errno);
  const auto n = static_cast<std::size_t>(f.gcount());
  if (n == 0) return true;
  const std::string_view start(head.data(), n);
  return std::string_view("\x93NUMPY").starts_with(start.substr(0, 6)) ||
         std::string_view(ControlBlock::kMagic, 8).starts_with(start);
}

}  // namespace

std::vector<SegmentInfo> list_segments(const Backing& backing) {
  std::vector<SegmentInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(backing.directory(), ec)) {
    if (auto info = describe_segment(entry.path())) out.push_back(std::move(*info));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

void remove_named_segments(std::span<const std::string> names, const Backing& backing) {
  for (const auto& n : names) {
    validate_segment_name(n);
    // A running job's own segment (its output being made, its control block): removing it
    // failed the job, or went unnoticed. It goes when the job ends; gc removes the dead's.
    if (const auto owner = parse_job_segment_name(n); owner && owner_alive(*owner)) {
      throw Error(Errc::usage, fmt::format("segment '{}' belongs to running process {} (a job's own segment: it is removed "
                                           "when that job ends; tilepool gc removes those of processes that are gone)",
                                           n, owner->pid));
    }
    // Everything refused is refused before anything is removed: a directory, a symlink, another
    // user's file (remove_segment's own refusals) ...
    if (!segment_removable(n, backing) || backing.is_shm()) continue;
    // ... and, in a store that is a directory of the user's (file:DIR), a file of theirs there
    // that is no segment. One whose start is an array's or a control block's is (a segment the
    // user truncated to its header is still theirs to remove), as is an empty one.
    if (!starts_like_a_segment(backing.path_of(n))) {
      throw Error(Errc::bad_input, fmt::format("'{}' in {} is not a segment (neither an NPY array nor a tilepool job's segment); "
                                               "not removing it",
                                               n, escape_for_message(backing.directory().string())));
    }
  }
  std::string missing;
  std::set<std::string, std::less<>> done;  // `rm x x` removes x once (its second removal is not "no such segment")
  for (const auto& n : names) {
    if (!done.insert(n).second) continue;
    if (!remove_segment(n, backing)) missing += fmt::format("{}{}", missing.empty() ? "" : ", ", n);
  }
  if (!missing.empty()) throw Error(Errc::bad_input, fmt::format("no such segment: {}", missing));
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
    // A named segment is never replaced: the remedy is another store.
    check_publishable(backing.path_of(name), /*replace=*/false,
                      "use another store (shm, or file:DIR on a local filesystem)");
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
