// Items, caption choice and shuffle of one epoch (see epoch_plan.h).
//
// A bounded draw is floor(w * n / 2^32) for a 32-bit word w (Lemire's multiply without
// the rejection step): its bias is below n / 2^32, invisible for data sets of a few
// hundred thousand items, and it needs exactly one word per draw, which keeps the
// streams' layout simple (draw i uses word i).
#include "data/loader/epoch_plan.h"

#include <utility>

#include "engine/error.h"
#include "engine/random.h"

namespace caption::data {

namespace {

// Each (epoch, purpose) owns 2^36 Philox counters: far more than any epoch draws, and
// epochs up to 2^27 fit in the 64-bit offset.
enum class Stream : uint64_t { CaptionChoice = 0, Shuffle = 1 };

Generator stream_generator(uint64_t seed, int64_t epoch, Stream stream) {
  Generator gen(seed);
  gen.set_state(seed, ((static_cast<uint64_t>(epoch) * 2 + static_cast<uint64_t>(stream)) << 36));
  return gen;
}

uint32_t bounded(uint32_t word, uint64_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(word) * n) >> 32);
}

}  // namespace

int64_t items_per_epoch(const std::vector<uint32_t>& captions_per_image, EpochItems items) {
  int64_t n = 0;
  for (uint32_t c : captions_per_image)
    n += items == EpochItems::EveryCaption ? static_cast<int64_t>(c) : (c > 0 ? 1 : 0);
  return n;
}

int64_t batches_per_epoch(int64_t items, int64_t batch_size, LastBatch last_batch) {
  CAPTION_CHECK(batch_size > 0, "loader: batch_size ", batch_size, " must be positive");
  return last_batch == LastBatch::Drop ? items / batch_size : (items + batch_size - 1) / batch_size;
}

std::vector<LoaderItem> plan_epoch(const std::vector<uint32_t>& captions_per_image,
                                   const EpochPlanOptions& options, int64_t epoch) {
  CAPTION_CHECK(epoch >= 0 && epoch < (int64_t{1} << 27), "loader: epoch ", epoch,
                " is out of range [0, 2^27)");
  std::vector<LoaderItem> items;
  items.reserve(static_cast<size_t>(items_per_epoch(captions_per_image, options.items)));
  if (options.items == EpochItems::EveryCaption) {
    for (uint32_t i = 0; i < captions_per_image.size(); ++i)
      for (uint32_t c = 0; c < captions_per_image[i]; ++c) items.push_back({i, c});
  } else {
    // Word i of the epoch's caption stream chooses image i's caption, so the choice for
    // one image does not depend on how many captions the others have.
    Generator gen = stream_generator(options.seed, epoch, Stream::CaptionChoice);
    for (uint32_t i = 0; i < captions_per_image.size(); ++i) {
      const uint32_t word = gen.next_u32();
      if (captions_per_image[i] > 0) items.push_back({i, bounded(word, captions_per_image[i])});
    }
  }
  if (options.shuffle == Shuffle::Yes && items.size() > 1) {
    // Fisher-Yates, from the back, one word per swap.
    Generator gen = stream_generator(options.seed, epoch, Stream::Shuffle);
    for (size_t i = items.size() - 1; i > 0; --i) {
      const size_t j = bounded(gen.next_u32(), i + 1);
      std::swap(items[i], items[j]);
    }
  }
  return items;
}

}  // namespace caption::data
