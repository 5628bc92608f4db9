// tilepool put/get/ls/rm/gc: named segments, the SharedArray.create/attach/list/delete workflow.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "commands.hpp"
#include "flag_errors.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/runner/store.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/plugin.hpp"

namespace tilepool::cli {
namespace {

Backing backing_option(const std::string& spec) { return for_flag("--backing", spec, Backing::parse); }

}  // namespace

void add_segment_commands(CLI::App& app) {
  // Option storage that outlives parsing: the callbacks share it.
  struct Args {
    std::string backing_spec = "shm";
    std::string file, name;
    std::vector<std::string> names;
    bool force = false;
  };
  const auto args = std::make_shared<Args>();
  auto& [backing_spec, file, name, names, force] = *args;

  CLI::App* put = app.add_subcommand("put", "load FILE.npy into a named segment (one read, no copies later)");
  put->add_option("file", file, "the .npy file")->required();
  put->add_option("name", name, "the segment name (numpy sees it at /dev/shm/NAME)")->required();
  put->add_option("--backing", backing_spec, "shm (default) or file:DIR");
  put->callback([args, &backing_spec = args->backing_spec, &file = args->file, &name = args->name] {
    install_interrupt_handlers();  // Ctrl-C: one line, 130, and the unpublished copy removed
    // Measured: at 5, the last open failed midway ("open for writing: out of file descriptors").
    raise_descriptor_limit(6, "tilepool put's files (stdin, stdout, stderr, the .npy file, the new segment and its folder)");
    const Backing backing = backing_option(backing_spec);
    validate_user_segment_name(name);
    if (segment_exists(name, backing)) {
      throw Error(Errc::exists, fmt::format("segment '{}' already exists (tilepool rm {} first)", name, name));
    }
    ArraySegment seg = [&] {
      try {
        return put_npy(file, name, backing);
      } catch (const Error& e) {
        if (e.code() == Errc::no_space) throw with_store_remedy(e, backing_spec);
        throw;
      }
    }();
    std::printf("%s: %s %s, %zu bytes at %s\n", name.c_str(), std::string(dtype_name(seg.dtype())).c_str(),
                format_shape(seg.shape()).c_str(), seg.data_bytes(), backing.path_of(name).c_str());
  });

  CLI::App* get = app.add_subcommand("get", "write a segment to FILE.npy");
  get->add_option("name", name, "the segment name")->required();
  get->add_option("file", file, "the .npy file to write")->required();
  get->add_option("--backing", backing_spec, "shm (default) or file:DIR");
  get->add_flag("--force", force, "overwrite FILE.npy");
  get->callback([args, &backing_spec = args->backing_spec, &file = args->file, &name = args->name, &force = args->force] {
    install_interrupt_handlers();
    raise_descriptor_limit(6, "tilepool get's files (stdin, stdout, stderr, the segment, the new file and its folder)");
    const ArraySegment seg = ArraySegment::attach(name, backing_option(backing_spec), MapOptions{.populate = false, .read_only = true});
    try {
      seg.save_npy(file, force);
    } catch (const Error& e) {
      if (e.code() == Errc::exists) throw Error(Errc::exists, fmt::format("{} (pass --force to overwrite)", e.what()));
      throw;
    }
  });

  CLI::App* ls = app.add_subcommand("ls", "list named segments and job segments (live or stale)");
  ls->add_option("--backing", backing_spec, "shm (default) or file:DIR");
  ls->callback([args, &backing_spec = args->backing_spec] {
    const auto list = list_segments(backing_option(backing_spec));
    if (list.empty()) return;
    std::printf("%-48s %-8s %-24s %12s  %s\n", "NAME", "KIND", "ARRAY", "BYTES", "STATE");
    for (const auto& s : list) {
      std::printf("%-48s %-8s %-24s %12ju  %s\n", s.name.c_str(), s.kind.c_str(), s.what.c_str(), s.bytes, s.state.c_str());
    }
  });

  CLI::App* rm = app.add_subcommand("rm", "remove named segments");
  rm->add_option("names", names, "segment names")->required();
  rm->add_option("--backing", backing_spec, "shm (default) or file:DIR");
  rm->callback([args, &backing_spec = args->backing_spec, &names = args->names] {
    remove_named_segments(names, backing_option(backing_spec));
  });

  CLI::App* gc = app.add_subcommand("gc", "remove job segments whose owner process is gone");
  gc->add_option("--backing", backing_spec, "shm (default) or file:DIR");
  gc->callback([args, &backing_spec = args->backing_spec] {
    for (const auto& n : collect_garbage(backing_option(backing_spec))) std::printf("removed %s\n", n.c_str());
  });
}

void load_plugins(const std::vector<std::string>& paths) {
  if (paths.empty()) return;
  // Each loaded plugin keeps its file's private copy open; loading one holds its file, the copy
  // being made and the pipe of the child that tries it first.
  const std::size_t n = paths.size();
  raise_descriptor_limit(6 + n, fmt::format("the files to load {} plugin{} (stdin, stdout, stderr, a copy of each plugin, the file being "
                                            "copied and the pipe of the child that tries it first)",
                                            n, n == 1 ? "" : "s"));
  for (const std::string& path : paths) (void)load_plugin(path);
}

namespace {
// "            --param value=NUMBER  the number added to each element (required)"
std::string format_param(const ParamDef& p) {
  std::string type(param_type_name(p.type));
  for (char& c : type) c = static_cast<char>(c - 'a' + 'A');
  const std::string def = p.default_value.empty() ? "required" : fmt::format("default {}", p.default_value);
  return fmt::format("{:12}--param {}={}  {} ({})", "", p.name, type, p.meaning, def);
}
}  // namespace

void add_kernels_command(CLI::App& app) {
  CLI::App* kernels = app.add_subcommand("kernels", "list the kernels with their arity and dtypes");
  auto plugins = std::make_shared<std::vector<std::string>>();
  kernels->add_option("--plugin", *plugins, "also list the kernels of this plugin FILE.so (repeatable)");
  kernels->callback([plugins] {
    // A signal to this process alone then reaches a plugin that hangs while it loads (the
    // probe passes it on); without handlers it killed us and left the probe running.
    install_interrupt_handlers();
    load_plugins(*plugins);
    std::printf("%-11s %-6s %-80s %s\n", "KERNEL", "INPUTS", "DTYPES", "WHAT");
    for (const KernelDef* k : known_kernels()) {
      const std::string from = plugin_path_of(*k);
      std::printf("%-11s %-6d %-80s %s%s\n", std::string(k->name).c_str(), k->arity, format_dtypes(k->dtypes).c_str(),
                  std::string(k->summary).c_str(), from.empty() ? "" : fmt::format(" (plugin {})", from).c_str());
      for (const ParamDef& p : k->params) {  // one line per parameter it accepts, under the kernel
        std::printf("%s\n", format_param(p).c_str());
      }
    }
  });
}

}  // namespace tilepool::cli
