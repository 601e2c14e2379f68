// The GPU benchmark of the engine: the workloads of the GPU speed issue, each checked
// against a CPU run (or an invariant) before it is timed, printed as a table and written
// as JSON rows that bench/gpu/compare.py sets against bench/gpu/torch_bench.py (PyTorch
// on the same card, same shapes, same weights through --save-checkpoint).
//
//   bench_gpu [--json FILE] [--save-checkpoint FILE] [--only NAME[,NAME]] [--repeats N]
//             [--quick] [--peak-gbs GBS] [--time-budget S] [--vocab V] [--list]
//             [--device cpu] [--amp]
//
// --amp runs every row under AutocastGuard (bfloat16 products and convolutions, float32
// master weights), the counterpart of PyTorch's eager bf16 variant. --device cpu runs the same rows on the CPU (the "device" model is then a second CPU
// copy): a dry run of this program's logic on a machine without a GPU, slow, and not a
// benchmark of anything.
//
// Model: configs/flickr8k_resnet50.toml built in code (ResNet-50 at 224x224, S = 14,
// D = 2048, E = H = A = 512, tanh attention, dropout 0.5) with V = 10000 words
// (--vocab), seeded random weights. The encoder's batch norm is calibrated on two batches
// of random images so that its features stay in a sane range, and the fc biases of the
// four special tokens are set to -50 so that greedy and beam decoding never stop early:
// every decode runs exactly 20 steps on both sides, whatever the rounding. The engine
// encodes with CaptionModel::encode_distinct, as its pipeline does: the 7x7 ResNet map
// repeated 2x2 onto the 14x14 grid carries 49 distinct cells, so every row attends over
// P = 49 (nn::AttentionGrid, the same function as P = 196); the JSON's "positions" says so,
// and check.sh gives PyTorch the same saving (torch_bench.py --positions 49).
//
// Timing: no CUDA events reach this program (the engine's public API has none), so a
// sample is synchronize(device); `calls` consecutive calls; synchronize(device) around a
// steady_clock, divided by `calls`. Warm-up samples first (allocator, cuDNN algorithm
// search under CAPTION_CUDNN_BENCHMARK=1), then as many samples as fit a per-row target
// time (bounded by --repeats / --quick and the --time-budget), reported as median, p10
// and p90 per call. Inputs are never all zeros and rotate over several sets whose total
// exceeds the H100's 50 MB L2 where the working set is small enough to matter.
//
// Exit status: 0 when every selected row ran and passed its check, 1 otherwise, 2 for a
// usage error, 3 when the build has no CUDA backend or no GPU is visible (the checkpoint
// is still written when asked, so the PyTorch side can run).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/graph.h"
#include "nn/caption_model.h"
#include "nn/checkpoint.h"
#include "nn/folded_resnet.h"
#include "nn/optim.h"
#include "nn/parameters.h"
#include "nn/train_graph.h"

using namespace caption;
using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

// ---- options and timing ------------------------------------------------------------------

const std::vector<std::string> kRows = {
    "decode_step_b64",           "decode_step_b64_graph",        "decoder_train_t20_b64",
    "decoder_train_step_t20_b64_graph",                          "cross_entropy_1280x10000",
    "adamw_21M",                 "greedy_1img",                  "beam3_1img",
    "resnet50_fwd_b256",         "train_step_frozen_r50_b128",   "train_step_finetune2_r50_b128"};

struct Options {
  std::string json_path, checkpoint_path;
  std::vector<std::string> only;
  int repeats = 0;         // > 0: exactly this many samples per row
  bool quick = false;
  double peak_gbs = 3350;  // H100 SXM HBM3
  double time_budget_s = 0;  // 0: none
  int vocab = 10000;
  bool on_cpu = false;  // --device cpu: the logic dry run
  bool amp = false;     // --amp: every row under AutocastGuard (bfloat16 products)
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Timing {
  double median_ms = 0, p10_ms = 0, p90_ms = 0;  // per call
  int samples = 0, calls = 1;
};

class Timer {
 public:
  Timer(Device device, const Options& o, Clock::time_point start) : device_(device), o_(o), start_(start) {}

  // Seconds left of --time-budget (a large number without one).
  double remaining_s() const {
    return o_.time_budget_s > 0 ? o_.time_budget_s - seconds_since(start_) : 1e9;
  }

  // call(i) for i = 0, 1, 2, ...: i selects the input set. Each sample is `calls`
  // consecutive calls between two synchronize() calls, so that queued work counts.
  Timing measure(int calls, const std::function<void(int)>& call) const {
    int next = 0;
    auto sample = [&] {
      synchronize(device_);
      const auto t0 = Clock::now();
      for (int c = 0; c < calls; ++c) call(next++);
      synchronize(device_);
      return seconds_since(t0) * 1e3 / calls;
    };
    const int warmup = o_.quick ? 1 : 3;
    double last_ms = 0;
    for (int w = 0; w < warmup; ++w) last_ms = sample();
    const double per_sample_s = std::max(last_ms * calls * 1e-3, 1e-6);
    const double target_s = o_.quick ? 0.3 : 1.5;
    const int lo = o_.quick ? 3 : 10, hi = o_.quick ? 20 : 200;
    int n = o_.repeats > 0 ? o_.repeats : std::clamp(static_cast<int>(target_s / per_sample_s), lo, hi);
    // Never run past the budget: keep what fits, at least 3 samples for a median.
    const double fit = (remaining_s() - 5) / per_sample_s;
    if (fit < n) n = std::max(3, static_cast<int>(fit));
    std::vector<double> t(n);
    for (double& x : t) x = sample();
    std::sort(t.begin(), t.end());
    auto pct = [&](double q) { return t[static_cast<size_t>(std::lround(q * (n - 1)))]; };
    return {pct(0.5), pct(0.1), pct(0.9), n, calls};
  }

 private:
  Device device_;
  const Options& o_;
  Clock::time_point start_;
};

// ---- one result row ----------------------------------------------------------------------

struct Row {
  std::string name;
  std::string shape;   // what was measured, in words
  std::string status = "ok";  // "ok", "error: ...", "skipped: ..."
  std::string check;   // what was checked and how far off it was
  bool check_ok = false;
  Timing timing;
  double throughput = 0;        // items per second, with unit
  std::string throughput_unit;  // "images/s", "steps/s", ...
  double bytes = 0;             // bandwidth rows: bytes the op must move per call
  double goal_ms = 0;           // 0: no time goal

  Json to_json(double peak_gbs) const {
    Json j;
    j["status"] = status;
    j["shape"] = shape;
    j["check"] = check;
    j["check_ok"] = check_ok;
    if (status == "ok") {
      j["ms_median"] = timing.median_ms;
      j["ms_p10"] = timing.p10_ms;
      j["ms_p90"] = timing.p90_ms;
      j["samples"] = timing.samples;
      j["calls_per_sample"] = timing.calls;
      if (!throughput_unit.empty()) {
        j["throughput"] = throughput;
        j["throughput_unit"] = throughput_unit;
      }
      if (bytes > 0) {
        const double gbs = bytes / (timing.median_ms * 1e-3) / 1e9;
        j["bytes"] = bytes;
        j["gbs"] = gbs;
        j["pct_peak"] = 100.0 * gbs / peak_gbs;
      }
    }
    if (goal_ms > 0) j["goal_ms"] = goal_ms;
    return j;
  }
};

// Tolerances: float32 throughout unless CAPTION_TF32=1 (cuBLAS then rounds products'
// inputs to 10 mantissa bits, and errors grow by about 1e3).
bool tf32_on() {
  const char* v = std::getenv("CAPTION_TF32");
  return v && std::string(v) == "1";
}

std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  CAPTION_ASSERT(x.size() == y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(static_cast<double>(x[i]) - y[i]);
    if (!(d <= m)) m = d;  // NaN propagates as the maximum
  }
  return m;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (float v : a.to_vector<float>()) m = std::max(m, static_cast<double>(std::fabs(v)));
  return m;
}

bool all_finite(const Tensor& a) {
  for (float v : a.to_vector<float>())
    if (!std::isfinite(v)) return false;
  return true;
}

double rel_diff(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-12); }

// Appends one comparison to a check description and returns whether it passed.
bool compare(std::string& check, const char* what, double err, double tol) {
  const bool ok = err <= tol;  // false for NaN
  check += std::string(check.empty() ? "" : ", ") + what + " " + fmt("%.2e", err) + " (tol " +
           fmt("%.0e", tol) + (ok ? ")" : " FAIL)");
  return ok;
}

// ---- the model and its inputs ------------------------------------------------------------

nn::ModelConfig bench_config(int vocab) {
  nn::ModelConfig c;  // the defaults are configs/flickr8k_resnet50.toml's model section
  c.encoder = "resnet50";
  c.encoder_size = 14;
  c.image_size = 224;
  c.vocab_size = vocab;
  c.embed_dim = c.decoder_dim = c.attention_dim = 512;
  c.attention_activation = nn::AttentionActivation::Tanh;
  c.dropout = 0.5;
  c.max_caption_len = c.max_decode_len = 50;
  c.fine_tune = nn::FineTune::parse("none");
  c.validate();
  return c;
}

std::vector<std::string> bench_vocab(int vocab) {
  std::vector<std::string> v{"<pad>", "<sos>", "<eos>", "<unk>"};
  for (int i = static_cast<int>(v.size()); i < vocab; ++i) {
    std::string w = "w";  // (not "w" + to_string: GCC 12 warns wrongly, -Wrestrict)
    v.push_back(w.append(std::to_string(i)));
  }
  return v;
}

constexpr uint64_t kModelSeed = 20261127;
constexpr int kWords = 20;  // decode steps: 19 words + <eos> in training, 20 words decoding

// The CPU model: seeded weights, calibrated batch norm, special tokens suppressed.
std::unique_ptr<nn::CaptionModel> make_cpu_model(const nn::ModelConfig& config) {
  Generator gen(kModelSeed);
  auto model = std::make_unique<nn::CaptionModel>(config, gen);
  Generator images(kModelSeed + 1);
  int left = 2;
  model->calibrate_batch_norm([&]() -> Tensor {
    if (left-- <= 0) return Tensor();
    return rand_normal({2, 3, config.image_size, config.image_size}, 0.0, 1.0, images);
  });
  model->decoder.fc.bias.narrow(0, 0, nn::kSpecialTokens).fill_(-50.0);
  model->eval();
  return model;
}

// The same model on `device`: identical construction, then every tensor copied over.
std::unique_ptr<nn::CaptionModel> copy_to(nn::CaptionModel& cpu, Device device) {
  Generator gen(kModelSeed);
  auto model = std::make_unique<nn::CaptionModel>(cpu.config(), gen);
  model->to(device);
  auto dst = model->named_state();
  auto src = cpu.named_state();
  CAPTION_ASSERT(dst.size() == src.size());
  for (size_t i = 0; i < dst.size(); ++i) dst[i].tensor->copy_(*src[i].tensor);
  model->eval();
  return model;
}

// Which encoder layers train, as CaptionModel::apply_fine_tune does for its own config.
void set_fine_tune(nn::CaptionModel& m, const nn::FineTune& f) {
  m.encoder.set_frozen(f.kind != nn::FineTune::Kind::All);
  if (f.kind == nn::FineTune::Kind::From)
    for (int layer = f.from_layer; layer <= 4; ++layer) m.encoder.stage(layer).set_frozen(false);
}

// A training row's setting, undone when the row ends, also by an exception: both models
// train with `fine_tune`, and every parameter and buffer (batch-norm statistics of
// fine-tuned layers move too) is copied first and restored at the end, so that later
// rows and the CPU-versus-GPU checks see the initial weights again.
class TrainingScope {
 public:
  TrainingScope(std::initializer_list<nn::CaptionModel*> models, const nn::FineTune& fine_tune) : models_(models) {
    NoGradGuard ng;
    for (nn::CaptionModel* m : models_) {
      std::vector<Tensor> saved;
      for (auto& r : m->named_state()) saved.push_back(r.tensor->detach().clone());
      saved_.push_back(std::move(saved));
      set_fine_tune(*m, fine_tune);
      m->train();
    }
  }
  ~TrainingScope() {
    try {
      for (size_t i = 0; i < models_.size(); ++i) {
        auto refs = models_[i]->named_state();
        for (size_t k = 0; k < refs.size(); ++k) refs[k].tensor->copy_(saved_[i][k]);
        set_fine_tune(*models_[i], nn::FineTune::parse("none"));
        models_[i]->eval();
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_gpu: restoring the weights after a training row failed: %s\n", e.what());
    }
  }
  TrainingScope(const TrainingScope&) = delete;
  TrainingScope& operator=(const TrainingScope&) = delete;

 private:
  std::vector<nn::CaptionModel*> models_;
  std::vector<std::vector<Tensor>> saved_;
};

// `sets` distinct non-zero variants of one random tensor, made on the device from one
// host draw (x * (1 + 0.1 k) + 0.01 k) so that large inputs cost one host draw only.
std::vector<Tensor> variants(const Shape& shape, double lo, double hi, int sets, Generator& gen, Device device) {
  NoGradGuard ng;
  const Tensor base = rand_uniform(shape, lo, hi, gen, DType::F32, device);
  std::vector<Tensor> out{base};
  for (int k = 1; k < sets; ++k) out.push_back(add(mul(base, 1.0 + 0.1 * k), 0.01 * k));
  return out;
}

Tensor random_ids(int64_t n, int64_t lo, int64_t hi, Generator& gen) {
  std::vector<int64_t> v(n);
  for (int64_t& x : v) x = lo + static_cast<int64_t>(gen.next_u32() % static_cast<uint32_t>(hi - lo));
  return Tensor::from_vector<int64_t>(v, {n});
}

// Captions of kWords + 1 tokens (<sos>, 19 words, <eos>), all the same length, on the
// host (as the data loader delivers them).
nn::CaptionBatch caption_batch(int64_t B, int64_t vocab, Generator& gen) {
  const int64_t L = kWords + 1;
  std::vector<int64_t> ids(B * L);
  for (int64_t b = 0; b < B; ++b) {
    ids[b * L] = nn::kSosId;
    for (int64_t t = 1; t < L - 1; ++t)
      ids[b * L + t] = nn::kSpecialTokens + static_cast<int64_t>(gen.next_u32() % (vocab - nn::kSpecialTokens));
    ids[b * L + L - 1] = nn::kEosId;
  }
  return {Tensor::from_vector<int64_t>(ids, {B, L}), std::vector<int64_t>(B, L)};
}

nn::CaptionBatch first_rows(const nn::CaptionBatch& b, int64_t rows) {
  return {b.captions.narrow(0, 0, rows).contiguous(), std::vector<int64_t>(b.lengths.begin(), b.lengths.begin() + rows)};
}

double grad_norm(const nn::ParameterStore& store) { return std::sqrt(sum_of_squares(store.grads()).item()); }

// Everything the rows share: both models, their parameter stores, the device.
// The positions encode_distinct gives: k*k for ResNet's k x k map (five stride-2 stages,
// each rounding up) when it divides encoder_size, else encoder_size^2.
int64_t attention_positions(const nn::ModelConfig& c) {
  int64_t k = c.image_size;
  for (int i = 0; i < 5; ++i) k = (k + 1) / 2;
  const int64_t S = c.encoder_size;
  return k < S && S % k == 0 ? k * k : S * S;
}

struct Bench {
  Options o;
  Device device = Device::cuda(0);
  nn::ModelConfig config;
  std::unique_ptr<nn::CaptionModel> cpu, gpu;
  std::unique_ptr<nn::ParameterStore> cpu_store, gpu_store;
  Generator gen{kModelSeed + 2};
  std::vector<Tensor> features64;  // [64, P, D] sets, shared by two rows
  std::unique_ptr<Timer> timer;

  const std::vector<Tensor>& features_b64() {
    // Encoder outputs are averages of ReLUs: non-negative, O(1). 3 x 103 MB.
    if (features64.empty())
      features64 = variants({64, attention_positions(config), config.encoder_channels()}, 0.0, 2.0, 3,
                            gen, device);
    return features64;
  }

  // Loss and gradient norm of one teacher-forced decoder pass (dropout seeded), for the
  // CPU-versus-GPU checks of the training rows. `images` or `features` (one undefined).
  static std::pair<double, double> loss_and_grad_norm(nn::CaptionModel& m, nn::ParameterStore& store,
                                                      const Tensor& images, const Tensor& features,
                                                      const nn::CaptionBatch& batch) {
    Generator g(99);
    store.zero_grad();
    const Tensor f = features.defined() ? features : m.encode_distinct(images);
    nn::LossParts loss = nn::caption_loss(m.decoder.forward(f, batch, 1.0, g), 1.0);
    loss.total.backward();
    return {loss.total.item(), grad_norm(store)};
  }
};

bool g_amp = false;  // --amp: the rows run under AutocastGuard

// A check's tolerance: float32; TF32 (CAPTION_TF32=1); under --amp, `bf16` where given
// (the row's twins drift apart through bfloat16 roundings), else the float32 one (each
// product multiplies the same bfloat16 values on both sides).
double tol(double fp32, double tf32, double bf16 = 0) {
  if (g_amp && bf16 > 0) return bf16;
  return tf32_on() ? tf32 : fp32;
}


// ---- the workloads -----------------------------------------------------------------------

void decode_step_b64(Bench& b, Row& r) {
  const int64_t B = 64;
  r.shape = "AttentionDecoder::step, K=64, P=" + std::to_string(attention_positions(b.config)) +
            ", D=2048, E=H=A=512, V=" + std::to_string(b.config.vocab_size);
  r.goal_ms = 0.030;
  r.throughput_unit = "steps/s";
  NoGradGuard ng;
  b.gpu->eval();
  b.cpu->eval();
  const auto& feats = b.features_b64();
  std::vector<nn::DecoderState> states;
  std::vector<Tensor> tokens;
  for (const Tensor& f : feats) {
    states.push_back(b.gpu->decoder.init_state(f));
    tokens.push_back(random_ids(B, nn::kSpecialTokens, b.config.vocab_size, b.gen).to(b.device));
  }
  // Check: rows 0..3 against the CPU model.
  {
    nn::DecoderState s = states[0];
    nn::StepOutput g = b.gpu->decoder.step(tokens[0], s);
    nn::DecoderState cs = b.cpu->decoder.init_state(feats[0].narrow(0, 0, 4).to(Device::cpu()));
    nn::StepOutput c = b.cpu->decoder.step(tokens[0].narrow(0, 0, 4).to(Device::cpu()), cs);
    bool ok = all_finite(g.log_probs) && all_finite(g.alpha);
    if (!ok) r.check = "non-finite output";
    ok &= compare(r.check, "log_probs vs CPU max|d|", max_abs_diff(g.log_probs.narrow(0, 0, 4), c.log_probs),
                  tol(1e-3, 3e-2));
    ok &= compare(r.check, "alpha vs CPU max|d|", max_abs_diff(g.alpha.narrow(0, 0, 4), c.alpha), tol(1e-5, 1e-3));
    r.check_ok = ok;
  }
  // 20 chained steps per sample, as in a decode without the host's read-back.
  r.timing = b.timer->measure(kWords, [&](int i) {
    nn::DecoderState s = states[i % states.size()];
    b.gpu->decoder.step(tokens[i % tokens.size()], s);
  });
  r.throughput = 1e3 / r.timing.median_ms;
}

// The same step replayed as a CUDA graph (engine/graph.h), as decoding runs it on a GPU
// (nn/step_graph.h): the step's kernels without the host's launch cost. Checked: the
// replay's outputs equal the eager step's, bit for bit.
void decode_step_b64_graph(Bench& b, Row& r) {
  const int64_t B = 64;
  r.shape = "AttentionDecoder::step replayed as a CUDA graph, K=64, P=" +
            std::to_string(attention_positions(b.config)) + ", D=2048, E=H=A=512, V=" +
            std::to_string(b.config.vocab_size);
  r.goal_ms = 0.030;
  r.throughput_unit = "steps/s";
  if (!DeviceGraph::enabled(b.device)) {
    r.status = "skipped: device graphs are off on " + b.device.to_string();
    return;
  }
  NoGradGuard ng;
  b.gpu->eval();
  const auto& feats = b.features_b64();
  const nn::DecoderState start = b.gpu->decoder.init_state(feats[0]);
  const Tensor tokens = random_ids(B, nn::kSpecialTokens, b.config.vocab_size, b.gen).to(b.device);
  nn::DecoderState eager_state = start;
  const nn::StepOutput eager = b.gpu->decoder.step(tokens, eager_state);
  // The graph's inputs are its own tensors; each replay reads them as they are.
  nn::DecoderState s{start.h.clone(), start.c.clone(), start.features, start.enc_proj,
                     start.h_weight, start.h_bias};
  nn::StepOutput out;
  DeviceGraph graph;
  if (!graph.capture(b.device, [&] {
        nn::DecoderState t = s;
        out = b.gpu->decoder.step(tokens, t);
      })) {
    r.status = "error: capture failed: " + graph.failure();
    return;
  }
  graph.replay();
  const double d_lp = max_abs_diff(out.log_probs, eager.log_probs);
  const double d_alpha = max_abs_diff(out.alpha, eager.alpha);
  r.check_ok = all_finite(out.log_probs) && d_lp == 0 && d_alpha == 0;
  r.check = "replay vs eager step max|d| log_probs " + std::to_string(d_lp) + ", alpha " +
            std::to_string(d_alpha) + " (must be 0)";
  r.timing = b.timer->measure(kWords, [&](int) { graph.replay(); });
  r.throughput = 1e3 / r.timing.median_ms;
}

void decoder_train_t20_b64(Bench& b, Row& r) {
  const int64_t B = 64;
  r.shape = "decoder forward + loss + backward on features [64," +
            std::to_string(attention_positions(b.config)) + ",2048], 20 steps, dropout 0.5";
  r.goal_ms = 2.5;
  r.throughput_unit = "captions/s";
  TrainingScope scope({b.gpu.get(), b.cpu.get()}, nn::FineTune::parse("none"));
  const auto& feats = b.features_b64();
  std::vector<nn::CaptionBatch> batches;
  for (size_t k = 0; k < feats.size(); ++k) batches.push_back(caption_batch(B, b.config.vocab_size, b.gen));
  {
    const nn::CaptionBatch slice = first_rows(batches[0], 4);
    const auto [gl, gn] = Bench::loss_and_grad_norm(*b.gpu, *b.gpu_store, Tensor(), feats[0].narrow(0, 0, 4), slice);
    const auto [cl, cn] = Bench::loss_and_grad_norm(*b.cpu, *b.cpu_store, Tensor(),
                                                    feats[0].narrow(0, 0, 4).to(Device::cpu()), slice);
    bool ok = compare(r.check, "4-row slice: loss rel err vs CPU", rel_diff(gl, cl), tol(1e-4, 1e-2));
    ok &= compare(r.check, "grad norm rel err", rel_diff(gn, cn), tol(1e-3, 3e-2));
    r.check_ok = ok;
  }
  Generator dropout_gen(7);
  double last_loss = 0;
  r.timing = b.timer->measure(1, [&](int i) {
    const size_t k = i % feats.size();
    b.gpu_store->zero_grad();
    nn::LossParts loss = nn::caption_loss(b.gpu->decoder.forward(feats[k], batches[k], 1.0, dropout_gen), 1.0);
    loss.total.backward();
    if (i == 0) last_loss = loss.total.item();  // the first warm-up call only
  });
  if (!std::isfinite(last_loss)) {
    r.check_ok = false;
    r.check += ", full-batch loss not finite";
  }
  r.throughput = B * 1e3 / r.timing.median_ms;
}

// A whole training step of the decoder, recorded once and replayed (nn/train_graph.h):
// zeroing, the padded loss, backward, clipping at 5 and AdamW, on the features of the
// decoder_train row. That row's work plus clipping and the update, at one launch (and a
// few copies of the batch into the graph's inputs). Checked: one recording, no failed
// one, finite losses; the replay's equality with eager steps is tests/nn's business
// (cuda_train_graph_test.cpp, bit for bit).
void decoder_train_step_t20_b64_graph(Bench& b, Row& r) {
  const int64_t B = 64;
  r.shape = "nn::TrainStep replayed as a CUDA graph: zero grad + padded loss + backward + clip 5 + AdamW, "
            "features [64," + std::to_string(attention_positions(b.config)) + ",2048], 20 steps, dropout 0.5";
  r.goal_ms = 2.5;  // the forward + backward goal, which this row's work includes
  r.throughput_unit = "captions/s";
  if (!DeviceGraph::enabled(b.device)) {
    r.status = "skipped: device graphs are off on " + b.device.to_string();
    return;
  }
  TrainingScope scope({b.gpu.get()}, nn::FineTune::parse("none"));
  const auto& feats = b.features_b64();
  std::vector<nn::CaptionBatch> batches;
  for (size_t k = 0; k < feats.size(); ++k) batches.push_back(caption_batch(B, b.config.vocab_size, b.gen));
  nn::AdamWConfig c;
  c.lr = 4e-4;
  nn::AdamW opt(*b.gpu_store, c);
  Generator gen(7);
  nn::TrainStepOptions o;
  o.grad_clip = 5.0;
  nn::TrainStep step(b.gpu->decoder, opt, gen, o);
  const double l0 = step.step(feats[0], batches[0]).loss.total.item();  // eager warm-up
  const double l1 = step.step(feats[1 % feats.size()], batches[1 % feats.size()]).loss.total.item();
  const nn::TrainStepStats& s = step.stats();
  r.check_ok = s.captures == 1 && s.failed_captures == 0 && s.replays == 1 && std::isfinite(l0) && std::isfinite(l1);
  r.check = "eager warm-up then 1 recording (" + std::to_string(s.captures) + " made, " +
            std::to_string(s.failed_captures) + " failed), losses " + std::to_string(l0) + ", " + std::to_string(l1);
  r.timing = b.timer->measure(1, [&](int i) {
    const size_t k = i % feats.size();
    step.step(feats[k], batches[k]);
  });
  if (step.stats().replays < 2 || step.stats().eager_steps != 1) {
    r.check_ok = false;
    r.check += "; the timed steps were not all replays";
  }
  r.throughput = B * 1e3 / r.timing.median_ms;
}

void cross_entropy_1280x10000(Bench& b, Row& r) {
  const int64_t N = 1280, V = 10000;  // 20 steps x 64 rows, the vocabulary size
  r.shape = "cross_entropy forward + backward, logits [1280, 10000] fp32, mean over rows the caller "
            "counted (as caption_loss calls it: nothing read back)";
  r.throughput_unit = "rows/s";
  // Byte model: the forward reads the logits once (N x V x 4 B); the backward reads
  // them again and writes their gradient (2 x N x V x 4 B); targets (N x 8 B) and
  // per-row scalars are negligible. 12 N V bytes = 153.6 MB per call.
  r.bytes = 12.0 * N * V + 8.0 * N;
  // 4 sets of 51 MB (205 MB in all) so that the logits never sit in the 50 MB L2.
  std::vector<Tensor> logits = variants({N, V}, -4.0, 4.0, 4, b.gen, b.device);
  std::vector<Tensor> targets;
  for (Tensor& x : logits) {
    x.set_requires_grad(true);
    targets.push_back(random_ids(N, 0, V, b.gen).to(b.device));
  }
  {
    logits[0].zero_grad();
    const Tensor loss = cross_entropy(logits[0], targets[0]);
    loss.backward();
    Tensor cx = logits[0].detach().to(Device::cpu());
    cx.set_requires_grad(true);
    const Tensor closs = cross_entropy(cx, targets[0].to(Device::cpu()));
    closs.backward();
    bool ok = compare(r.check, "loss rel err vs CPU", rel_diff(loss.item(), closs.item()), 1e-5);
    ok &= compare(r.check, "grad max|d|", max_abs_diff(logits[0].grad(), cx.grad()), 1e-7);
    CrossEntropyOptions counted;
    counted.known_valid_rows = N;
    ok &= compare(r.check, "counted-rows loss vs checked |d| (must be 0)",
                  std::abs(cross_entropy(logits[0], targets[0], counted).item() - loss.item()), 0.0);
    r.check_ok = ok;
  }
  CrossEntropyOptions counted;
  counted.known_valid_rows = N;
  r.timing = b.timer->measure(5, [&](int i) {
    Tensor& x = logits[i % logits.size()];
    x.zero_grad();  // the gradient is written, not accumulated (as for an activation)
    cross_entropy(x, targets[i % targets.size()], counted).backward();
  });
  r.throughput = N * 1e3 / r.timing.median_ms;
}

void adamw_21M(Bench& b, Row& r) {
  // A store shaped like the decoder's parameters (21.0 M with V = 10000): the step is
  // one fused op call over the whole block.
  nn::ParameterStore gpu_store(b.device), cpu_store;
  for (auto& p : b.cpu->decoder.named_parameters("decoder")) {
    gpu_store.add(p.name, p.tensor->shape());
    cpu_store.add(p.name, p.tensor->shape());
  }
  gpu_store.finalize();
  cpu_store.finalize();
  const int64_t n = gpu_store.numel();
  r.shape = "nn::AdamW step over one block of " + std::to_string(n) + " parameters (decoder shapes)";
  r.throughput_unit = "Gparams/s";
  // Byte model: reads param, grad, exp_avg, exp_avg_sq and writes param, exp_avg,
  // exp_avg_sq: 7 x 4 B per parameter (588 MB per step: no rotation needed for L2).
  r.bytes = 7.0 * 4.0 * static_cast<double>(n);
  {
    NoGradGuard ng;
    const Tensor v = rand_uniform({n}, -0.1, 0.1, b.gen);
    const Tensor g = rand_uniform({n}, -1.0, 1.0, b.gen);
    gpu_store.values().copy_(v);
    cpu_store.values().copy_(v);
    gpu_store.grads().copy_(g);
    cpu_store.grads().copy_(g);
  }
  nn::AdamWConfig c;
  c.lr = 4e-4;  // the config's decoder-lr and weight-decay
  c.weight_decay = 0.01;
  nn::AdamW gpu_opt(gpu_store, c), cpu_opt(cpu_store, c);
  gpu_opt.step();
  cpu_opt.step();
  r.check_ok = compare(r.check, "one step vs CPU max|d param|", max_abs_diff(gpu_store.values(), cpu_store.values()),
                       1e-6);
  r.timing = b.timer->measure(5, [&](int) { gpu_opt.step(); });
  r.throughput = static_cast<double>(n) / (r.timing.median_ms * 1e-3) / 1e9;
}

// Checks one decoded caption: exactly 20 words (special tokens are suppressed), all
// valid ids, finite log-probabilities; agreement with the CPU is reported, not required
// (a near-tie may legitimately resolve the other way in another summation order).
bool check_caption(const nn::DecodedCaption& g, const nn::DecodedCaption& c, int64_t V, std::string& check) {
  bool ok = g.steps == kWords && static_cast<int>(g.tokens.size()) == kWords;
  for (int64_t t : g.tokens) ok &= t >= nn::kSpecialTokens && t < V;
  for (float lp : g.log_probs) ok &= std::isfinite(lp) && lp <= 0;
  size_t same = 0;
  while (same < g.tokens.size() && same < c.tokens.size() && g.tokens[same] == c.tokens[same]) ++same;
  check = std::string(ok ? "ok" : "FAIL") + ": " + std::to_string(g.steps) + " steps, " +
          std::to_string(g.tokens.size()) + " valid words; first " + std::to_string(same) + "/" +
          std::to_string(c.tokens.size()) + " words as on the CPU; score " + fmt("%.4f", g.score) + " (CPU " +
          fmt("%.4f", c.score) + ")";
  return ok;
}

void decode_1img(Bench& b, Row& r, int beam) {
  r.shape = std::string(beam == 1 ? "greedy" : "beam 3") + " caption of one 224x224 image, encoder included, 20 words";
  r.goal_ms = beam == 1 ? 1.5 : 3.0;
  r.throughput_unit = "captions/s";
  NoGradGuard ng;
  b.gpu->eval();
  b.cpu->eval();
  const int64_t S = b.config.image_size;
  std::vector<Tensor> images = variants({1, 3, S, S}, -2.0, 2.0, 4, b.gen, b.device);
  nn::DecodeOptions opt;
  opt.max_len = kWords;
  opt.beam = beam;
  // The GPU side encodes as `caption` does (pipeline/captioner.h): through a snapshot with
  // every batch norm folded once; the CPU check through the model's own pass.
  const nn::FoldedResNet folded(b.gpu->encoder);
  auto run = [&](nn::CaptionModel& m, const Tensor& image) {
    const Tensor features = &m == b.gpu.get() ? m.encode_distinct(image, &folded) : m.encode_distinct(image);
    return nn::decode(m.decoder, features, opt).at(0);
  };
  r.check_ok = check_caption(run(*b.gpu, images[0]), run(*b.cpu, images[0].to(Device::cpu())),
                             b.config.vocab_size, r.check);
  r.timing = b.timer->measure(1, [&](int i) { run(*b.gpu, images[i % images.size()]); });
  r.throughput = 1e3 / r.timing.median_ms;
}

void resnet50_fwd_b256(Bench& b, Row& r) {
  const int64_t B = 256, S = b.config.image_size;
  r.shape = "CaptionModel::encode_distinct (ResNet-50, 7x7 cells, batch norms folded once), "
            "[256,3,224,224], inference";
  r.throughput_unit = "images/s";
  NoGradGuard ng;
  b.gpu->eval();
  b.cpu->eval();
  const nn::FoldedResNet folded(b.gpu->encoder);  // as `caption` encodes (pipeline/captioner.h)
  std::vector<Tensor> images = variants({B, 3, S, S}, -2.0, 2.0, 2, b.gen, b.device);  // 2 x 154 MB
  {
    const Tensor g = b.gpu->encode_distinct(images[0], &folded).narrow(0, 0, 2);
    const Tensor c = b.cpu->encode_distinct(images[0].narrow(0, 0, 2).to(Device::cpu()));
    // Relative to the largest feature: cuDNN may pick Winograd/FFT algorithms. This random
    // ResNet-50 amplifies rounding about 100-fold from layer1 to layer4 (bfloat16 gives
    // 0.4, measured with PyTorch), so float32 lands near 1e-4 and TF32 convolutions near
    // 1e-1: a failure here at 1e-1 means reduced precision, not wrong results. Under
    // --amp both sides round to bfloat16, but a sum near a rounding boundary lands one
    // step (2^-8) apart, and the amplification makes that ~0.1 (0.11 on an H100): 0.5.
    // (The GPU now runs the NHWC bfloat16 pass, which also rounds the activations between
    // layers: 1.14x autocast's own error on the CPU at 64x64, tests/nn/nhwc_encoder_test.)
    const bool finite = all_finite(g);
    if (!finite) r.check = "non-finite features";
    r.check_ok = compare(r.check, "2 images: max|d| / max|ref| vs CPU", max_abs_diff(g, c) / max_abs(c),
                         tol(1e-2, 5e-2, 0.5)) && finite;
  }
  r.timing = b.timer->measure(1, [&](int i) { b.gpu->encode_distinct(images[i % images.size()], &folded); });
  r.throughput = B * 1e3 / r.timing.median_ms;
}

void train_step_r50_b128(Bench& b, Row& r, const std::string& fine_tune) {
  const int64_t B = 128, S = b.config.image_size;
  const nn::FineTune ft = nn::FineTune::parse(fine_tune);
  r.shape = "encode (ResNet-50, fine-tune " + fine_tune + ") + decoder fwd/bwd (20 steps) + clip 5 + AdamW, [128,3,224,224]";
  r.throughput_unit = "images/s";
  TrainingScope scope({b.gpu.get(), b.cpu.get()}, ft);
  std::vector<Tensor> images = variants({B, 3, S, S}, -2.0, 2.0, 2, b.gen, b.device);  // 2 x 77 MB
  std::vector<nn::CaptionBatch> batches;
  for (size_t k = 0; k < images.size(); ++k) batches.push_back(caption_batch(B, b.config.vocab_size, b.gen));
  {
    const nn::CaptionBatch slice = first_rows(batches[0], 2);
    const Tensor im = images[0].narrow(0, 0, 2);
    const auto [gl, gn] = Bench::loss_and_grad_norm(*b.gpu, *b.gpu_store, im, Tensor(), slice);
    const auto [cl, cn] = Bench::loss_and_grad_norm(*b.cpu, *b.cpu_store, im.to(Device::cpu()), Tensor(), slice);
    // Under --amp a frozen encoder runs its NHWC bfloat16 pass on the GPU (activations
    // rounded between layers) and autocast's NCHW one on the CPU: features ~1e-2 apart.
    bool ok = compare(r.check, "2-image slice: loss rel err vs CPU", rel_diff(gl, cl), tol(1e-3, 1e-2, 1e-2));
    ok &= compare(r.check, "grad norm rel err", rel_diff(gn, cn), tol(1e-2, 5e-2, 5e-2));
    r.check_ok = ok;
  }
  // The trainer's groups and rates (configs/flickr8k_resnet50.toml).
  nn::AdamWConfig c;
  c.lr = 4e-4;
  c.weight_decay = 0.01;
  nn::AdamW opt(*b.gpu_store, c, {{"encoder.", 1e-4}, {"decoder.", 4e-4}});
  Generator dropout_gen(7);
  Tensor last_loss;
  // The decoder's step runs as caption-train runs it on a GPU: padded to fixed shapes and
  // replayed as a CUDA graph (nn/train_graph.h; the same losses and gradients as the eager
  // step, tests/nn/cuda_train_graph_test.cpp). The encoder's passes stay eager (training
  // mode; under --amp in NHWC bfloat16); a fine-tuned one's backward runs after the
  // replay, from the gradient it leaves for the features.
  std::unique_ptr<nn::TrainStep> recorded;
  if (DeviceGraph::enabled(b.device)) {
    nn::TrainStepOptions o;
    o.grad_clip = 5.0;
    recorded = std::make_unique<nn::TrainStep>(b.gpu->decoder, opt, dropout_gen, o);
    r.shape += ", decoder step recorded (nn::TrainStep)";
  }
  r.timing = b.timer->measure(1, [&](int i) {
    const size_t k = i % images.size();
    if (recorded) {
      last_loss = recorded->step(b.gpu->encode_distinct(images[k]), batches[k]).loss.total;
      return;
    }
    opt.zero_grad();
    const Tensor features = b.gpu->encode_distinct(images[k]);
    nn::LossParts loss = nn::caption_loss(b.gpu->decoder.forward(features, batches[k], 1.0, dropout_gen), 1.0);
    loss.total.backward();
    nn::clip_grad_norm(*b.gpu_store, 5.0);
    opt.step();
    last_loss = loss.total.detach();
  });
  if (recorded) {
    const nn::TrainStepStats& s = recorded->stats();
    r.check += ", decoder steps: " + std::to_string(s.eager_steps) + " eager, " + std::to_string(s.captures) +
               " recorded, " + std::to_string(s.replays) + " replayed";
    if (s.failed_captures != 0 || s.captures != 1 || s.eager_steps != 1) {
      r.check_ok = false;
      r.check += " (expected 1 eager warm-up, then 1 recording replayed)";
    }
  }
  const double l = last_loss.item();
  if (!std::isfinite(l)) {
    r.check_ok = false;
    r.check += ", last loss not finite";
  } else {
    r.check += ", last loss " + fmt("%.4f", l);
  }
  r.throughput = B * 1e3 / r.timing.median_ms;
}

void run_row(Bench& b, Row& r) {
  if (r.name == "decode_step_b64") return decode_step_b64(b, r);
  if (r.name == "decode_step_b64_graph") return decode_step_b64_graph(b, r);
  if (r.name == "decoder_train_t20_b64") return decoder_train_t20_b64(b, r);
  if (r.name == "decoder_train_step_t20_b64_graph") return decoder_train_step_t20_b64_graph(b, r);
  if (r.name == "cross_entropy_1280x10000") return cross_entropy_1280x10000(b, r);
  if (r.name == "adamw_21M") return adamw_21M(b, r);
  if (r.name == "greedy_1img") return decode_1img(b, r, 1);
  if (r.name == "beam3_1img") return decode_1img(b, r, 3);
  if (r.name == "resnet50_fwd_b256") return resnet50_fwd_b256(b, r);
  if (r.name == "train_step_frozen_r50_b128") return train_step_r50_b128(b, r, "none");
  if (r.name == "train_step_finetune2_r50_b128") return train_step_r50_b128(b, r, "from:2");
  CAPTION_ASSERT(false, "unknown row ", r.name);
}

// ---- output --------------------------------------------------------------------------------

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

// Written after every row, to a temporary name and renamed, so that a run cut short by
// a time limit still leaves the rows it finished.
void write_json(const std::string& path, const Json& meta, const std::vector<Row>& rows, double peak_gbs) {
  if (path.empty()) return;
  Json j = meta;
  Json out = Json::object();
  for (const Row& r : rows) out[r.name] = r.to_json(peak_gbs);
  j["rows"] = out;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << j.dump(1) << "\n";
    CAPTION_CHECK(f.good(), "bench_gpu: cannot write ", tmp);
  }
  std::filesystem::rename(tmp, path);
}

std::string first_line(const std::string& s, size_t max_len = 300) {
  std::string l = s.substr(0, s.find('\n'));
  return l.size() > max_len ? l.substr(0, max_len) + "..." : l;
}

void print_row(const Row& r) {
  if (r.status != "ok") {
    std::printf("%-30s %s\n", r.name.c_str(), r.status.c_str());
  } else {
    std::string extra;
    if (r.bytes > 0) {
      const double gbs = r.bytes / (r.timing.median_ms * 1e-3) / 1e9;
      extra = fmt("%.0f GB/s", gbs);
    } else {
      extra = fmt("%.1f ", r.throughput) + r.throughput_unit;
    }
    const std::string goal = r.goal_ms > 0 ? fmt("%.3f", r.goal_ms) + (r.timing.median_ms <= r.goal_ms ? " met" : " missed") : "-";
    std::printf("%-30s %10.4f %10.4f %10.4f %5d  %-20s %-13s %s\n", r.name.c_str(), r.timing.median_ms,
                r.timing.p10_ms, r.timing.p90_ms, r.timing.samples, extra.c_str(), goal.c_str(),
                r.check_ok ? "check ok" : "CHECK FAILED");
  }
  std::fflush(stdout);
}

int usage(const char* why) {
  std::fprintf(stderr,
               "bench_gpu: %s\nusage: bench_gpu [--json FILE] [--save-checkpoint FILE] [--only NAME[,NAME]]\n"
               "                 [--repeats N] [--quick] [--peak-gbs GBS] [--time-budget S] [--vocab V] [--list]\n"
               "                 [--device cpu] [--amp]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const auto start = Clock::now();
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--json") o.json_path = value();
      else if (a == "--save-checkpoint") o.checkpoint_path = value();
      else if (a == "--repeats") o.repeats = std::stoi(value());
      else if (a == "--quick") o.quick = true;
      else if (a == "--amp") o.amp = true;
      else if (a == "--peak-gbs") o.peak_gbs = std::stod(value());
      else if (a == "--time-budget") o.time_budget_s = std::stod(value());
      else if (a == "--vocab") o.vocab = std::stoi(value());
      else if (a == "--device") {
        const std::string d = value();
        if (d != "cpu" && d != "cuda") throw std::invalid_argument("--device must be cuda or cpu, got " + d);
        o.on_cpu = d == "cpu";
      }
      else if (a == "--list") {
        for (const auto& n : kRows) std::printf("%s\n", n.c_str());
        return 0;
      } else if (a == "--only") {
        std::stringstream ss(value());
        for (std::string n; std::getline(ss, n, ',');)
          if (!n.empty()) o.only.push_back(n);
      } else {
        return usage(("unknown argument '" + a + "'").c_str());
      }
    }
  } catch (const std::exception& e) {
    return usage(e.what());
  }
  for (const auto& n : o.only)
    if (std::find(kRows.begin(), kRows.end(), n) == kRows.end())
      return usage(("unknown row '" + n + "' (--list shows the rows)").c_str());
  if (o.peak_gbs <= 0 || o.vocab <= nn::kSpecialTokens) return usage("--peak-gbs and --vocab must be positive");

  const bool have_gpu = o.on_cpu || (cuda_compiled() && cuda_device_count() > 0);
  Bench b;
  b.o = o;
  if (o.on_cpu) b.device = Device::cpu();
  try {
    if (have_gpu || !o.checkpoint_path.empty()) {
      b.config = bench_config(o.vocab);
      b.cpu = make_cpu_model(b.config);
      if (!o.checkpoint_path.empty()) {
        nn::save_checkpoint(o.checkpoint_path, *b.cpu, bench_vocab(o.vocab));
        std::printf("bench_gpu: weights written to %s\n", o.checkpoint_path.c_str());
      }
    }
    if (!have_gpu) {
      std::printf("bench_gpu: no GPU to benchmark (%s): nothing measured\n",
                  cuda_compiled() ? cuda_probe_message().c_str() : "this build has no CUDA backend");
      return 3;
    }
    b.gpu = copy_to(*b.cpu, b.device);
    b.cpu_store = std::make_unique<nn::ParameterStore>();
    b.gpu_store = std::make_unique<nn::ParameterStore>(b.device);
    for (auto& p : b.cpu->named_parameters()) b.cpu_store->add(p.name, *p.tensor);
    for (auto& p : b.gpu->named_parameters()) b.gpu_store->add(p.name, *p.tensor);
    b.cpu_store->finalize();
    b.gpu_store->finalize();
    b.timer = std::make_unique<Timer>(b.device, b.o, start);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: setup failed: %s\n", e.what());
    return 1;
  }

  Json meta;
  meta["tool"] = "bench_gpu";
  meta["date"] = utc_now();
  meta["device"] = o.on_cpu ? "cpu (logic dry run, not a benchmark)" : cuda_probe_message();
  meta["peak_gbs"] = o.peak_gbs;
  meta["positions"] = attention_positions(b.config);
  meta["vocab"] = o.vocab;
  meta["precision"] = o.amp ? "bf16 autocast (products, LSTM, convolutions), fp32 master weights"
                     : tf32_on() ? "fp32 (TF32 products: CAPTION_TF32=1)" : "fp32";
  meta["env"] = {{"CAPTION_TF32", env_or("CAPTION_TF32", "")},
                 {"CAPTION_CUDNN_BENCHMARK", env_or("CAPTION_CUDNN_BENCHMARK", "")}};
  meta["quick"] = o.quick;
  meta["timing"] = "synchronize + steady_clock per sample; per-call median, p10, p90";

  std::printf("bench_gpu: %s; P=%d, V=%d, %s; peak %.0f GB/s\n", meta["device"].get<std::string>().c_str(),
              static_cast<int>(attention_positions(b.config)), o.vocab, meta["precision"].get<std::string>().c_str(), o.peak_gbs);
  std::printf("%-30s %10s %10s %10s %5s  %-20s %-13s %s\n", "row", "ms median", "p10", "p90", "n", "throughput",
              "goal ms", "check");
  std::vector<Row> rows;
  int failures = 0;
  // The set-up's ops (weights, batch-norm calibration on the CPU) are no row's.
  if (OpProfile::enabled()) OpProfile::reset();
  for (const std::string& name : kRows) {
    if (!o.only.empty() && std::find(o.only.begin(), o.only.end(), name) == o.only.end()) continue;
    Row& r = rows.emplace_back();
    r.name = name;
    if (b.timer->remaining_s() < 10) {
      r.status = "skipped: time budget spent";
    } else {
      try {
        // Both sides of a row's check run under the guard: the CPU twin multiplies the
        // same bfloat16 values, so the checks keep their float32 tolerances.
        g_amp = o.amp;
        AutocastGuard autocast(o.amp);
        if (OpProfile::enabled()) OpProfile::reset();
        run_row(b, r);
      } catch (const std::exception& e) {
        r.status = "error: " + first_line(e.what());
      }
    }
    if (r.status != "ok" || !r.check_ok) ++failures;
    print_row(r);
    if (r.status == "ok" && !r.check_ok) std::printf("    check: %s\n", r.check.c_str());
    // CAPTION_PROFILE=1: the row's ops (check, warm-up and samples together), by GPU time.
    if (OpProfile::enabled() && r.status == "ok") {
      const std::string profile = OpProfile::report();
      if (!profile.empty()) std::printf("  %s: %s", r.name.c_str(), profile.c_str());
      OpProfile::reset();
    }
    try {
      write_json(o.json_path, meta, rows, o.peak_gbs);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_gpu: %s\n", e.what());
      return 1;
    }
  }
  std::printf("bench_gpu: %zu rows, %d failed or skipped, %.0f s\n", rows.size(), failures, seconds_since(start));
  return failures ? 1 : 0;
}
