// The decoder's step as device graphs (engine/graph.h), for greedy decoding and beam
// search on a GPU. A decoding step is a dozen small kernels; launching them one by one
// costs more than they take at small batch. A StepRunner captures the step once per
// number of rows and then replays it, copying the new tokens and state into the graph's
// input tensors first.
//
// For each row count K: the first step runs eagerly (it warms up the libraries and
// checks that the step works), the second captures a graph and replays it, later ones
// replay. If a capture fails the runner logs why once and steps eagerly from then on:
// results never depend on whether graphs were used (tests/nn/cuda_model_test.cpp checks
// that they are identical). Where graphs are off (the CPU, CAPTION_CUDA_GRAPHS=0) every
// step is the decoder's own step().
//
// Under autocast on a GPU the runner also keeps bfloat16 copies of the decoder's weights
// (kernels/cpu/blas.h's Bf16Shadow), rewritten in place at the start of each decoding
// call (StepRunnerLease) and read by the step's products instead of converting every
// weight at every step; graphs captured with them read the copies as they are rewritten.
// A runner serves only the autocast state it was made in.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/graph.h"
#include "kernels/cpu/blas.h"
#include "nn/caption_model.h"

namespace caption::nn {

struct StepRunnerStats {
  int64_t eager_steps = 0, captures = 0, replays = 0, failed_captures = 0;
};

class StepRunner {
 public:
  StepRunner(const AttentionDecoder& decoder, Device device);
  // Whether this runner's graphs were captured from `decoder`'s current weights on
  // `device` (the same parameter tensors at the same addresses), in the current
  // autocast state.
  bool serves(const AttentionDecoder& decoder, Device device) const;
  // Rewrites the bfloat16 copies of the weights (autocast on a GPU; otherwise nothing)
  // from their current values.
  void refresh_shadows();
  // Whether the steps read bfloat16 copies of the weights.
  bool shadowed() const { return !shadows_.empty(); }
  ~StepRunner();
  StepRunner(const StepRunner&) = delete;
  StepRunner& operator=(const StepRunner&) = delete;

  // Whether steps on `device` go through graphs (engine/graph.h: DeviceGraph::enabled).
  bool graphs() const { return graphs_; }
  // The decoder's step from host token ids (each checked to be in [0, vocab)). The
  // returned tensors stay valid until the next call; `state` may afterwards refer to the
  // graph's tensors (read-only for the caller: pass it back or gather rows from it).
  StepOutput step(const std::vector<int64_t>& tokens, DecoderState& state);
  // The same from token ids already on the runner's device (int64 [K], e.g. the previous
  // step's arg-max), which the caller vouches are in [0, vocab): no copy from the host,
  // and no read-back to check them.
  StepOutput step(const Tensor& device_tokens, DecoderState& state);
  const StepRunnerStats& stats() const { return stats_; }

 private:
  struct Graph;
  StepOutput run(const Tensor& tokens, DecoderState& state);  // host or device tokens
  const AttentionDecoder& decoder_;
  Device device_;
  bool graphs_;
  bool bf16_;                         // autocast when made
  std::vector<const void*> weights_;  // the parameters' addresses at construction
  std::vector<Tensor> shadow_storage_;  // device memory of the bfloat16 copies
  std::vector<kernels::cpu::Bf16Shadow> shadows_;
  std::map<int64_t, std::unique_ptr<Graph>> by_rows_;
  StepRunnerStats stats_;
};

// A decoder's runner, kept between decoding calls (AttentionDecoder::step_cache). A call
// leases it for its whole decoding loop (the outputs of a step live until the next) and
// replaces it when it was made for other weights, another device or autocast state.
// A call from another thread that finds it leased waits: a runner of its own would put
// its kernels on the device's one stream while the leaseholder may be recording a graph
// there (they would land in that graph, and not run). Only a call from the thread that
// holds the lease (a decoding call nested in another) gets a runner of its own.
struct StepRunnerCache {
  std::mutex mutex;
  std::atomic<std::thread::id> holder{};  // the thread holding the lease, if any
  std::unique_ptr<StepRunner> runner;
};

class StepRunnerLease {
 public:
  StepRunnerLease(const AttentionDecoder& decoder, Device device);
  ~StepRunnerLease();
  StepRunnerLease(const StepRunnerLease&) = delete;
  StepRunnerLease& operator=(const StepRunnerLease&) = delete;
  StepRunner& runner() { return *runner_; }
  // Whether this lease holds the decoder's cached runner (false: a runner of its own).
  bool cached() const { return lock_.owns_lock(); }

 private:
  std::shared_ptr<StepRunnerCache> cache_;
  std::unique_lock<std::mutex> lock_;
  std::unique_ptr<StepRunner> own_;
  StepRunner* runner_ = nullptr;
};

}  // namespace caption::nn
