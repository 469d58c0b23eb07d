// The engine contract's typed parts: nrb_params (encoded by libnrb's own ParamsWriter, checked against the codec's
// params validator), the NRB_BUFFER_* constants against the codec's vocabulary, and nrb.hpp's wrappers of both.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "nrb/nrb.h"
#include "nrb/nrb.hpp"
#include "params_builder.hpp"
#include "protocol.hpp"

namespace wire = nrb::wire;

TEST_CASE("nrb.h: NRB_BUFFER_* are section 6.1's names in the codec's order, the lighting constants, then the "
          "names added since ABI 1 (an index keeps its name)") {
  const auto& names = wire::buffer_names();
  REQUIRE(NRB_BUFFER_NAME_COUNT == names.size() + 4);  // + the three lighting constants and x_lights
  for (uint32_t i = 0; i < 25; ++i) CHECK(std::string(nrb_buffer_name(i)) == std::string(names[i]));
  CHECK(std::string(nrb_buffer_name(25)) == NRB_BUFFER_X_SUN_DIRECTION);
  CHECK(std::string(nrb_buffer_name(26)) == NRB_BUFFER_X_SUN_IRRADIANCE);
  CHECK(std::string(nrb_buffer_name(27)) == NRB_BUFFER_X_SKY_RADIANCE);
  for (uint32_t i = 25; i < 28; ++i) CHECK(wire::is_vendor_buffer_name(nrb_buffer_name(i)));
  CHECK(std::string(nrb_buffer_name(28)) == NRB_BUFFER_NEURAL_MASK);
  CHECK(std::string(names[25]) == NRB_BUFFER_NEURAL_MASK);
  CHECK(std::string(nrb_buffer_name(29)) == NRB_BUFFER_X_LIGHTS);
  CHECK(wire::is_vendor_buffer_name(NRB_BUFFER_X_LIGHTS));
  CHECK(nrb_buffer_name(NRB_BUFFER_NAME_COUNT) == nullptr);
  CHECK(NRB_FORMAT_COUNT == wire::format_table().size());
  for (uint32_t f = 0; f < NRB_FORMAT_COUNT; ++f)
    CHECK(std::string(nrb_format_name(NRB_FORMAT_RGBA8 + f)) == std::string(wire::format_table()[f].name));
}

TEST_CASE("nrb_params: what the builder encodes is what the codec's validator accepts, byte for byte") {
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    nrb::detail::ParamsBuilder b;
    int keys = 0;
    // Random values until a limit refuses one: the map so far must stay canonical and within 4096 bytes.
    for (int step = 0; step < 2000; ++step) {
      const bool in_array = b.open_containers() > 0 && rng() % 2 == 0;
      std::string key = "k" + std::to_string(keys++);
      const char* k = nullptr;
      // The innermost container decides whether a key is needed; try the right form.
      try {
        switch (rng() % 9) {
          case 0: b.i64(in_array ? nullptr : key.c_str(), -static_cast<int64_t>(rng())); break;
          case 1: b.u64(in_array ? nullptr : key.c_str(), rng()); break;
          case 2: b.f64(in_array ? nullptr : key.c_str(), 0.5 * rng()); break;
          case 3: b.str(in_array ? nullptr : key.c_str(), std::string(rng() % 40, 'x')); break;
          case 4: b.boolean(in_array ? nullptr : key.c_str(), true); break;
          case 5: b.begin_map(in_array ? nullptr : key.c_str()); break;
          case 6: b.begin_array(in_array ? nullptr : key.c_str()); break;
          case 7:
            if (b.open_containers()) b.end();
            break;
          default: b.nil(in_array ? nullptr : key.c_str()); break;
        }
      } catch (const std::invalid_argument&) {  // a key where none belongs, or none where one does: fine here
      } catch (const std::out_of_range&) {
        break;  // a limit: the builder is unchanged
      }
      (void)k;
    }
    while (b.open_containers()) b.end();
    const std::vector<uint8_t>& bytes = b.encoded();
    CHECK(bytes.size() <= wire::kMaxParamsBytes);
    std::vector<uint8_t> canonical;
    auto err = wire::canonicalize_params(bytes.data(), bytes.size(), &canonical);
    REQUIRE_MESSAGE(!err, err->message);
    CHECK(canonical == bytes);
  }
}

TEST_CASE("nrb_params: the 4096-byte limit counts the headers of containers still open") {
  nrb::detail::ParamsBuilder b;
  b.begin_array("a");
  // Fill up to the limit with one-byte ints; the array's header grows from 1 to 3 bytes at 16 entries.
  size_t n = 0;
  for (;; ++n) {
    try {
      b.u64(nullptr, 1);
    } catch (const std::out_of_range&) {
      break;
    }
  }
  b.end();
  CHECK(b.encoded().size() == wire::kMaxParamsBytes);  // 1 (map) + 2 ("a") + 3 (array16) + n
  CHECK(n == wire::kMaxParamsBytes - 6);
}

TEST_CASE("nrb.hpp: params chain, refuse with the status, and fire through the client") {
  nrb::params p;
  p.set_float("power", 2.5).begin_array("ids").set_uint(nullptr, 1).set_int(nullptr, -2).end().set_string("s", "x");
  std::vector<uint8_t> canonical;
  auto d = p.data();
  CHECK(!wire::canonicalize_params(reinterpret_cast<const uint8_t*>(d.data()), d.size(), &canonical));
  try {
    p.set_nil("power");
    FAIL("a repeated key must throw");
  } catch (const nrb::error& e) {
    CHECK(e.status() == NRB_ERROR_INVALID_ARGUMENT);
  }
  for (int i = 0; i < 7; ++i) p.begin_map("m");
  CHECK_THROWS_AS(p.begin_map("m"), nrb::error);
  CHECK_THROWS_AS(p.data(), nrb::error);  // maps still open
}

TEST_CASE("nrb.hpp: client_config is nrb_client_config with nrb.h's defaults, and owns what it points to") {
  nrb_client_config c;
  nrb_client_config_init(&c);
  nrb::client_config cfg;
  CHECK(cfg->log_level == c.log_level);  // NRB_LOG_DEBUG, as nrb.h documents
  CHECK(cfg->struct_size == sizeof(nrb_client_config));
  CHECK(cfg.get().endpoint == nullptr);  // NULL: the library's default endpoint
  cfg->render_width = 8;
  cfg->render_height = 4;
  nrb::client_config copy = [] {
    nrb::client_config tmp;
    std::string name = NRB_BUFFER_DEPTH;
    tmp.endpoint("tcp://127.0.0.1:1").engine("e", "1").buffer(name, NRB_FORMAT_R32F);
    return tmp;
  }();
  const nrb_client_config& raw = copy.get();
  CHECK(std::string(raw.endpoint) == "tcp://127.0.0.1:1");
  CHECK(std::string(raw.engine_name) == "e");
  REQUIRE(raw.buffer_count == 1);
  CHECK(std::string(raw.buffers[0].name) == "depth");
  copy->render_width = 8;
  copy->render_height = 4;
  copy->start_disabled = 1;
  nrb::client client(copy);
  client.fire_event("hit", nrb::params().set_int("n", 3));
  CHECK(client.stats().events_pending == 1);
}
