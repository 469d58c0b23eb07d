// The engine side of the doorbell (protocol section 7.1): two FIFOs that carry the per-frame headers of a
// shared-memory session straight between the client's I/O thread and the renderer's reading thread, without the
// four extra thread wake-ups a ZeroMQ message costs (the sender's and the receiver's ZeroMQ I/O threads, each way).
//
// Both FIFOs are created here (mode 0600), opened read-write and non-blocking (so no open waits for the peer and no
// read ever sees end-of-file), and unlinked once the renderer has them open. Owned and used by the I/O thread only;
// the renderer being alive is judged on the ZeroMQ connection, never here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace nrb::detail {

class Doorbell {
 public:
  // Creates the pair in `dir` (an existing directory). Throws std::system_error; std::runtime_error where there are
  // no named pipes (Windows).
  static std::unique_ptr<Doorbell> create(const std::string& dir);
  // The directory engines use: /dev/shm when it is a writable directory (memory-backed), else $TMPDIR, else /tmp.
  static std::string default_dir();

  ~Doorbell();
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;

  wire::DoorbellSpec spec() const { return spec_; }
  // Removes both names (idempotent); the open descriptors keep working.
  void unlink() noexcept;

  int to_renderer_fd() const noexcept { return to_renderer_; }
  int to_engine_fd() const noexcept { return to_engine_; }

  // Appends one record (a payload-less message's header) and writes as much as the pipe takes now; the rest waits
  // for flush(). Throws std::length_error for a header outside 1..65536 bytes and std::system_error on a write
  // error other than "would block".
  void send(const uint8_t* header, size_t size);
  // Writes pending bytes; true when none are left.
  bool flush();
  bool pending() const noexcept { return out_pos_ < out_.size(); }
  size_t pending_bytes() const noexcept { return out_.size() - out_pos_; }

  // Reads everything available from to_engine and appends each complete record to `records`. False when the
  // stream is corrupt (a length outside 1..65536): nothing after that point can be trusted.
  bool receive(std::vector<std::vector<uint8_t>>& records);

 private:
  Doorbell() = default;

  wire::DoorbellSpec spec_;
  bool linked_ = false;
  int to_renderer_ = -1, to_engine_ = -1;
  std::vector<uint8_t> out_;
  size_t out_pos_ = 0;
  std::vector<uint8_t> in_;
};

}  // namespace nrb::detail
