# One INTERFACE target carries the project's warning flags; every target links it.
add_library(tilepool_warnings INTERFACE)
add_library(tilepool::warnings ALIAS tilepool_warnings)
target_compile_options(tilepool_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wno-missing-field-initializers -Wcast-align -Wunused -Woverloaded-virtual
  $<$<BOOL:${TILEPOOL_WERROR}>:-Werror>)
