// Captioner: checkpoint in, captions out (see captioner.h for the choices).
#include "pipeline/captioner.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "engine/autograd.h"
#include "nn/folded_resnet.h"
#include "pipeline/read_ahead.h"
#include "pipeline/session.h"

namespace caption::pipeline {

Captioner::Captioner(const std::string& checkpoint_path, Device device)
    : device_(device),
      checkpoint_(nn::load_checkpoint(checkpoint_path, device)),
      transform_(image_transform(checkpoint_.config)),
      read_threads_(default_read_threads(device)) {
  // Nothing changes the model once loaded, so its batch norms are folded once here
  // rather than at every encoder pass.
  folded_ = nn::inference_snapshot(checkpoint_.model->encoder);
}

Captioner::~Captioner() = default;
Captioner::Captioner(Captioner&&) noexcept = default;
Captioner& Captioner::operator=(Captioner&&) noexcept = default;

int Captioner::default_read_threads(Device device) {
  if (!device.is_cuda()) return 1;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(cores - 1, 1, 8);
}

void Captioner::set_read_threads(int threads) {
  CAPTION_CHECK(threads >= 0, "captioner: read threads must be 0 or more, got ", threads);
  read_threads_ = threads;
}

nn::DecodeOptions Captioner::default_options() const {
  nn::DecodeOptions o;
  o.max_len = checkpoint_.config.max_decode_len;
  o.beam = 1;
  o.length_penalty = 0;
  return o;
}

void Captioner::set_batch_size(int batch_size) {
  CAPTION_CHECK(batch_size >= 1, "captioner: batch size must be at least 1, got ", batch_size);
  batch_size_ = batch_size;
}

void Captioner::check_options(const nn::DecodeOptions& options) const {
  CAPTION_CHECK(options.beam >= 1, "captioner: beam width must be at least 1, got ", options.beam);
  CAPTION_CHECK(options.max_len >= 1, "captioner: max_len must be at least 1, got ", options.max_len);
}

PreparedImage Captioner::prepare(const std::string& image_path) const {
  return prepare_pixels(data::load_image(image_path, transform_.limits), image_path);
}

PreparedImage Captioner::prepare_encoded(std::span<const std::uint8_t> bytes, const std::string& name) const {
  return prepare_pixels(data::decode_image(bytes, name, transform_.limits), name);
}

PreparedImage Captioner::prepare_pixels(data::RgbImage image, const std::string& name) const {
  CAPTION_CHECK(image.width > 0 && image.height > 0, name, ": the image is empty (", image.width, "x",
                image.height, ")");
  const size_t want = static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * 3;
  CAPTION_CHECK(image.pixels.size() == want, name, ": ", image.width, "x", image.height, " RGB needs ", want,
                " bytes of pixels, got ", image.pixels.size());
  PreparedImage p;
  p.path = name;
  p.image = std::move(image);
  p.input = data::preprocess(p.image, transform_);
  return p;
}

CaptionResult Captioner::to_result(const std::string& path, const nn::DecodedCaption& decoded) const {
  CaptionResult r;
  r.image_path = path;
  r.grid_size = checkpoint_.config.encoder_size;
  for (int64_t token : decoded.tokens) {
    CAPTION_ASSERT(token >= 0 && token < static_cast<int64_t>(checkpoint_.vocab.size()));
    r.words.push_back(checkpoint_.vocab[static_cast<size_t>(token)]);
    if (!r.text.empty()) r.text += ' ';
    r.text += r.words.back();
  }
  r.log_probs = decoded.log_probs;
  r.attention = decoded.attention;
  r.score = decoded.score;
  r.finished = decoded.finished;
  return r;
}

std::vector<CaptionResult> Captioner::caption_batch(const std::vector<PreparedImage>& images, size_t begin,
                                                    size_t end, const nn::DecodeOptions& options) const {
  const int64_t B = static_cast<int64_t>(end - begin);
  const int64_t size = transform_.image_size;
  const size_t per_image = static_cast<size_t>(3 * size * size);
  std::vector<float> pixels(per_image * static_cast<size_t>(B));  // [B, 3, size, size]
  for (size_t i = begin; i < end; ++i) {
    const data::ChwImage& in = images[i].input;
    CAPTION_CHECK(in.channels == 3 && in.height == size && in.width == size && in.data.size() == per_image,
                  images[i].path, ": prepared image is ", in.channels, "x", in.height, "x", in.width,
                  ", the model expects 3x", size, "x", size);
    std::memcpy(pixels.data() + (i - begin) * per_image, in.data.data(), per_image * sizeof(float));
  }
  NoGradGuard no_grad;
  const std::lock_guard lock(*model_mutex_);
  const Tensor batch = Tensor::from_vector<float>(pixels, {B, 3, size, size}).to(device_);
  const Tensor features = checkpoint_.model->encode_distinct(batch, folded_.get());  // [B, P, D]
  const std::vector<nn::DecodedCaption> decoded = nn::decode(checkpoint_.model->decoder, features, options);
  CAPTION_ASSERT(static_cast<int64_t>(decoded.size()) == B);
  std::vector<CaptionResult> out;
  out.reserve(decoded.size());
  for (size_t i = begin; i < end; ++i) out.push_back(to_result(images[i].path, decoded[i - begin]));
  return out;
}

std::vector<CaptionResult> Captioner::caption_prepared(const std::vector<PreparedImage>& images,
                                                       const nn::DecodeOptions& options) const {
  check_options(options);
  std::vector<CaptionResult> out;
  out.reserve(images.size());
  for (size_t begin = 0; begin < images.size(); begin += static_cast<size_t>(batch_size_)) {
    const size_t end = std::min(images.size(), begin + static_cast<size_t>(batch_size_));
    for (CaptionResult& r : caption_batch(images, begin, end, options)) out.push_back(std::move(r));
  }
  return out;
}

CaptionResult Captioner::caption(const std::string& image_path, const nn::DecodeOptions& options) const {
  check_options(options);
  const std::vector<PreparedImage> one{prepare(image_path)};
  return caption_batch(one, 0, 1, options).front();
}

void Captioner::read_batches(const std::vector<std::string>& image_paths, const BatchFn& on_batch,
                             const UnreadableFn& on_unreadable) const {
  // Up to two batches are read ahead of the one being captioned: memory stays bounded.
  ReadAhead<PreparedImage> reader(image_paths, [this](const std::string& path) { return prepare(path); },
                                  read_threads_, 2 * static_cast<size_t>(batch_size_));
  std::vector<PreparedImage> batch;
  const auto flush = [&] {
    if (!batch.empty()) on_batch(batch);
    batch.clear();
  };
  while (!reader.done()) {
    ReadAhead<PreparedImage>::Item item = reader.next();
    if (item.image) {
      batch.push_back(std::move(*item.image));
      if (static_cast<int>(batch.size()) == batch_size_) flush();
      continue;
    }
    if (!on_unreadable) std::rethrow_exception(item.error);
    flush();  // the images read before this one come first
    on_unreadable(item.index, item.error);
  }
  flush();
}

std::vector<CaptionResult> Captioner::caption(const std::vector<std::string>& image_paths,
                                              const nn::DecodeOptions& options) const {
  check_options(options);
  std::vector<CaptionResult> out;
  out.reserve(image_paths.size());
  // The first unreadable image throws what its reading threw.
  read_batches(image_paths, [&](const std::vector<PreparedImage>& batch) {
    for (CaptionResult& r : caption_batch(batch, 0, batch.size(), options)) out.push_back(std::move(r));
  });
  return out;
}

void Captioner::caption_each(const std::vector<std::string>& image_paths, const nn::DecodeOptions& options,
                             const ResultCallback& on_result, const ErrorCallback& on_error) const {
  check_options(options);
  // Results and errors reach the caller in input order.
  read_batches(
      image_paths,
      [&](const std::vector<PreparedImage>& batch) {
        const std::vector<CaptionResult> results = caption_batch(batch, 0, batch.size(), options);
        for (size_t i = 0; i < results.size(); ++i) on_result(results[i], batch[i]);
      },
      [&](size_t index, const std::exception_ptr& error) {
        try {
          std::rethrow_exception(error);
        } catch (const Error& e) {
          on_error(image_paths[index], e);
        }
      });
}

}  // namespace caption::pipeline
