// What a command line that CLI11 refused says: the unknown word first, when there is one.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"

namespace tilepool::cli {

std::string parse_error_message(CLI::App& app, const CLI::ParseError& error, std::string_view program) {
  // CLI11 checks what is required before it looks at words it does not know, so `tilepool frob`
  // would say "A subcommand is required" and `run --bogus` "--kernel is required": the word the
  // user mistyped is the error to name.
  const std::vector<std::string> unknown = app.remaining(true);
  const std::vector<CLI::App*> chosen = app.get_subcommands();
  const std::string where = chosen.empty() ? std::string(program) : fmt::format("{} {}", program, chosen.front()->get_name());
  if (!unknown.empty()) {
    const bool option = unknown.front().starts_with("-");
    const char* what = option ? "option" : chosen.empty() ? "subcommand" : "argument";
    return fmt::format("unknown {} '{}'{} (see {} --help)", what, fmt::join(unknown, "' '"),
                       chosen.empty() && !option ? fmt::format(": expected one of {}", fmt::join(subcommand_names(app), ", ")) : "",
                       where);
  }
  // CLI11's words for an option given twice: "--workers: At Most 1 required but received 2".
  const std::string_view what = error.what();
  if (const auto at = what.find(": At Most 1 required but received "); at != std::string_view::npos) {
    return fmt::format("{} is given more than once (give it once; see {} --help)", what.substr(0, at), where);
  }
  return fmt::format("{} (see {} --help)", error.what(), where);
}

std::vector<std::string> subcommand_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

}  // namespace tilepool::cli
