// Uploads through pinned staging buffers (engine/staging.h). The ring's bookkeeping on the
// CPU, with fake buffers, events and transfers that stay pending until the test runs them
// (as a GPU's copy engine would); then copies to a CUDA device through copy_bytes, on a
// GPU or on the host emulator, whose transfers from pinned memory also stay pending until
// the next stream work (tools/cuda_emu: a staging buffer written again too early sends
// the wrong bytes there too).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <numeric>
#include <set>
#include <vector>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/graph.h"
#include "engine/staging.h"
#include "tests/harness/gpu.h"

namespace caption {
namespace {

// A fake device: "device memory" is host memory, transfers queue until complete() runs
// them, and an event is finished once every transfer queued before its record ran.
struct FakeDevice {
  struct Event {
    uint64_t after = 0;
  };
  std::deque<std::function<void()>> queue;
  uint64_t queued = 0, ran = 0;
  std::set<void*> live_buffers;
  std::vector<std::unique_ptr<Event>> events;
  size_t allocations = 0, frees = 0, waits = 0;
  bool refuse_allocation = false;

  void complete() {
    while (!queue.empty()) {
      queue.front()();
      queue.pop_front();
      ++ran;
    }
  }

  StagingBacking backing() {
    StagingBacking b;
    b.allocate = [this](size_t n) -> void* {
      if (refuse_allocation) return nullptr;
      void* p = ::operator new(n);
      live_buffers.insert(p);
      ++allocations;
      return p;
    };
    b.free = [this](void* p) {
      EXPECT_EQ(live_buffers.erase(p), 1u) << "a buffer freed twice or never allocated";
      ::operator delete(p);
      ++frees;
    };
    b.make_event = [this]() -> void* {
      events.push_back(std::make_unique<Event>());
      return events.back().get();
    };
    b.destroy_event = [](void*) {};
    b.record = [this](void* e) { static_cast<Event*>(e)->after = queued; };
    b.finished = [this](void* e) { return ran >= static_cast<Event*>(e)->after; };
    b.wait = [this](void* e) {
      ++waits;
      while (ran < static_cast<Event*>(e)->after) {
        queue.front()();
        queue.pop_front();
        ++ran;
      }
    };
    b.transfer = [this](void* dst, const void* staged, size_t n) {
      queue.push_back([=] { std::memcpy(dst, staged, n); });
      ++queued;
    };
    return b;
  }
};

constexpr size_t kKiB = 1024, kMiB = 1024 * 1024;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + 31 * i + (i >> 8));
  return v;
}

TEST(StagingRing, SizesAreRoundedToFewClasses) {
  EXPECT_EQ(StagingRing::rounded(1), 64 * kKiB);
  EXPECT_EQ(StagingRing::rounded(64 * kKiB), 64 * kKiB);
  EXPECT_EQ(StagingRing::rounded(64 * kKiB + 1), 128 * kKiB);
  EXPECT_EQ(StagingRing::rounded(kMiB), kMiB);
  EXPECT_EQ(StagingRing::rounded(kMiB + 1), 2 * kMiB);
  EXPECT_EQ(StagingRing::rounded(77 * kMiB + 5), 78 * kMiB);
}

// The host's buffer may change as soon as upload() returns: what arrives is what it held
// then, for uploads still in flight together.
TEST(StagingRing, UploadsCarryTheBytesOfTheMomentTheyWereMade) {
  FakeDevice dev;
  StagingRing ring(dev.backing(), 64 * kMiB);
  std::vector<uint8_t> host = pattern(300 * kKiB, 1);
  std::vector<uint8_t> a(host.size()), b(host.size());
  const std::vector<uint8_t> first = host;
  ASSERT_TRUE(ring.upload(a.data(), host.data(), host.size()));
  host = pattern(host.size(), 2);  // reused at once
  ASSERT_TRUE(ring.upload(b.data(), host.data(), host.size()));
  host.assign(host.size(), 0);
  EXPECT_EQ(dev.queue.size(), 2u) << "the uploads did not leave their transfers queued";
  dev.complete();
  EXPECT_EQ(a, first);
  EXPECT_EQ(b, pattern(b.size(), 2));
  const StagingStats s = ring.stats();
  EXPECT_EQ(s.uploads, 2u);
  EXPECT_EQ(s.bytes, 2 * 300 * kKiB);
  EXPECT_EQ(s.allocations, 2u) << "the second upload had to take a buffer of its own";
  EXPECT_EQ(s.waits, 0u);
}

// A finished buffer is reused (the smallest that holds the request); no new pinned memory
// once the uploads' sizes have been seen.
TEST(StagingRing, IdleBuffersAreReusedSmallestFirst) {
  FakeDevice dev;
  StagingRing ring(dev.backing(), 64 * kMiB);
  std::vector<uint8_t> big = pattern(3 * kMiB, 3), small = pattern(10 * kKiB, 4);
  std::vector<uint8_t> dst_big(big.size()), dst_small(small.size());
  ASSERT_TRUE(ring.upload(dst_big.data(), big.data(), big.size()));
  ASSERT_TRUE(ring.upload(dst_small.data(), small.data(), small.size()));
  dev.complete();
  EXPECT_EQ(ring.stats().allocations, 2u);
  for (int round = 0; round < 5; ++round) {
    small = pattern(small.size(), static_cast<uint8_t>(10 + round));
    ASSERT_TRUE(ring.upload(dst_small.data(), small.data(), small.size()));
    big = pattern(big.size(), static_cast<uint8_t>(20 + round));
    ASSERT_TRUE(ring.upload(dst_big.data(), big.data(), big.size()));
    dev.complete();
    EXPECT_EQ(dst_small, small);
    EXPECT_EQ(dst_big, big);
  }
  const StagingStats s = ring.stats();
  EXPECT_EQ(s.allocations, 2u) << "a small upload took the big buffer, or idle ones were not reused";
  EXPECT_EQ(s.buffers, 2u);
  EXPECT_EQ(s.pinned_bytes, 4 * kMiB + 64 * kKiB);
  EXPECT_EQ(s.waits, 0u);
}

// At the capacity, an upload waits for the oldest busy buffer that holds it, and its bytes
// still arrive intact, as do the earlier upload's.
TEST(StagingRing, AtCapacityTheOldestBusyBufferIsWaitedFor) {
  FakeDevice dev;
  StagingRing ring(dev.backing(), 8 * kMiB);  // two buffers of 4 MiB
  const size_t n = 4 * kMiB - 100;
  std::vector<std::vector<uint8_t>> dst(3, std::vector<uint8_t>(n));
  std::vector<std::vector<uint8_t>> sent;
  for (int i = 0; i < 3; ++i) {
    sent.push_back(pattern(n, static_cast<uint8_t>(40 + i)));
    ASSERT_TRUE(ring.upload(dst[i].data(), sent.back().data(), n));
  }
  // The third upload waited for the first transfer; the second and third are queued.
  EXPECT_EQ(dev.waits, 1u);
  EXPECT_EQ(dst[0], sent[0]);
  EXPECT_EQ(dev.queue.size(), 2u);
  dev.complete();
  EXPECT_EQ(dst[1], sent[1]);
  EXPECT_EQ(dst[2], sent[2]);
  const StagingStats s = ring.stats();
  EXPECT_EQ(s.allocations, 2u);
  EXPECT_EQ(s.waits, 1u);
  EXPECT_LE(s.pinned_bytes, ring.capacity());
}

// When every buffer is too small and the capacity is reached, the ring frees buffers
// (waiting for busy ones) to make room, and never frees one whose transfer is pending.
TEST(StagingRing, TooSmallBuffersAreFreedForALargerOne) {
  FakeDevice dev;
  StagingRing ring(dev.backing(), 8 * kMiB);
  std::vector<uint8_t> src = pattern(2 * kMiB, 5);
  std::vector<std::vector<uint8_t>> dst(3, std::vector<uint8_t>(src.size()));
  for (auto& d : dst) ASSERT_TRUE(ring.upload(d.data(), src.data(), src.size()));
  EXPECT_EQ(ring.stats().pinned_bytes, 6 * kMiB);
  std::vector<uint8_t> large = pattern(4 * kMiB, 6), dst_large(large.size());
  ASSERT_TRUE(ring.upload(dst_large.data(), large.data(), large.size()));
  dev.complete();
  for (auto& d : dst) EXPECT_EQ(d, src) << "a buffer was freed or reused before its transfer ran";
  EXPECT_EQ(dst_large, large);
  const StagingStats s = ring.stats();
  EXPECT_LE(s.pinned_bytes, ring.capacity());
  EXPECT_EQ(s.allocations, 4u);
  EXPECT_GE(dev.frees, 1u);
}

TEST(StagingRing, RefusesWhatItCannotTakeAndDoesNothing) {
  FakeDevice dev;
  StagingRing ring(dev.backing(), 8 * kMiB);
  std::vector<uint8_t> src = pattern(4 * kMiB + 1, 7), dst(src.size(), 0);
  EXPECT_FALSE(ring.upload(dst.data(), src.data(), src.size())) << "over half the capacity";
  EXPECT_FALSE(ring.upload(dst.data(), src.data(), 0));
  dev.refuse_allocation = true;  // no pinned memory to be had
  EXPECT_FALSE(ring.upload(dst.data(), src.data(), 1000));
  EXPECT_TRUE(dev.queue.empty());
  EXPECT_EQ(dst, std::vector<uint8_t>(src.size(), 0));
  const StagingStats s = ring.stats();
  EXPECT_EQ(s.refused, 3u);
  EXPECT_EQ(s.uploads, 0u);
  EXPECT_EQ(s.buffers, 0u);
}

TEST(StagingRing, DestructionWaitsForPendingTransfersAndFreesEverything) {
  FakeDevice dev;
  std::vector<uint8_t> src = pattern(100 * kKiB, 8), dst(src.size());
  {
    StagingRing ring(dev.backing(), 8 * kMiB);
    ASSERT_TRUE(ring.upload(dst.data(), src.data(), src.size()));
  }
  EXPECT_EQ(dst, src);
  EXPECT_TRUE(dev.live_buffers.empty());
}

// ---- through copy_bytes on a CUDA device (a GPU, or the host emulator) ----

std::vector<float> values(int64_t n, float seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = seed + 0.25f * static_cast<float>(i % 1001);
  return v;
}

// Uploads of many sizes, the host's buffer rewritten right after each, all read back
// after the last: each carries its own bytes, and they went through the ring.
TEST(CudaStaging, UploadsReturnAtOnceAndCarryTheirOwnBytes) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device gpu = Device::cuda(0);
  const StagingStats before = cuda_staging_stats(0);
  std::vector<Tensor> on_device;
  std::vector<std::vector<float>> sent;
  for (int64_t n : {1, 7, 4096, 16385, 300000, 1 << 20}) {
    std::vector<float> host = values(n, static_cast<float>(n % 97));
    sent.push_back(host);
    Tensor t = Tensor::empty({n}, DType::F32, gpu);
    copy_bytes(t.raw_data(), gpu, host.data(), Device::cpu(), host.size() * sizeof(float));
    std::fill(host.begin(), host.end(), -1.f);  // reused at once
    on_device.push_back(t);
  }
  for (size_t i = 0; i < sent.size(); ++i)
    EXPECT_EQ(on_device[i].to(Device::cpu()).to_vector<float>(), sent[i]) << "upload " << i;
  const StagingStats after = cuda_staging_stats(0);
  EXPECT_EQ(after.uploads - before.uploads, sent.size());
  EXPECT_LE(after.pinned_bytes, size_t{1024} << 20);
}

// Tensor::to follows the same path; the kernels after an upload read the new values,
// uploads into the same tensor in a row each land, and an upload while a graph is being
// recorded still fails that capture (it is not recorded reading a staging buffer).
TEST(CudaStaging, KernelsAfterAnUploadReadItAndCapturesStillRefuseUploads) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device gpu = Device::cuda(0);
  Tensor x = Tensor::zeros({1000}, DType::F32, gpu);
  std::vector<float> sum(1000, 0.f);
  for (int round = 0; round < 4; ++round) {
    const std::vector<float> v = values(1000, static_cast<float>(round));
    x.copy_(Tensor::from_vector<float>(v, {1000}));
    x = add(x, Tensor::from_vector<float>(v, {1000}).to(gpu));
    for (size_t i = 0; i < v.size(); ++i) sum[i] = 2 * v[i];
    EXPECT_EQ(x.to(Device::cpu()).to_vector<float>(), sum);
  }
  DeviceGraph::set_enabled(true);
  DeviceGraph graph;
  const std::vector<float> host = values(16, 3.f);
  Tensor dst = Tensor::zeros({16}, DType::F32, gpu);
  const uint64_t uploads = cuda_staging_stats(0).uploads;
  EXPECT_FALSE(graph.capture(gpu, [&] {
    copy_bytes(dst.raw_data(), gpu, host.data(), Device::cpu(), host.size() * sizeof(float));
  }));
  EXPECT_EQ(cuda_staging_stats(0).uploads, uploads);
}

// Several device tensors read back together (one wait): the same values as one by one,
// whatever their dtypes, layouts and sizes (an empty one, a strided view, host tensors
// mixed in); while a graph is recorded the read-back still fails the capture.
TEST(CudaStaging, ManyReadBacksEqualOneByOne) {
  CAPTION_REQUIRE_CUDA_OR_SKIP();
  const Device gpu = Device::cuda(0);
  Generator g(3);
  const Tensor a = rand_normal({37, 5}, 0, 1, g).to(gpu);
  const Tensor ids = Tensor::from_vector<int64_t>({4, -2, 9, 1 << 30}, {4}).to(gpu);
  const Tensor view = a.narrow(1, 1, 3);  // not contiguous
  const Tensor none = Tensor::empty({0}, DType::F32, gpu);
  const Tensor host = Tensor::from_vector<double>({1.5, -2.5}, {2});
  const std::vector<Tensor> xs{a, ids, view, none, host, a.to(DType::F64)};
  const std::vector<Tensor> back = Tensor::to_host(xs);
  ASSERT_EQ(back.size(), xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    EXPECT_TRUE(back[i].device().is_cpu()) << i;
    EXPECT_EQ(back[i].shape(), xs[i].shape()) << i;
    EXPECT_EQ(back[i].dtype(), xs[i].dtype()) << i;
    EXPECT_EQ(back[i].to_vector<double>(), xs[i].to(Device::cpu()).to_vector<double>()) << i;
  }
  DeviceGraph::set_enabled(true);
  DeviceGraph graph;
  EXPECT_FALSE(graph.capture(gpu, [&] { Tensor::to_host({a, ids}); }));
  EXPECT_EQ(Tensor::to_host({a, ids})[1].to_vector<int64_t>(), ids.to_vector<int64_t>());
}

}  // namespace
}  // namespace caption
