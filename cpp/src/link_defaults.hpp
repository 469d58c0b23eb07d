// Remote-link defaults (docs/protocol.md section 5.1, "Remote links"; nrb.h nrb_link): which endpoints count as
// remote, and the per-pixel conversions libnrb makes so that a plugin tags the buffers it has and a remote session
// still carries the compact set at the render size. Kept apart from the client so the rule and the pixel math can
// be tested alone (cpp/tests/test_link_defaults.cpp).
#pragma once

#include <cstdint>
#include <string>

#include "protocol.hpp"

namespace nrb::detail {

// The rule (stated in nrb.h and docs/protocol.md): an endpoint is local when it is ipc:// or inproc://, or tcp://
// to a loopback address (127.0.0.0/8, ::1, "localhost"), an unspecified one (0.0.0.0, ::), this host's name
// (gethostname) or an address of one of this host's interfaces (getifaddrs). Anything else, including a host name
// that would need DNS to tell, is remote: the rule never blocks on the network.
bool endpoint_is_local(const std::string& endpoint);

// A buffer the engine offers in one form and libnrb sends in another on a remote link (the compact set).
struct BufferConversion {
  std::string from_name;
  wire::Format from_format;
  std::string to_name;
  wire::Format to_format;
};

// The compact form of buffer `name` in `format`, if it has one: float normals (rgba16f, rgba32f) -> normals_oct
// rg16f (octahedral), depth / linear_depth r32f -> r16f.
bool compact_form(const std::string& name, wire::Format format, BufferConversion& out);

// Converts `src` (src_w x src_h pixels of src_format, rows src_stride bytes apart) into `dst` (dst_w x dst_h of
// dst_format, tight rows), resampling to the nearest pixel when the sizes differ (G-buffers hold depths, ids and
// normals, which must not be averaged). Supported: any format to itself, float normals -> rg16f octahedral,
// r32f -> r16f. Throws std::invalid_argument otherwise.
void convert_pixels(const uint8_t* src, uint64_t src_stride, wire::Format src_format, uint32_t src_w, uint32_t src_h,
                    uint8_t* dst, wire::Format dst_format, uint32_t dst_w, uint32_t dst_h);

// IEEE half <-> float (round to nearest even; NaN stays NaN, overflow becomes infinity).
uint16_t float_to_half(float f) noexcept;
float half_to_float(uint16_t h) noexcept;

}  // namespace nrb::detail
