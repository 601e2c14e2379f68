// The engine's seeded random numbers. A Generator is a (seed, offset) pair over the
// Philox counter-based stream (kernels/philox.h): an op that needs n numbers takes the
// current offset and advances it by ceil(n / 4) counters, so the numbers an op gets
// depend only on the seed and the sequence of requests, not on the device or on
// threading. Its state is two integers, saved in trainer checkpoints.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace caption {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves a stream of n 32-bit words and returns its starting counter.
  uint64_t reserve(uint64_t n) {
    const uint64_t start = offset_;
    offset_ += (n + 3) / 4;
    return start;
  }
  // Device counters, for recorded device work (engine/graph.h) that must draw fresh
  // numbers at each replay. While a counter is attached (one int64, on any device, the
  // CPU included for tests), ops on that device that draw from this generator still reserve their
  // numbers here, but take the counter's value as the start of the generator's stream:
  // an op reserving at offset o uses counter + (o - origin), origin being the offset at
  // attach time. Eagerly, with the counter holding `origin`, that is exactly o; a graph
  // recorded so draws, at each replay, the numbers of an eager run from whatever offset
  // the host writes into the counter before it (nn/train_graph.h does: the current
  // offset, then advances the generator by what one replay draws).
  void attach_device_counter(const Tensor& counter);
  void detach_device_counter();
  // The attached counter (undefined if none) and the offset it was attached at.
  const Tensor& device_counter() const { return counter_; }
  uint64_t counter_origin() const { return counter_origin_; }

  // Host-side draws (for initialisation and per-sample coins).
  float uniform();            // [0, 1)
  double normal();            // N(0, 1), Box-Muller over two words
  uint32_t next_u32();

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
  Tensor counter_;
  uint64_t counter_origin_ = 0;
};

// Tensors of random values, drawn on the CPU from the generator, then moved to `device`.
Tensor rand_uniform(const Shape& shape, double low, double high, Generator& gen,
                    DType dtype = DType::F32, Device device = Device::cpu());
Tensor rand_normal(const Shape& shape, double mean, double stddev, Generator& gen,
                   DType dtype = DType::F32, Device device = Device::cpu());

}  // namespace caption
