// Uploads through pinned staging buffers: a copy from the host to a device that returns
// without waiting for the device.
//
// A copy from ordinary (pageable) host memory cannot be left running: the host may reuse
// its buffer as soon as the call returns, so copy_bytes used to wait for the device's
// stream to drain after each one, and every upload (a batch of images, a step's tokens)
// made the host wait for all the work queued before it. With a staging ring the host
// copies the bytes into a page-locked (pinned) buffer of its own, queues the transfer
// from there on the device's stream (in order with the kernels around it, so nothing
// else changes) and returns; an event recorded after the transfer says when the buffer
// may be written again. The host's own work (loading the next batch, launching the next
// step) then overlaps the device's.
//
// StagingRing is the bookkeeping, over a StagingBacking of plain functions so that the
// CPU-only tests drive it with fake buffers and events (tests/engine/staging_test.cpp);
// engine/cuda/runtime.cpp gives it cudaHostAlloc, events and cudaMemcpyAsync.
//
// Buffers: a request takes the smallest idle buffer (its last transfer finished) that
// holds it; failing that a new one is allocated (sizes rounded: powers of two from 64 KiB
// to 1 MiB, then multiples of 2 MiB) while the pinned total stays within the capacity;
// failing that the oldest busy buffer that holds it is waited for; failing that (every
// buffer too small) the idle ones are freed, then the busy ones after a wait, until the
// new buffer fits. A request over half the capacity, or one whose pinned allocation
// fails, is refused (upload() returns false) and the caller copies the old way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace caption {

struct StagingBacking {
  std::function<void*(size_t)> allocate;  // pinned host memory; nullptr when unavailable
  std::function<void(void*)> free;
  std::function<void*()> make_event;
  std::function<void(void*)> destroy_event;
  std::function<void(void*)> record;       // the event, after the work queued so far
  std::function<bool(void*)> finished;     // whether the recorded work is done
  std::function<void(void*)> wait;         // until it is
  // Queues the transfer of n bytes from the staging buffer to device memory.
  std::function<void(void* dst, const void* staged, size_t n)> transfer;
};

struct StagingStats {
  uint64_t uploads = 0;        // uploads that went through the ring
  uint64_t bytes = 0;          // their bytes
  uint64_t refused = 0;        // requests copied the old way (too large, no pinned memory)
  uint64_t waits = 0;          // uploads that waited for a buffer's earlier transfer
  uint64_t allocations = 0;    // pinned buffers allocated
  size_t buffers = 0;          // pinned buffers held now
  size_t pinned_bytes = 0;     // their total size
};

class StagingRing {
 public:
  StagingRing(StagingBacking backing, size_t capacity_bytes);
  ~StagingRing();
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;

  // Copies n bytes at host address src to device address dst: into a staging buffer,
  // then queued. Returns false, having done nothing, when the ring cannot take it.
  bool upload(void* dst, const void* src, size_t n);
  StagingStats stats() const;
  size_t capacity() const { return capacity_; }
  // The size a buffer for n bytes gets.
  static size_t rounded(size_t n);

 private:
  struct Buffer {
    void* data = nullptr;
    size_t size = 0;
    void* event = nullptr;
    uint64_t last_use = 0;  // 0: never used
  };
  bool idle(const Buffer& b) const { return b.last_use == 0 || backing_.finished(b.event); }
  Buffer* find(size_t n);  // under mutex_
  void release(size_t index);

  StagingBacking backing_;
  size_t capacity_;
  mutable std::mutex mutex_;
  std::vector<Buffer> buffers_;
  uint64_t uses_ = 0;
  StagingStats stats_;
};

}  // namespace caption
