// bridge._wire_testing wire functions: the C++ NRB/1 codec (cpp/src/protocol.cpp) for Python tests and tools.
//
//   wire_encode(header_json: str, payloads: list[bytes]) -> list[bytes]
//       A header in the tests/vectors JSON format (the header map as JSON) plus the raw pixel bytes of each inline
//       buffer -> the canonical frames (header, then payloads; a buffer with `compression` is compressed here).
//   wire_decode(frames: list[bytes-like], compression: bool | list[str] = True, shm_pool: dict | None = None)
//       -> tuple[str, list[bytes]]
//       Decodes one multipart message; returns the decoded header as JSON (vector format, canonical key order,
//       non-finite floats as Python's json writes them) and the pixel bytes of each inline buffer (decompressed).
//       `compression`: True = lz4 and zstd negotiated, False = none, or the list of negotiated names. `shm_pool`:
//       {name, slots, slot_size} (a dict or an object with those attributes), without which shm refs are rejected.
//       Raises WireError(code: int, name: str, message: str) when the message is rejected.
//
// register_wire() is called from PYBIND11_MODULE in wire_testing_module.cpp (bridge._wire_testing, test-only).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "protocol.hpp"
#include "protocol_json.hpp"

namespace py = pybind11;
namespace wire = nrb::wire;

namespace {

[[noreturn]] void raise_wire_error(py::handle type, wire::ErrorCode code, const std::string& message) {
  const std::string name(wire::error_name(code));
  py::object inst = py::reinterpret_borrow<py::object>(type)(name + ": " + message);
  inst.attr("code") = static_cast<uint64_t>(code);
  inst.attr("name") = name;
  inst.attr("message") = message;
  PyErr_SetObject(type.ptr(), inst.ptr());
  throw py::error_already_set();
}

uint64_t get_u64(const py::handle& obj, const char* key) {
  if (py::isinstance<py::dict>(obj)) return obj[py::str(key)].cast<uint64_t>();
  return obj.attr(key).cast<uint64_t>();
}
std::string get_str(const py::handle& obj, const char* key) {
  if (py::isinstance<py::dict>(obj)) return obj[py::str(key)].cast<std::string>();
  return obj.attr(key).cast<std::string>();
}

py::list encode_py(const std::string& header_json, const std::vector<std::string>& payloads) {
  wire::json::Json header;
  try {
    header = wire::json::parse_json(header_json);
  } catch (const std::exception& e) {
    throw py::value_error(std::string("header_json: ") + e.what());
  }
  std::vector<std::vector<uint8_t>> raw;
  raw.reserve(payloads.size());
  for (const auto& p : payloads) raw.emplace_back(p.begin(), p.end());
  std::vector<std::vector<uint8_t>> storage;
  wire::Message msg;
  try {
    msg = wire::json::message_from_json(header, raw, storage);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  } catch (const nlohmann::json::exception& e) {
    throw py::value_error(std::string("header_json: ") + e.what());
  }
  const wire::Encoded enc = wire::encode(msg);
  py::list frames;
  for (size_t i = 0; i < enc.frame_count(); ++i) {
    const wire::Bytes f = enc.frame(i);
    frames.append(py::bytes(reinterpret_cast<const char*>(f.data), f.size));
  }
  return frames;
}

py::tuple decode_py(py::handle error_type, const py::sequence& frames, const py::object& compression,
                    const py::object& shm_pool) {
  wire::DecodeOptions opts;
  if (py::isinstance<py::bool_>(compression)) {
    opts.allow_lz4 = opts.allow_zstd = compression.cast<bool>();
  } else if (!compression.is_none()) {
    for (const auto& c : compression) {
      const std::string name = py::str(c);
      if (name == "lz4") opts.allow_lz4 = true;
      if (name == "zstd") opts.allow_zstd = true;
      if (name == "jpeg") opts.allow_jpeg = true;
      if (name == "webp") opts.allow_webp = true;
      if (name == "chunked") opts.allow_chunked = true;
      if (name == "shuffle") opts.allow_shuffle = true;
      if (name == "streamed_output") opts.allow_streamed_output = true;
      if (name == "streamed_frames") opts.allow_streamed_frames = true;
    }
  }
  wire::ShmPool pool;
  if (!shm_pool.is_none()) {
    pool = wire::ShmPool{get_str(shm_pool, "name"), get_u64(shm_pool, "slots"), get_u64(shm_pool, "slot_size")};
    opts.shm_pool = &pool;
  }
  // Views of the callers' buffers (bytes, bytearray, memoryview, zmq.Frame...), kept alive while decoding.
  std::vector<py::buffer_info> infos;
  infos.reserve(frames.size());
  std::vector<wire::Bytes> views;
  views.reserve(frames.size());
  for (const auto& f : frames) {
    py::object obj = py::reinterpret_borrow<py::object>(f);
    if (py::hasattr(obj, "buffer") && !PyObject_CheckBuffer(obj.ptr())) obj = obj.attr("buffer");  // zmq.Frame
    infos.push_back(py::buffer(obj).request());
    const auto& info = infos.back();
    views.emplace_back(info.ptr, static_cast<size_t>(info.size * info.itemsize));
  }
  wire::DecodeResult r;
  {
    py::gil_scoped_release release;  // decompression may take a while; the buffers are pinned by `infos`
    r = wire::decode(views.data(), views.size(), opts);
  }
  if (!r.ok()) raise_wire_error(error_type, r.error.code, r.error.message);
  py::list payloads;
  for (const wire::Bytes& b : wire::json::inline_pixels(*r.message))
    payloads.append(py::bytes(reinterpret_cast<const char*>(b.data), b.size));
  const std::string header = wire::json::dump_json(wire::json::message_to_json(*r.message));
  return py::make_tuple(header, payloads);
}

}  // namespace

void register_wire(py::module_& m) {
  // WireError(ValueError) with .code (int), .name (str), .message (str). The type lives as long as the process.
  PyObject* type = PyErr_NewExceptionWithDoc(
      "bridge._native.WireError",
      "An NRB/1 message rejected by the C++ decoder; .code and .name are the protocol error (section 9).",
      PyExc_ValueError, nullptr);
  if (!type) throw py::error_already_set();
  m.add_object("WireError", py::reinterpret_steal<py::object>(type));
  Py_INCREF(type);  // one reference owned by the closure below, never released
  const py::handle error_type(type);

  m.def("wire_encode", &encode_py, py::arg("header_json"), py::arg("payloads") = std::vector<std::string>{},
        "Encode a vector-format JSON header plus raw payload bytes into canonical NRB/1 frames (C++ codec).");
  m.def(
      "wire_decode",
      [error_type](const py::sequence& frames, const py::object& compression, const py::object& shm_pool) {
        return decode_py(error_type, frames, compression, shm_pool);
      },
      py::arg("frames"), py::arg("compression") = true, py::arg("shm_pool") = py::none(),
      "Decode NRB/1 frames with the C++ codec: (header JSON, inline payload bytes), or raise WireError.");
  m.attr("WIRE_ERROR_CODES") = [] {
    py::dict d;
    for (uint64_t c = 1; c <= 14; ++c)
      d[py::str(std::string(wire::error_name(static_cast<wire::ErrorCode>(c))))] = c;
    return d;
  }();
}
