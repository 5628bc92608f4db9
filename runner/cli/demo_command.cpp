// tilepool demo: the seed workload (out = a + b over float64 (365, 16, 16), 4x4 tiles of the
// last two axes) on generated data, in every mode, checked against an in-process reference.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <memory>
#include <random>

#include "commands.hpp"
#include "numeric_flags.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool::cli {
namespace {

const Shape kSeedShape{365, 16, 16};

std::vector<double> random_values(std::size_t n, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(-100.0, 100.0);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

bool output_matches(const std::filesystem::path& path, const std::vector<double>& expected) {
  const npy::Header h = npy::read_file_header(path);
  if (h.dtype != DType::float64 || h.shape != kSeedShape) return false;
  std::vector<double> got(expected.size());
  npy::read_file_data(path, h, std::as_writable_bytes(std::span(got)));
  return std::memcmp(got.data(), expected.data(), got.size() * sizeof(double)) == 0;
}

// A scratch directory for the demo's files, removed afterwards.
struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    path = std::filesystem::temp_directory_path() / ("tilepool-demo-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

void add_demo_command(CLI::App& app) {
  struct Args {
    int workers = 0;
    bool json = false;
  };
  const auto args = std::make_shared<Args>();
  CLI::App* demo = app.add_subcommand("demo", "run the seed workload (a + b over (365,16,16) float64) in every mode");
  demo->add_option("--workers,-w", args->workers, "worker count (default: number of cores)")->check(worker_count_range());
  demo->add_flag("--json", args->json, "print a JSON array, one object per mode");
  demo->callback([args, &workers = args->workers, &json = args->json] {
    install_interrupt_handlers();
    // What each run needs, checked before the inputs are written: below it, writing them failed
    // first with a less useful message.
    reserve_job_descriptors(/*inputs=*/2, /*plugins=*/0, "the demo's");
    ScratchDir dir;
    const std::size_t n = 365 * 16 * 16;
    const auto a = random_values(n, 1);
    const auto b = random_values(n, 2);
    std::vector<double> expected(n);
    for (std::size_t i = 0; i < n; ++i) expected[i] = a[i] + b[i];
    npy::write_file(dir.path / "a.npy", DType::float64, kSeedShape, std::as_bytes(std::span(a)));
    npy::write_file(dir.path / "b.npy", DType::float64, kSeedShape, std::as_bytes(std::span(b)));

    std::vector<RunReport> reports;
    std::vector<std::string> checks;
    for (const std::string_view mode : mode_names()) {  // every launcher's row, in table order
      RunOptions o;
      o.kernel = "add";
      o.inputs = {(dir.path / "a.npy").string(), (dir.path / "b.npy").string()};
      o.output = (dir.path / ("out-" + std::string(mode) + ".npy")).string();
      o.tile = "4,4";
      o.workers = workers;
      o.mode = std::string(mode);
      o.no_progress = true;
      o.measure_memory = true;
      try {
        reports.push_back(run_job(o));
      } catch (const Error& e) {
        if (e.code() != Errc::usage) throw;
        std::fprintf(stderr, "demo: %s mode skipped: %s\n", std::string(mode).c_str(), e.what());
        continue;
      }
      checks.push_back(output_matches(o.output, expected) ? "ok" : "WRONG");
    }

    // Every mode skipped: there is no table to print, and the reason is in the lines above.
    if (reports.empty()) throw Error(Errc::usage, "demo: no mode could run");
    if (json) {
      std::string out = "[";
      for (std::size_t i = 0; i < reports.size(); ++i) out += (i ? ",\n " : "") + report_json(reports[i]);
      std::printf("%s]\n", out.c_str());
    } else {
      const RunReport& first = reports.front();
      // A pool starts no more workers than the job has tiles: say so when fewer ran than asked.
      const std::string asked = workers > first.workers ? fmt::format(" (of {} asked: one per tile at most)", workers) : "";
      std::printf("tilepool demo: out = a + b, float64 %s (%.0f KiB per array), 4x4 tiles of the last two axes = %lld tiles, %d workers%s\n\n",
                  format_shape(kSeedShape).c_str(), n * 8 / 1024.0, static_cast<long long>(first.tiles), first.workers, asked.c_str());
      std::printf("%-8s %-6s %9s %9s %9s %11s %9s %13s %13s\n", "mode", "check", "wall ms", "load ms", "spawn ms",
                  "compute ms", "write ms", "peak PSS MiB", "bytes copied");
      for (std::size_t i = 0; i < reports.size(); ++i) {
        const RunReport& r = reports[i];
        std::printf("%-8s %-6s %9.2f %9.2f %9.2f %11.3f %9.2f %13.1f %13llu\n", std::string(mode_name(r.mode)).c_str(),
                    checks[i].c_str(), r.wall_s * 1e3, r.load_s * 1e3, r.spawn_s * 1e3, r.compute_s * 1e3,
                    r.write_s * 1e3, static_cast<double>(r.peak_pss_bytes) / (1 << 20),
                    static_cast<unsigned long long>(r.bytes_copied));
      }
      std::printf("\npeak PSS sums the proportional set size of the runner and its workers: pages they share are\n"
                  "counted once, split between them. bytes copied counts array bytes that crossed a pipe.\n");
    }
    for (const auto& c : checks) {
      if (c != "ok") throw Error(Errc::job_failed, "demo: a mode's output differs from the in-process reference");
    }
  });
}

}  // namespace tilepool::cli
