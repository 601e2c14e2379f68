// The CPU speed race of the model (issue 3), our side. bench/cpu_race.py writes the
// weights and inputs (the same ones PyTorch uses), runs this program and PyTorch in the
// same run, and prints the table with ratios. This program prints one JSON object with
// the median milliseconds of each row.
//
//   bench_model --checkpoint model.safetensors --inputs inputs.safetensors [--repeats N]
//
// inputs.safetensors holds: images1 [1,3,224,224], images8 [8,3,224,224],
// features [32,P,D], captions [32,L] int64 (sorted by length), lengths [32] int64,
// step_tokens [32] int64.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/profile.h"
#include "engine/tensor_io.h"
#include "kernels/cpu/blas.h"
#include "nn/checkpoint.h"
#include "nn/folded_resnet.h"
#include "nn/optim.h"

using namespace caption;

namespace {

double median_ms(int repeats, const std::function<void()>& fn) {
  fn();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  // The median as Python's statistics.median takes it (cpu_race.py's PyTorch side): the
  // mean of the middle two for an even count (encoder_b8 runs 2 repeats by default, where
  // t[size / 2] would be the slower of the two).
  const size_t n = t.size();
  return n % 2 == 1 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  std::string checkpoint, inputs_path;
  int repeats = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--checkpoint" && i + 1 < argc) checkpoint = argv[++i];
    else if (a == "--inputs" && i + 1 < argc) inputs_path = argv[++i];
    else if (a == "--repeats" && i + 1 < argc) repeats = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "bench_model: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (checkpoint.empty() || inputs_path.empty()) {
    std::fprintf(stderr, "usage: bench_model --checkpoint FILE --inputs FILE [--repeats N]\n");
    return 2;
  }
  try {
    // As the programs do (kernels/cpu/blas.h); cpu_race.py sets PyTorch's flag alike.
    kernels::cpu::set_flush_denormals(kernels::cpu::default_flush_denormals());
    nn::Checkpoint ck = nn::load_checkpoint(checkpoint);
    nn::CaptionModel& model = *ck.model;
    LoadedTensors in = load_tensors(inputs_path);
    model.eval();
    // The encoder rows run as `caption` runs them: through a snapshot with every batch
    // norm folded once (nn/folded_resnet.h), unless CAPTION_FOLD_BN=0.
    const std::unique_ptr<nn::FoldedResNet> folded = nn::inference_snapshot(model.encoder);
    const auto encode = [&](const Tensor& images) { return model.encode(images, folded.get()); };
    std::vector<std::pair<std::string, double>> rows;
    // CAPTION_PROFILE=1: each row's ops (warm-up and repeats) on stderr.
    const auto add_row = [&rows](const std::string& name, double ms) {
      rows.emplace_back(name, ms);
      if (!OpProfile::enabled()) return;
      std::fprintf(stderr, "%s: %s", name.c_str(), OpProfile::report().c_str());
      OpProfile::reset();
    };
    OpProfile::reset();
    {
      NoGradGuard ng;
      add_row("encoder_b1", median_ms(repeats, [&] { encode(in.at("images1")); }));
      add_row("encoder_b8", median_ms(std::max(1, repeats / 2), [&] { encode(in.at("images8")); }));
      nn::DecoderState state = model.decoder.init_state(in.at("features"));
      const Tensor tokens = in.at("step_tokens");
      add_row("decoder_step_b32", median_ms(repeats * 4, [&] {
        nn::DecoderState s = state;
        model.decoder.step(tokens, s);
      }));
    }
    {
      // One teacher-forced training step of the decoder on precomputed features:
      // forward, loss, backward, AdamW. Dropout as configured (train mode).
      model.train();
      nn::CaptionBatch batch;
      batch.captions = in.at("captions");
      batch.lengths = in.at("lengths").to_vector<int64_t>();
      nn::ParameterStore store;
      for (auto& r : model.decoder.named_parameters("decoder")) store.add(r.name, *r.tensor);
      store.finalize();
      nn::AdamW optimizer(store);
      Generator gen(1);
      const Tensor features = in.at("features");
      add_row("train_step_b32", median_ms(repeats, [&] {
        optimizer.zero_grad();
        nn::DecoderOutput out = model.decoder.forward(features, batch, 1.0, gen);
        nn::caption_loss(out, 1.0).total.backward();
        optimizer.step();
      }));
      model.eval();
    }
    add_row("greedy_caption_1img", median_ms(repeats, [&] {
      NoGradGuard ng;
      nn::greedy_decode(model.decoder, encode(in.at("images1")), 20);
    }));
    // Which OpenBLAS kernels ran the products (kernels/cpu/blas.h), then the rows.
    std::printf("{\"blas_core\": \"%s\", \"flush_denormals\": %s, \"folded_encoder\": %s",
                kernels::cpu::blas_core().running.c_str(),
                kernels::cpu::flush_denormals() ? "true" : "false", folded ? "true" : "false");
    for (size_t i = 0; i < rows.size(); ++i)
      std::printf(", \"%s\": %.4f", rows[i].first.c_str(), rows[i].second);
    std::printf("}\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
