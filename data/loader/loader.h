// The training and evaluation data loader: batches of images (or cached encoder
// features) with their encoded captions, from a CaptionDataset, a Normalizer, a
// Vocabulary and an ImageTransform.
//
// Choices:
// - Deterministic. The items of an epoch, their order and the caption chosen per image
//   are functions of (seed, epoch) (epoch_plan.h); each image's pixels are a function of
//   its file. Workers only fill slots of batches whose content is already fixed, so the
//   batches are bit-identical for any worker count and any thread timing.
// - Resumable. The position is (epoch, next batch index); a loader started at a saved
//   position yields exactly the batches an uninterrupted run would have.
// - Parallel at image granularity. A batch is opened (items chosen, captions written,
//   buffers allocated) as soon as it enters the prefetch window; the workers then claim
//   its images one by one, in order, so every worker helps with the batch the consumer
//   waits for first. At most `prefetch_batches` batches are open at any time (bounded
//   memory), counting across epoch boundaries: the next epoch is prefetched while the
//   consumer finishes this one.
// - Errors surface in the consumer. A worker that fails to decode an image stores the
//   error in that slot; next() throws it (the message names the file) when it reaches
//   that batch, and the lowest failing slot wins, so which error is reported does not
//   depend on timing either. The position then points past the failed batch, so a
//   caller may log and carry on. Destruction stops and joins the workers, mid-epoch too.
// - Captions. Each caption is normalised, encoded as <sos> w1..wn <eos> with n capped at
//   max_caption_len (truncated or dropped per options.encode), and the counts of affected
//   captions are reported once, when the loader is made (report()). An image whose
//   captions were all dropped has no training item but stays in the image list.
// - Each batch is sorted by caption length, longest first (stable, so ties keep their
//   epoch order), as packed sequences want; every other per-item field follows the sort.
// - References for evaluation: every caption of the image, normalised (not truncated,
//   whatever the training policy), in file order.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "data/datasets/caption_dataset.h"
#include "data/image/transform.h"
#include "data/loader/epoch_plan.h"
#include "data/loader/feature_cache.h"
#include "data/loader/image_cache.h"
#include "data/text/normalize.h"
#include "data/text/vocab.h"
#include "engine/tensor.h"

namespace caption::data {

struct LoaderOptions {
  std::vector<Split> splits{Split::Train};  // samples of these splits, in data set order
  EpochItems items = EpochItems::EveryCaption;
  Shuffle shuffle = Shuffle::Yes;
  LastBatch last_batch = LastBatch::Keep;
  int64_t batch_size = 32;
  uint64_t seed = 0;
  // Decoding threads. The consumer also decodes the still unclaimed images of the batch
  // it waits for (so it never idles while data is the bottleneck); with 0 it does all.
  int workers = 2;
  int prefetch_batches = 2;  // batches open at once (>= 1)
  text::CaptionEncodeOptions encode{};  // max_caption_len and the long-caption policy
  // Bytes of decoded, resized 8-bit images kept in memory across epochs (0: none;
  // unused with a feature cache).
  size_t image_cache_bytes = 0;
  // When set, batches carry the cached encoder features of each image instead of
  // pixels; every image of the selected splits must be in the cache.
  std::shared_ptr<const FeatureCache> feature_cache;
};

// Where a loader stands: the next batch next() returns is batch `batch` of `epoch`.
// batch == batches_per_epoch() means the epoch's batches are all delivered and the next
// call to next() reports its end.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  bool operator==(const LoaderPosition&) const = default;
};

struct Batch {
  int64_t epoch = 0;
  int64_t index = 0;  // batch index within the epoch
  Tensor images;      // [B, 3, H, W] float32, normalised (undefined with a feature cache)
  Tensor features;    // [B, P, D] float32 (only with a feature cache)
  Tensor captions;    // [B, Lmax] int64, <sos> w1..wn <eos>, then <pad> = 0
  Tensor lengths;     // [B] int64, tokens including <sos> and <eos>, descending
  std::vector<std::string> image_ids;     // [B]
  std::vector<int64_t> sample_indices;    // [B] index into dataset.samples
  // [B][caption][token]: every reference caption of each image, normalised.
  std::vector<std::vector<std::vector<std::string>>> references;

  int64_t size() const { return static_cast<int64_t>(image_ids.size()); }
};

// What the loader did with the captions of its splits (reported once, at construction).
struct LoaderReport {
  std::string splits;            // "train", "train+restval"
  size_t images = 0;             // images of the selected splits
  size_t captions = 0;           // their captions
  size_t truncated = 0;          // longer than max_caption_len, cut
  size_t dropped = 0;            // longer than max_caption_len, left out
  size_t empty = 0;              // no words after normalising (kept as <sos> <eos>)
  size_t images_without_items = 0;  // every caption dropped: no training item
  int64_t items_per_epoch = 0;
  int64_t batches_per_epoch = 0;
  std::string summary() const;   // one line
};

class DataLoader {
 public:
  // Normalises and encodes every caption of the selected splits up front. Throws
  // caption::Error for bad options, an empty selection, or (with a feature cache) an
  // image missing from the cache or a cache made at another image size. The loader
  // keeps references to none of its arguments except the data set's samples' paths
  // (copied) and the feature cache (shared).
  DataLoader(const CaptionDataset& dataset, const text::Normalizer& normalizer,
             const text::Vocabulary& vocab, const ImageTransform& transform,
             const LoaderOptions& options);
  ~DataLoader();  // stops and joins the workers, mid-epoch too
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch of the current epoch, or nullopt once the epoch is exhausted (that
  // call moves the position to the next epoch's first batch). Throws caption::Error
  // when a batch's image cannot be read (the message names the file).
  std::optional<Batch> next();

  // Moves to `position` (dropping prefetched work); the next batch is that one.
  void seek(const LoaderPosition& position);
  LoaderPosition position() const;

  int64_t batches_per_epoch() const { return report_.batches_per_epoch; }
  int64_t items_per_epoch() const { return report_.items_per_epoch; }
  const LoaderReport& report() const { return report_; }
  const LoaderOptions& options() const { return options_; }
  // Null when options.image_cache_bytes is 0.
  const ImageCache* image_cache() const { return image_cache_.get(); }

 private:
  struct Image {
    int64_t sample_index = 0;  // into dataset.samples
    std::string id;
    std::filesystem::path path;
    int64_t feature_index = -1;  // into the feature cache
    std::vector<std::vector<std::string>> references;  // normalised, every caption
    std::vector<std::vector<text::TokenId>> captions;  // kept training captions, encoded
  };
  struct OpenBatch;   // a batch in the prefetch window
  struct EpochState;  // the plan of one epoch

  // Global batch number (epoch * batches_per_epoch + batch) and back.
  int64_t global(const LoaderPosition& p) const { return p.epoch * batches_per_epoch() + p.batch; }
  std::shared_ptr<const std::vector<LoaderItem>> plan_locked(int64_t epoch);
  std::shared_ptr<OpenBatch> open_locked(int64_t global_index);
  // Opens batches up to the window; returns whether it opened any.
  bool fill_window_locked();
  // The next unclaimed image slot of an open batch (in batch order), or false.
  bool claim_locked(std::shared_ptr<OpenBatch>& batch, int64_t& slot);
  void fill_slot(OpenBatch& batch, int64_t slot) const;
  void finish_slot_locked(OpenBatch& batch, int64_t slot, std::exception_ptr error);
  void worker_loop();
  void stop_workers();

  LoaderOptions options_;
  ImageTransform transform_;
  std::vector<Image> images_;
  std::vector<uint32_t> captions_per_image_;
  LoaderReport report_;
  EpochPlanOptions plan_options_;
  std::unique_ptr<ImageCache> image_cache_;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;   // workers wait for slots to claim
  std::condition_variable ready_cv_;  // the consumer waits for its batch
  bool stopping_ = false;
  bool active_ = false;                // set by the first next(): workers start then
  uint64_t generation_ = 0;            // bumped by seek(): stale work is discarded
  LoaderPosition position_;            // consumer's position
  int64_t next_to_open_ = 0;           // global index of the next batch to open
  std::deque<std::shared_ptr<OpenBatch>> window_;  // open batches, in global order
  std::map<int64_t, std::shared_ptr<const std::vector<LoaderItem>>> plans_;  // by epoch
  std::vector<std::thread> workers_;
};

}  // namespace caption::data
