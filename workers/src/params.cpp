#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool {

Params Params::parse(std::span<const std::string> items) {
  Params p;
  for (const std::string& item : items) {
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    bool key_ok = eq != std::string::npos && !key.empty();
    for (const char c : key) key_ok = key_ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (!key_ok || value.empty() || value.find('\n') != std::string::npos) {
      if (value.find('\n') != std::string::npos) {
        throw Error(Errc::usage, fmt::format("parameter '{}': a value cannot hold a line break", escape_for_message(item)));
      }
      throw Error(Errc::usage, fmt::format("parameter '{}': expected KEY=VALUE, like value=5", escape_for_message(item)));
    }
    p.add(key, value);
  }
  return p;
}

void Params::add(std::string key, std::string value) {
  if (const auto it = values_.find(key); it != values_.end()) {
    throw Error(Errc::usage, fmt::format("parameter '{}' is given twice ({}={} and {}={}); give each once", key, key,
                                         escape_for_message(it->second), key, escape_for_message(value)));
  }
  values_.emplace(std::move(key), std::move(value));
}

Params Params::from_text(std::string_view text) {
  Params p;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    const auto eq = line.find('=');
    if (eq != std::string_view::npos) p.values_[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return p;
}

std::string Params::to_text() const {
  std::string s;
  for (const auto& [k, v] : values_) s += k + "=" + v + "\n";
  return s;
}

double Params::number(std::string_view key, std::string_view kernel) const {
  const auto it = values_.find(std::string(key));
  if (it == values_.end()) {
    throw Error(Errc::usage, fmt::format("{} needs the parameter {}=NUMBER", kernel, key));
  }
  double v = 0;
  const std::string& text = it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) {
    throw Error(Errc::usage, fmt::format("{}: parameter {}={} is not a finite number", kernel, key, text));
  }
  return v;
}

}  // namespace tilepool
