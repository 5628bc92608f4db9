#include "tilepool/shared/escape.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tilepool {
namespace {

// True if `s` has no byte a terminal could act on: nothing below 0x20, no DEL.
bool is_one_inert_line(const std::string& s) {
  for (const char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7F) return false;
  }
  return true;
}

TEST(EscapeTest, PrintableAsciiIsUnchanged) {
  EXPECT_EQ(escape_for_message("<f8 (365, 16, 16) 'x' ~!@#$%^&*"), "<f8 (365, 16, 16) 'x' ~!@#$%^&*");
  EXPECT_EQ(escape_for_message(""), "");
}

TEST(EscapeTest, LineBreaksAndTabsBecomeBackslashEscapes) {
  EXPECT_EQ(escape_for_message("a\rb\nc\td"), "a\\rb\\nc\\td");
}

TEST(EscapeTest, AnsiEscapeSequencesCannotReachTheTerminal) {
  const std::string escaped = escape_for_message("\x1b[2J\x1b]0;title\x07<f8");

  EXPECT_EQ(escaped, "\\x1b[2J\\x1b]0;title\\x07<f8");
  EXPECT_TRUE(is_one_inert_line(escaped));
}

TEST(EscapeTest, EveryControlByteAndDelAreHexEscaped) {
  for (int b = 0; b < 0x20; ++b) {
    if (b == '\n' || b == '\r' || b == '\t') continue;
    const std::string escaped = escape_for_message(std::string(1, static_cast<char>(b)));

    EXPECT_EQ(escaped.size(), 4u) << b;
    EXPECT_EQ(escaped.substr(0, 2), "\\x") << b;
  }
  EXPECT_EQ(escape_for_message("\x7f"), "\\x7f");
  EXPECT_EQ(escape_for_message(std::string("a\0b", 3)), "a\\x00b");
}

TEST(EscapeTest, ABackslashIsDoubledSoEscapesAreUnambiguous) {
  EXPECT_EQ(escape_for_message("a\\x1b"), "a\\\\x1b");
}

TEST(EscapeTest, WellFormedUtf8IsKept) {
  EXPECT_EQ(escape_for_message("donn\xc3\xa9" "es \xe2\x82\xac \xf0\x9f\x98\x80"), "donn\xc3\xa9" "es \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST(EscapeTest, BytesThatAreNotUtf8AreHexEscaped) {
  EXPECT_EQ(escape_for_message("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(escape_for_message("\x93NUMPY"), "\\x93NUMPY");
  EXPECT_EQ(escape_for_message("\xc3"), "\\xc3");                  // cut short
  EXPECT_EQ(escape_for_message("\xc0\xaf"), "\\xc0\\xaf");         // overlong '/'
  EXPECT_EQ(escape_for_message("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(escape_for_message("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
}

TEST(EscapeTest, AByteThatBreaksASequenceDoesNotHideTheNextCharacter) {
  EXPECT_EQ(escape_for_message("\xe2\x82" "A"), "\\xe2\\x82A");
  EXPECT_EQ(escape_for_message("\xc3\x1b[2J"), "\\xc3\\x1b[2J");
}

TEST(EscapeTest, C1ControlsAndTextReorderingCharactersAreHexEscaped) {
  EXPECT_EQ(escape_for_message("\xc2\x9b" "2J"), "\\xc2\\x9b2J");        // U+009B, the one-byte CSI
  EXPECT_EQ(escape_for_message("a\xe2\x80\xae" "b"), "a\\xe2\\x80\\xaeb");  // U+202E right-to-left override
  EXPECT_EQ(escape_for_message("\xe2\x80\xa8"), "\\xe2\\x80\\xa8");        // U+2028 line separator
}

TEST(EscapeTest, EveryPossibleByteComesOutInert) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);

  EXPECT_TRUE(is_one_inert_line(escape_for_message(all)));
}

TEST(EscapeTest, AMessageIsCutAtACharacterBoundaryAndSaysItWasCut) {
  EXPECT_EQ(cut_message("short", 16), "short");
  EXPECT_EQ(cut_message("0123456789", 8), "01234...");
  // "\xc3\xa9" is one character (U+00E9): never half of it.
  EXPECT_EQ(utf8_cut_length("ab\xc3\xa9", 3), 2U);
  EXPECT_EQ(utf8_cut_length("ab\xc3\xa9", 4), 4U);
  EXPECT_EQ(cut_message("abcd\xe2\x82\xac" "efgh", 9), "abcd...");
  EXPECT_TRUE(is_one_inert_line(escape_for_message(cut_message(std::string(5000, '\xe9'), 1024))));
}

}  // namespace
}  // namespace tilepool
