// bridge._native: pybind11 bindings over libnrb's public API (nrb.h / nrb.hpp), and the byte-shuffle kernels of its
// wire codec for bridge/protocol.py (shuffle_module.cpp, the one internal piece). The test-only codec functions
// (wire_encode, wire_decode) live in bridge._wire_testing (wire_testing_module.cpp), which the wheel does not ship.
#include <pybind11/pybind11.h>

#include <string>

#include "nrb/version.h"

namespace py = pybind11;

void register_client(py::module_& m);   // client_module.cpp
void register_shuffle(py::module_& m);  // shuffle_module.cpp

PYBIND11_MODULE(_native, m) {
  m.doc() = "Native (C++) part of the Neural Render Bridge";
  m.def("version", [] { return std::string(nrb_version_string()); }, "Version of the native library.");
  register_client(m);
  register_shuffle(m);
}
