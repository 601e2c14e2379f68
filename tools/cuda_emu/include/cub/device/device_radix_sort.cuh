// The CUDA host emulator's cub/device/device_radix_sort.cuh: DeviceRadixSort::SortPairs,
// a stable sort of (key, value) pairs by the key bits [begin_bit, end_bit), as CUB's.
// The temporary-storage protocol is kept (a first call with no storage asks for its
// size; a later call with less storage than asked fails), and so is the check that the
// inputs and outputs are device memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <numeric>
#include <vector>

#include "cuda_runtime.h"

namespace caption_emu {
bool device_range(const void* p, size_t bytes);
}

namespace cub {

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes,
                               const KeyT* d_keys_in, KeyT* d_keys_out,
                               const ValueT* d_values_in, ValueT* d_values_out,
                               NumItemsT num_items, int begin_bit = 0,
                               int end_bit = static_cast<int>(sizeof(KeyT) * 8),
                               cudaStream_t stream = nullptr) {
    const size_t n = static_cast<size_t>(num_items);
    // What CUB would ask for is its own business; asking for room for the keys and
    // values once more exercises the caller's workspace carving.
    const size_t needed = n * (sizeof(KeyT) + sizeof(ValueT)) + 256;
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = needed;
      return cudaSuccess;
    }
    if (temp_storage_bytes < needed || begin_bit < 0 || end_bit > static_cast<int>(sizeof(KeyT) * 8) ||
        begin_bit >= end_bit) {
      std::fprintf(stderr, "cuda emulator: cub::DeviceRadixSort::SortPairs: %s\n",
                   temp_storage_bytes < needed ? "temporary storage smaller than asked for"
                                               : "bad bit range");
      return cudaErrorInvalidValue;
    }
    if (n == 0) return cudaSuccess;
    if (!caption_emu::device_range(d_temp_storage, temp_storage_bytes) ||
        !caption_emu::device_range(d_keys_in, n * sizeof(KeyT)) ||
        !caption_emu::device_range(d_keys_out, n * sizeof(KeyT)) ||
        !caption_emu::device_range(d_values_in, n * sizeof(ValueT)) ||
        !caption_emu::device_range(d_values_out, n * sizeof(ValueT))) {
      std::fprintf(stderr, "cuda emulator: cub::DeviceRadixSort::SortPairs: an operand is not "
                           "inside device memory\n");
      return cudaErrorIllegalAddress;
    }
    // The sort itself is stream work, as CUB's kernels are: run in stream order, or
    // recorded into the graph when the stream is capturing (and redone at each replay).
    const int bits = end_bit - begin_bit;
    const uint64_t mask = bits >= 64 ? ~uint64_t{0} : ((uint64_t{1} << bits) - 1);
    caption_emu::enqueue(stream, [=] {
      auto key_of = [&](size_t i) {
        return (static_cast<uint64_t>(d_keys_in[i]) >> begin_bit) & mask;
      };
      std::vector<size_t> order(n);
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return key_of(a) < key_of(b); });
      std::vector<KeyT> keys(n);
      std::vector<ValueT> values(n);
      for (size_t i = 0; i < n; ++i) {
        keys[i] = d_keys_in[order[i]];
        values[i] = d_values_in[order[i]];
      }
      std::copy(keys.begin(), keys.end(), d_keys_out);
      std::copy(values.begin(), values.end(), d_values_out);
    });
    return cudaSuccess;
  }
};

}  // namespace cub
