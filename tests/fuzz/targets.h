// Fuzz targets for every reader of untrusted files: images, safetensors files and
// checkpoints, the caption files of both dataset formats, vocabularies and GloVe text.
//
// The contract they check is the one the README promises for bad input: a file either
// loads, or the reader throws caption::Error whose message names the input. Any other
// exception (a std::out_of_range from a container, a nlohmann::json error, bad_alloc
// from a size read off the file), a crash, a sanitizer report or a hang is a finding.
//
// Used twice: tests/fuzz/fuzz_main.cpp makes each target a libFuzzer program
// (-DCAPTION_FUZZ=ON, clang), and tests/fuzz/corpus_test.cpp replays the checked-in
// corpus (seeds and every input a campaign found) through the same functions in the
// ordinary test suite, so a fixed finding stays fixed without a fuzzer.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/datasets/flickr8k_reader.h"
#include "data/datasets/karpathy_reader.h"
#include "data/image/image.h"
#include "data/text/glove.h"
#include "data/text/vocab.h"
#include "engine/error.h"
#include "engine/safetensors.h"
#include "nn/checkpoint.h"

namespace caption::fuzz {

// What a target reports for one input: it loaded, or it was refused with this message.
struct Outcome {
  bool loaded = false;
  std::string error;  // caption::Error::what() when refused
};

// A folder of this process's own under the system's temporary folder, for the readers
// that take paths; the same one for every input of a run.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() /
             ("caption-fuzz-" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline void write_bytes(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Splits an input at the separator line "\n--8<--\n" into at most `parts` files' bytes
// (the multi-file readers: Flickr8k's captions and split lists, GloVe's vocabulary and
// vectors); missing parts are empty.
inline std::vector<std::string_view> split_parts(std::span<const std::uint8_t> bytes, size_t parts) {
  static constexpr std::string_view kSep = "\n--8<--\n";
  std::string_view rest(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    const size_t at = rest.find(kSep);
    if (at == std::string_view::npos) break;
    out.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kSep.size());
  }
  out.push_back(rest);
  out.resize(parts);
  return out;
}

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Runs `body`; caption::Error is the expected refusal, anything else escapes.
template <typename Body>
Outcome run(Body&& body) {
  try {
    body();
    return {true, {}};
  } catch (const caption::Error& e) {
    return {false, e.what()};
  }
}

// An image file from memory, with limits small enough that a fuzzer's inputs cannot ask
// for more than ~50 MB of pixels.
inline Outcome image(std::span<const std::uint8_t> bytes) {
  return run([&] {
    data::DecodeLimits limits;
    limits.max_pixels = 16'000'000;
    const data::RgbImage img = data::decode_image(bytes, "<fuzz image>", limits);
    if (img.pixels.size() != static_cast<size_t>(img.width) * img.height * 3)
      throw std::logic_error("decoded image has the wrong pixel count");
  });
}

// A safetensors file from memory; every tensor's bytes are read.
inline Outcome safetensors(std::span<const std::uint8_t> bytes) {
  return run([&] {
    auto reader = SafetensorsReader::from_bytes({bytes.begin(), bytes.end()}, "<fuzz safetensors>");
    std::uint8_t sum = 0;
    for (const auto& info : reader.tensors()) {
      const auto data = reader.data(info);
      if (data.size() != info.nbytes()) throw std::logic_error("tensor span has the wrong size");
      for (std::byte b : data) sum ^= static_cast<std::uint8_t>(b);
    }
    (void)sum;
  });
}

// A checkpoint file (safetensors with the config and vocabulary in its metadata).
inline Outcome checkpoint(std::span<const std::uint8_t> bytes) {
  const auto path = scratch_dir() / "model.safetensors";
  write_bytes(path, bytes);
  return run([&] { (void)nn::load_checkpoint(path.string()); });
}

// A Karpathy dataset_*.json file.
inline Outcome karpathy(std::span<const std::uint8_t> bytes) {
  const auto path = scratch_dir() / "dataset_flickr8k.json";
  write_bytes(path, bytes);
  return run([&] { (void)data::read_karpathy_json(path); });
}

// A Flickr8k folder: Flickr8k.token.txt, then the train, dev and test lists, separated
// by split_parts' separator line.
inline Outcome flickr8k(std::span<const std::uint8_t> bytes) {
  const auto root = scratch_dir() / "flickr8k";
  std::filesystem::create_directories(root);
  const auto parts = split_parts(bytes, 4);
  const char* names[] = {"Flickr8k.token.txt", "Flickr_8k.trainImages.txt",
                         "Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"};
  for (size_t i = 0; i < 4; ++i) write_bytes(root / names[i], as_bytes(parts[i]));
  return run([&] { (void)data::read_flickr8k(root); });
}

// A vocabulary file (vocab.json).
inline Outcome vocabulary(std::span<const std::uint8_t> bytes) {
  const auto path = scratch_dir() / "vocab.json";
  write_bytes(path, bytes);
  return run([&] { (void)text::Vocabulary::load(path); });
}

// A GloVe text file read against a small fixed vocabulary.
inline Outcome glove(std::span<const std::uint8_t> bytes) {
  static const text::Vocabulary vocab = text::Vocabulary::from_tokens(
      {"<pad>", "<sos>", "<eos>", "<unk>", "a", "dog", "runs", "on", "the", "grass"}, "<fuzz vocab>");
  const auto path = scratch_dir() / "glove.txt";
  write_bytes(path, bytes);
  return run([&] { (void)text::load_glove_embedding(path, vocab, 7); });
}

struct Target {
  const char* name;
  Outcome (*fn)(std::span<const std::uint8_t>);
  const char* input_name;  // what every refusal's message must mention
  // Whether the corpus holds an input that must load (ok-*). A valid checkpoint carries a
  // whole ResNet (46 MB at the smallest), too large to check in; tests/nn/model_test
  // covers loading real ones.
  bool has_valid_seed = true;
};

inline constexpr Target kTargets[] = {
    {"image", image, "<fuzz image>"},
    {"safetensors", safetensors, "<fuzz safetensors>"},
    {"checkpoint", checkpoint, "model.safetensors", false},
    {"karpathy", karpathy, "dataset_flickr8k.json"},
    {"flickr8k", flickr8k, "Flickr"},
    {"vocabulary", vocabulary, "vocab.json"},
    {"glove", glove, "glove.txt"},
};

}  // namespace caption::fuzz
