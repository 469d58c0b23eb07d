// bridge._wire_testing: the C++ NRB/1 codec for the Python tests (tests/test_protocol_vectors.py, ...): wire_encode,
// wire_decode and WireError, in the test vectors' JSON (wire_module.cpp, protocol_json.hpp, nlohmann-json). Test-only:
// built for editable installs (cpp/CMakeLists.txt; -DNRB_PYTHON_WIRE_TESTING=ON/OFF overrides), never part of the wheel.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_wire(py::module_& m);  // wire_module.cpp

PYBIND11_MODULE(_wire_testing, m) {
  m.doc() = "Test-only: the C++ NRB/1 codec (libnrb's protocol.cpp) with JSON headers, for the Python tests";
  register_wire(m);
}
