// bridge._native: pybind11 bindings over the C++ core (nrb_core).
#include <pybind11/pybind11.h>

#include <string>

#include "nrb/version.h"

namespace py = pybind11;

void register_wire(py::module_& m);  // wire_module.cpp
void register_client(py::module_& m);  // client_module.cpp

PYBIND11_MODULE(_native, m) {
  m.doc() = "Native (C++) part of the Neural Render Bridge";
  m.def("version", [] { return std::string(nrb_version_string()); }, "Version of the native library.");
  register_wire(m);
  register_client(m);
}
