#pragma once
/// @file
/// Escaping untrusted bytes (NPY header text, paths, segment names) before they go into a
/// message, so an error stays one line and cannot drive the terminal.

#include <string>
#include <string_view>

namespace tilepool {

/// `bytes` made safe to print on one line of a terminal: printable ASCII and well-formed
/// UTF-8 pass unchanged; a backslash becomes `\\`; `\n`, `\r`, `\t` become those two-character
/// escapes; every other control byte (C0, DEL, the C1 controls U+0080-U+009F, the line and
/// paragraph separators and the bidirectional overrides), and every byte that is not part of
/// well-formed UTF-8, becomes `\xHH`. The result never contains a byte below 0x20 or 0x7f.
/// Pure function; thread-safe.
std::string escape_for_message(std::string_view bytes);

/// `text` with its control bytes (below 0x20, and 0x7f) written as `\n`, `\r`, `\t` or `\xHH`,
/// everything else as it is (backslashes included: text escaped by escape_for_message passes
/// unchanged). For the last step before an error reaches a terminal: one line, whatever a
/// message quoted without escaping. Pure function; thread-safe.
std::string one_line(std::string_view text);

/// The length of the longest prefix of `text` of at most `max_bytes` bytes that does not end
/// inside a UTF-8 sequence: where a message is cut to fit a fixed buffer (ControlBlock's
/// error text, a copy worker's error reply). Pure function; thread-safe.
std::size_t utf8_cut_length(std::string_view text, std::size_t max_bytes) noexcept;

/// `text` whole if it fits in `max_bytes` (> 3) bytes, else cut (utf8_cut_length) and ended
/// with "..." within them, so a reader sees that the rest is missing.
std::string cut_message(std::string_view text, std::size_t max_bytes);

}  // namespace tilepool
