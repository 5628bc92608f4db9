// One job across nodes. Each step runs on every rank (the node leaders do the work) and ends
// with agree(): a step that failed anywhere ends the job everywhere, with the failing rank's
// error. Leader-only collectives (broadcasts, transfers, MPI-IO) run between steps, once every
// leader is known to be ready for them.
#include "distributed_run.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <optional>
#include <utility>
#include <vector>

#include "node_share.hpp"
#include "node_sources.hpp"
#include "tilepool/runner/report_json.hpp"
#include "tilepool/runner/store.hpp"
#include "tilepool/shared/npy.hpp"
#include "tilepool/shared/publish.hpp"

namespace tilepool::mpi {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kProgressTag = 101;
constexpr int kInputTag = 200;  // + input index

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Runs this rank's part of a step (jobs of store `backing_spec`), then agrees on the outcome with every rank: throws
// StepFailed on every rank if the step failed on any.
template <class F>
void step(const Cluster& cluster, std::string_view backing_spec, F&& part, const std::function<void()>& idle = {}) {
  // A rank that mpirun is stopping starts no step (above all not the publication): it leaves,
  // and the others leave their agreement when their own signal comes.
  throw_if_interrupted();
  std::optional<Error> mine;
  bool about_node = false;
  try {
    part();
  } catch (const SpecError& e) {
    mine = cli::for_command_line(e, backing_spec);
  } catch (const NodeError& e) {
    // Said here: held in `mine` as a plain Error, it is no longer a NodeError (before, rank 0's
    // node errors were told without its rank and node).
    mine = e;
    about_node = true;
  } catch (const Error& e) {
    if (e.code() == Errc::interrupted) throw;
    mine = e;
  } catch (const std::exception& e) {
    mine = Error(Errc::system, e.what());
  }
  if (std::optional<Failure> failure = agree(cluster, mine, about_node, idle)) throw StepFailed(std::move(*failure));
}

/// What one node did, as rank 0 gathers it (plain bytes over MPI).
struct NodeFigures {
  std::int32_t rank = 0;
  std::int32_t pid = 0;  // the leader's: its job segments are named tilepool-<pid>-...
  std::int32_t workers = 0;
  std::int64_t first_tile = 0;
  std::int64_t tiles = 0;
  std::int64_t retries = 0;
  double load_s = 0;
  double spawn_s = 0;
  double compute_s = 0;
  double write_s = 0;
  std::uint64_t bytes_read = 0;      // input bytes read from files
  std::uint64_t bytes_received = 0;  // input bytes received from rank 0 (shm: inputs)
  std::uint64_t bytes_sent = 0;      // input bytes sent to other nodes (rank 0, shm: inputs)
  std::uint64_t bytes_written = 0;   // output bytes written with MPI-IO
  std::uint64_t bytes_copied = 0;    // copy mode's pipe bytes
  std::uint64_t peak_pss_bytes = 0;
  char host[64] = {};
};

// A leader's part in the output before any work: it sweeps what dead processes of its host
// left in the output's directory (temporaries and their MPI-IO locks record their owner's host,
// pid and start time: only on that host can they be judged), then proves that its node can
// create and write there the named temporary rank 0 will make (removed at once). MPI-IO's
// collective open, if one node could not, hangs for good (OMPIO) or fails blaming rank 0
// (ROMIO). Each node has its own view of the filesystem: what it refuses is the node's error.
void prepare_output_directory(const fs::path& out, bool force) {
  (void)remove_stale_file_temporaries(out.has_parent_path() ? out.parent_path() : fs::path("."));
  try {
    PendingFile probe = PendingFile::create(out, PublishOptions{.replace = force, .temporary = TemporaryKind::named});
    probe.allocate(1);
  } catch (const Error& e) {
    throw NodeError(e.code(), e.what());
  }
}

// A leader's proof, before the collective open, that the file rank 0 made is the one this node
// sees under that name, and that it may write it: the output's directory is the same shared
// filesystem on every node.
void check_temp_writable(const fs::path& temp, const std::string& root_host) {
  if (!UniqueFd(::open(temp.c_str(), O_RDWR | O_CLOEXEC))) {
    throw NodeError(Errc::bad_input,
                    fmt::format("{}: this node cannot open the output file that rank 0 (node {}) made there: {} (is it the same "
                                "shared filesystem on every node?)",
                                temp.parent_path().string(), root_host, std::strerror(errno)));
  }
}

void bcast_spec(ArraySpec& spec, MPI_Comm comm) {
  std::int64_t fields[2 + kMaxDims] = {static_cast<std::int64_t>(spec.dtype), static_cast<std::int64_t>(spec.shape.size())};
  std::copy(spec.shape.begin(), spec.shape.end(), fields + 2);
  check_mpi(MPI_Bcast(fields, 2 + kMaxDims, MPI_INT64_T, 0, comm), "MPI_Bcast");
  spec.dtype = static_cast<DType>(fields[0]);
  spec.shape.assign(fields + 2, fields + 2 + fields[1]);
}

// Rank 0's view of the whole job's progress: the other leaders send their tile counts now and
// then (point to point: they finish at different times, so no collective fits); rank 0 draws.
class JobProgress {
 public:
  JobProgress(const Cluster& cluster, bool on, std::int64_t total_tiles)
      : cluster_(cluster), on_(on && cluster.is_leader()), total_(total_tiles), done_(static_cast<std::size_t>(cluster.nodes()), 0) {
    if (on_ && cluster.rank() == 0) bar_.emplace();
  }
  ~JobProgress() {
    if (request_ != MPI_REQUEST_NULL) MPI_Request_free(&request_);
  }
  JobProgress(const JobProgress&) = delete;
  JobProgress& operator=(const JobProgress&) = delete;

  // This node's count (the pool's progress callback).
  void local(std::int64_t done) {
    if (!on_) return;
    if (cluster_.rank() == 0) {
      done_[0] = done;
      draw();
      return;
    }
    const auto now = Clock::now();
    if (now - last_sent_ < std::chrono::milliseconds(100)) return;
    if (request_ != MPI_REQUEST_NULL) {
      int complete = 0;
      MPI_Test(&request_, &complete, MPI_STATUS_IGNORE);
      if (complete == 0) return;
    }
    last_sent_ = now;
    sent_ = done;
    MPI_Isend(&sent_, 1, MPI_INT64_T, 0, kProgressTag, cluster_.leaders(), &request_);
  }
  // This node is done: its last count goes to rank 0 (which waits for it in finish()).
  void node_done(std::int64_t tiles) {
    if (!on_ || cluster_.rank() == 0 || tiles == 0) return;
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
    sent_ = tiles;
    MPI_Send(&sent_, 1, MPI_INT64_T, 0, kProgressTag, cluster_.leaders());
  }
  // Rank 0, between polls: takes the counts that arrived and redraws.
  void draw() {
    if (!bar_) return;
    receive(false);
    std::int64_t sum = 0;
    for (const std::int64_t d : done_) sum += d;
    bar_->update(sum, total_);
  }
  // Rank 0, after every node succeeded: takes every node's last count.
  void finish(std::span<const std::int64_t> node_tiles) {
    if (!bar_) return;
    for (std::size_t n = 1; n < done_.size(); ++n) {
      while (done_[n] < node_tiles[n]) receive(true);
    }
    draw();
    bar_.reset();
  }

 private:
  void receive(bool block) {
    for (;;) {
      int ready = 0;
      MPI_Status status;
      if (block) {
        MPI_Probe(MPI_ANY_SOURCE, kProgressTag, cluster_.leaders(), &status);
        ready = 1;
      } else {
        MPI_Iprobe(MPI_ANY_SOURCE, kProgressTag, cluster_.leaders(), &ready, &status);
      }
      if (ready == 0) return;
      std::int64_t value = 0;
      MPI_Recv(&value, 1, MPI_INT64_T, status.MPI_SOURCE, kProgressTag, cluster_.leaders(), MPI_STATUS_IGNORE);
      done_[static_cast<std::size_t>(status.MPI_SOURCE)] = value;
      if (block) return;
    }
  }

  const Cluster& cluster_;
  bool on_;
  std::int64_t total_;
  std::vector<std::int64_t> done_;
  std::optional<cli::ProgressBar> bar_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  std::int64_t sent_ = 0;
  Clock::time_point last_sent_{};
};

// Writes `ranges` of `data` (a whole array's data, in memory as in the file) into the file at
// `data_offset` + each range's offset: one collective MPI-IO write over the leaders.
void write_ranges(const fs::path& path, std::size_t data_offset, const std::byte* data, std::span<const ByteRange> ranges,
                  MPI_Comm leaders) {
  MPI_File file = MPI_FILE_NULL;
  check_mpi(MPI_File_open(leaders, path.c_str(), MPI_MODE_WRONLY, MPI_INFO_NULL, &file), fmt::format("MPI_File_open {}", path.string()));
  const auto close = [&] { MPI_File_close(&file); };
  try {
    if (ranges.empty()) {
      check_mpi(MPI_File_set_view(file, static_cast<MPI_Offset>(data_offset), MPI_BYTE, MPI_BYTE, "native", MPI_INFO_NULL),
                "MPI_File_set_view");
      check_mpi(MPI_File_write_all(file, data, 0, MPI_BYTE, MPI_STATUS_IGNORE), fmt::format("writing {}", path.string()));
    } else {
      // The file's layout is the array's: one datatype describes both where the bytes are in
      // memory and where they go in the file.
      const RangesType type(ranges);
      check_mpi(MPI_File_set_view(file, static_cast<MPI_Offset>(data_offset), MPI_BYTE, type.get(), "native", MPI_INFO_NULL),
                "MPI_File_set_view");
      check_mpi(MPI_File_write_all(file, data, 1, type.get(), MPI_STATUS_IGNORE), fmt::format("writing {}", path.string()));
    }
    check_mpi(MPI_File_sync(file), fmt::format("syncing {}", path.string()));
  } catch (...) {
    close();
    throw;
  }
  check_mpi(MPI_File_close(&file), fmt::format("closing {}", path.string()));
}

// Rank 0: the job's report from every node's figures, as printed on stdout; `r` holds what
// the job alone knows. The job's phases are the slowest node's.
std::string report_text(const Cluster& cluster, bool json, JobReport r, std::span<const NodeFigures> figures) {
  std::uint64_t read = 0, moved = 0, written = 0;
  nlohmann::ordered_json per_node = nlohmann::ordered_json::array();
  for (const NodeFigures& f : figures) {
    r.workers = std::max(r.workers, f.workers);
    r.load_s = std::max(r.load_s, f.load_s);
    r.spawn_s = std::max(r.spawn_s, f.spawn_s);
    r.compute_s = std::max(r.compute_s, f.compute_s);
    r.write_s = std::max(r.write_s, f.write_s);
    r.bytes_copied += f.bytes_copied;
    r.peak_pss_bytes = std::max(r.peak_pss_bytes, f.peak_pss_bytes);
    r.retries += f.retries;
    read += f.bytes_read;
    moved += f.bytes_sent;
    written += f.bytes_written;
    per_node.push_back({{"rank", f.rank}, {"host", std::string(f.host)}, {"pid", f.pid}, {"workers", f.workers}, {"first_tile", f.first_tile},
                        {"tiles", f.tiles}, {"load_s", f.load_s}, {"compute_s", f.compute_s}, {"write_s", f.write_s},
                        {"bytes_read", f.bytes_read}, {"bytes_received", f.bytes_received}, {"bytes_sent", f.bytes_sent},
                        {"bytes_written", f.bytes_written}, {"peak_pss_bytes", f.peak_pss_bytes}});
  }
  if (json) {
    nlohmann::ordered_json j = report_json_object(r);
    j["ranks"] = cluster.size();
    j["nodes"] = cluster.nodes();
    j["bytes_read"] = read;
    j["bytes_moved_between_ranks"] = moved;
    j["bytes_written"] = written;
    j["per_node"] = per_node;
    return j.dump() + "\n";
  }
  return fmt::format("{}: {} tiles on {} nodes x {} {} workers in {:.4f} s (compute {:.4f} s)\n", r.kernel, r.tiles, cluster.nodes(),
                     r.workers, mode_name(r.mode), r.wall_s, r.compute_s);
}

}  // namespace

fs::path Publication::temporary() const { return fs::absolute(file_.segment().pending_file()->temporary_path()); }

void Publication::publish() {
  const fs::path target = file_.segment().pending_file()->target();
  try {
    file_.publish_npy_file(target, force_);
  } catch (const Error& e) {
    throw cli::for_command_line(SpecError(JobField::output, target.string(), e), {});
  }
  std::fputs(report_.c_str(), stdout);
  std::fflush(stdout);
}

std::optional<Publication> run_distributed(const Cluster& cluster, const cli::RunOptions& o) {
  const auto t_start = Clock::now();
  const bool leader = cluster.is_leader();
  const bool root = cluster.rank() == 0;
  MPI_Comm leaders = cluster.leaders();
  NodeFigures fig;
  fig.rank = cluster.rank();
  fig.pid = static_cast<std::int32_t>(::getpid());
  std::snprintf(fig.host, sizeof fig.host, "%s", cluster.host().c_str());

  // 1. The job, as `tilepool run` takes it; the output checked by rank 0 (the filesystem is shared).
  JobSpec spec;
  int progress_on = 0;
  step(cluster, o.backing, [&] {
    spec = cli::job_spec(o);
    if (o.output.starts_with("shm:")) {
      throw Error(Errc::usage, fmt::format("--output {}: a job across nodes writes one FILE.npy (a segment exists on one "
                                           "node only); give a .npy path on a filesystem every node shares", o.output));
    }
    // Every node first: a directory one node cannot write is that node's error, named as such.
    if (leader) {
      (void)collect_garbage(spec.backing);  // leftovers of this node's killed runs
      prepare_output_directory(o.output, o.force);
    }
    if (root) {
      try {
        spec.output->check(o.force);
      } catch (const Error& e) {
        throw SpecError(JobField::output, o.output, e);
      }
      progress_on = cli::progress_wanted(o) ? 1 : 0;
    }
  });
  check_mpi(MPI_Bcast(&progress_on, 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast");

  // 2. What the inputs are: every leader reads the .npy headers itself (shared filesystem);
  // shm: inputs exist on rank 0's node only, so rank 0 attaches them and tells the others.
  const std::size_t n_inputs = spec.inputs.size();
  std::vector<ArraySpec> specs(n_inputs);
  step(cluster, o.backing, [&] {
    if (!leader) return;
    for (std::size_t i = 0; i < n_inputs; ++i) {
      if (root || !spec.inputs[i]->local_only()) specs[i] = spec.inputs[i]->spec();
    }
  });
  std::vector<std::shared_ptr<ShippedSource>> shipped(n_inputs);
  if (leader) {
    for (std::size_t i = 0; i < n_inputs; ++i) {
      if (!spec.inputs[i]->local_only()) continue;
      bcast_spec(specs[i], leaders);
      if (!root) spec.inputs[i] = shipped[i] = std::make_shared<ShippedSource>(spec.inputs[i]->text(), specs[i]);
    }
  }

  // 3. The job's geometry (plugins, kernel, checks, grid) and this node's block of tiles.
  JobPlan plan;
  TileRange range;
  step(cluster, o.backing, [&] {
    if (!leader) return;
    plan = plan_job(spec);
    range = spec.dispatch.node_block(plan.grid.tile_count(), cluster.nodes(), cluster.node());
  });
  fig.first_tile = range.first;
  fig.tiles = range.count;
  const bool reduction = plan.kernel != nullptr && plan.kernel->reduction != Reduction::none;

  // 4. This node's sources read (and its arrays reserve) only what its tiles read and write.
  const auto t_load = Clock::now();
  std::vector<std::vector<ByteRange>> in_ranges(n_inputs);
  std::vector<std::shared_ptr<RangedSource>> ranged(n_inputs);
  JobArray node_output;  // full size, holding only what this node's tiles write
  std::vector<ByteRange> out_ranges;
  step(cluster, o.backing, [&] {
    if (!leader) return;
    const ArrayPlacement placement(spec.mode, spec.backing);
    for (std::size_t i = 0; i < n_inputs; ++i) {
      in_ranges[i] = input_ranges(*plan.kernel, i, plan.inputs, plan.grid, range, spec.params);
      if (shipped[i]) {
        shipped[i]->set_array(placement.make_sparse(specs[i].dtype, specs[i].shape, ArrayRole::input, in_ranges[i]));
      } else if (!spec.inputs[i]->local_only()) {
        spec.inputs[i] = ranged[i] = std::make_shared<RangedSource>(spec.inputs[i], in_ranges[i]);
      }  // else rank 0 works on the segment itself
    }
    // Kept in this process after the job: the nodes write their shares into one file with
    // MPI-IO afterwards. A node with no tiles still writes (nothing): a full-size empty share.
    const auto whole = byte_count(plan.output.shape, dtype_size(plan.output.dtype));
    if (!reduction) out_ranges = output_ranges(plan.output, plan.grid, range);
    try {
      node_output = placement.make_sparse(plan.output.dtype, plan.output.shape, ArrayRole::output,
                                          reduction ? std::vector{ByteRange{0, whole.value_or(0)}} : out_ranges);
    } catch (const Error& e) {
      throw SpecError(JobField::output, o.output, e);
    }
    spec.output = array_target(node_output, o.output);
  });
  // shm: inputs travel from rank 0 to each leader: just the bytes that leader's tiles read.
  if (leader) {
    for (std::size_t i = 0; i < n_inputs; ++i) {
      if (!root && !shipped[i]) continue;
      if (root && !spec.inputs[i]->local_only()) continue;
      if (root) {
        const AnyArray segment = spec.inputs[i]->open(ArrayPlacement(spec.mode, spec.backing)).array;
        for (int node = 1; node < cluster.nodes(); ++node) {
          const std::vector<ByteRange> theirs =
              input_ranges(*plan.kernel, i, plan.inputs, plan.grid, spec.dispatch.node_block(plan.grid.tile_count(), cluster.nodes(), node),
                           spec.params);
          if (theirs.empty()) continue;
          const RangesType type(theirs);
          check_mpi(MPI_Send(segment.data(), 1, type.get(), node, kInputTag + static_cast<int>(i), leaders), "MPI_Send");
          fig.bytes_sent += covered_bytes(theirs);
        }
      } else if (!in_ranges[i].empty()) {
        const RangesType type(in_ranges[i]);
        check_mpi(MPI_Recv(shipped[i]->open(ArrayPlacement(spec.mode, spec.backing)).array.data(), 1, type.get(), 0,
                           kInputTag + static_cast<int>(i), leaders, MPI_STATUS_IGNORE),
                  "MPI_Recv");
        fig.bytes_received += covered_bytes(in_ranges[i]);
      }
    }
  }
  fig.load_s = seconds_since(t_load);

  // 5. Compute: each leader runs its block as one job of the job layer, on its node's pool.
  std::vector<std::int64_t> node_counts(static_cast<std::size_t>(cluster.nodes()));
  for (int n = 0; n < cluster.nodes() && leader; ++n) {
    node_counts[static_cast<std::size_t>(n)] = spec.dispatch.node_block(plan.grid.tile_count(), cluster.nodes(), n).count;
  }
  JobProgress progress(cluster, progress_on != 0, plan.grid.tile_count());
  JobReport node_report;
  step(
      cluster, o.backing,
      [&] {
        if (!leader || range.count == 0) return;
        spec.tiles = range;
        spec.measure_memory = true;
        spec.progress = [&progress](std::int64_t done, std::int64_t /*total*/) { progress.local(done); };
        node_report = run_job(spec, plan);  // planned once, in step 3
        fig.workers = node_report.workers;
        fig.load_s += node_report.load_s;
        fig.spawn_s = node_report.spawn_s;
        progress.local(node_report.tiles);
        progress.node_done(node_report.tiles);
      },
      [&progress] { progress.draw(); });
  if (root) progress.finish(node_counts);
  fig.compute_s = node_report.compute_s;
  fig.retries = node_report.retries;
  fig.bytes_copied = node_report.bytes_copied;
  fig.peak_pss_bytes = node_report.peak_pss_bytes;
  for (const auto& r : ranged) {
    if (r) fig.bytes_read += r->bytes_read();
  }
  const AnyArray& output = node_output.array;

  // 6. A reduction's partials, all tiles in tile order on rank 0: the same total, bit for bit,
  // whatever the number of nodes.
  std::vector<ByteRange> write_ranges_here = std::move(out_ranges);
  if (leader && reduction) {
    const int bytes = static_cast<int>(node_report.partials.size() * sizeof(TilePartial));
    std::vector<int> counts(static_cast<std::size_t>(cluster.nodes()));
    check_mpi(MPI_Gather(&bytes, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, leaders), "MPI_Gather");
    std::vector<int> displs(counts.size());
    for (std::size_t n = 1; n < counts.size(); ++n) displs[n] = displs[n - 1] + counts[n - 1];
    std::vector<TilePartial> all(root ? static_cast<std::size_t>(plan.grid.tile_count()) : 0);
    check_mpi(MPI_Gatherv(node_report.partials.data(), bytes, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, 0,
                          leaders),
              "MPI_Gatherv");
    if (root) {
      store_total(sum_in_tile_order(all), output);
      write_ranges_here.push_back(ByteRange{0, output.bytes()});
    }
  }

  // 7. One output file: rank 0 makes it (the header tilepool run writes, the data's space
  // reserved) under a hidden temporary name that the other leaders open by path ...
  const auto t_write = Clock::now();
  std::optional<ArraySegment> file;
  std::string temp_name;
  step(cluster, o.backing, [&] {
    if (!root) return;
    try {
      file.emplace(ArraySegment::create_npy_file(o.output, plan.output.dtype, plan.output.shape,
                                                 PublishOptions{.replace = o.force, .temporary = TemporaryKind::named}));
    } catch (const Error& e) {
      throw SpecError(JobField::output, o.output, e);
    }
    temp_name = fs::absolute(file->segment().pending_file()->temporary_path()).string();
  });
  // ... every leader checks it can write that very file (no collective open before all can) ...
  step(cluster, o.backing, [&] {
    if (!leader) return;
    temp_name = bcast_text(temp_name, 0, leaders);
    const std::string root_host = bcast_text(cluster.host(), 0, leaders);
    if (!root) check_temp_writable(temp_name, root_host);
  });
  // ... every leader writes its tiles into it with MPI-IO ...
  step(cluster, o.backing, [&] {
    if (!leader) return;
    const std::size_t data_offset = npy::make_header(plan.output.dtype, plan.output.shape).size();
    write_ranges(temp_name, data_offset, output.data(), write_ranges_here, leaders);
    fig.bytes_written = covered_bytes(write_ranges_here);
  });
  // ... and once every node's write succeeded, rank 0 will publish it: not here, but after
  // MPI_Finalize (main.cpp), the commit point that only a launcher still running the job lets
  // the ranks pass. An agreement here is no such point: after Ctrl-C, mpirun's daemons give the
  // ranks SIGCONT and a second before SIGTERM, and a job near its end finishes in that second.
  fig.write_s = seconds_since(t_write);

  // 8. Rank 0 reports the whole job and each node (printed once the output is published).
  if (!leader) return std::nullopt;
  std::vector<NodeFigures> figures(static_cast<std::size_t>(root ? cluster.nodes() : 0));
  check_mpi(MPI_Gather(&fig, sizeof fig, MPI_BYTE, figures.data(), sizeof fig, MPI_BYTE, 0, leaders), "MPI_Gather");
  if (!root) return std::nullopt;
  JobReport r;
  r.mode = spec.mode;
  r.kernel = o.kernel;
  r.tiles = plan.grid.tile_count();
  r.shape = plan.inputs.front().shape;
  r.tile = spec.tile.value_or(Shape{});
  r.wall_s = seconds_since(t_start);
  return Publication(std::move(*file), o.force, report_text(cluster, o.json, r, figures));
}

}  // namespace tilepool::mpi
