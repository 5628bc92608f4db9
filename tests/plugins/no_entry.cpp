// A shared library that is not a tilepool plugin: it exports a function, but no entry point.
extern "C" __attribute__((visibility("default"))) int tptest_not_a_plugin() { return 42; }
