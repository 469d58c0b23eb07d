// bridge._native.shuffle_into / unshuffle_into: the byte shuffle of protocol section 6.3.3, libnrb's kernels for
// the Python codec (bridge/protocol.py). A Python renderer server shuffles every image it returns and unshuffles
// every G-buffer it receives; numpy's strided copies do that at about 2.5 GB/s on the bench machine, a quarter of
// `nrb serve`'s codec time at 1080p, where these SSE2 kernels are several times faster. Both release the GIL, so
// the server's chunk threads run them side by side. bridge/protocol.py keeps its numpy version as the fallback and
// the reference the tests hold these to.
#include <pybind11/pybind11.h>

#include <Python.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "protocol.hpp"  // internal: wire::shuffle_bytes / unshuffle_bytes, the kernels libnrb itself runs

namespace py = pybind11;

namespace {

// One C-contiguous buffer-protocol view, released on scope exit.
class View {
 public:
  View(py::handle obj, bool writable) {
    if (PyObject_GetBuffer(obj.ptr(), &buf_, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0)
      throw py::error_already_set();
  }
  ~View() { PyBuffer_Release(&buf_); }
  View(const View&) = delete;
  View& operator=(const View&) = delete;
  uint8_t* data() const { return static_cast<uint8_t*>(buf_.buf); }
  size_t size() const { return static_cast<size_t>(buf_.len); }

 private:
  Py_buffer buf_{};
};

using Kernel = void (*)(const uint8_t*, uint8_t*, size_t, unsigned) noexcept;

void run(Kernel kernel, py::handle src, py::handle dst, unsigned texel) {
  if (texel < 1 || texel > 64) throw py::value_error("texel must be 1..64 bytes, not " + std::to_string(texel));
  View in(src, false);
  View out(dst, true);
  if (in.size() != out.size())
    throw py::value_error("src holds " + std::to_string(in.size()) + " bytes and dst " + std::to_string(out.size()) +
                          ": they must be the same length");
  const uint8_t *a = in.data(), *b = out.data();
  if (in.size() > 0 && a < b + out.size() && b < a + in.size())
    throw py::value_error("src and dst overlap: the shuffle cannot run in place");
  py::gil_scoped_release nogil;
  if (texel == 1) {
    if (in.size() > 0) std::memcpy(out.data(), in.data(), in.size());
  } else {
    kernel(in.data(), out.data(), in.size(), texel);
  }
}

}  // namespace

void register_shuffle(py::module_& m) {
  m.def(
      "shuffle_into", [](py::handle src, py::handle dst, unsigned texel) { run(nrb::wire::shuffle_bytes, src, dst, texel); },
      py::arg("src"), py::arg("dst"), py::arg("texel"),
      "Protocol section 6.3.3: write src's bytes to dst as `texel` byte planes (byte j of whole texel i at j * n + i, "
      "n whole texels; the bytes after the last whole texel stay at the end). Both are C-contiguous buffers of one "
      "length that do not overlap; dst is writable. Releases the GIL.");
  m.def(
      "unshuffle_into", [](py::handle src, py::handle dst, unsigned texel) { run(nrb::wire::unshuffle_bytes, src, dst, texel); },
      py::arg("src"), py::arg("dst"), py::arg("texel"),
      "The inverse of shuffle_into: src's `texel` byte planes back to texels in dst. Releases the GIL.");
}
