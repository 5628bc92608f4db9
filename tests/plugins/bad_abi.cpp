// A plugin built "for another tilepool": its entry point reports plugin ABI version 999.
#include "tilepool/workers/plugin.hpp"

extern "C" __attribute__((visibility("default"))) const tilepool_plugin* tilepool_plugin_entry() {
  static const tilepool_plugin plugin{999, 0, nullptr};
  return &plugin;
}
