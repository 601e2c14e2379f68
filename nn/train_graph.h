// The decoder's training step as a device graph (engine/graph.h): zeroing the gradients,
// the loss of a padded batch (AttentionDecoder::padded_loss), the backward, gradient
// clipping and the optimiser's update, recorded once and replayed for every later batch
// of the same shape. A step of teacher-forced training is a few hundred small kernels;
// replaying them costs one launch.
//
// What makes one recording serve every batch:
// - fixed shapes: B rows and T steps, T the batch's own steps rounded up to a multiple
//   of `step_bucket`, finished rows masked rather than dropped (PaddedBatch); a batch
//   copies its words, targets and masks into the graph's input tensors, and its features
//   into the graph's feature tensor, before the replay;
// - nothing decided on the host inside the step: the loss is a sum divided by a count
//   that the batch brings as a tensor, clipping scales by a factor computed on the device
//   (by exactly 1 below the threshold), the optimiser reads its learning rates and bias
//   corrections from a device block that the host rewrites before each replay
//   (Optimizer::stage_device_step), and dropout reads the start of its random stream from
//   a device counter (Generator::attach_device_counter) that the host sets to the
//   generator's offset, which then advances by what one step draws.
// So a replay computes exactly what the same step run eagerly through this class
// computes (tests/nn/train_graph_test.cpp checks every parameter bit for bit).
//
// For each shape the first step runs eagerly (it warms up the libraries and sets each
// parameter's step count past 1, which SGD's momentum start depends on), the second
// records and replays, later ones replay. A recording is dropped and made again when the
// optimiser's runs change (a part frozen or unfrozen); at most `max_graphs` shapes are
// kept, other shapes step eagerly. Where graphs are off (the CPU, CAPTION_CUDA_GRAPHS=0)
// every step is eager. Features are the decoder's input: a frozen encoder runs before
// (its features may come from a cache).
//
// A fine-tuned encoder (features that require gradients): the encoder's passes stay eager
// (training-mode batch norm, cuDNN), so the recording holds the decoder's part only:
// zeroing every gradient, the loss, and the backward down to a gradient for the features
// (the recording's feature tensor is a leaf that requires it). After the replay, the
// features' own graph is run backward from that gradient (through the encoder), then
// clipping and the optimiser run eagerly: the same arithmetic in the same order as the
// eager step, whose single backward reaches the encoder after every use of the features
// in the decoder has been summed. A part frozen or unfrozen since the recording (the
// optimiser's runs change) records again.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <tuple>

#include "engine/graph.h"
#include "nn/caption_model.h"
#include "nn/optim.h"

namespace caption::nn {

struct TrainStepOptions {
  double alpha_c = 1.0;    // the attention regulariser's weight (MODEL_SPEC section 5)
  double grad_clip = 0.0;  // clip the global gradient norm to this; 0: no clipping
  int64_t step_bucket = 4; // steps padded up to a multiple of this (fewer recordings)
  int max_graphs = 8;      // shapes recorded at most
};

struct TrainStepStats {
  int64_t eager_steps = 0, captures = 0, replays = 0, failed_captures = 0;
};

// The step's results, on the device; valid until the next step.
struct TrainStepResult {
  LossParts loss;
  Tensor grad_norm;  // float64 [] before clipping; undefined without clipping
};

class TrainStep {
 public:
  // The decoder's parameters must be in the optimiser's store; all three must outlive
  // this object. `gen` is the training generator (dropout).
  TrainStep(const AttentionDecoder& decoder, Optimizer& optimizer, Generator& gen,
            TrainStepOptions options);
  ~TrainStep();
  TrainStep(const TrainStep&) = delete;
  TrainStep& operator=(const TrainStep&) = delete;

  // One step on features [B, P, D] (any device; moved to the decoder's) and captions
  // sorted by length, full teacher forcing. Features that require gradients (a fine-tuned
  // encoder's output) also train the encoder: its parameters must be in the optimiser's
  // store too.
  TrainStepResult step(const Tensor& features, const CaptionBatch& batch);

  const TrainStepStats& stats() const { return stats_; }
  const TrainStepOptions& options() const { return options_; }
  // The steps a batch of captions with `steps` steps is padded to.
  int64_t padded_steps(int64_t steps) const;

 private:
  struct Graph;
  // B, T, P, D, autocast, fine-tuning (features requiring gradients)
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, bool, bool>;
  TrainStepResult run(const Tensor& features, const PaddedBatch& batch, bool device_optimizer);
  // Zeroing, the padded loss and its backward: the decoder's part of a step.
  TrainStepResult backward(const Tensor& features, const PaddedBatch& batch);
  // Clipping (into r.grad_norm) and the optimiser's update.
  void update(TrainStepResult& r, bool device_optimizer);
  // step() for features that require gradients (see above).
  TrainStepResult step_fine_tune(const Tensor& features, const PaddedBatch& host_batch,
                                 const Key& key);
  // The recording for `key`, made when absent and fewer than max_graphs are kept; null
  // when there is no room.
  Graph* graph_for(const Key& key);
  // Records body() into g, with input tensors made for `features` (a leaf requiring grad
  // when features_grad) and the batch, and dropout's counter attached; false (logged,
  // g marked failed) when the recording failed.
  bool record(Graph& g, const Tensor& features, const PaddedBatch& host_batch, bool features_grad,
              const char* what, const std::function<TrainStepResult()>& body);
  // Copies this batch's inputs and the generator's offset in, then replays g.
  void replay(Graph& g, const Tensor& features, const PaddedBatch& host_batch);

  const AttentionDecoder& decoder_;
  Optimizer& optimizer_;
  Generator& gen_;
  TrainStepOptions options_;
  Device device_;
  bool graphs_;
  std::map<Key, std::unique_ptr<Graph>> graphs_by_shape_;
  TrainStepStats stats_;
};

}  // namespace caption::nn
