// caption: captions images with a trained checkpoint. Argument parsing and printing
// only; the work is pipeline::Captioner and pipeline::write_attention_map.
//
// Output: one caption per line on stdout (just the caption for a single image,
// "<path>\t<caption>" when several were given), or with --json one JSON object per image
// and line (JSON Lines). --attention-map DIR writes DIR/<image stem>.png per image (a
// stem already used in this run gets "-2", "-3", ...) and reports each file on stderr
// (and as "attention_map" in the JSON), so stdout stays one record per image.
//
// IMAGE "-" (alone) reads one encoded image from standard input, named "stdin" in the
// output, errors and attention-map file (`curl -s URL | caption --checkpoint M -`).
//
// Exit status: 0 when every image was captioned; 1 when an image could not be read
// (reported on stderr, naming it; the other images are still captioned) or the run
// failed (missing or damaged checkpoint, unwritable output); 2 for usage errors.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/autocast.h"
#include "engine/device.h"
#include "engine/error.h"
#include "engine/profile.h"
#include "kernels/cpu/blas.h"
#include "pipeline/attention_map.h"
#include "pipeline/captioner.h"

namespace {

using caption::pipeline::CaptionResult;
namespace fs = std::filesystem;

constexpr int kExitRuntimeError = 1;
constexpr int kExitUsage = 2;

struct Options {
  std::string checkpoint;
  std::vector<std::string> images;
  int beam = 1;
  double length_penalty = 0;
  int max_len = 0;  // 0: the checkpoint's max_decode_len
  bool json = false;
  std::string attention_dir;
  std::string device = "auto";
  int batch_size = caption::pipeline::Captioner::kDefaultBatchSize;
  int read_threads = -1;  // -1: the device's default (Captioner::default_read_threads)
  bool amp = false;
};

// Accepts the spellings parse_device understands; whether the device exists is a
// run-time question (exit 1), not a usage error.
CLI::Validator device_syntax() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text == "cpu" || text == "cuda" || text == "auto") return {};
        if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
            text.find_first_not_of("0123456789", 5) == std::string::npos)
          return {};
        return "expected cpu, cuda, cuda:N or auto, got '" + text + "'";
      },
      "cpu|cuda|cuda:N|auto");
}

// DIR/<stem>.png, with a numeric suffix when two images share a stem.
fs::path attention_path(const fs::path& dir, const std::string& image, std::set<std::string>& used) {
  std::string stem = fs::path(image).stem().string();
  if (stem.empty()) stem = "image";
  std::string name = stem;
  for (int n = 2; used.count(name); ++n) name = stem + "-" + std::to_string(n);
  used.insert(name);
  return dir / (name + ".png");
}

// Standard input's bytes, up to one more than `limit` (the decoder then refuses the
// file as too large, so an endless pipe cannot exhaust memory).
std::vector<std::uint8_t> read_stdin(std::uintmax_t limit) {
  std::vector<std::uint8_t> bytes;
  std::vector<std::uint8_t> chunk(size_t{1} << 16);
  size_t n = 0;
  while ((n = std::fread(chunk.data(), 1, chunk.size(), stdin)) > 0) {
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
    if (bytes.size() > limit) break;
  }
  if (std::ferror(stdin)) throw caption::Error("stdin: could not be read");
  return bytes;
}

nlohmann::json to_json(const CaptionResult& r) {
  nlohmann::json j;
  j["path"] = r.image_path;
  j["caption"] = r.text;
  j["words"] = r.words;
  j["log_probs"] = r.log_probs;
  j["attention"] = r.attention;
  j["grid_size"] = r.grid_size;
  j["score"] = r.score;
  j["finished"] = r.finished;
  return j;
}

int run(const Options& o) {
  caption::pipeline::Captioner captioner(o.checkpoint, caption::parse_device(o.device));
  captioner.set_batch_size(o.batch_size);
  if (o.read_threads >= 0) captioner.set_read_threads(o.read_threads);
  caption::nn::DecodeOptions decode = captioner.default_options();
  decode.beam = o.beam;
  decode.length_penalty = o.length_penalty;
  if (o.max_len > 0) decode.max_len = o.max_len;

  const fs::path map_dir = o.attention_dir;
  if (!o.attention_dir.empty()) {
    std::error_code ec;
    fs::create_directories(map_dir, ec);
    CAPTION_CHECK(!ec && fs::is_directory(map_dir), o.attention_dir,
                  ": cannot create the attention-map directory", ec ? ": " + ec.message() : "");
  }
  std::set<std::string> used_names;
  const bool several = o.images.size() > 1;
  int failed = 0;
  const caption::AutocastGuard autocast(o.amp);

  const auto print = [&](const CaptionResult& r, const caption::pipeline::PreparedImage& prepared) {
    std::string map_file;
    if (!o.attention_dir.empty()) {
      const fs::path path = attention_path(map_dir, r.image_path, used_names);
      caption::pipeline::write_attention_map(path, prepared.image, r);
      map_file = path.string();
    }
    if (o.json) {
      nlohmann::json j = to_json(r);
      if (!map_file.empty()) j["attention_map"] = map_file;
      std::cout << j.dump() << '\n';
    } else if (several) {
      std::cout << r.image_path << '\t' << r.text << '\n';
    } else {
      std::cout << r.text << '\n';
    }
    std::cout.flush();
    if (!map_file.empty()) std::cerr << "caption: attention map for " << r.image_path << ": " << map_file << '\n';
  };
  const auto report = [&](const std::string& path, const caption::Error& e) {
    ++failed;
    // The decoder's messages name the file; say which input it was in any case.
    const std::string message = e.what();
    std::cerr << "caption: error: " << (message.find(path) == std::string::npos ? path + ": " : "") << message
              << '\n';
  };

  if (o.images.size() == 1 && o.images.front() == "-") {
    const std::string name = "stdin";
    std::vector<caption::pipeline::PreparedImage> prepared;
    try {
      prepared.push_back(captioner.prepare_encoded(read_stdin(captioner.transform().limits.max_file_bytes), name));
    } catch (const caption::Error& e) {
      report(name, e);
    }
    if (!prepared.empty()) print(captioner.caption_prepared(prepared, decode).front(), prepared.front());
  } else {
    captioner.caption_each(o.images, decode, print, report);
  }
  if (failed > 0) {
    std::cerr << "caption: " << failed << " of " << o.images.size() << " images could not be read\n";
    return kExitRuntimeError;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Captions images with a trained Show, Attend and Tell checkpoint.", "caption"};
  app.footer(
      "Prints one caption per line (\"<image>\\t<caption>\" when several images are given),\n"
      "or one JSON object per image with --json. Exit status: 0 all captioned; 1 an image\n"
      "could not be read (the others are still captioned) or the run failed; 2 usage error.");
  app.add_option("--checkpoint", o.checkpoint, "Model checkpoint (.safetensors) written by caption-train")
      ->required()
      ->type_name("FILE");
  app.add_option("--beam", o.beam, "Beam width (1 = greedy decoding)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--length-penalty", o.length_penalty,
                 "Divide finished beam scores by length^x (0 = off)")
      ->capture_default_str();
  app.add_option("--max-len", o.max_len, "Maximum decoded tokens, <eos> included (default: the checkpoint's)")
      ->check(CLI::Range(1, 100000));
  app.add_flag("--json", o.json, "Print one JSON object per image: path, caption, words, log_probs, attention, score");
  app.add_option("--attention-map", o.attention_dir, "Write DIR/<image stem>.png attention figures (DIR is created)")
      ->type_name("DIR");
  app.add_option("--device", o.device, "Device to run on")->check(device_syntax())->capture_default_str();
  app.add_flag("--amp,!--no-amp", o.amp,
               "bfloat16 products and convolutions, float32 the rest (autocast); on a GPU the "
               "encoder keeps its activations in NHWC bfloat16 (CAPTION_ENCODER_NHWC=0: off); "
               "on a CPU an exact emulation, slower than float32");
  app.add_option("--batch-size", o.batch_size, "Images per encoder pass")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--read-threads", o.read_threads,
                 "Threads reading images ahead of the model (0: read each batch before captioning it; "
                 "default: 1 on a CPU, up to 8 on a GPU)")
      ->check(CLI::Range(0, 256));
  app.add_option("IMAGE", o.images, "Images to caption (JPEG, PNG, BMP, GIF); '-' alone: one image from standard input")
      ->required();
  app.set_version_flag("--version", std::string("caption ") + CAPTION_VERSION);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; everything else is usage.
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  if (o.images.size() > 1 && std::find(o.images.begin(), o.images.end(), "-") != o.images.end()) {
    std::cerr << "caption: IMAGE '-' (standard input) must be the only image\n";
    return kExitUsage;
  }
  try {
    // Denormal numbers flushed to zero, here and in OpenBLAS's threads (kernels/cpu/blas.h).
    caption::kernels::cpu::set_flush_denormals(caption::kernels::cpu::default_flush_denormals());
    const int status = run(o);
    // CAPTION_PROFILE=1: where the run spent its time, op by op.
    if (caption::OpProfile::enabled()) std::cerr << caption::OpProfile::report();
    return status;
  } catch (const std::exception& e) {
    std::cerr << "caption: error: " << e.what() << '\n';
    return kExitRuntimeError;
  }
}
