// Captioning images from a checkpoint: the library entry point a native program links
// (the `caption` app is a thin shell over it). A Captioner owns the model (eval mode, on
// one device), the vocabulary and the image transform of the checkpoint's config.
//
// Choices:
// - Images are encoded in batches (batch_size at a time, one encoder pass each), then
//   decoded with nn::decode: greedy decoding runs the whole batch together, beam search
//   runs image by image (MODEL_SPEC section 6), so results do not depend on how the
//   images were grouped.
// - Decoding options come from the caller; default_options() gives the checkpoint's
//   max_decode_len with greedy decoding and no length penalty.
// - Reading an image is separate from captioning it (prepare / caption_prepared), so a
//   caller can skip an unreadable file and go on with the others; caption_each does
//   exactly that and streams results batch by batch, keeping memory bounded.
// - The list forms (caption of a list, caption_each) read images ahead on worker threads
//   (pipeline/read_ahead.h) while the model captions the batch before; results and errors
//   come in input order all the same. read_threads: by default 1 on the CPU (the products
//   already use every core through BLAS; one reader overlaps reading with them) and up to
//   8 on a GPU (there reading is most of the work).
// - Threads: the const members may be called from several threads at once on one
//   Captioner (a service's request threads, say). Images are read and preprocessed in
//   the calling threads concurrently; the model runs one batch at a time (no fairness
//   promised between threads), since on a CPU one pass already uses every core through
//   BLAS and on a GPU the passes share one stream and the recorded graphs the model
//   keeps. Results do not depend on the interleaving. set_batch_size, set_read_threads,
//   moving and destroying must not overlap other calls. Autocast (engine/autocast.h) is
//   per thread: set it in each calling thread.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "data/image/image.h"
#include "data/image/transform.h"
#include "engine/device.h"
#include "engine/error.h"
#include "nn/caption_model.h"
#include "nn/checkpoint.h"

namespace caption::nn {
class FoldedResNet;  // nn/folded_resnet.h
}

namespace caption::pipeline {

struct CaptionResult {
  std::string image_path;
  std::vector<std::string> words;               // special tokens left out
  std::string text;                             // words joined by single spaces
  std::vector<float> log_probs;                 // per word
  std::vector<std::vector<float>> attention;    // per word, [P], P = grid_size^2, row-major
  int grid_size = 0;                            // S: attention is an S x S grid
  double score = 0;      // sum of log-probabilities of every decoded token (incl. <eos>)
  bool finished = false; // ended with <eos> within max_len
};

// One image read from disk and made ready for the encoder.
struct PreparedImage {
  std::string path;
  data::RgbImage image;  // as decoded (for drawing attention maps)
  data::ChwImage input;  // [3, image_size, image_size], normalised
};

class Captioner {
 public:
  static constexpr int kDefaultBatchSize = 16;

  // Loads the checkpoint (refused, naming the file, when missing, truncated or
  // inconsistent) onto `device`.
  explicit Captioner(const std::string& checkpoint_path, Device device = Device::cpu());
  ~Captioner();
  Captioner(Captioner&&) noexcept;
  Captioner& operator=(Captioner&&) noexcept;

  // Greedy, max_len = the checkpoint's max_decode_len, no length penalty.
  nn::DecodeOptions default_options() const;

  // Images per encoder pass (>= 1).
  void set_batch_size(int batch_size);
  int batch_size() const { return batch_size_; }
  // Threads reading images ahead in the list forms (>= 0; 0: the calling thread reads
  // each batch's images before captioning it).
  void set_read_threads(int threads);
  int read_threads() const { return read_threads_; }
  // The default for a device: 1 on the CPU; on a GPU, the processor's threads less one,
  // from 1 to 8.
  static int default_read_threads(Device device);

  // Reads and preprocesses one image; throws caption::Error naming the path.
  PreparedImage prepare(const std::string& image_path) const;
  // An image already in memory (an upload, a database blob): its encoded file, JPEG, PNG,
  // BMP or GIF, recognised by its bytes and decoded under the same limits as a file.
  // `name` stands for the path in errors and in the result's image_path.
  PreparedImage prepare_encoded(std::span<const std::uint8_t> bytes, const std::string& name) const;
  // Decoded 8-bit RGB pixels (a video frame, a camera buffer); refused, naming `name`,
  // when empty or when image.pixels does not hold width * height * 3 values.
  PreparedImage prepare_pixels(data::RgbImage image, const std::string& name) const;

  CaptionResult caption(const std::string& image_path) const { return caption(image_path, default_options()); }
  CaptionResult caption(const std::string& image_path, const nn::DecodeOptions& options) const;
  // All images, in order; the first unreadable image throws (naming it).
  std::vector<CaptionResult> caption(const std::vector<std::string>& image_paths,
                                     const nn::DecodeOptions& options) const;
  // Already prepared images, encoded batch_size at a time.
  std::vector<CaptionResult> caption_prepared(const std::vector<PreparedImage>& images,
                                              const nn::DecodeOptions& options) const;

  // Streams: reads batch_size images, captions the readable ones, calls on_result for
  // each (in input order, with the prepared image for drawing) and on_error for each
  // image that could not be read, then goes on. Errors of the model itself still throw.
  using ResultCallback = std::function<void(const CaptionResult&, const PreparedImage&)>;
  using ErrorCallback = std::function<void(const std::string& image_path, const Error&)>;
  void caption_each(const std::vector<std::string>& image_paths, const nn::DecodeOptions& options,
                    const ResultCallback& on_result, const ErrorCallback& on_error) const;

  const nn::ModelConfig& config() const { return checkpoint_.config; }
  const std::vector<std::string>& vocab() const { return checkpoint_.vocab; }
  const nn::CaptionModel& model() const { return *checkpoint_.model; }
  const data::ImageTransform& transform() const { return transform_; }
  Device device() const { return device_; }

 private:
  void check_options(const nn::DecodeOptions& options) const;
  // One encoder pass over images[begin, end) and their decoding.
  std::vector<CaptionResult> caption_batch(const std::vector<PreparedImage>& images, size_t begin,
                                           size_t end, const nn::DecodeOptions& options) const;
  CaptionResult to_result(const std::string& path, const nn::DecodedCaption& decoded) const;
  // Reads the images ahead (read_threads_ threads, two batches ahead) and hands batches of
  // up to batch_size_ readable images to on_batch, in input order. An unreadable image
  // rethrows its error at once without on_unreadable; with it, the images read before it
  // go to on_batch first, then its index and error to on_unreadable, and reading goes on.
  using BatchFn = std::function<void(const std::vector<PreparedImage>&)>;
  using UnreadableFn = std::function<void(size_t index, const std::exception_ptr& error)>;
  void read_batches(const std::vector<std::string>& image_paths, const BatchFn& on_batch,
                    const UnreadableFn& on_unreadable = nullptr) const;

  Device device_;
  nn::Checkpoint checkpoint_;
  // The encoder with every batch norm folded once (nn/folded_resnet.h); null when the
  // encoder's folding is off (CAPTION_FOLD_BN=0).
  std::unique_ptr<nn::FoldedResNet> folded_;
  // Held while the model runs a batch (a pointer, so that the Captioner stays movable).
  std::unique_ptr<std::mutex> model_mutex_ = std::make_unique<std::mutex>();
  data::ImageTransform transform_;
  int batch_size_ = kDefaultBatchSize;
  int read_threads_;
};

}  // namespace caption::pipeline
