// doctest main for nrb_tests; test cases live in the other cpp/tests/*.cpp files.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
