// Writing the synthetic set (see generator.h). Scenes and captions are made on the
// calling thread (cheap); rendering and PNG encoding, which dominate, are spread over
// worker threads by striding over image indices. Each image's output depends only on
// its index, so the thread count cannot change a byte.
#include "data/synthetic/generator.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <thread>
#include <unistd.h>

#include "data/image/file_io.h"
#include "data/image/png_writer.h"
#include "data/synthetic/captions.h"
#include "engine/error.h"

namespace caption::data {

namespace fs = std::filesystem;

namespace {

// Purposes of the per-image random streams.
constexpr std::uint64_t kLayoutStream = 1;
constexpr std::uint64_t kCaptionStream = 2;
constexpr std::uint64_t kRenderStream = 3;

void check_options(const SyntheticOptions& o) {
  CAPTION_CHECK(o.image_size >= 32 && o.image_size <= 4096, "synthetic data: image_size ",
                o.image_size, " outside [32, 4096]");
  CAPTION_CHECK(o.train_images >= 0 && o.val_images >= 0 && o.test_images >= 0 &&
                    o.train_images + static_cast<std::int64_t>(o.val_images) + o.test_images <= 1'000'000,
                "synthetic data: image counts ", o.train_images, "/", o.val_images, "/",
                o.test_images, " must be non-negative and total at most 1000000");
  CAPTION_CHECK(o.captions_per_image >= 1 && o.captions_per_image <= 100,
                "synthetic data: captions_per_image ", o.captions_per_image, " outside [1, 100]");
  CAPTION_CHECK(o.threads >= 0, "synthetic data: threads ", o.threads, " must be >= 0");
}

Split split_of(const SyntheticOptions& o, int index) {
  if (index < o.train_images) return Split::Train;
  if (index < o.train_images + o.val_images) return Split::Val;
  return Split::Test;
}

std::string file_name_of(int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "synth_%06d.png", index);
  return buf;
}

}  // namespace

SyntheticImage describe_synthetic_image(const SyntheticOptions& options, int index) {
  check_options(options);
  SyntheticImage im;
  im.index = index;
  im.file_name = file_name_of(index);
  im.split = split_of(options, index);
  Prng layout = Prng::for_item(options.seed, static_cast<std::uint64_t>(index), kLayoutStream);
  im.scene = layout_scene(options.image_size, layout);
  Prng words = Prng::for_item(options.seed, static_cast<std::uint64_t>(index), kCaptionStream);
  im.captions = make_captions(im.scene, words, options.captions_per_image);
  return im;
}

RgbImage render_synthetic_image(const SyntheticOptions& options, const SyntheticImage& image) {
  Prng paint = Prng::for_item(options.seed, static_cast<std::uint64_t>(image.index), kRenderStream);
  return render_scene(image.scene, paint);
}

std::vector<SyntheticImage> generate_synthetic_dataset(const fs::path& root,
                                                       const SyntheticOptions& options) {
  check_options(options);
  CAPTION_CHECK(!root.empty(), "synthetic data: empty output path");
  const fs::path target = root.has_filename() ? root : root.parent_path();
  std::error_code ec;
  const bool exists = fs::exists(target, ec);
  CAPTION_CHECK(!exists || options.existing == ExistingOutput::Replace, target.string(),
                ": already exists (choose ExistingOutput::Replace to overwrite it)");
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  CAPTION_CHECK(!ec, parent.string(), ": cannot create directory (", ec.message(), ")");

  const int total = options.train_images + options.val_images + options.test_images;
  std::vector<SyntheticImage> images;
  images.reserve(total);
  for (int i = 0; i < total; ++i) images.push_back(describe_synthetic_image(options, i));

  const fs::path staging = fs::path(target.string() + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(staging, ec);
  fs::create_directories(staging / "Flicker8k_Dataset", ec);
  CAPTION_CHECK(!ec, staging.string(), ": cannot create directory (", ec.message(), ")");

  try {
    // Pixels, on worker threads.
    unsigned workers = options.threads > 0 ? static_cast<unsigned>(options.threads)
                                           : std::max(1u, std::thread::hardware_concurrency());
    workers = std::min<unsigned>(workers, std::max(1, total));
    std::vector<std::exception_ptr> errors(workers);
    auto work = [&](unsigned w) {
      try {
        for (int i = static_cast<int>(w); i < total; i += static_cast<int>(workers)) {
          const RgbImage pixels = render_synthetic_image(options, images[i]);
          write_file_atomic(staging / "Flicker8k_Dataset" / images[i].file_name, encode_png(pixels));
        }
      } catch (...) {
        errors[w] = std::current_exception();
      }
    };
    std::vector<std::thread> threads;
    for (unsigned w = 1; w < workers; ++w) threads.emplace_back(work, w);
    work(0);
    for (auto& t : threads) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);

    // Captions and splits.
    std::string tokens;
    std::string split_lists[3];
    for (const auto& im : images) {
      for (size_t k = 0; k < im.captions.size(); ++k)
        tokens += im.file_name + "#" + std::to_string(k) + "\t" + im.captions[k] + "\n";
      const int which = im.split == Split::Train ? 0 : im.split == Split::Val ? 1 : 2;
      split_lists[which] += im.file_name + "\n";
    }
    write_file_atomic(staging / "Flickr8k.token.txt", tokens);
    write_file_atomic(staging / "Flickr_8k.trainImages.txt", split_lists[0]);
    write_file_atomic(staging / "Flickr_8k.devImages.txt", split_lists[1]);
    write_file_atomic(staging / "Flickr_8k.testImages.txt", split_lists[2]);

    // Into place. Replacing moves the old set aside first, so a failure keeps one copy.
    fs::path old;
    if (fs::exists(target)) {
      old = fs::path(target.string() + ".old-" + std::to_string(::getpid()));
      fs::remove_all(old, ec);
      fs::rename(target, old, ec);
      CAPTION_CHECK(!ec, target.string(), ": cannot move the existing directory aside (",
                    ec.message(), ")");
    }
    fs::rename(staging, target, ec);
    if (ec) {
      std::error_code ignored;
      if (!old.empty()) fs::rename(old, target, ignored);
      throw Error(str(target.string(), ": cannot move the generated set into place (",
                      ec.message(), ")"));
    }
    if (!old.empty()) fs::remove_all(old, ec);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw;
  }
  return images;
}

}  // namespace caption::data
