#include "doorbell.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <system_error>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace nrb::detail {

namespace {

uint32_t read_le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

}  // namespace

#ifdef _WIN32

std::unique_ptr<Doorbell> Doorbell::create(const std::string&) {
  throw std::runtime_error("no named pipes for the doorbell on this platform");
}
std::string Doorbell::default_dir() { return {}; }
Doorbell::~Doorbell() = default;
void Doorbell::unlink() noexcept {}
void Doorbell::send(const uint8_t*, size_t) { throw std::runtime_error("no doorbell on this platform"); }
bool Doorbell::flush() { return true; }
bool Doorbell::receive(std::vector<std::vector<uint8_t>>&) { return false; }

#else

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

bool writable_dir(const char* path) {
  struct stat st {};
  return path && *path == '/' && ::stat(path, &st) == 0 && S_ISDIR(st.st_mode) && ::access(path, W_OK | X_OK) == 0;
}

int open_fifo(const std::string& path) {
  // Read-write: the open does not wait for a peer, and the pipe never reports end-of-file to this side.
  int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw_errno("open " + path);
  return fd;
}

}  // namespace

std::string Doorbell::default_dir() {
  if (writable_dir("/dev/shm")) return "/dev/shm";
  const char* tmp = std::getenv("TMPDIR");
  if (writable_dir(tmp)) return tmp;
  return "/tmp";
}

std::unique_ptr<Doorbell> Doorbell::create(const std::string& dir) {
  std::random_device rd;
  const uint64_t r = (uint64_t(rd()) << 32) ^ rd();
  char stem[64];
  std::snprintf(stem, sizeof stem, "/nrb-%lu-%012llx", static_cast<unsigned long>(::getpid()),
                static_cast<unsigned long long>(r & 0xFFFFFFFFFFFFull));
  std::unique_ptr<Doorbell> d(new Doorbell());
  d->spec_.to_renderer = dir + stem + "-to-renderer";
  d->spec_.to_engine = dir + stem + "-to-engine";
  if (d->spec_.to_engine.size() > wire::kMaxDoorbellPathBytes)
    throw std::system_error(ENAMETOOLONG, std::generic_category(), "doorbell directory " + dir);
  if (::mkfifo(d->spec_.to_renderer.c_str(), 0600) != 0) throw_errno("mkfifo " + d->spec_.to_renderer);
  d->linked_ = true;  // from here the destructor removes what exists
  if (::mkfifo(d->spec_.to_engine.c_str(), 0600) != 0) throw_errno("mkfifo " + d->spec_.to_engine);
  d->to_renderer_ = open_fifo(d->spec_.to_renderer);
  d->to_engine_ = open_fifo(d->spec_.to_engine);
  return d;
}

Doorbell::~Doorbell() {
  unlink();
  if (to_renderer_ >= 0) ::close(to_renderer_);
  if (to_engine_ >= 0) ::close(to_engine_);
}

void Doorbell::unlink() noexcept {
  if (!linked_) return;
  linked_ = false;
  ::unlink(spec_.to_renderer.c_str());
  ::unlink(spec_.to_engine.c_str());
}

void Doorbell::send(const uint8_t* header, size_t size) {
  if (size == 0 || size > wire::kMaxHeaderBytes) throw std::length_error("doorbell record of " + std::to_string(size) + " bytes");
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  }
  const uint32_t n = static_cast<uint32_t>(size);
  const uint8_t len[wire::kDoorbellLengthBytes] = {uint8_t(n), uint8_t(n >> 8), uint8_t(n >> 16), uint8_t(n >> 24)};
  out_.insert(out_.end(), len, len + sizeof len);
  out_.insert(out_.end(), header, header + size);
  flush();
}

bool Doorbell::flush() {
  while (out_pos_ < out_.size()) {
    ssize_t w = ::write(to_renderer_, out_.data() + out_pos_, out_.size() - out_pos_);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      throw_errno("write to the doorbell");
    }
    out_pos_ += static_cast<size_t>(w);
  }
  out_.clear();
  out_pos_ = 0;
  return true;
}

bool Doorbell::receive(std::vector<std::vector<uint8_t>>& records) {
  uint8_t buf[16384];
  for (;;) {
    ssize_t r = ::read(to_engine_, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      throw_errno("read from the doorbell");
    }
    if (r == 0) break;  // cannot happen while we hold a write end; harmless if it does
    in_.insert(in_.end(), buf, buf + r);
    if (static_cast<size_t>(r) < sizeof buf) break;
  }
  size_t pos = 0;
  while (in_.size() - pos >= wire::kDoorbellLengthBytes) {
    const uint32_t n = read_le32(in_.data() + pos);
    if (n == 0 || n > wire::kMaxHeaderBytes) return false;
    if (in_.size() - pos - wire::kDoorbellLengthBytes < n) break;
    const uint8_t* start = in_.data() + pos + wire::kDoorbellLengthBytes;
    records.emplace_back(start, start + n);
    pos += wire::kDoorbellLengthBytes + n;
  }
  in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(pos));
  return true;
}

#endif

}  // namespace nrb::detail
