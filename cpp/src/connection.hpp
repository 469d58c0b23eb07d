// One ZeroMQ DEALER connection to the renderer, with the socket options the client relies on:
//   * ZMQ_SNDHWM/RCVHWM sized to the frames in flight (and, sending, to the PARTs a streamed frame may take), so
//     nothing queues without bound (the client's own in-flight limit keeps it below them);
//   * ZMQ_IMMEDIATE deliberately 0: with 1, libzmq terminates the pipe on a disconnect *without* delivering the
//     messages already received into it (session_base_t::reconnect), so a RESULT that arrived just before a
//     renderer died would be lost and the events of its frame re-sent: a duplicate. Nothing queues to an absent
//     peer anyway: frames are only sent in a live session, and the socket is replaced on every reconnect;
//   * ZMQ_LINGER 0: closing never waits; ZMQ_MAXMSGSIZE: a hostile peer cannot make us allocate beyond the
//     protocol's 1 GiB buffer limit;
//   * optional CurveZMQ client keys;
//   * a socket monitor, so a dropped TCP/IPC connection is noticed at once rather than by timeout.
// Owned and used by the I/O thread only.
#pragma once

#include <zmq.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client_options.hpp"

namespace nrb::detail {

class Connection {
 public:
  // Creates the socket and starts connecting (in the background). `id` makes the monitor endpoint unique within
  // `ctx`. `endpoint` overrides opts.endpoint (a worker a front door redirected us to, protocol section 5.10).
  // Throws zmq::error_t.
  Connection(zmq::context_t& ctx, const ClientOptions& opts, uint64_t id, const std::string& endpoint = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  zmq::socket_t& socket() noexcept { return socket_; }
  zmq::socket_t& monitor() noexcept { return monitor_; }

  // Sends one multipart message without blocking. False when it cannot be queued now (not connected, or the high-
  // water mark is reached); then nothing was sent. The parts are consumed either way.
  bool send(std::vector<zmq::message_t>& parts);
  // Receives one whole multipart message if one is waiting; false otherwise.
  bool recv(std::vector<zmq::message_t>& parts);

  // Reads pending monitor events. Returns true when the connection to the renderer was lost since the last call.
  bool poll_monitor();
  bool peer_connected() const noexcept { return connected_; }

  // Sets a short linger so that a final BYE can leave before close.
  void linger_briefly() noexcept;

 private:
  zmq::socket_t socket_;
  zmq::socket_t monitor_;
  bool connected_ = false;
};

}  // namespace nrb::detail
