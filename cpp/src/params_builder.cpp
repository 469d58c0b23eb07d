// ParamsBuilder: see params_builder.hpp.
#include "params_builder.hpp"

#include <stdexcept>

namespace nrb::detail {

namespace {

// Bytes of a map or array header holding n entries, as ParamsWriter writes it.
size_t header_size(bool is_map, uint32_t n) {
  wire::ParamsWriter w;
  if (is_map)
    w.map(n);
  else
    w.array(n);
  return w.size();
}

}  // namespace

ParamsBuilder::ParamsBuilder() { clear(); }

void ParamsBuilder::clear() {
  stack_.clear();
  stack_.emplace_back();  // the params map
  encoded_.clear();
}

void ParamsBuilder::check_key(const char* key) const {
  const Level& top = stack_.back();
  if (!top.is_map) {
    if (key) throw std::invalid_argument("a value inside an array takes no key (pass NULL)");
    return;
  }
  if (!key) throw std::invalid_argument("a value inside a map needs a key (NULL given)");
  std::string_view k(key);
  if (!wire::is_valid_utf8(k)) throw std::invalid_argument("key is not valid UTF-8");
  if (top.keys.count(std::string(k))) throw std::invalid_argument("key \"" + std::string(k) + "\" is already set");
}

size_t ParamsBuilder::size_with(size_t extra_bytes) const {
  size_t total = extra_bytes;
  for (size_t i = 0; i < stack_.size(); ++i) {
    const Level& l = stack_[i];
    const uint32_t n = l.count + (i + 1 == stack_.size() ? 1u : 0u);
    total += header_size(l.is_map, n) + l.body.size();
  }
  return total;
}

template <class Fn>
void ParamsBuilder::put(const char* key, Fn&& value, size_t reserve) {
  check_key(key);
  wire::ParamsWriter entry;
  if (key) entry.str(key);
  value(entry);
  const size_t total = size_with(entry.size() + reserve);
  if (total > wire::kMaxParamsBytes)
    throw std::out_of_range("params would encode to " + std::to_string(total) + " bytes, more than " +
                            std::to_string(wire::kMaxParamsBytes) + " (docs/protocol.md section 3.2)");
  Level& top = stack_.back();
  top.body.raw(entry.bytes());
  ++top.count;
  if (key) top.keys.emplace(key);
  encoded_.clear();
}

void ParamsBuilder::nil(const char* key) {
  put(key, [](wire::ParamsWriter& w) { w.nil(); });
}
void ParamsBuilder::boolean(const char* key, bool v) {
  put(key, [v](wire::ParamsWriter& w) { w.boolean(v); });
}
void ParamsBuilder::i64(const char* key, int64_t v) {
  put(key, [v](wire::ParamsWriter& w) { w.i64(v); });
}
void ParamsBuilder::u64(const char* key, uint64_t v) {
  put(key, [v](wire::ParamsWriter& w) { w.u64(v); });
}
void ParamsBuilder::f64(const char* key, double v) {
  put(key, [v](wire::ParamsWriter& w) { w.f64(v); });
}
void ParamsBuilder::str(const char* key, std::string_view v) {
  if (!wire::is_valid_utf8(v)) throw std::invalid_argument("string value is not valid UTF-8 (use bytes)");
  put(key, [v](wire::ParamsWriter& w) { w.str(v); });
}
void ParamsBuilder::bin(const char* key, const void* p, size_t n) {
  if (!p && n) throw std::invalid_argument("bytes: data is NULL but size > 0");
  if (n > wire::kMaxParamsBytes)  // before copying: such a blob can never fit
    throw std::out_of_range("bytes of " + std::to_string(n) + " cannot fit in 4096 bytes of params");
  put(key, [p, n](wire::ParamsWriter& w) { w.bin(p, n); });
}

void ParamsBuilder::begin(const char* key, bool is_map) {
  if (stack_.size() + 1 > wire::kMaxParamsDepth)
    throw std::out_of_range("params would nest deeper than " + std::to_string(wire::kMaxParamsDepth) +
                            " (docs/protocol.md section 3.2)");
  // The nested container is one entry of its parent from now on (its key is written there); its own header
  // counts toward the size from now on as well.
  put(key, [](wire::ParamsWriter&) {}, header_size(is_map, 0));
  Level l;
  l.is_map = is_map;
  stack_.push_back(std::move(l));
}

void ParamsBuilder::begin_map(const char* key) { begin(key, true); }
void ParamsBuilder::begin_array(const char* key) { begin(key, false); }

void ParamsBuilder::end() {
  if (stack_.size() < 2) throw std::logic_error("nrb_params_end: no map or array is open");
  Level child = std::move(stack_.back());
  stack_.pop_back();
  wire::ParamsWriter& parent = stack_.back().body;
  if (child.is_map)
    parent.map(child.count);
  else
    parent.array(child.count);
  parent.raw(child.body.bytes());
  encoded_.clear();
}

const std::vector<uint8_t>& ParamsBuilder::encoded() const {
  if (stack_.size() > 1)
    throw std::logic_error(std::to_string(stack_.size() - 1) + " map(s)/array(s) still open (nrb_params_end)");
  if (encoded_.empty()) {
    wire::ParamsWriter w;
    w.map(stack_[0].count);
    w.raw(stack_[0].body.bytes());
    encoded_ = w.take();
  }
  return encoded_;
}

}  // namespace nrb::detail
