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

}  // namespace tilepool
