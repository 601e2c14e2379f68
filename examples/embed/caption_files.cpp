// A native program that links libcaption: captions image files with a checkpoint, the way
// an application would embed the engine. Built against an installed caption
// (CMakeLists.txt here, or pkg-config; see README.md beside this file).
//
//   caption_files CHECKPOINT [--beam N] [--device cpu|cuda|auto] IMAGE...
//
// Prints, per image, "path<TAB>caption<TAB>score" and then each word with its
// log-probability and the grid cell its attention weighted most. An image that cannot be
// read is reported on stderr and the others are still captioned (exit status 1).
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/error.h"
#include "kernels/cpu/blas.h"
#include "pipeline/captioner.h"

namespace {

int usage(const char* program) {
  std::cerr << "usage: " << program << " CHECKPOINT [--beam N] [--device cpu|cuda|auto] IMAGE...\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage(argv[0]);
  const std::string checkpoint = argv[1];
  int beam = 1;
  std::string device = "cpu";
  std::vector<std::string> images;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--beam" || arg == "--device") && i + 1 >= argc) return usage(argv[0]);
    if (arg == "--beam") {
      char* end = nullptr;
      const long value = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || value < 1 || value > 100) return usage(argv[0]);
      beam = static_cast<int>(value);
    } else if (arg == "--device") {
      device = argv[++i];
    } else {
      images.push_back(arg);
    }
  }
  if (images.empty()) return usage(argv[0]);

  // As the caption program does: denormals flushed to zero in this thread and BLAS's.
  caption::kernels::cpu::set_flush_denormals(caption::kernels::cpu::default_flush_denormals());
  try {
    const caption::pipeline::Captioner captioner(checkpoint, caption::parse_device(device));
    caption::nn::DecodeOptions options = captioner.default_options();
    options.beam = beam;
    int unreadable = 0;
    captioner.caption_each(
        images, options,
        [](const caption::pipeline::CaptionResult& r, const caption::pipeline::PreparedImage&) {
          std::cout << r.image_path << '\t' << r.text << '\t' << r.score << '\n';
          for (size_t w = 0; w < r.words.size(); ++w) {
            size_t best = 0;
            for (size_t p = 1; p < r.attention[w].size(); ++p)
              if (r.attention[w][p] > r.attention[w][best]) best = p;
            std::cout << "  " << r.words[w] << '\t' << r.log_probs[w] << "\tcell " << best / r.grid_size << ','
                      << best % r.grid_size << '\n';
          }
        },
        [&unreadable](const std::string&, const caption::Error& error) {
          std::cerr << error.what() << '\n';
          ++unreadable;
        });
    return unreadable == 0 ? 0 : 1;
  } catch (const caption::Error& error) {  // the checkpoint, the device, the options
    std::cerr << error.what() << '\n';
    return 1;
  }
}
