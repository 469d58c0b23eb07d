#include "link_defaults.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace nrb::detail {

namespace {

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// The host part of "tcp://[src;]host:port" (brackets of an IPv6 literal removed), or "" when there is none.
std::string tcp_host(const std::string& endpoint) {
  std::string rest = endpoint.substr(6);
  if (auto semi = rest.find(';'); semi != std::string::npos) rest = rest.substr(semi + 1);  // ZeroMQ source address
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    return close == std::string::npos ? std::string() : rest.substr(1, close - 1);
  }
  auto colon = rest.rfind(':');
  return colon == std::string::npos ? rest : rest.substr(0, colon);
}

bool is_this_hosts_address(const std::string& host) {
  in_addr v4{};
  in6_addr v6{};
  const bool is_v4 = inet_pton(AF_INET, host.c_str(), &v4) == 1;
  const bool is_v6 = !is_v4 && inet_pton(AF_INET6, host.c_str(), &v6) == 1;
  if (is_v4 && ((ntohl(v4.s_addr) >> 24) == 127 || v4.s_addr == INADDR_ANY)) return true;
  if (is_v6 && (IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_UNSPECIFIED(&v6))) return true;
  if (!is_v4 && !is_v6) {  // a name: localhost or this host's own name; no DNS
    if (host == "localhost" || host.rfind("localhost.", 0) == 0) return true;
    char name[256] = {};
    return gethostname(name, sizeof name - 1) == 0 && lower(name) == host;
  }
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* a = list; a && !found; a = a->ifa_next) {
    if (!a->ifa_addr) continue;
    if (is_v4 && a->ifa_addr->sa_family == AF_INET)
      found = reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr == v4.s_addr;
    else if (is_v6 && a->ifa_addr->sa_family == AF_INET6)
      found = std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a->ifa_addr)->sin6_addr, &v6, sizeof v6) == 0;
  }
  freeifaddrs(list);
  return found;
}

float load_float(const uint8_t* p, wire::Format f, int channel) {
  if (f == wire::Format::rgba32f || f == wire::Format::r32f) {
    float v;
    std::memcpy(&v, p + 4 * channel, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * channel, 2);
  return half_to_float(h);
}

void store_half(uint8_t* p, float v) {
  const uint16_t h = float_to_half(v);
  std::memcpy(p, &h, 2);
}

// Octahedral encoding of a normal (the inverse of bridge.renderer's _oct_decode): (x, y) in [-1, 1].
void octahedral(float x, float y, float z, float& ox, float& oy) {
  const float l1 = std::fabs(x) + std::fabs(y) + std::fabs(z);
  const float s = l1 > 1e-9f ? 1.0f / l1 : 0.0f;
  x *= s;
  y *= s;
  z *= s;
  if (z < 0.0f) {
    const float fx = (1.0f - std::fabs(y)) * (x >= 0.0f ? 1.0f : -1.0f);
    const float fy = (1.0f - std::fabs(x)) * (y >= 0.0f ? 1.0f : -1.0f);
    x = fx;
    y = fy;
  }
  ox = x;
  oy = y;
}

}  // namespace

bool endpoint_is_local(const std::string& endpoint) {
  const std::string e = lower(endpoint);
  if (e.rfind("ipc://", 0) == 0 || e.rfind("inproc://", 0) == 0) return true;
  if (e.rfind("tcp://", 0) != 0) return false;
  const std::string host = tcp_host(e);
  return !host.empty() && is_this_hosts_address(host);
}

bool compact_form(const std::string& name, wire::Format format, BufferConversion& out) {
  if (name == "normals" && (format == wire::Format::rgba16f || format == wire::Format::rgba32f)) {
    out = {name, format, "normals_oct", wire::Format::rg16f};
    return true;
  }
  if ((name == "depth" || name == "linear_depth") && format == wire::Format::r32f) {
    out = {name, format, name, wire::Format::r16f};
    return true;
  }
  return false;
}

void convert_pixels(const uint8_t* src, uint64_t src_stride, wire::Format src_format, uint32_t src_w, uint32_t src_h,
                    uint8_t* dst, wire::Format dst_format, uint32_t dst_w, uint32_t dst_h) {
  const uint32_t sbpp = wire::bytes_per_pixel(src_format), dbpp = wire::bytes_per_pixel(dst_format);
  const bool normals = (src_format == wire::Format::rgba16f || src_format == wire::Format::rgba32f) &&
                       dst_format == wire::Format::rg16f;
  const bool depth = src_format == wire::Format::r32f && dst_format == wire::Format::r16f;
  if (src_format != dst_format && !normals && !depth)
    throw std::invalid_argument("no conversion from " + std::string(wire::format_name(src_format)) + " to " +
                                std::string(wire::format_name(dst_format)));
  std::vector<uint32_t> xs(dst_w);  // nearest source column of each destination column
  for (uint32_t x = 0; x < dst_w; ++x) xs[x] = static_cast<uint32_t>(uint64_t(x) * src_w / dst_w);
  for (uint32_t y = 0; y < dst_h; ++y) {
    const uint8_t* row = src + (uint64_t(y) * src_h / dst_h) * src_stride;
    uint8_t* out = dst + uint64_t(y) * dst_w * dbpp;
    if (src_format == dst_format) {
      if (src_w == dst_w) {
        std::memcpy(out, row, uint64_t(dst_w) * dbpp);
      } else {
        for (uint32_t x = 0; x < dst_w; ++x) std::memcpy(out + uint64_t(x) * dbpp, row + uint64_t(xs[x]) * sbpp, dbpp);
      }
    } else if (depth) {
      for (uint32_t x = 0; x < dst_w; ++x) store_half(out + 2 * uint64_t(x), load_float(row + 4 * uint64_t(xs[x]), src_format, 0));
    } else {
      for (uint32_t x = 0; x < dst_w; ++x) {
        const uint8_t* p = row + uint64_t(xs[x]) * sbpp;
        float ox, oy;
        octahedral(load_float(p, src_format, 0), load_float(p, src_format, 1), load_float(p, src_format, 2), ox, oy);
        store_half(out + 4 * uint64_t(x), ox);
        store_half(out + 4 * uint64_t(x) + 2, oy);
      }
    }
  }
}

uint16_t float_to_half(float f) noexcept {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504: infinity
  if (a < 0x38800000u) {  // a half subnormal (or zero): units of 2^-24, rounded to nearest even
    float v;
    std::memcpy(&v, &a, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(v * 16777216.0f)));
  }
  a += 0xc8000fffu + ((a >> 13) & 1u);  // rebias the exponent (127 -> 15) and round to nearest even
  return static_cast<uint16_t>(sign | (a >> 13));
}

float half_to_float(uint16_t h) noexcept {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  const uint32_t bits = e == 31 ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112u) << 23) | (m << 13));
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

}  // namespace nrb::detail
