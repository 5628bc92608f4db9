#pragma once
/// @file
/// A JobReport as a JSON object, for a front end of this project that prints the `--json`
/// fields with more of its own (tilepool-mpi adds its ranks, nodes and per-node figures). Not
/// installed (cmake/install.cmake): users get the same object as text from job.hpp's
/// report_json(), and no dependency on nlohmann_json.

#include <nlohmann/json.hpp>

#include "tilepool/runner/job.hpp"

namespace tilepool {

/// The report's `--json` fields, in their printed order (report_json() is its dump()).
nlohmann::ordered_json report_json_object(const JobReport& report);

}  // namespace tilepool
