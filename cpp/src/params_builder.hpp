// ParamsBuilder: the typed event-params builder behind nrb_params (nrb.h). It writes through wire::ParamsWriter, the
// one msgpack encoder of libnrb, so params built here are canonical (docs/protocol.md section 3.1) by construction,
// and it enforces section 3.2's limits (depth <= 8, <= 4096 encoded bytes, str keys) at the call that breaks them:
// a failing call throws and leaves the builder as it was, so an engine can report the one bad value and go on.
//
// Errors (mapped to nrb_status by the C ABI): std::invalid_argument (a key missing, present in an array, repeated
// or not UTF-8; a string not UTF-8), std::out_of_range (a limit), std::logic_error (end() with nothing open,
// encoded() with containers still open).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "protocol.hpp"

namespace nrb::detail {

class ParamsBuilder {
 public:
  ParamsBuilder();

  void clear();
  // `key`: the entry's key inside a map, nullptr inside an array.
  void nil(const char* key);
  void boolean(const char* key, bool v);
  void i64(const char* key, int64_t v);
  void u64(const char* key, uint64_t v);
  void f64(const char* key, double v);
  void str(const char* key, std::string_view v);
  void bin(const char* key, const void* p, size_t n);
  void begin_map(const char* key);
  void begin_array(const char* key);
  void end();

  // The canonical encoding of the whole map; valid until the next change. Throws std::logic_error while a
  // container is open.
  const std::vector<uint8_t>& encoded() const;
  size_t open_containers() const noexcept { return stack_.size() - 1; }

 private:
  struct Level {
    bool is_map = true;
    uint32_t count = 0;
    wire::ParamsWriter body;                  // the entries written so far (keys and values)
    std::unordered_set<std::string> keys;     // a map's keys, to refuse a repeated one
  };

  // Writes `key` (maps) and then whatever `value` writes into a scratch writer, checks the limits (counting
  // `reserve` more bytes: a nested container's header) and appends.
  template <class Fn>
  void put(const char* key, Fn&& value, size_t reserve = 0);
  void check_key(const char* key) const;
  size_t size_with(size_t extra_bytes) const;  // encoded size if the top level got one more entry of `extra_bytes`
  void begin(const char* key, bool is_map);

  std::vector<Level> stack_;  // stack_[0]: the params map itself (depth 1)
  mutable std::vector<uint8_t> encoded_;
};

}  // namespace nrb::detail
