#include "shm_pool.hpp"

#include <cerrno>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <system_error>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <process.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace nrb::detail {

namespace {
[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}
}  // namespace

std::string SharedMemory::make_name() {
  std::random_device rd;
  uint64_t r = (uint64_t(rd()) << 32) ^ rd();
#ifdef _WIN32
  unsigned long pid = static_cast<unsigned long>(_getpid());
#else
  unsigned long pid = static_cast<unsigned long>(getpid());
#endif
  char buf[64];
  std::snprintf(buf, sizeof buf, "/nrb-%lu-%012llx", pid, static_cast<unsigned long long>(r & 0xFFFFFFFFFFFFull));
  return buf;
}

void SharedMemory::swap(SharedMemory& o) noexcept {
  std::swap(name_, o.name_);
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  std::swap(owner_, o.owner_);
#ifdef _WIN32
  std::swap(mapping_, o.mapping_);
#endif
}

#ifdef _WIN32
// Windows: a named, pagefile-backed file mapping. The name disappears with its last handle, so unlink() is a no-op.
SharedMemory SharedMemory::create(const std::string& name, size_t size) {
  std::string wname = "Local\\" + name.substr(1);
  HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE, DWORD(uint64_t(size) >> 32),
                                DWORD(size & 0xFFFFFFFFu), wname.c_str());
  if (!h) throw std::system_error(int(GetLastError()), std::system_category(), "CreateFileMapping " + name);
  if (GetLastError() == ERROR_ALREADY_EXISTS) {
    CloseHandle(h);
    throw std::system_error(EEXIST, std::generic_category(), "shm exists: " + name);
  }
  void* p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, size);
  if (!p) {
    CloseHandle(h);
    throw std::system_error(int(GetLastError()), std::system_category(), "MapViewOfFile " + name);
  }
  SharedMemory m;
  m.name_ = name;
  m.data_ = static_cast<uint8_t*>(p);
  m.size_ = size;
  m.owner_ = true;
  m.mapping_ = h;
  return m;
}

SharedMemory SharedMemory::open(const std::string& name) {
  std::string wname = "Local\\" + name.substr(1);
  HANDLE h = OpenFileMappingA(FILE_MAP_ALL_ACCESS, FALSE, wname.c_str());
  if (!h) throw std::system_error(int(GetLastError()), std::system_category(), "OpenFileMapping " + name);
  void* p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, 0);
  MEMORY_BASIC_INFORMATION info{};
  if (!p || !VirtualQuery(p, &info, sizeof info)) {
    CloseHandle(h);
    throw std::system_error(int(GetLastError()), std::system_category(), "MapViewOfFile " + name);
  }
  SharedMemory m;
  m.name_ = name;
  m.data_ = static_cast<uint8_t*>(p);
  m.size_ = info.RegionSize;
  m.mapping_ = h;
  return m;
}

void SharedMemory::unlink() noexcept {}

SharedMemory::~SharedMemory() {
  if (data_) UnmapViewOfFile(data_);
  if (mapping_) CloseHandle(static_cast<HANDLE>(mapping_));
}
#else
SharedMemory SharedMemory::create(const std::string& name, size_t size) {
  int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) throw_errno("shm_open " + name);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int e = errno;
    ::close(fd);
    ::shm_unlink(name.c_str());
    errno = e;
    throw_errno("ftruncate " + name);
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  ::close(fd);  // the mapping keeps the object alive
  if (p == MAP_FAILED) {
    ::shm_unlink(name.c_str());
    errno = e;
    throw_errno("mmap " + name);
  }
  SharedMemory m;
  m.name_ = name;
  m.data_ = static_cast<uint8_t*>(p);
  m.size_ = size;
  m.owner_ = true;
  return m;
}

SharedMemory SharedMemory::open(const std::string& name) {
  int fd = ::shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) throw_errno("shm_open " + name);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    int e = errno;
    ::close(fd);
    errno = e ? e : EINVAL;
    throw_errno("fstat " + name);
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) {
    errno = e;
    throw_errno("mmap " + name);
  }
  SharedMemory m;
  m.name_ = name;
  m.data_ = static_cast<uint8_t*>(p);
  m.size_ = size;
  return m;
}

void SharedMemory::unlink() noexcept {
  if (owner_ && !name_.empty()) ::shm_unlink(name_.c_str());
  owner_ = false;
}

SharedMemory::~SharedMemory() {
  if (data_) ::munmap(data_, size_);
  unlink();
}
#endif

// ---------------------------------------------------------------------------------------------------------------

SlotPool::SlotPool(SharedMemory shm, uint32_t slots, uint64_t slot_size)
    : shm_(std::move(shm)), slots_(slots), slot_size_(slot_size) {
  free_.reserve(slots);
  for (uint32_t i = slots; i-- > 0;) free_.push_back(i);  // slot 0 is handed out first
}

std::shared_ptr<SlotPool> SlotPool::create(uint32_t slots, uint64_t slot_size) {
  if (slots < 1 || slots > wire::kMaxShmSlots) throw std::invalid_argument("shm: slots must be 1..256");
  slot_size = align64(slot_size);
  if (slot_size < 64 || slot_size > wire::kMaxShmSlotSize) throw std::invalid_argument("shm: slot size out of range");
  for (int attempt = 0;; ++attempt) {
    try {
      SharedMemory shm = SharedMemory::create(SharedMemory::make_name(), size_t(slots) * slot_size);
      return std::shared_ptr<SlotPool>(new SlotPool(std::move(shm), slots, slot_size));
    } catch (const std::system_error& e) {
      if (e.code().value() != EEXIST || attempt >= 4) throw;
    }
  }
}

std::shared_ptr<SlotPool::Lease> SlotPool::acquire() {
  uint32_t index;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.empty()) return nullptr;
    index = free_.back();
    free_.pop_back();
  }
  return std::make_shared<Lease>(shared_from_this(), index);
}

void SlotPool::release(uint32_t index) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  free_.push_back(index);
}

uint32_t SlotPool::free_slots() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<uint32_t>(free_.size());
}

wire::ShmPool SlotPool::spec() const {
  wire::ShmPool p;
  p.name = shm_.name();
  p.slots = slots_;
  p.slot_size = slot_size_;
  return p;
}

void SlotPool::unlink() {
  std::lock_guard<std::mutex> lock(mutex_);
  shm_.unlink();
}

}  // namespace nrb::detail
