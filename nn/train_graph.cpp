// The decoder's training step as a device graph: see train_graph.h.
#include "nn/train_graph.h"

#include <functional>

#include "engine/autocast.h"
#include "engine/error.h"

namespace caption::nn {

// One shape's recording and the tensors it reads and writes.
struct TrainStep::Graph {
  DeviceGraph graph;
  bool failed = false;
  int64_t eager_runs = 0;
  Tensor features;              // input: [B, P, D]
  Tensor features_grad;         // output when fine-tuning: the loss's gradient for them
  PaddedBatch batch;            // input: words, targets, active, inv_words
  Tensor counter;               // input: dropout's stream start (int64 [1])
  uint64_t draws = 0;           // generator counters one step reserves
  std::vector<Optimizer::Run> runs;  // the optimiser's runs when recorded
  const void* scalars = nullptr;     // and where their scalars were
  TrainStepResult out;          // outputs
};

TrainStep::TrainStep(const AttentionDecoder& decoder, Optimizer& optimizer, Generator& gen,
                     TrainStepOptions options)
    : decoder_(decoder), optimizer_(optimizer), gen_(gen), options_(options),
      device_(decoder.embedding.weight.device()), graphs_(DeviceGraph::enabled(device_)) {
  CAPTION_CHECK(options_.alpha_c >= 0 && options_.grad_clip >= 0 && options_.step_bucket >= 1 &&
                    options_.max_graphs >= 0,
                "training step: invalid options (alpha_c ", options_.alpha_c, ", grad_clip ",
                options_.grad_clip, ", step_bucket ", options_.step_bucket, ", max_graphs ",
                options_.max_graphs, ")");
}

TrainStep::~TrainStep() = default;

int64_t TrainStep::padded_steps(int64_t steps) const {
  return (steps + options_.step_bucket - 1) / options_.step_bucket * options_.step_bucket;
}

TrainStepResult TrainStep::backward(const Tensor& features, const PaddedBatch& batch) {
  optimizer_.zero_grad();
  TrainStepResult r;
  r.loss = decoder_.padded_loss(features, batch, options_.alpha_c, gen_);
  r.loss.total.backward();
  return r;
}

void TrainStep::update(TrainStepResult& r, bool device_optimizer) {
  if (options_.grad_clip > 0) r.grad_norm = clip_grad_norm_on_device(optimizer_.store(), options_.grad_clip).narrow(0, 0, 1).reshape({});
  if (device_optimizer)
    optimizer_.device_step();
  else
    optimizer_.step();
}

TrainStepResult TrainStep::run(const Tensor& features, const PaddedBatch& batch, bool device_optimizer) {
  TrainStepResult r = backward(features, batch);
  update(r, device_optimizer);
  return r;
}

TrainStep::Graph* TrainStep::graph_for(const Key& key) {
  auto it = graphs_by_shape_.find(key);
  if (it == graphs_by_shape_.end()) {
    if (static_cast<int>(graphs_by_shape_.size()) >= options_.max_graphs) return nullptr;
    it = graphs_by_shape_.emplace(key, std::make_unique<Graph>()).first;
  }
  return it->second.get();
}

namespace {
PaddedBatch to_device(const PaddedBatch& b, Device d) {
  return {b.words.to(d), b.targets.to(d), b.active.to(d), b.inv_words.to(d)};
}
void copy_batch(PaddedBatch& dst, const PaddedBatch& src) {
  dst.words.copy_(src.words);
  dst.targets.copy_(src.targets);
  dst.active.copy_(src.active);
  dst.inv_words.copy_(src.inv_words);
}
bool same_runs(const std::vector<Optimizer::Run>& a, const std::vector<Optimizer::Run>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!a[i].same_parameters(b[i])) return false;
  return true;
}
}  // namespace

bool TrainStep::record(Graph& g, const Tensor& features, const PaddedBatch& host_batch,
                       bool features_grad, const char* what,
                       const std::function<TrainStepResult()>& body) {
  g.features = Tensor::empty(features.shape(), features.dtype(), device_);
  if (features_grad) g.features.set_requires_grad(true);
  g.batch = to_device(host_batch, device_);
  g.counter = Tensor::zeros({1}, DType::I64, device_);
  const uint64_t origin = gen_.offset();
  gen_.attach_device_counter(g.counter);
  const bool ok = g.graph.capture(device_, [&] { g.out = body(); });
  gen_.detach_device_counter();
  g.draws = gen_.offset() - origin;
  gen_.set_state(gen_.seed(), origin);  // the replay draws them
  if (!ok) {
    g.failed = true;
    ++stats_.failed_captures;
    g.out = {};
    log_warning(str("training on ", device_.to_string(), ": the ", what, " for ", features.size(0),
                    " captions of ", g.batch.words.size(0), " steps could not be recorded as a graph (",
                    g.graph.failure(), "); stepping without graphs"));
  }
  return ok;
}

void TrainStep::replay(Graph& g, const Tensor& features, const PaddedBatch& host_batch) {
  {
    NoGradGuard no_grad;  // the recording's feature tensor may be a leaf that requires grad
    Tensor input = g.features.detach();
    input.copy_(features.detach());
  }
  copy_batch(g.batch, host_batch);
  g.counter.fill_(static_cast<double>(gen_.offset()));
  gen_.set_state(gen_.seed(), gen_.offset() + g.draws);
  g.graph.replay();
  ++stats_.replays;
}

TrainStepResult TrainStep::step(const Tensor& features_in, const CaptionBatch& batch) {
  CAPTION_CHECK(features_in.dim() == 3 && features_in.size(0) == static_cast<int64_t>(batch.lengths.size()),
                "training step: features ", features_in.describe(), " for ", batch.lengths.size(),
                " captions");
  CAPTION_CHECK(!batch.lengths.empty(), "training step: an empty batch");
  const bool fine_tune = any_requires_grad({features_in});
  const Tensor features = features_in.to(device_);
  const int64_t B = features.size(0);
  const int64_t T = padded_steps(batch.lengths[0] - 1);
  const PaddedBatch host_batch = PaddedBatch::of(batch, T, Device::cpu());
  // Recorded steps check no index on the device: every token is checked here (the
  // words and the targets hold all of them).
  const int64_t V = decoder_.embedding.weight.size(0);
  for (const Tensor* t : {&host_batch.words, &host_batch.targets}) {
    const std::vector<int64_t> ids = t->to_vector<int64_t>();
    for (size_t i = 0; i < ids.size(); ++i)
      CAPTION_CHECK(ids[i] >= 0 && ids[i] < V, "training step: token ", ids[i], " of caption ",
                    static_cast<int64_t>(i) % B, " is outside the vocabulary of ", V, " words");
  }
  auto eager = [&] {
    ++stats_.eager_steps;
    return run(features, to_device(host_batch, device_), false);
  };
  if (!graphs_) return eager();

  const Key key{B, T, features.size(1), features.size(2), autocast_enabled(), fine_tune};
  if (fine_tune) return step_fine_tune(features, host_batch, key);
  if (!graph_for(key)) return eager();
  const auto it = graphs_by_shape_.find(key);
  if (it->second->failed) return eager();

  // A recording stays valid while the optimiser updates the same runs from the same block.
  optimizer_.stage_device_step(device_);
  if (it->second->graph.captured() && (!same_runs(it->second->runs, optimizer_.staged_runs()) ||
                                       it->second->scalars != optimizer_.device_scalars().raw_data())) {
    it->second = std::make_unique<Graph>();
    it->second->eager_runs = 1;  // recorded again at once
  }
  Graph& g = *it->second;
  if (!g.graph.captured()) {
    bool ready = g.eager_runs++ > 0;
    for (const Optimizer::Run& r : optimizer_.staged_runs()) ready = ready && r.step >= 2;
    if (!ready) {
      // Warm-up: the staged update is this eager step's own (bit for bit step()).
      ++stats_.eager_steps;
      return run(features, to_device(host_batch, device_), true);
    }
    if (!record(g, features, host_batch, false, "step", [&] { return run(g.features, g.batch, true); })) {
      ++stats_.eager_steps;
      return run(features, to_device(host_batch, device_), true);
    }
    g.runs = optimizer_.staged_runs();
    g.scalars = optimizer_.device_scalars().raw_data();
    ++stats_.captures;
  }
  replay(g, features, host_batch);
  return g.out;
}

TrainStepResult TrainStep::step_fine_tune(const Tensor& features, const PaddedBatch& host_batch,
                                          const Key& key) {
  auto eager = [&] {
    ++stats_.eager_steps;
    return run(features, to_device(host_batch, device_), false);
  };
  Graph* slot = graph_for(key);
  if (!slot || slot->failed) return eager();
  // The recorded backward computes the gradients of what trained when it was recorded: a
  // part frozen or unfrozen since (the optimiser's runs change) records again at once.
  if (slot->graph.captured() && !same_runs(slot->runs, optimizer_.runs())) {
    auto& owner = graphs_by_shape_.at(key);
    owner = std::make_unique<Graph>();
    owner->eager_runs = 1;
    slot = owner.get();
  }
  Graph& g = *slot;
  if (!g.graph.captured()) {
    if (g.eager_runs++ == 0) return eager();  // plans the libraries' work outside the recording
    // The features' gradient is written (not added) by the recorded backward: it has none
    // before the recording.
    if (!record(g, features, host_batch, true, "decoder's part of the step",
                [&] { return backward(g.features, g.batch); }))
      return eager();
    g.features_grad = g.features.grad();
    g.runs = optimizer_.runs();
    ++stats_.captures;
  }
  // The eager step's zero_grad() binds every parameter's .grad to the store's block (a
  // part frozen and unfrozen drops it); the recording only zeroes the block.
  optimizer_.store().sync_grads();
  replay(g, features, host_batch);
  // Through the encoder from the recorded gradient, then the update, eagerly.
  features.backward(g.features_grad);
  TrainStepResult r = g.out;
  update(r, false);
  return r;
}

}  // namespace caption::nn
