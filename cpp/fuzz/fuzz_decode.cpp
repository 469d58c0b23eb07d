// libFuzzer target for the NRB/1 decoder (cpp/src/protocol.cpp).
//
// Input format: the frame list of the .bin test vectors — a 4-byte little-endian length followed by that many
// bytes, repeated; whatever is left when no complete length-prefixed frame remains is one last frame. So the
// seeds in tests/fuzz_corpus/fuzz_decode/ (copies of tests/vectors/*.bin) decode exactly as in the vector tests.
//
// Decoding runs with both compressions negotiated and a shared-memory pool, so every branch is reachable. On
// success the message is re-encoded and decoded again, and the second encoding must equal the first: the decoder
// and the canonical encoder agree on every message the decoder accepts. A PART's chunk (sections 6.3.4 and 6.3.5:
// either direction's, both negotiated) goes through what a receiver does with it on arrival: peek_frame(), then
// inflate_chunk() at the size it announces.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include "protocol.hpp"

using namespace nrb::wire;

namespace {

const ShmPool kPool{"/nrb-fuzz", 4, 1 << 20};

DecodeOptions options() {
  DecodeOptions o = DecodeOptions::permissive(&kPool);
  o.max_buffer_bytes = 64u << 20;  // a receiver-chosen limit (section 11) so one input cannot allocate 1 GiB
  return o;
}

std::vector<Bytes> split(const uint8_t* data, size_t size) {
  std::vector<Bytes> frames;
  size_t pos = 0;
  while (size - pos >= 4) {
    const uint32_t n = uint32_t(data[pos]) | uint32_t(data[pos + 1]) << 8 | uint32_t(data[pos + 2]) << 16 |
                       uint32_t(data[pos + 3]) << 24;
    if (n > size - pos - 4) break;
    frames.emplace_back(data + pos + 4, n);
    pos += 4 + n;
  }
  if (pos < size) frames.emplace_back(data + pos, size - pos);
  return frames;
}

std::vector<uint8_t> frames_bytes(const Encoded& e) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < e.frame_count(); ++i) {
    const Bytes f = e.frame(i);
    out.insert(out.end(), f.data, f.data + f.size);
    out.push_back(0xff);  // separator so frame boundaries count
  }
  return out;
}

// The inline buffers of a decoded FRAME or RESULT.
std::vector<BufferDesc*> inline_buffers(Message& m) {
  std::vector<BufferDesc*> out;
  if (auto* f = std::get_if<Frame>(&m))
    for (auto& b : f->buffers)
      if (b.is_inline()) out.push_back(&b);
  if (auto* res = std::get_if<Result>(&m))
    if (res->output && res->output->is_inline()) out.push_back(&*res->output);
  return out;
}

// Decompressing later (defer_decompression, then inflate(): libnrb's RESULT path, nrb serve's FRAME path; chunks
// through a runner, section 6.3.2) must agree with decompressing at once: the same pixels when that succeeds, and
// when it fails on a payload, a deferred decode that succeeds must fail in inflate() with the same code.
void check_deferred(const std::vector<Bytes>& frames, const DecodeOptions& opts, const DecodeResult& direct) {
  DecodeOptions later = opts;
  later.defer_decompression = true;
  DecodeResult d = decode(frames.data(), frames.size(), later);
  if (!d.ok()) {
    if (direct.ok() || d.error.code != direct.error.code) std::abort();
    return;
  }
  const ParallelRunner run = [](std::vector<std::function<void()>>& jobs) {
    for (size_t i = jobs.size(); i-- > 0;) jobs[i]();  // out of order, as threads may run them
  };
  std::optional<DecodeError> failed;
  for (BufferDesc* b : inline_buffers(*d.message))
    if (!failed) failed = inflate(*b, &run);
  if (direct.ok() == failed.has_value()) std::abort();
  if (failed) {
    if (failed->code != direct.error.code) std::abort();
    return;
  }
  auto a = inline_buffers(const_cast<Message&>(*direct.message));
  auto b = inline_buffers(*d.message);
  if (a.size() != b.size()) std::abort();
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i]->size != b[i]->size || (a[i]->size && std::memcmp(a[i]->data, b[i]->data, a[i]->size) != 0))
      std::abort();
}

// Section 6.3.4 step 6: a PART's chunk decompressed before its RESULT says what it holds, at the announced size
// (bounded as libnrb bounds it), plainly and from byte planes; both must agree on success or failure.
void check_part(const Part& p) {
  const std::optional<FramePeek> peek = peek_frame(p.payload, p.payload_size);
  if (!peek) return;
  if (peek->codec != Compression::lz4 && peek->codec != Compression::zstd) std::abort();
  if (peek->content_size == 0 || peek->content_size > (16u << 20)) return;
  std::vector<uint8_t> plain(peek->content_size), planes(peek->content_size);
  const std::string a = inflate_chunk(peek->codec, p.payload, p.payload_size, plain.data(), plain.size());
  const std::string b = inflate_chunk(peek->codec, p.payload, p.payload_size, planes.data(), planes.size(), 4);
  if (a.empty() != b.empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<Bytes> frames = split(data, size);
  const DecodeOptions opts = options();
  const DecodeResult r = decode(frames.data(), frames.size(), opts);
  check_deferred(frames, opts, r);
  if (!r.ok()) {
    const auto c = static_cast<uint64_t>(r.error.code);
    if (c < 1 || c > 14 || r.error.message.empty()) std::abort();
    return 0;
  }
  if (auto* part = std::get_if<Part>(&*r.message)) check_part(*part);
  // Accepted: the canonical re-encoding must decode to a message with the same canonical encoding.
  const Encoded once = encode(*r.message);
  std::vector<Bytes> again_frames;
  for (size_t i = 0; i < once.frame_count(); ++i) again_frames.push_back(once.frame(i));
  const DecodeResult again = decode(again_frames.data(), again_frames.size(), opts);
  if (!again.ok()) std::abort();
  if (frames_bytes(encode(*again.message)) != frames_bytes(once)) std::abort();
  // Decoded pixel views must lie inside the input or the decoder's own allocation.
  auto check_buffer = [&](const BufferDesc& b) {
    if (!b.is_inline()) return;
    if (b.size != b.byte_size()) std::abort();
    volatile uint8_t sink = 0;
    if (b.size) sink = sink ^ b.data[0] ^ b.data[b.size - 1];
    (void)sink;
  };
  if (auto* f = std::get_if<Frame>(&*r.message))
    for (const auto& b : f->buffers) check_buffer(b);
  if (auto* res = std::get_if<Result>(&*r.message))
    if (res->output) check_buffer(*res->output);
  return 0;
}
