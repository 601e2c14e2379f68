// The data loader (see loader.h for the design).
//
// Concurrency in one paragraph: one mutex guards the window of open batches, the
// position and the epoch plans. A batch's content (items, captions, ids, references,
// buffers) is decided when it is opened, under the lock; afterwards workers claim its
// image slots under the lock, fill them without it (each slot is a disjoint slice of the
// batch's buffers), and report back under the lock. The consumer takes the front batch
// once all its slots are done, helping with its unclaimed slots while it waits. seek()
// bumps a generation counter and drops the window: a worker still busy with a dropped
// batch finishes into a buffer nobody will read (it holds its own reference).
#include "data/loader/loader.h"

#include <algorithm>
#include <cstring>

#include "data/image/resize.h"
#include "engine/error.h"

namespace caption::data {

struct DataLoader::OpenBatch {
  uint64_t generation = 0;
  int64_t global = 0;
  Batch batch;
  std::vector<uint32_t> image_of_slot;  // [B] image index per slot, in batch (sorted) order
  int64_t next_slot = 0;                // next slot to claim
  int64_t remaining = 0;                // slots not yet finished
  std::vector<std::exception_ptr> errors;  // [B]
  bool ready = false;
};

namespace {

std::string splits_label(const std::vector<Split>& splits) {
  std::string s;
  for (Split split : splits) {
    if (!s.empty()) s += '+';
    s += split_name(split);
  }
  return s;
}

}  // namespace

std::string LoaderReport::summary() const {
  return str("loader ", splits, ": ", images, " images, ", captions, " captions (", truncated,
             " truncated, ", dropped, " dropped as too long, ", empty, " empty), ",
             images_without_items, " images without a training caption, ", items_per_epoch,
             " items and ", batches_per_epoch, " batches per epoch");
}

DataLoader::DataLoader(const CaptionDataset& dataset, const text::Normalizer& normalizer,
                       const text::Vocabulary& vocab, const ImageTransform& transform,
                       const LoaderOptions& options)
    : options_(options), transform_(transform) {
  const std::string label = "loader (" + splits_label(options.splits) + ")";
  CAPTION_CHECK(!options.splits.empty(), "loader: no split selected");
  CAPTION_CHECK(options.batch_size > 0, label, ": batch_size ", options.batch_size,
                " must be positive");
  CAPTION_CHECK(options.workers >= 0 && options.workers <= 256, label, ": workers ",
                options.workers, " must be in [0, 256]");
  CAPTION_CHECK(options.prefetch_batches >= 1, label, ": prefetch_batches ",
                options.prefetch_batches, " must be at least 1");
  CAPTION_CHECK(options.encode.max_caption_len >= 1, label, ": max_caption_len ",
                options.encode.max_caption_len, " must be at least 1");
  CAPTION_CHECK(transform.image_size > 0, label, ": image_size ", transform.image_size,
                " must be positive");
  const FeatureCache* features = options.feature_cache.get();
  if (features) {
    const FeatureCacheIdentity& id = features->identity();
    CAPTION_CHECK(id.image_size == transform.image_size &&
                      id.normalization.mean == transform.normalization.mean &&
                      id.normalization.std == transform.normalization.std,
                  label, ": feature cache ", features->dir().string(), " was made at image_size ",
                  id.image_size, " with other normalisation settings than the loader's (image_size ",
                  transform.image_size, ")");
  }

  report_.splits = splits_label(options.splits);
  for (size_t s = 0; s < dataset.samples.size(); ++s) {
    const CaptionSample& sample = dataset.samples[s];
    if (std::find(options.splits.begin(), options.splits.end(), sample.split) ==
        options.splits.end())
      continue;
    Image image;
    image.sample_index = static_cast<int64_t>(s);
    image.id = sample.image_id;
    image.path = sample.image_path;
    if (features) {
      const auto index = features->find(sample.image_id);
      CAPTION_CHECK(index.has_value(), label, ": image '", sample.image_id,
                    "' is not in the feature cache ", features->dir().string());
      image.feature_index = *index;
    }
    image.references.reserve(sample.captions.size());
    for (const std::string& caption : sample.captions)
      image.references.push_back(normalizer.normalize(caption));
    text::EncodedCaptions encoded = vocab.encode_captions(image.references, options.encode);
    report_.captions += sample.captions.size();
    report_.truncated += encoded.truncated;
    report_.dropped += encoded.dropped;
    report_.empty += encoded.empty;
    image.captions = std::move(encoded.captions);
    if (image.captions.empty()) ++report_.images_without_items;
    captions_per_image_.push_back(static_cast<uint32_t>(image.captions.size()));
    images_.push_back(std::move(image));
  }
  report_.images = images_.size();

  plan_options_ = {options.items, options.shuffle, options.last_batch, options.batch_size,
                   options.seed};
  report_.items_per_epoch = caption::data::items_per_epoch(captions_per_image_, options.items);
  report_.batches_per_epoch = caption::data::batches_per_epoch(
      report_.items_per_epoch, options.batch_size, options.last_batch);
  CAPTION_CHECK(report_.batches_per_epoch > 0, label, " of data set '", dataset.name, "': ",
                report_.items_per_epoch, " items per epoch make no batch of ",
                options.batch_size, report_.items_per_epoch > 0 ? " (last batch dropped)" : "");

  if (report_.truncated + report_.dropped > 0)
    log_warning(report_.summary());
  else
    log_info(report_.summary());

  if (options.image_cache_bytes > 0 && !features)
    image_cache_ = std::make_unique<ImageCache>(images_.size(), options.image_cache_bytes);

  workers_.reserve(static_cast<size_t>(options.workers));
  try {
    for (int w = 0; w < options.workers; ++w) workers_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    stop_workers();  // the destructor will not run: join the threads already started
    throw;
  }
}

DataLoader::~DataLoader() { stop_workers(); }

void DataLoader::stop_workers() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

LoaderPosition DataLoader::position() const {
  std::lock_guard lock(mutex_);
  return position_;
}

void DataLoader::seek(const LoaderPosition& position) {
  CAPTION_CHECK(position.epoch >= 0 && position.batch >= 0 &&
                    position.batch <= batches_per_epoch(),
                "loader: cannot seek to epoch ", position.epoch, ", batch ", position.batch,
                " (an epoch has ", batches_per_epoch(), " batches)");
  std::lock_guard lock(mutex_);
  ++generation_;
  window_.clear();
  plans_.clear();
  position_ = position;
  next_to_open_ = global(position);
}

std::shared_ptr<const std::vector<LoaderItem>> DataLoader::plan_locked(int64_t epoch) {
  auto it = plans_.find(epoch);
  if (it != plans_.end()) return it->second;
  // Only the consumer's epoch and the one being prefetched are needed.
  while (!plans_.empty() && plans_.begin()->first < position_.epoch) plans_.erase(plans_.begin());
  auto plan = std::make_shared<const std::vector<LoaderItem>>(
      plan_epoch(captions_per_image_, plan_options_, epoch));
  plans_.emplace(epoch, plan);
  return plan;
}

std::shared_ptr<DataLoader::OpenBatch> DataLoader::open_locked(int64_t global_index) {
  auto open = std::make_shared<OpenBatch>();
  open->generation = generation_;
  open->global = global_index;
  Batch& b = open->batch;
  b.epoch = global_index / batches_per_epoch();
  b.index = global_index % batches_per_epoch();
  try {
    const auto plan = plan_locked(b.epoch);
    const int64_t first = b.index * options_.batch_size;
    const int64_t count =
        std::min<int64_t>(options_.batch_size, static_cast<int64_t>(plan->size()) - first);
    CAPTION_ASSERT(count > 0, "batch ", b.index, " of epoch ", b.epoch, " is empty");
    std::vector<LoaderItem> items(plan->begin() + first, plan->begin() + first + count);
    // Longest caption first; stable, so equal lengths keep their epoch order.
    std::stable_sort(items.begin(), items.end(), [&](const LoaderItem& x, const LoaderItem& y) {
      return images_[x.image].captions[x.caption].size() > images_[y.image].captions[y.caption].size();
    });

    const int64_t max_len = static_cast<int64_t>(images_[items[0].image].captions[items[0].caption].size());
    b.captions = Tensor::zeros({count, max_len}, DType::I64);  // [B, Lmax], <pad> = 0
    b.lengths = Tensor::empty({count}, DType::I64);            // [B]
    int64_t* tokens = b.captions.data<int64_t>();
    int64_t* lengths = b.lengths.data<int64_t>();
    open->image_of_slot.reserve(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      const Image& image = images_[items[i].image];
      const std::vector<text::TokenId>& caption = image.captions[items[i].caption];
      std::copy(caption.begin(), caption.end(), tokens + i * max_len);
      lengths[i] = static_cast<int64_t>(caption.size());
      b.image_ids.push_back(image.id);
      b.sample_indices.push_back(image.sample_index);
      b.references.push_back(image.references);
      open->image_of_slot.push_back(items[i].image);
    }
    if (options_.feature_cache) {
      const FeatureCache& cache = *options_.feature_cache;
      b.features = Tensor::empty({count, cache.positions(), cache.dim()});  // [B, P, D]
    } else {
      const int64_t s = transform_.image_size;
      b.images = Tensor::empty({count, 3, s, s});  // [B, 3, H, W]
    }
    open->remaining = count;
    open->errors.resize(static_cast<size_t>(count));
  } catch (...) {
    // Opening failed (memory, most likely): the consumer gets the error with this batch.
    open->image_of_slot.clear();
    open->errors.assign(1, std::current_exception());
    open->ready = true;
  }
  return open;
}

bool DataLoader::fill_window_locked() {
  // Without workers only the batch the consumer asks for is opened: nobody would fill
  // the others.
  const size_t window = options_.workers == 0 ? 1 : static_cast<size_t>(options_.prefetch_batches);
  bool opened = false;
  while (window_.size() < window) {
    window_.push_back(open_locked(next_to_open_++));
    opened = true;
  }
  return opened;
}

bool DataLoader::claim_locked(std::shared_ptr<OpenBatch>& batch, int64_t& slot) {
  fill_window_locked();
  for (const auto& open : window_) {
    if (open->next_slot < static_cast<int64_t>(open->image_of_slot.size())) {
      batch = open;
      slot = open->next_slot++;
      return true;
    }
  }
  return false;
}

void DataLoader::fill_slot(OpenBatch& open, int64_t slot) const {
  const Batch& b = open.batch;
  const uint32_t index = open.image_of_slot[static_cast<size_t>(slot)];
  const Image& image = images_[index];
  try {
    if (options_.feature_cache) {
      const FeatureCache& cache = *options_.feature_cache;
      const int64_t n = cache.positions() * cache.dim();
      cache.read(image.feature_index, {b.features.data<float>() + slot * n, static_cast<size_t>(n)});
      return;
    }
    const int s = transform_.image_size;
    std::shared_ptr<const RgbImage> resized = image_cache_ ? image_cache_->find(index) : nullptr;
    if (!resized) {
      resized = std::make_shared<const RgbImage>(
          resize_bilinear(load_image(image.path, transform_.limits), s, s));
      if (image_cache_) image_cache_->insert(index, resized);
    }
    const ChwImage chw = normalize_to_chw(*resized, transform_.normalization);
    const size_t n = static_cast<size_t>(3) * s * s;
    CAPTION_ASSERT(chw.data.size() == n, "normalised image of ", chw.data.size(), " values");
    std::memcpy(b.images.data<float>() + slot * static_cast<int64_t>(n), chw.data.data(),
                n * sizeof(float));
  } catch (const Error& e) {
    throw Error(str(e.what(), " (loader: image '", image.id, "' in batch ", b.index, " of epoch ",
                    b.epoch, ")"));
  }
}

void DataLoader::finish_slot_locked(OpenBatch& open, int64_t slot, std::exception_ptr error) {
  open.errors[static_cast<size_t>(slot)] = std::move(error);
  if (--open.remaining == 0) {
    open.ready = true;
    if (open.generation == generation_) ready_cv_.notify_all();
  }
}

void DataLoader::worker_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    std::shared_ptr<OpenBatch> open;
    int64_t slot = 0;
    work_cv_.wait(lock, [&] { return stopping_ || (active_ && claim_locked(open, slot)); });
    if (stopping_) return;
    lock.unlock();
    std::exception_ptr error;
    try {
      fill_slot(*open, slot);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    finish_slot_locked(*open, slot, std::move(error));
  }
}

std::optional<Batch> DataLoader::next() {
  std::unique_lock lock(mutex_);
  if (position_.batch >= batches_per_epoch()) {
    position_ = {position_.epoch + 1, 0};
    return std::nullopt;
  }
  if (!active_) active_ = true;
  if (fill_window_locked()) work_cv_.notify_all();
  std::shared_ptr<OpenBatch> front = window_.front();
  CAPTION_ASSERT(front->global == global(position_), "front batch ", front->global,
                 " is not the consumer's ", global(position_));
  // Help with the batch we wait for rather than sleep: with workers == 0 this is the
  // whole decoding; otherwise it only runs when the workers are behind.
  while (front->next_slot < static_cast<int64_t>(front->image_of_slot.size())) {
    const int64_t slot = front->next_slot++;
    lock.unlock();
    std::exception_ptr error;
    try {
      fill_slot(*front, slot);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    finish_slot_locked(*front, slot, std::move(error));
  }
  ready_cv_.wait(lock, [&] { return front->ready; });
  window_.pop_front();
  ++position_.batch;
  if (fill_window_locked()) work_cv_.notify_all();
  lock.unlock();

  for (const std::exception_ptr& error : front->errors)
    if (error) std::rethrow_exception(error);
  return std::move(front->batch);
}

}  // namespace caption::data
