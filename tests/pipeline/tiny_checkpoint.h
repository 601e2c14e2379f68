// Shared by the pipeline tests: a tiny random captioning model saved as a checkpoint,
// and small PNG images, written into a directory of the test's own (one per process,
// since CTest runs each test case as its own process, possibly in parallel).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/image/png_writer.h"
#include "nn/checkpoint.h"

namespace caption::testing {

inline nn::ModelConfig tiny_captioner_config() {
  nn::ModelConfig c;
  c.encoder = "resnet18";
  c.encoder_size = 2;  // P = 4
  c.image_size = 64;  // the encoder's stride is 32: at 32 pixels its 1x1 map makes every position alike
  c.vocab_size = 10;
  c.embed_dim = 6;
  c.decoder_dim = 8;
  c.attention_dim = 5;
  c.dropout = 0.0;
  c.max_decode_len = 7;
  c.text = {{"lowercase", true}};
  return c;
}

inline std::vector<std::string> tiny_captioner_vocab() {
  return {"<pad>", "<sos>", "<eos>", "<unk>", "a", "b", "c", "dog", "cat", "sits"};
}

// A fresh directory under CAPTION_TEST_TMP named after the test program and process.
inline std::filesystem::path fresh_test_dir(const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::path(CAPTION_TEST_TMP) / (name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Saves a random tiny model (seeded, so every process writes the same file).
inline std::string write_tiny_checkpoint(const std::filesystem::path& dir, uint64_t seed = 7) {
  Generator gen(seed);
  nn::CaptionModel model(tiny_captioner_config(), gen);
  const std::string path = (dir / "tiny.safetensors").string();
  nn::save_checkpoint(path, model, tiny_captioner_vocab());
  return path;
}

// A deterministic w x h test picture: gradients plus a bright square whose corner
// depends on `variant`, so that different images give different features.
inline data::RgbImage test_picture(int w, int h, int variant) {
  data::RgbImage img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const bool square = (variant % 2 == 0 ? x < w / 2 : x >= w / 2) && (variant < 2 ? y < h / 2 : y >= h / 2);
      img.at(x, y, 0) = static_cast<std::uint8_t>(square ? 250 : (x * 255) / std::max(1, w - 1));
      img.at(x, y, 1) = static_cast<std::uint8_t>(square ? 240 : (y * 255) / std::max(1, h - 1));
      img.at(x, y, 2) = static_cast<std::uint8_t>((variant * 60 + x * y) % 256);
    }
  return img;
}

inline std::string write_test_picture(const std::filesystem::path& dir, const std::string& name, int w, int h,
                                      int variant) {
  const std::string path = (dir / name).string();
  data::write_png(test_picture(w, h, variant), path);
  return path;
}

}  // namespace caption::testing
