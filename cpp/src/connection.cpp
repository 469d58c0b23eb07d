#include "connection.hpp"

#include <cstring>

namespace nrb::detail {

namespace {
void set_curve_key(zmq::socket_t& s, int option, const std::string& z85) {
  // A 40-character Z85 key is passed with its terminating NUL (41 bytes), as zmq_setsockopt(3) requires.
  if (zmq_setsockopt(s.handle(), option, z85.c_str(), z85.size() + 1) != 0) throw zmq::error_t();
}
}  // namespace

Connection::Connection(zmq::context_t& ctx, const ClientOptions& opts, uint64_t id, const std::string& endpoint)
    : socket_(ctx, zmq::socket_type::dealer), monitor_(ctx, zmq::socket_type::pair) {
  // A few messages beyond the frames in flight: PING/PONG/BYE must not be refused while frames are outstanding.
  int hwm = static_cast<int>(opts.most_in_flight()) + 4;
  int rcv = hwm * 2;
  // With compression a frame may go streamed (protocol section 6.3.5): a PART per chunk of each buffer, at most
  // 256 chunks of 32 buffers, ahead of its FRAME; and its image may come back streamed (section 6.3.4), at most
  // 256 PARTs ahead of its RESULT. The frames in flight still bound what queues; each is just more messages
  // (ZeroMQ counts whole multipart messages against the mark). Below that, two streamed 1080p images (9 messages
  // each) fill a receive mark of 16 and ZeroMQ stops reading the socket until the I/O thread has taken some.
  if (opts.compression != wire::Compression::none) {
    hwm += static_cast<int>(opts.most_in_flight() * wire::kMaxBuffers * wire::kMaxChunks);
    rcv += static_cast<int>(opts.most_in_flight() * (wire::kMaxChunks + 1));
  }
  socket_.set(zmq::sockopt::rcvhwm, rcv);
  socket_.set(zmq::sockopt::sndhwm, hwm);
  socket_.set(zmq::sockopt::immediate, 0);  // see connection.hpp: keeps answers received before a disconnect
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(wire::kMaxBufferBytes + wire::kMaxHeaderBytes));
  socket_.set(zmq::sockopt::reconnect_ivl, static_cast<int>(opts.backoff_min_ms));
  socket_.set(zmq::sockopt::reconnect_ivl_max, static_cast<int>(opts.backoff_max_ms));
  socket_.set(zmq::sockopt::connect_timeout, static_cast<int>(opts.connect_timeout_ms));
  if (!opts.curve_server_key.empty()) {
    set_curve_key(socket_, ZMQ_CURVE_SERVERKEY, opts.curve_server_key);
    set_curve_key(socket_, ZMQ_CURVE_PUBLICKEY, opts.curve_public_key);
    set_curve_key(socket_, ZMQ_CURVE_SECRETKEY, opts.curve_secret_key);
  }
  std::string mon = "inproc://nrb-monitor-" + std::to_string(id);
  if (zmq_socket_monitor(socket_.handle(), mon.c_str(),
                         ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0)
    throw zmq::error_t();
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(mon);
  socket_.connect(endpoint.empty() ? opts.endpoint : endpoint);
}

Connection::~Connection() {
  // Stop the monitor before closing the monitored socket (otherwise its inproc pipe lingers in the context).
  if (socket_.handle()) zmq_socket_monitor(socket_.handle(), nullptr, 0);
}

bool Connection::send(std::vector<zmq::message_t>& parts) {
  if (parts.empty()) return true;
  for (size_t i = 0; i < parts.size(); ++i) {
    zmq::send_flags f = zmq::send_flags::dontwait;
    if (i + 1 < parts.size()) f = f | zmq::send_flags::sndmore;
    // The high-water mark is checked on the first part only; once it is accepted the rest follow it.
    if (!socket_.send(parts[i], f)) {
      if (i == 0) return false;
      // Cannot happen with libzmq's atomic multipart semantics; retry blocking to keep the message whole.
      socket_.send(parts[i], f & ~zmq::send_flags::dontwait);
    }
  }
  parts.clear();
  return true;
}

bool Connection::recv(std::vector<zmq::message_t>& parts) {
  parts.clear();
  zmq::message_t m;
  if (!socket_.recv(m, zmq::recv_flags::dontwait)) return false;
  bool more = m.more();
  parts.push_back(std::move(m));
  while (more) {
    zmq::message_t next;
    (void)socket_.recv(next, zmq::recv_flags::none);  // the rest of a multipart message is already here
    more = next.more();
    parts.push_back(std::move(next));
  }
  return true;
}

bool Connection::poll_monitor() {
  bool lost = false;
  for (;;) {
    zmq::message_t ev;
    if (!monitor_.recv(ev, zmq::recv_flags::dontwait)) break;
    bool more = ev.more();
    uint16_t event = 0;
    if (ev.size() >= 6) std::memcpy(&event, ev.data(), sizeof event);
    while (more) {  // the endpoint frame
      zmq::message_t addr;
      (void)monitor_.recv(addr, zmq::recv_flags::none);
      more = addr.more();
    }
    if (event == ZMQ_EVENT_CONNECTED || event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) connected_ = true;
    if (event == ZMQ_EVENT_DISCONNECTED) {
      connected_ = false;
      lost = true;
    }
  }
  return lost;
}

void Connection::linger_briefly() noexcept {
  try {
    socket_.set(zmq::sockopt::linger, 20);
  } catch (...) {
  }
}

}  // namespace nrb::detail
