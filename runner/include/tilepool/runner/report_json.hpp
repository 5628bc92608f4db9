#pragma once
/// @file
/// A JobReport as a JSON object, for a front end that prints the `--json` fields with more of
/// its own (tilepool-mpi adds its ranks, nodes and per-node figures). Including this header
/// needs nlohmann_json (header-only); job.hpp's report_json() gives the same object as text.

#include <nlohmann/json.hpp>

#include "tilepool/runner/job.hpp"

namespace tilepool {

/// The report's `--json` fields, in their printed order (report_json() is its dump()).
nlohmann::ordered_json report_json_object(const JobReport& report);

}  // namespace tilepool
