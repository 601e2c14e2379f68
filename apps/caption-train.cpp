// caption-train: training, evaluation and data generation from the command line. This
// file only parses options and prints; the work is done by libcaption (pipeline/).
//
//   caption-train synth     --out DIR [--seed N] [--train N --val N --test N] [--image-size N]
//   caption-train fit       --data DIR [options] | --config FILE
//   caption-train lr-find   (fit's options) [--start 1e-6 --end 0.5 --steps 500]
//   caption-train overfit   (fit's options) [--steps 300]       sanity check on one batch
//   caption-train grad-flow (fit's options)                     gradient-flow plot
//   caption-train evaluate  --checkpoint FILE --data DIR [--split test] [--beam K]
//                           [--predictions-out FILE] | --predictions FILE (no model)
//
// Exit status: 0 on success, 1 for an error while running (bad data, files, values),
// 2 for a usage error (unknown option or subcommand, a value of the wrong kind).
//
// Every option of fit can come from a TOML/INI config file (--config), the command line
// overriding it. Boolean options have --no- forms.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "data/synthetic/generator.h"
#include "data/text/normalize.h"
#include "engine/profile.h"
#include "kernels/cpu/blas.h"
#include "pipeline/evaluate.h"
#include "pipeline/session.h"
#include "pipeline/trainer.h"

using namespace caption;
using namespace caption::pipeline;

namespace {

template <typename E>
CLI::Option* add_enum(CLI::App* app, const std::string& name, E& value, const std::map<std::string, E>& names,
                      const std::string& help) {
  return app->add_option(name, value, help)->transform(CLI::CheckedTransformer(names, CLI::ignore_case));
}

void add_fit_options(CLI::App* app, TrainOptions& o, std::string& fine_tune, std::string& activation) {
  app->add_option("--config", "TOML file with any of these options (the command line wins)");
  // A value given twice (config file, then command line) takes the last one.
  app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_enum(app, "--format", o.data.format,
           std::map<std::string, DatasetFormat>{{"flickr8k", DatasetFormat::Flickr8k}, {"karpathy", DatasetFormat::Karpathy}},
           "dataset layout: flickr8k (token + split files) or karpathy (split JSON)");
  app->add_option("--data", o.data.root, "Flickr8k-layout folder (the synthetic set uses it too)");
  app->add_option("--karpathy-json", o.data.karpathy_json, "Karpathy split file (dataset_*.json)");
  app->add_option("--image-root", o.data.image_root, "images folder for the Karpathy format");
  app->add_flag("--lowercase,!--no-lowercase", o.text.lowercase, "lowercase captions");
  app->add_flag("--remove-punctuation,!--no-remove-punctuation", o.text.remove_punctuation, "delete ASCII punctuation");
  app->add_flag("--alpha-only,!--no-alpha-only", o.text.alpha_only, "drop tokens that are not alphabetic (numbers)");
  app->add_flag("--lemmatize,!--no-lemmatize", o.text.lemmatize, "WordNet lemmatising");
  app->add_flag("--stem,!--no-stem", o.text.stem, "Porter stemming");
  app->add_flag("--remove-stopwords,!--no-remove-stopwords", o.text.remove_stopwords, "remove English stopwords");
  app->add_option("--min-token-len", o.text.min_token_len, "drop shorter tokens");
  app->add_option("--min-word-freq", o.min_word_freq, "keep words seen at least this often in training");
  add_enum(app, "--items", o.items,
           std::map<std::string, ItemsPerEpoch>{{"every-caption", ItemsPerEpoch::EveryCaption},
                                                {"one-per-image", ItemsPerEpoch::OneCaptionPerImage}},
           "per epoch: every (image, caption) pair, or one random caption per image");
  app->add_option("--encoder", o.model.encoder, "resnet18, resnet34, resnet50, resnet101 or resnet152");
  app->add_option("--encoder-weights", o.encoder_weights, "converted torchvision weights (weights-tools)");
  app->add_option("--fine-tune", fine_tune, "none, all or from:N (N in 2..4)");
  app->add_option("--calibrate-batches", o.calibrate_batches,
                  "without --encoder-weights: batches of training images that set batch-norm statistics (0: off)");
  app->add_option("--image-size", o.model.image_size, "input images are resized to this square");
  app->add_option("--encoder-size", o.model.encoder_size, "S: the encoder grid is S x S");
  app->add_option("--embed-dim", o.model.embed_dim, "word embedding size E");
  app->add_option("--decoder-dim", o.model.decoder_dim, "LSTM size H");
  app->add_option("--attention-dim", o.model.attention_dim, "attention size A");
  app->add_option("--attention-activation", activation, "tanh or relu");
  app->add_option("--dropout", o.model.dropout, "dropout before the output layer");
  app->add_option("--max-caption-len", o.model.max_caption_len, "words per training caption (longer are truncated)");
  app->add_option("--max-decode-len", o.model.max_decode_len, "decoding steps, <eos> included");
  app->add_option("--glove", o.glove, "GloVe text file to initialise the embeddings");
  app->add_flag("--train-embeddings,!--freeze-embeddings", o.train_embeddings, "fine-tune the embeddings");
  app->add_option("--teacher-forcing", o.teacher_forcing, "probability of feeding the true previous word");
  app->add_option("--alpha-c", o.alpha_c, "weight of the doubly stochastic attention term");
  add_enum(app, "--optimizer", o.optimizer,
           std::map<std::string, OptimizerKind>{{"adam", OptimizerKind::Adam}, {"adamw", OptimizerKind::AdamW},
                                                {"sgd", OptimizerKind::Sgd}},
           "adam, adamw or sgd");
  app->add_option("--momentum", o.momentum, "SGD momentum");
  app->add_flag("--nesterov,!--no-nesterov", o.nesterov, "SGD with Nesterov momentum");
  app->add_option("--encoder-lr", o.encoder_lr, "encoder learning rate");
  app->add_option("--decoder-lr", o.decoder_lr, "decoder learning rate");
  app->add_option("--weight-decay", o.weight_decay, "weight decay (decoupled for adamw)");
  app->add_option("--grad-clip", o.grad_clip, "clip the global gradient norm (0: off)");
  app->add_option("--step-bucket", o.step_bucket,
                  "GPU, frozen encoder, full teacher forcing: pad each batch's caption steps to a "
                  "multiple of this for the recorded training step (1: no padding, one recording "
                  "per length; larger: fewer recordings, more padded work)");
  app->add_flag("--amp,!--no-amp", o.amp,
                "mixed precision: bfloat16 products in training steps, float32 everything else");
  app->add_option("--batch-size", o.batch_size, "training batch size");
  app->add_option("--eval-batch-size", o.eval_batch_size, "evaluation batch size");
  app->add_option("--epochs", o.epochs, "epochs");
  add_enum(app, "--scheduler", o.scheduler,
           std::map<std::string, SchedulerKind>{{"none", SchedulerKind::None}, {"onecycle", SchedulerKind::OneCycle},
                                                {"plateau", SchedulerKind::Plateau}},
           "none, onecycle (stepped per batch) or plateau (per epoch)");
  app->add_option("--max-lr", o.max_lr, "one-cycle peak decoder rate (default: --decoder-lr)");
  app->add_option("--min-lr", o.min_lr, "one-cycle final rate (default: max-lr / 10)");
  app->add_option("--pct-start", o.pct_start, "one-cycle warm-up fraction");
  app->add_option("--plateau-factor", o.plateau_factor, "reduce-on-plateau factor");
  app->add_option("--plateau-patience", o.plateau_patience, "reduce-on-plateau patience (epochs)");
  app->add_option("--plateau-threshold", o.plateau_threshold, "reduce-on-plateau relative threshold");
  app->add_option("--plateau-cooldown", o.plateau_cooldown, "reduce-on-plateau cooldown (epochs)");
  app->add_option("--early-stopping", o.early_stopping, "patience in epochs against the best so far (0: off)");
  add_enum(app, "--track", o.track,
           std::map<std::string, TrackedMetric>{{"bleu4", TrackedMetric::Bleu4}, {"cider", TrackedMetric::Cider},
                                                {"val_loss", TrackedMetric::ValLoss}},
           "metric for the best checkpoint, early stopping and plateau");
  app->add_option("--eval-beam", o.eval_beam, "beam width of validation decoding (1: greedy)");
  app->add_option("--length-penalty", o.length_penalty, "beam length normalisation exponent");
  app->add_option("--max-eval-images", o.max_eval_images, "validate on at most this many images (0: all)");
  app->add_option("--seed", o.seed, "random seed");
  app->add_option("--threads", o.threads, "BLAS threads (0: all cores)");
  app->add_option("--workers", o.workers, "image decoding threads");
  app->add_option("--device", o.device, "cpu, cuda, cuda:N or auto");
  app->add_option("--output", o.output, "run folder (checkpoints, logs, plots)");
  app->add_flag("--resume,!--no-resume", o.resume, "continue the run in --output");
  app->add_flag("--feature-cache,!--no-feature-cache", o.feature_cache, "cache features of a frozen encoder");
  app->add_option("--log-every", o.log_every, "batches between progress lines when not on a terminal");
  app->add_option("--stop-after", o.stop_after, "end this session after N epochs (continue later with --resume)");
}

// CLI11 2.1 reads config files only for the top-level command, so a subcommand's
// --config FILE is expanded here into the equivalent options, placed before the ones
// given on the command line so that those win. Keys are option names without dashes;
// booleans become --name or --no-name.
std::vector<std::string> expand_config(CLI::App& app, std::vector<std::string> args) {
  if (args.size() < 2) return args;
  CLI::App* sub = nullptr;
  try {
    sub = app.get_subcommand(args[1]);
  } catch (const CLI::OptionNotFound&) {
    return args;
  }
  for (size_t i = 2; i < args.size(); ++i) {
    std::string path;
    size_t consumed = 0;
    if (args[i] == "--config" && i + 1 < args.size()) {
      path = args[i + 1];
      consumed = 2;
    } else if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
      consumed = 1;
    } else {
      continue;
    }
    std::vector<CLI::ConfigItem> items;
    try {
      items = CLI::ConfigTOML().from_file(path);
    } catch (const CLI::ParseError& e) {
      throw Error(str("--config ", path, ": ", e.what()));
    }
    std::vector<std::string> expanded;
    for (const CLI::ConfigItem& item : items) {
      if (item.name == "++" || item.name == "--") continue;  // section markers
      CAPTION_CHECK(item.parents.empty(), path, ": sections are not used (option '", item.fullname(), "')");
      const CLI::Option* opt = nullptr;
      try {
        opt = sub->get_option("--" + item.name);
      } catch (const CLI::OptionNotFound&) {
        throw Error(str(path, ": unknown option '", item.name, "' for caption-train ", args[1]));
      }
      if (opt->get_expected_max() == 0) {  // a flag
        CAPTION_CHECK(item.inputs.size() == 1 && (item.inputs[0] == "true" || item.inputs[0] == "false"), path,
                      ": option '", item.name, "' is on/off: write true or false");
        expanded.push_back(item.inputs[0] == "true" ? "--" + item.name : "--no-" + item.name);
      } else {
        for (const std::string& v : item.inputs) {
          expanded.push_back("--" + item.name);
          expanded.push_back(v);
        }
      }
    }
    args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i + consumed));
    args.insert(args.begin() + 2, expanded.begin(), expanded.end());
    break;
  }
  return args;
}

int run(int argc, char** argv) {
  CLI::App app{"caption-train: train and evaluate a Show, Attend and Tell captioner"};
  app.require_subcommand(1);

  // synth
  CLI::App* synth = app.add_subcommand("synth", "generate the synthetic captioning set (Flickr8k layout)");
  std::string synth_out;
  data::SyntheticOptions so;
  synth->add_option("--out", synth_out, "output folder")->required();
  synth->add_option("--seed", so.seed, "seed");
  synth->add_option("--image-size", so.image_size, "image side in pixels");
  synth->add_option("--train", so.train_images, "training images");
  synth->add_option("--val", so.val_images, "validation images");
  synth->add_option("--test", so.test_images, "test images");
  bool overwrite = false;
  synth->add_flag("--overwrite", overwrite, "replace an existing set");

  TrainOptions o;
  std::string fine_tune = "none", activation = "tanh";
  CLI::App* fit = app.add_subcommand("fit", "train (or resume) a model");
  add_fit_options(fit, o, fine_tune, activation);
  CLI::App* lr = app.add_subcommand("lr-find", "learning-rate range test");
  add_fit_options(lr, o, fine_tune, activation);
  double lr_start = 1e-6, lr_end = 0.5;
  int lr_steps = 500;
  lr->add_option("--start", lr_start, "first learning rate");
  lr->add_option("--end", lr_end, "last learning rate");
  lr->add_option("--steps", lr_steps, "steps (batches)");
  CLI::App* overfit = app.add_subcommand("overfit", "sanity check: overfit one batch and print its predictions");
  add_fit_options(overfit, o, fine_tune, activation);
  int overfit_steps = 300;
  overfit->add_option("--steps", overfit_steps, "training steps on the batch");
  CLI::App* grad = app.add_subcommand("grad-flow", "plot mean and max |grad| per parameter for one batch");
  add_fit_options(grad, o, fine_tune, activation);

  // evaluate
  CLI::App* eval = app.add_subcommand("evaluate", "score a checkpoint (or a predictions file) on a split");
  std::string checkpoint, predictions_in, predictions_out, split_name = "test", device = "auto";
  DatasetSpec spec;
  nn::DecodeOptions decode;
  int eval_batch = 64;
  eval->add_option("--checkpoint", checkpoint, "model file");
  eval->add_option("--predictions", predictions_in, "score this JSON-lines file instead of decoding");
  eval->add_option("--predictions-out", predictions_out, "write the model's captions here (JSON lines)");
  add_enum(eval, "--format", spec.format,
           std::map<std::string, DatasetFormat>{{"flickr8k", DatasetFormat::Flickr8k}, {"karpathy", DatasetFormat::Karpathy}},
           "dataset layout");
  eval->add_option("--data", spec.root, "Flickr8k-layout folder");
  eval->add_option("--karpathy-json", spec.karpathy_json, "Karpathy split file");
  eval->add_option("--image-root", spec.image_root, "images folder for the Karpathy format");
  eval->add_option("--split", split_name, "train, val or test");
  eval->add_option("--beam", decode.beam, "beam width (1: greedy)")->check(CLI::PositiveNumber);
  eval->add_option("--length-penalty", decode.length_penalty, "length normalisation exponent");
  eval->add_option("--max-len", decode.max_len, "decoding steps (default: the checkpoint's)");
  eval->add_option("--batch-size", eval_batch, "images per batch");
  eval->add_option("--device", device, "cpu, cuda, cuda:N or auto");
  decode.max_len = 0;

  try {
    std::vector<std::string> args = expand_config(app, std::vector<std::string>(argv, argv + argc));
    std::reverse(args.begin(), args.end());
    args.pop_back();  // the program name
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    // Help and version exit 0; every usage error exits 2 (CLI11's own codes vary).
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (synth->parsed()) {
    CAPTION_CHECK(overwrite || !std::filesystem::exists(synth_out), synth_out,
                  ": already exists (use --overwrite to replace it)");
    so.existing = overwrite ? data::ExistingOutput::Replace : data::ExistingOutput::Refuse;
    const auto images = data::generate_synthetic_dataset(synth_out, so);
    std::cout << "synthetic set: " << images.size() << " images in " << synth_out << "\n";
    return 0;
  }
  if (eval->parsed()) {
    const auto split = data::parse_split(split_name);
    CAPTION_CHECK(split.has_value(), "--split '", split_name, "': expected train, val, test or restval");
    const data::CaptionDataset dataset = load_dataset(spec);
    if (!predictions_in.empty()) {
      // Scoring without a model: the default normalisation of MODEL_SPEC section 1.
      text::Normalizer normalizer{text::TextOptions{}};
      const auto scores = score_predictions(read_predictions(predictions_in), dataset, *split, normalizer, predictions_in);
      std::cout << predictions_in << " on " << split_name << ": " << format_scores(scores) << "\n";
      return 0;
    }
    CAPTION_CHECK(!checkpoint.empty(), "evaluate: give --checkpoint (or --predictions)");
    const Device dev = parse_device(device);
    nn::Checkpoint ck = nn::load_checkpoint(checkpoint, dev);
    if (decode.max_len == 0) decode.max_len = ck.config.max_decode_len;
    const text::TextOptions topts = text_options_of(ck.config, checkpoint);
    text::Normalizer normalizer(topts);
    const text::Vocabulary vocab = text::Vocabulary::from_tokens(ck.vocab, checkpoint);
    data::LoaderOptions lo;
    lo.splits = {*split};
    lo.items = data::EpochItems::OneCaptionPerImage;
    lo.shuffle = data::Shuffle::No;
    lo.batch_size = eval_batch;
    data::DataLoader loader(dataset, normalizer, vocab, image_transform(ck.config), lo);
    const FreeRunningResult r = evaluate_free_running(*ck.model, loader, vocab, decode, dev);
    std::cout << checkpoint << " on " << split_name << " (" << r.images << " images, "
              << (decode.beam > 1 ? "beam " + std::to_string(decode.beam) : std::string("greedy"))
              << "): " << format_scores(r.scores) << "\n";
    if (!predictions_out.empty()) {
      write_predictions(predictions_out, r.predictions);
      std::cout << "predictions written to " << predictions_out << "\n";
    }
    return 0;
  }

  o.model.fine_tune = nn::FineTune::parse(fine_tune);
  o.model.attention_activation = nn::parse_activation(activation, "--attention-activation");
  Trainer trainer(o, std::cout);
  if (fit->parsed()) {
    const auto history = trainer.fit();
    std::cout << "done: " << history.size() << " epochs; checkpoints in " << o.output << "\n";
  } else if (lr->parsed()) {
    const LrFindResult r = trainer.lr_find(lr_start, lr_end, lr_steps);
    std::cout << "suggested max_lr: " << r.suggestion << " (plot: " << r.plot << ")\n";
  } else if (overfit->parsed()) {
    const double loss = trainer.overfit_one_batch(overfit_steps);
    std::cout << "final loss on the batch: " << loss << "\n";
  } else if (grad->parsed()) {
    std::cout << "gradient flow plot: " << trainer.gradient_flow_plot() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    // Denormal numbers flushed to zero, here and in OpenBLAS's threads (kernels/cpu/blas.h):
    // a CPU training step's gradients underflow into them.
    kernels::cpu::set_flush_denormals(kernels::cpu::default_flush_denormals());
    const int status = run(argc, argv);
    // CAPTION_PROFILE=1: where the run spent its time, op by op.
    if (OpProfile::enabled()) std::cerr << OpProfile::report();
    return status;
  } catch (const std::exception& e) {
    std::cerr << "caption-train: error: " << e.what() << "\n";
    return 1;
  }
}
