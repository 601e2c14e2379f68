// What one epoch of the loader holds and in which order: the items (image, caption)
// of an epoch, shuffled, and cut into batches. Everything here is a pure function of
// (seed, epoch), so that a resumed run, or a run with another worker count, sees exactly
// the same batches.
//
// Random numbers come from the engine's Generator (Philox, a (seed, offset) pair). Each
// epoch owns two disjoint streams at fixed offsets, one for the caption chosen per image
// and one for the shuffle, so that changing one (say, the epoch mode) leaves the other
// unchanged, and no state carries over from one epoch to the next.
#pragma once

#include <cstdint>
#include <vector>

namespace caption::data {

// Which items make up an epoch.
enum class EpochItems {
  EveryCaption,        // one item per (image, caption) pair, as the original project did
  OneCaptionPerImage,  // one item per image, its caption drawn from (seed, epoch)
};

enum class Shuffle { No, Yes };

// What happens to a last batch smaller than batch_size.
enum class LastBatch { Keep, Drop };

// One item: an image (index into the loader's list of images) and one of its encoded
// training captions (index into that image's kept captions).
struct LoaderItem {
  uint32_t image = 0;
  uint32_t caption = 0;
  bool operator==(const LoaderItem&) const = default;
};

struct EpochPlanOptions {
  EpochItems items = EpochItems::EveryCaption;
  Shuffle shuffle = Shuffle::Yes;
  LastBatch last_batch = LastBatch::Keep;
  int64_t batch_size = 32;
  uint64_t seed = 0;
};

// captions_per_image[i]: how many training captions image i kept (0: it has no item).
// The number of items per epoch does not depend on the epoch.
int64_t items_per_epoch(const std::vector<uint32_t>& captions_per_image, EpochItems items);
int64_t batches_per_epoch(int64_t items, int64_t batch_size, LastBatch last_batch);

// The items of `epoch` in delivery order (before the per-batch sort by length); batch b
// is items [b * batch_size, min((b + 1) * batch_size, size)).
std::vector<LoaderItem> plan_epoch(const std::vector<uint32_t>& captions_per_image,
                                   const EpochPlanOptions& options, int64_t epoch);

}  // namespace caption::data
