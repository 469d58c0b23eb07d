#include <doctest/doctest.h>

#include <string>

#include "nrb/version.h"

TEST_CASE("nrb_version_string reports the package version") {
  CHECK(std::string(nrb_version_string()) == "0.1.0");
}
