// The training recipe. See trainer.h for the files of a run.
#include "pipeline/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>

#include <unistd.h>

#include "engine/graph.h"
#include "engine/tensor_io.h"
#include "kernels/cpu/blas.h"
#include "nn/folded_resnet.h"
#include "nn/train_graph.h"
#include "pipeline/report.h"
#include "pipeline/schedule.h"
#include "pipeline/session.h"

namespace caption::pipeline {

namespace fs = std::filesystem;

nlohmann::json EpochRecord::to_json() const {
  return {{"epoch", epoch},
          {"train_loss", train_loss},
          {"val_loss_teacher_forced", val_loss},
          {"bleu1", scores.bleu[0]},
          {"bleu2", scores.bleu[1]},
          {"bleu3", scores.bleu[2]},
          {"bleu4", scores.bleu[3]},
          {"cider_d", scores.cider_d},
          {"rouge_l", scores.rouge_l},
          {"decoder_lr", decoder_lr},
          {"encoder_lr", encoder_lr},
          {"seconds", seconds},
          {"best", best}};
}

namespace {

EpochRecord record_from_json(const nlohmann::json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int>();
  r.train_loss = j.at("train_loss").get<double>();
  r.val_loss = j.at("val_loss_teacher_forced").get<double>();
  for (int n = 0; n < 4; ++n) r.scores.bleu[n] = j.at("bleu" + std::to_string(n + 1)).get<double>();
  r.scores.cider_d = j.at("cider_d").get<double>();
  r.scores.rouge_l = j.at("rouge_l").get<double>();
  r.decoder_lr = j.at("decoder_lr").get<double>();
  r.encoder_lr = j.at("encoder_lr").get<double>();
  r.seconds = j.at("seconds").get<double>();
  r.best = j.at("best").get<bool>();
  return r;
}

double tracked_value(TrackedMetric m, const EpochRecord& r) {
  switch (m) {
    case TrackedMetric::Bleu4: return r.scores.bleu[3];
    case TrackedMetric::Cider: return r.scores.cider_d;
    case TrackedMetric::ValLoss: return r.val_loss;
  }
  return 0;
}

Direction direction_of(TrackedMetric m) {
  return m == TrackedMetric::ValLoss ? Direction::Minimize : Direction::Maximize;
}

Tensor int64_pair(int64_t a, int64_t b) { return Tensor::from_vector<int64_t>({a, b}, {2}); }

}  // namespace

struct Trainer::Impl {
  TrainOptions o;
  std::ostream& log;
  Device device = Device::cpu();
  Generator gen;
  data::CaptionDataset dataset;
  std::unique_ptr<text::Normalizer> normalizer;
  data::ImageTransform transform;
  std::shared_ptr<const data::FeatureCache> cache;
  std::unique_ptr<data::DataLoader> train_loader, val_loader;
  std::unique_ptr<nn::ParameterStore> store;
  std::unique_ptr<nn::Optimizer> optimizer;
  std::unique_ptr<LrSchedule> scheduler;
  std::unique_ptr<EarlyStopping> early;
  std::unique_ptr<nn::TrainStep> train_step;  // CUDA, full teacher forcing
  std::vector<EpochRecord> history;
  int completed_epochs = 0;
  fs::path out;

  Impl(TrainOptions options, std::ostream& l) : o(std::move(options)), log(l), gen(o.seed) {}

  fs::path file(const std::string& name) const { return out / name; }

  Tensor features_of(nn::CaptionModel& model, const data::Batch& b) {
    if (b.features.defined()) return b.features.to(device);
    return model.encode_distinct(b.images.to(device));
  }

  std::vector<std::string> vocab_tokens(const text::Vocabulary& v) const {
    std::vector<std::string> t;
    for (text::TokenId i = 0; i < v.size(); ++i) t.push_back(v.token(i));
    return t;
  }

  void apply_lrs() {
    for (size_t g = 0; g < optimizer->num_groups(); ++g) optimizer->set_lr(g, scheduler->lr(g));
  }

  double group_lr(const std::string& prefix) const {
    for (size_t g = 0; g < optimizer->num_groups(); ++g)
      if (optimizer->group(g).prefix == prefix) return optimizer->lr(g);
    return 0;
  }
};

Trainer::Trainer(TrainOptions options, std::ostream& log) : impl_(std::make_unique<Impl>(std::move(options), log)) {
  Impl& m = *impl_;
  TrainOptions& o = m.o;
  o.validate();
  m.out = o.output;
  fs::create_directories(m.out);
  m.device = parse_device(o.device);
  if (o.threads > 0) kernels::cpu::set_blas_threads(o.threads);
  log << "caption-train: device " << m.device.to_string() << ", BLAS threads " << kernels::cpu::blas_threads()
      << ", " << kernels::cpu::blas_core_summary()
      << (o.amp ? ", bfloat16 products in training steps (--amp), float32 otherwise\n" : ", float32\n");

  m.dataset = load_dataset(o.data);
  m.normalizer = std::make_unique<text::Normalizer>(o.text);
  const bool resuming = o.resume && fs::exists(m.file("last.state.safetensors"));
  CAPTION_CHECK(!o.resume || resuming, "--resume: ", m.file("last.state.safetensors").string(),
                " does not exist (nothing to resume in ", o.output, ")");
  if (resuming) {
    vocab_ = text::Vocabulary::load(m.file("vocab.json"));
    nn::Checkpoint ck = nn::load_checkpoint(m.file("last.safetensors").string(), Device::cpu());
    CAPTION_CHECK(static_cast<text::TokenId>(ck.vocab.size()) == vocab_->size(), m.file("last.safetensors").string(),
                  ": its vocabulary differs from ", m.file("vocab.json").string());
    model_ = std::move(ck.model);
  } else {
    vocab_ = build_vocabulary(m.dataset, *m.normalizer, o.min_word_freq);
    vocab_->save(m.file("vocab.json"));
    nn::ModelConfig config = o.model;
    config.vocab_size = vocab_->size();
    config.text = o.text;
    config.validate();
    model_ = std::make_unique<nn::CaptionModel>(config, m.gen);
    if (!o.encoder_weights.empty()) nn::load_encoder_weights(*model_, o.encoder_weights);
    if (!o.glove.empty()) log << apply_glove(*model_, *vocab_, o.glove, o.seed) << "\n";
  }
  log << "vocabulary: " << vocab_->size() << " tokens (min_word_freq " << o.min_word_freq << ")\n";
  m.transform = image_transform(model_->config());
  {
    const nn::ModelConfig& c = model_->config();
    const char* schedulers[] = {"none", "onecycle", "plateau"};
    const char* optimizers[] = {"adam", "adamw", "sgd"};
    log << "model: " << c.encoder << " (fine-tune " << c.fine_tune.to_string() << "), images " << c.image_size
        << "x" << c.image_size << ", grid " << c.encoder_size << "x" << c.encoder_size << ", E/H/A " << c.embed_dim
        << "/" << c.decoder_dim << "/" << c.attention_dim << ", dropout " << c.dropout << "\n"
        << "training: " << optimizers[static_cast<int>(o.optimizer)] << ", decoder lr " << o.decoder_lr
        << ", encoder lr " << o.encoder_lr << ", scheduler " << schedulers[static_cast<int>(o.scheduler)]
        << ", batch " << o.batch_size << ", epochs " << o.epochs << ", seed " << o.seed << "\n";
  }
  model_->to(m.device);
  model_->train();

  // A frozen encoder computes each image's features once.
  const bool frozen_encoder = model_->config().fine_tune.kind == nn::FineTune::Kind::None;
  if (!resuming && o.encoder_weights.empty() && o.calibrate_batches > 0) {
    // No pretrained weights: normalise the random encoder's layers for this data.
    data::LoaderOptions co;
    co.items = data::EpochItems::OneCaptionPerImage;
    co.batch_size = o.eval_batch_size;
    co.seed = o.seed;
    co.workers = o.workers;
    data::DataLoader calibration(m.dataset, *m.normalizer, *vocab_, m.transform, co);
    int left = o.calibrate_batches;
    const Device device = m.device;
    model_->calibrate_batch_norm([&]() -> Tensor {
      if (left-- <= 0) return Tensor();
      auto b = calibration.next();
      return b ? b->images.to(device) : Tensor();
    });
    log << "encoder: random weights, batch norm calibrated on " << o.calibrate_batches << " batches of "
        << o.eval_batch_size << " training images\n";
  }
  if (frozen_encoder && o.feature_cache) {
    nn::CaptionModel& model = *model_;
    Device device = m.device;
    const auto images = data::cache_images(m.dataset);
    const auto t0 = std::chrono::steady_clock::now();
    data::FeatureCacheBuildOptions bo;
    bo.workers = o.workers;
    bo.batch_size = o.eval_batch_size;
    // Nothing changes the frozen encoder while the cache is built: its batch norms are
    // folded once (nn/folded_resnet.h), as `caption` folds them, so training sees the
    // features that captioning computes.
    const std::unique_ptr<nn::FoldedResNet> folded = nn::inference_snapshot(model.encoder);
    m.cache = std::make_shared<const data::FeatureCache>(data::FeatureCache::build(
        m.file("features"), images, m.transform, encoder_identity(model), model.config().encoder_size,
        [&model, &folded, device](const Tensor& x) {
          NoGradGuard ng;
          const Tensor on_device = x.to(device);
          return model.encode_distinct(on_device, folded.get()).to(Device::cpu());
        },
        bo));
    log << "feature cache: " << images.size() << " images ready in "
        << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
  }

  data::LoaderOptions lo;
  lo.splits = {data::Split::Train, data::Split::Restval};
  lo.items = o.items == ItemsPerEpoch::EveryCaption ? data::EpochItems::EveryCaption
                                                    : data::EpochItems::OneCaptionPerImage;
  lo.batch_size = o.batch_size;
  lo.seed = o.seed;
  lo.workers = o.workers;
  lo.encode.max_caption_len = model_->config().max_caption_len;
  lo.feature_cache = m.cache;
  if (!m.cache) lo.image_cache_bytes = size_t(1) << 30;
  m.train_loader = std::make_unique<data::DataLoader>(m.dataset, *m.normalizer, *vocab_, m.transform, lo);
  data::LoaderOptions vo = lo;
  vo.splits = {data::Split::Val};
  vo.items = data::EpochItems::OneCaptionPerImage;
  vo.shuffle = data::Shuffle::No;
  vo.batch_size = o.eval_batch_size;
  vo.image_cache_bytes = 0;
  m.val_loader = std::make_unique<data::DataLoader>(m.dataset, *m.normalizer, *vocab_, m.transform, vo);

  // One block of parameters; encoder and decoder learning rates as two groups.
  m.store = std::make_unique<nn::ParameterStore>(m.device);
  for (auto& r : model_->named_parameters()) m.store->add(r.name, *r.tensor);
  m.store->finalize();
  if (!o.train_embeddings) m.store->freeze("decoder.embedding.");
  std::vector<nn::ParamGroup> groups{{"encoder.", o.encoder_lr}, {"decoder.", o.decoder_lr}};
  switch (o.optimizer) {
    case OptimizerKind::Adam: {
      nn::AdamConfig c;
      c.lr = o.decoder_lr;
      c.weight_decay = o.weight_decay;
      m.optimizer = std::make_unique<nn::Adam>(*m.store, c, groups);
      break;
    }
    case OptimizerKind::AdamW: {
      nn::AdamWConfig c;
      c.lr = o.decoder_lr;
      c.weight_decay = o.weight_decay;
      m.optimizer = std::make_unique<nn::AdamW>(*m.store, c, groups);
      break;
    }
    case OptimizerKind::Sgd: {
      nn::SgdConfig c;
      c.lr = o.decoder_lr;
      c.momentum = o.momentum;
      c.weight_decay = o.weight_decay;
      c.nesterov = o.nesterov ? Nesterov::Yes : Nesterov::No;
      m.optimizer = std::make_unique<nn::SGD>(*m.store, c, groups);
      break;
    }
  }
  const std::vector<double> base{o.encoder_lr, o.decoder_lr};
  switch (o.scheduler) {
    case SchedulerKind::None: m.scheduler = std::make_unique<ConstantLr>(base); break;
    case SchedulerKind::OneCycle: {
      const double peak = o.max_lr > 0 ? o.max_lr : o.decoder_lr;
      const double ratio = peak / o.decoder_lr;
      OneCycleOptions c;
      c.max_lr = {o.encoder_lr * ratio, peak};
      c.initial_lr = {c.max_lr[0] / 25, c.max_lr[1] / 25};  // PyTorch's div_factor 25
      c.pct_start = o.pct_start;
      c.total_steps = static_cast<long>(o.epochs) * m.train_loader->batches_per_epoch();
      const double final_lr = o.min_lr > 0 ? o.min_lr : peak / 10;  // by default max_lr / 10
      c.final_lr = {final_lr * o.encoder_lr / o.decoder_lr, final_lr};
      m.scheduler = std::make_unique<OneCycle>(c);
      break;
    }
    case SchedulerKind::Plateau: {
      PlateauOptions c;
      c.direction = direction_of(o.track);
      c.factor = o.plateau_factor;
      c.patience = o.plateau_patience;
      c.threshold = o.plateau_threshold;
      c.cooldown = o.plateau_cooldown;
      m.scheduler = std::make_unique<ReduceOnPlateau>(base, c);
      break;
    }
  }
  if (o.early_stopping > 0)
    m.early = std::make_unique<EarlyStopping>(o.early_stopping, direction_of(o.track));
  // On a GPU, with full teacher forcing, the decoder's training step runs padded to fixed
  // shapes and is recorded as a CUDA graph per shape, then replayed (nn/train_graph.h):
  // the same losses and gradients as the packed step, at one launch. A fine-tuned
  // encoder's forward and backward stay eager around the replay.
  if (m.device.is_cuda() && o.teacher_forcing >= 1.0) {
    nn::TrainStepOptions t;
    t.alpha_c = o.alpha_c;
    t.grad_clip = o.grad_clip;
    t.step_bucket = o.step_bucket;
    m.train_step = std::make_unique<nn::TrainStep>(model_->decoder, *m.optimizer, m.gen, t);
    log << "training steps: padded to fixed shapes (caption steps to a multiple of "
        << o.step_bucket << ", --step-bucket), "
        << (DeviceGraph::enabled(m.device) ? "recorded as CUDA graphs and replayed (CAPTION_CUDA_GRAPHS=0: eager)"
                                           : "run eagerly (CAPTION_CUDA_GRAPHS=0)")
        << "\n";
  }

  if (resuming) {
    const std::string state_path = m.file("last.state.safetensors").string();
    LoadedTensors st = load_tensors(state_path);
    NamedTensors optim;
    for (const auto& [name, t] : st.tensors)
      if (name.rfind("optim.", 0) == 0) optim.emplace_back(name.substr(6), t.to(m.device));
    m.optimizer->import_state(optim);
    auto counters = [&](const char* name, size_t n) {
      std::vector<int64_t> v = st.at(name).to_vector<int64_t>();
      CAPTION_CHECK(v.size() == n, state_path, ": '", name, "' holds ", v.size(), " values, expected ", n);
      return v;
    };
    const std::vector<int64_t> epoch = counters("trainer.epoch", 1);
    const std::vector<int64_t> g = counters("trainer.generator", 2);
    const std::vector<int64_t> pos = counters("trainer.loader", 2);
    CAPTION_CHECK(epoch[0] >= 0 && epoch[0] <= 1'000'000, state_path, ": completed epochs ", epoch[0],
                  " is not a count of epochs");
    m.completed_epochs = static_cast<int>(epoch[0]);
    m.gen.set_state(static_cast<uint64_t>(g[0]), static_cast<uint64_t>(g[1]));
    m.train_loader->seek({pos[0], pos[1]});
    auto meta = [&](const char* k) {
      const auto it = st.metadata.find(k);
      CAPTION_CHECK(it != st.metadata.end(), state_path, ": no '", k, "' in its metadata");
      return nlohmann::json::parse(it->second);
    };
    try {
      m.scheduler->import_state(meta("scheduler"));
      if (m.early) m.early->import_state(meta("early_stopping"));
      for (const auto& r : meta("history")) m.history.push_back(record_from_json(r));
    } catch (const nlohmann::json::exception& e) {
      throw Error(str(state_path, ": malformed trainer state in its metadata: ", e.what()));
    }
    log << "resumed after epoch " << m.completed_epochs << "\n";
  }
  m.apply_lrs();
}

Trainer::~Trainer() = default;

std::vector<EpochRecord> Trainer::fit() {
  Impl& m = *impl_;
  TrainOptions& o = m.o;
  MetricsLog metrics_log(m.file("metrics.jsonl").string());
  nn::DecodeOptions decode;
  decode.beam = o.eval_beam;
  decode.length_penalty = o.length_penalty;
  decode.max_len = model_->config().max_decode_len;
  std::vector<double> lr_steps, lr_values;
  const int last_epoch = o.stop_after > 0 ? std::min(o.epochs, m.completed_epochs + o.stop_after) : o.epochs;
  for (int epoch = m.completed_epochs + 1; epoch <= last_epoch; ++epoch) {
    if (m.early && m.early->should_stop()) break;
    const auto t0 = std::chrono::steady_clock::now();
    model_->train();
    Progress progress(std::cerr, isatty(STDERR_FILENO) != 0, o.log_every);
    progress.start_epoch(epoch, o.epochs, m.train_loader->batches_per_epoch());
    double loss_sum = 0;
    int64_t batches = 0;
    // A batch's loss is read back after the next batch's step has been queued, so that
    // on a GPU the host loads, uploads and launches batch n+1 while the device computes
    // batch n (reading it at once would leave the device idle meanwhile). A divergence is
    // still caught at its own batch, one step later.
    struct Queued {
      Tensor loss;  // on the device: the step's own copy
      int64_t index = 0, size = 0;
      double lr = 0;  // the decoder's learning rate after the step
    };
    std::optional<Queued> queued;
    auto settle = [&](const Queued& q) {
      const double l = q.loss.item();
      CAPTION_CHECK(std::isfinite(l), "training diverged: the loss is ", l, " at epoch ", epoch, " batch ",
                    q.index, " (lower the learning rate)");
      loss_sum += l;
      ++batches;
      batch_losses_.push_back(l);
      lr_values.push_back(q.lr);
      lr_steps.push_back(static_cast<double>(lr_values.size()));
      progress.update(batches, l, q.lr, q.size);
    };
    while (auto b = m.train_loader->next()) {
      AutocastGuard autocast(o.amp);
      const Tensor features = m.features_of(*model_, *b);
      nn::CaptionBatch cb{b->captions, b->lengths.to_vector<int64_t>()};
      Tensor loss;
      if (m.train_step) {
        loss = m.train_step->step(features, cb).loss.total.clone();  // the step's own is reused
      } else {
        m.optimizer->zero_grad();
        nn::DecoderOutput out = model_->decoder.forward(features, cb, o.teacher_forcing, m.gen);
        loss = nn::caption_loss(out, o.alpha_c).total;
        loss.backward();
        // On a GPU without reading the norm back (the same gradients bit for bit).
        if (o.grad_clip > 0 && m.device.is_cuda()) nn::clip_grad_norm_on_device(*m.store, o.grad_clip);
        else if (o.grad_clip > 0) nn::clip_grad_norm(*m.store, o.grad_clip);
        m.optimizer->step();
      }
      m.scheduler->on_batch_end();
      m.apply_lrs();
      Queued now{loss.detach(), b->index, b->size(), m.group_lr("decoder.")};
      if (queued) settle(*queued);
      queued = std::move(now);
    }
    if (queued) settle(*queued);
    progress.finish();
    EpochRecord r;
    r.epoch = epoch;
    r.train_loss = batches > 0 ? loss_sum / static_cast<double>(batches) : 0;
    m.val_loader->seek({0, 0});
    r.val_loss = teacher_forced_loss(*model_, *m.val_loader, o.alpha_c, m.device);
    m.val_loader->seek({0, 0});
    FreeRunningResult fr = evaluate_free_running(*model_, *m.val_loader, *vocab_, decode, m.device, o.max_eval_images);
    r.scores = fr.scores;
    r.decoder_lr = m.group_lr("decoder.");
    r.encoder_lr = m.group_lr("encoder.");
    const double value = tracked_value(o.track, r);
    bool best = m.history.empty();
    for (const auto& h : m.history) {
      const double hv = tracked_value(o.track, h);
      best = direction_of(o.track) == Direction::Minimize ? value < hv : value > hv;
      if (!best) break;
    }
    r.best = best;
    if (m.early) m.early->update(value);
    m.scheduler->on_epoch_end(value);
    m.apply_lrs();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m.history.push_back(r);
    m.completed_epochs = epoch;

    std::ostringstream line;
    line << std::fixed << std::setprecision(4) << "epoch " << epoch << "/" << o.epochs << "  train loss "
         << r.train_loss << "  val loss (teacher-forced) " << r.val_loss << "  val "
         << (o.eval_beam > 1 ? "beam " + std::to_string(o.eval_beam) : std::string("greedy")) << ": "
         << format_scores(r.scores) << std::setprecision(1) << "  (" << r.seconds << " s)"
         << (best ? "  best" : "");
    m.log << line.str() << std::endl;
    metrics_log.append(r.to_json());

    // Checkpoints: the model, then the trainer state; both written atomically.
    nn::save_checkpoint(m.file("last.safetensors").string(), *model_, m.vocab_tokens(*vocab_));
    if (best) nn::save_checkpoint(m.file("best.safetensors").string(), *model_, m.vocab_tokens(*vocab_));
    NamedTensors state;
    for (auto& [n, t] : m.optimizer->export_state()) state.emplace_back("optim." + n, t);
    state.emplace_back("trainer.epoch", Tensor::from_vector<int64_t>({epoch}, {1}));
    state.emplace_back("trainer.generator", int64_pair(static_cast<int64_t>(m.gen.seed()),
                                                       static_cast<int64_t>(m.gen.offset())));
    const data::LoaderPosition pos = m.train_loader->position();
    state.emplace_back("trainer.loader", int64_pair(pos.epoch, pos.batch));
    nlohmann::json hist = nlohmann::json::array();
    for (const auto& h : m.history) hist.push_back(h.to_json());
    std::map<std::string, std::string> meta{{"format", "caption-trainer-state/1"},
                                            {"scheduler", m.scheduler->export_state().dump()},
                                            {"history", hist.dump()}};
    if (m.early) meta["early_stopping"] = m.early->export_state().dump();
    save_tensors(m.file("last.state.safetensors").string(), state, meta);

    // Plots of the run so far.
    LineChart loss_chart("Loss per epoch", "epoch", "loss");
    LineChart metric_chart("Validation metrics (free-running decoding)", "epoch", "score");
    Series train{"train loss", {}, {}}, val{"val loss (teacher-forced)", {}, {}};
    Series b4{"BLEU-4", {}, {}}, cider{"CIDEr-D", {}, {}}, rouge{"ROUGE-L", {}, {}};
    for (const auto& h : m.history) {
      train.x.push_back(h.epoch); train.y.push_back(h.train_loss);
      val.x.push_back(h.epoch); val.y.push_back(h.val_loss);
      b4.x.push_back(h.epoch); b4.y.push_back(h.scores.bleu[3]);
      cider.x.push_back(h.epoch); cider.y.push_back(h.scores.cider_d);
      rouge.x.push_back(h.epoch); rouge.y.push_back(h.scores.rouge_l);
    }
    loss_chart.add(train);
    loss_chart.add(val);
    loss_chart.write(m.file("loss.svg").string());
    metric_chart.add(b4);
    metric_chart.add(cider);
    metric_chart.add(rouge);
    metric_chart.write(m.file("metrics.svg").string());
    if (!lr_values.empty()) {
      LineChart lr_chart("Decoder learning rate", "step (this session)", "lr");
      lr_chart.add({"decoder lr", lr_steps, lr_values});
      lr_chart.write(m.file("lr.svg").string());
    }
    if (m.early && m.early->should_stop()) {
      m.log << "early stopping: no improvement of " << metric_name(o.track) << " for " << o.early_stopping
            << " epochs\n";
      break;
    }
  }
  if (m.train_step) {
    const nn::TrainStepStats& s = m.train_step->stats();
    m.log << "training steps: " << s.replays << " replayed from " << s.captures << " recording(s), "
          << s.eager_steps << " eager";
    if (s.failed_captures > 0) m.log << ", " << s.failed_captures << " shape(s) could not be recorded";
    m.log << "\n";
  }
  return m.history;
}

LrFindResult Trainer::lr_find(double start, double end, int steps) {
  Impl& m = *impl_;
  LrFinderOptions lo;
  lo.start = start;
  lo.end = end;
  lo.steps = steps;
  LrFinder finder(lo);
  model_->train();
  while (true) {
    auto b = m.train_loader->next();
    if (!b) continue;  // next epoch
    const double lr = finder.next_lr();
    for (size_t g = 0; g < m.optimizer->num_groups(); ++g) m.optimizer->set_lr(g, lr);
    m.optimizer->zero_grad();
    AutocastGuard autocast(m.o.amp);
    nn::CaptionBatch cb{b->captions, b->lengths.to_vector<int64_t>()};
    nn::DecoderOutput out = model_->decoder.forward(m.features_of(*model_, *b), cb, m.o.teacher_forcing, m.gen);
    nn::LossParts loss = nn::caption_loss(out, m.o.alpha_c);
    loss.total.backward();
    if (m.o.grad_clip > 0) nn::clip_grad_norm(*m.store, m.o.grad_clip);
    m.optimizer->step();
    if (!finder.record(loss.total.item())) break;
  }
  LrFindResult r;
  for (const auto& p : finder.history()) {
    r.lrs.push_back(p.lr);
    r.losses.push_back(p.smoothed_loss);
  }
  r.suggestion = finder.suggestion();
  r.plot = m.file("lr_find.svg").string();
  finder.write_plot(r.plot);
  return r;
}

double Trainer::overfit_one_batch(int steps) {
  Impl& m = *impl_;
  auto b = m.train_loader->next();
  CAPTION_CHECK(b.has_value(), "overfit: the training loader yielded no batch");
  const Tensor features = m.features_of(*model_, *b).detach();
  nn::CaptionBatch cb{b->captions, b->lengths.to_vector<int64_t>()};
  double last = 0;
  model_->train();
  for (int s = 1; s <= steps; ++s) {
    m.optimizer->zero_grad();
    AutocastGuard autocast(m.o.amp);
    nn::DecoderOutput out = model_->decoder.forward(features, cb, 1.0, m.gen);
    nn::LossParts loss = nn::caption_loss(out, m.o.alpha_c);
    loss.total.backward();
    if (m.o.grad_clip > 0) nn::clip_grad_norm(*m.store, m.o.grad_clip);
    m.optimizer->step();
    last = loss.total.item();
    if (s == 1 || s % 50 == 0 || s == steps) m.log << "overfit step " << s << ": loss " << last << "\n";
  }
  model_->eval();
  const auto decoded = nn::greedy_decode(model_->decoder, features, model_->config().max_decode_len);
  const std::vector<int64_t> tokens = b->captions.to_vector<int64_t>();
  const int64_t L = b->captions.size(1);
  for (int64_t i = 0; i < b->size(); ++i) {
    std::string ref, hyp;
    for (int64_t t = 1; t < L; ++t) {
      const int64_t id = tokens[i * L + t];
      if (id == nn::kEosId || id == nn::kPadId) break;
      ref += vocab_->token(static_cast<text::TokenId>(id)) + " ";
    }
    for (int64_t id : decoded[i].tokens) hyp += vocab_->token(static_cast<text::TokenId>(id)) + " ";
    m.log << "  ref:  " << ref << "\n  pred: " << hyp << "\n";
  }
  model_->train();
  return last;
}

std::string Trainer::gradient_flow_plot() {
  Impl& m = *impl_;
  auto b = m.train_loader->next();
  if (!b) b = m.train_loader->next();
  CAPTION_CHECK(b.has_value(), "gradient flow: the training loader yielded no batch");
  model_->train();
  m.optimizer->zero_grad();
  AutocastGuard autocast(m.o.amp);
  nn::CaptionBatch cb{b->captions, b->lengths.to_vector<int64_t>()};
  nn::DecoderOutput out = model_->decoder.forward(m.features_of(*model_, *b), cb, m.o.teacher_forcing, m.gen);
  nn::caption_loss(out, m.o.alpha_c).total.backward();
  std::vector<std::string> names;
  std::vector<double> means, maxes;
  for (const auto& e : m.store->entries()) {
    if (!e.trainable()) continue;
    const std::vector<float> g = m.store->grad(e.name).to_vector<float>();
    double s = 0, mx = 0;
    for (float v : g) {
      s += std::abs(v);
      mx = std::max(mx, static_cast<double>(std::abs(v)));
    }
    names.push_back(e.name);
    means.push_back(g.empty() ? 0 : s / static_cast<double>(g.size()));
    maxes.push_back(mx);
  }
  m.optimizer->zero_grad();
  const std::string path = m.file("grad_flow.svg").string();
  write_bar_chart(path, "Gradient flow (one batch)", names, {BarSeries{"mean |grad|", means}, BarSeries{"max |grad|", maxes}});
  return path;
}

}  // namespace caption::pipeline
