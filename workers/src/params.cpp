#include <locale.h>
#include <stdlib.h>

#include <charconv>
#include <cmath>
#include <cstdint>

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
      if (key_ok && eq != std::string::npos && value.empty()) {
        throw Error(Errc::usage, fmt::format("parameter '{}': the value is empty (expected KEY=VALUE, like value=5)", escape_for_message(item)));
      }
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
  const std::optional<double> v = parse_number(it->second);
  if (!v) {
    throw Error(Errc::usage, fmt::format("{}: parameter {}={} {}", kernel, key, escape_for_message(it->second),
                                         param_value_problem(it->second, ParamType::number)));
  }
  return *v;
}

std::optional<double> parse_number(std::string_view text) {
  // A leading '+' as Python's float() and strtod read it ("+5"); from_chars takes none.
  if (text.size() > 1 && text.front() == '+' && text[1] != '-' && text[1] != '+') text.remove_prefix(1);
  double v = 0;
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, v);
  if (r.ptr != end) return std::nullopt;
  if (r.ec == std::errc::result_out_of_range) {
    // Too large or too small: strtod_l says which (infinity, or the nearest double: 0 or
    // subnormal). The C locale reads a decimal point whatever the process's locale is.
    static const locale_t c_locale = ::newlocale(LC_ALL_MASK, "C", nullptr);
    const double nearest = ::strtod_l(std::string(text).c_str(), nullptr, c_locale);
    return std::isinf(nearest) ? std::nullopt : std::optional<double>(nearest);
  }
  if (r.ec != std::errc() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string param_value_problem(std::string_view text, ParamType type) {
  const char* end = text.data() + text.size();
  switch (type) {
    case ParamType::number: {
      if (parse_number(text)) return {};
      double v = 0;
      const auto r = std::from_chars(text.data(), end, v);
      if (r.ptr == end && r.ec == std::errc::result_out_of_range) {
        return "is out of range (a double's magnitude is at most 1.8e308)";
      }
      return "is not a finite number";
    }
    case ParamType::integer: {
      std::int64_t v = 0;
      const auto r = std::from_chars(text.data(), end, v);
      if (r.ptr == end && r.ec == std::errc()) return {};
      if (r.ptr == end && r.ec == std::errc::result_out_of_range) {
        return "is out of range (an integer from -9223372036854775808 to 9223372036854775807)";
      }
      return "is not an integer";
    }
    case ParamType::text: return text.find('\n') == std::string_view::npos ? "" : "holds a line break";
  }
  return "is not valid";
}

}  // namespace tilepool
