// Benchmarks of the data pipeline (issue 4): the loader's throughput at 224x224, image
// decode and resize, synthetic data generation, scoring an evaluation with every
// metric, caption normalisation and GloVe loading. The figures and what bounds each
// one are kept in bench/NOTES.md ("Data pipeline").
//
// Inputs are generated, once per process, under a temporary directory that is removed
// at exit, so the benchmark needs no data set on disk. Each benchmark reports its
// natural unit as a rate counter (images/s, captions/s, lines/s) next to the time.
#include <benchmark/benchmark.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb_image_write.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "data/datasets/flickr8k_reader.h"
#include "data/image/file_io.h"
#include "data/image/image.h"
#include "data/image/resize.h"
#include "data/image/transform.h"
#include "data/loader/loader.h"
#include "data/metrics/metrics.h"
#include "data/synthetic/generator.h"
#include "data/text/glove.h"
#include "data/text/normalize.h"
#include "data/text/vocab.h"

namespace {

namespace fs = std::filesystem;
using namespace caption;

// A scratch directory for the process, removed at exit.
const fs::path& scratch() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("caption_bench_data_" + std::to_string(::getpid()));
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(fs::temp_directory_path() /
                         ("caption_bench_data_" + std::to_string(::getpid())),
                     ec);
    });
    return d;
  }();
  return dir;
}

// ---- loader --------------------------------------------------------------------------

// 500 training images at the generator's default 128x128, five captions each.
const data::CaptionDataset& synthetic_500() {
  static const data::CaptionDataset dataset = [] {
    data::SyntheticOptions o;
    o.train_images = 500;
    o.val_images = 0;
    o.test_images = 0;
    const fs::path root = scratch() / "synthetic500";
    data::generate_synthetic_dataset(root, o);
    return data::read_flickr8k(root).dataset;
  }();
  return dataset;
}

// One epoch of one caption per image (500 images) per iteration, resized to 224 by the
// loader; args: worker threads, image cache (0 off, 1 on).
void BM_LoaderEpoch224(benchmark::State& state) {
  const data::CaptionDataset& dataset = synthetic_500();
  const text::Normalizer normalizer{text::TextOptions{}};
  std::vector<std::vector<std::string>> train;
  for (const auto& s : dataset.samples)
    for (const auto& c : s.captions) train.push_back(normalizer.normalize(c));
  const text::Vocabulary vocab = text::Vocabulary::build(train, {});
  data::ImageTransform transform;
  transform.image_size = 224;
  data::LoaderOptions options;
  options.items = data::EpochItems::OneCaptionPerImage;
  options.batch_size = 32;
  options.workers = static_cast<int>(state.range(0));
  options.image_cache_bytes = state.range(1) ? size_t{1} << 30 : 0;
  data::DataLoader loader(dataset, normalizer, vocab, transform, options);
  if (state.range(1)) {  // warm the cache: the steady state of a later epoch
    while (loader.next()) {
    }
  }
  int64_t images = 0;
  for (auto _ : state) {
    while (auto batch = loader.next()) {
      images += batch->size();
      benchmark::DoNotOptimize(batch->images.raw_data());
    }
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_LoaderEpoch224)
    ->ArgNames({"workers", "cache"})
    ->Args({2, 0})
    ->Args({2, 1})
    ->Args({0, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- images ----------------------------------------------------------------------------

// stb_image_write's output callback. (resize + memcpy: GCC 12 warns falsely about an
// inlined vector::insert here.)
void append_bytes(void* context, void* data, int size) {
  if (size <= 0) return;
  auto* out = static_cast<std::vector<std::uint8_t>*>(context);
  const size_t old = out->size();
  out->resize(old + static_cast<size_t>(size));
  std::memcpy(out->data() + old, data, static_cast<size_t>(size));
}

// A 500x375 JPEG (quality 90) of photograph-like content: a synthetic scene stretched to
// 500x375 with mild noise, so that the entropy decoder has real work.
const std::vector<std::uint8_t>& jpeg_500x375() {
  static const std::vector<std::uint8_t> bytes = [] {
    data::SyntheticOptions o;
    o.image_size = 500;
    const data::RgbImage scene = data::render_synthetic_image(o, data::describe_synthetic_image(o, 3));
    data::RgbImage im = data::resize_bilinear(scene, 500, 375);
    std::mt19937 rng(1);
    for (auto& p : im.pixels) p = static_cast<std::uint8_t>(std::clamp<int>(p + int(rng() % 17) - 8, 0, 255));
    std::vector<std::uint8_t> out;
    stbi_write_jpg_to_func(append_bytes, &out, im.width, im.height, 3, im.pixels.data(), 90);
    return out;
  }();
  return bytes;
}

void BM_DecodeJpeg500x375(benchmark::State& state) {
  const auto& bytes = jpeg_500x375();
  for (auto _ : state) benchmark::DoNotOptimize(data::decode_image(bytes, "bench.jpg").pixels.data());
  state.counters["images/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_DecodeJpeg500x375)->Unit(benchmark::kMillisecond);

void BM_Resize500x375To224(benchmark::State& state) {
  const data::RgbImage im = data::decode_image(jpeg_500x375(), "bench.jpg");
  for (auto _ : state) benchmark::DoNotOptimize(data::resize_bilinear(im, 224, 224).pixels.data());
  state.counters["images/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Resize500x375To224)->Unit(benchmark::kMillisecond);

// What a worker does per image: decode, resize, normalise to CHW float.
void BM_DecodeResizeNormalise500x375To224(benchmark::State& state) {
  const auto& bytes = jpeg_500x375();
  const data::ImageTransform transform;
  for (auto _ : state)
    benchmark::DoNotOptimize(data::preprocess(data::decode_image(bytes, "bench.jpg"), transform).data.data());
  state.counters["images/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_DecodeResizeNormalise500x375To224)->Unit(benchmark::kMillisecond);

// ---- synthetic data ----------------------------------------------------------------------

// args: train, val, test images (128x128, five captions each, all hardware threads).
void BM_SyntheticGenerate(benchmark::State& state) {
  data::SyntheticOptions o;
  o.train_images = static_cast<int>(state.range(0));
  o.val_images = static_cast<int>(state.range(1));
  o.test_images = static_cast<int>(state.range(2));
  o.existing = data::ExistingOutput::Replace;
  const fs::path root = scratch() / "generated";
  for (auto _ : state) benchmark::DoNotOptimize(data::generate_synthetic_dataset(root, o).size());
  fs::remove_all(root);
  state.counters["images/s"] = benchmark::Counter(
      static_cast<double>(o.train_images + o.val_images + o.test_images),
      benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_SyntheticGenerate)
    ->ArgNames({"train", "val", "test"})
    ->Args({400, 50, 50})
    ->Args({3000, 500, 500})  // the default-size set
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- metrics -------------------------------------------------------------------------------

// 1,000 images x 5 references of 8-14 words over a 2,000-word vocabulary (as in
// tests/data/metrics_test.cpp), every metric.
void BM_ScoreAll1000x5(benchmark::State& state) {
  std::mt19937 rng(7);
  auto sentence = [&] {
    metrics::Tokens tokens(8 + rng() % 7);
    for (auto& token : tokens) {
      // (snprintf rather than "w" + to_string: GCC 12 warns falsely on the latter)
      char word[16];
      std::snprintf(word, sizeof word, "w%u", static_cast<unsigned>(rng() % 2000));
      token = word;
    }
    return tokens;
  };
  std::vector<metrics::Sample> corpus(1000);
  for (metrics::Sample& sample : corpus) {
    for (int r = 0; r < 5; ++r) sample.references.push_back(sentence());
    sample.hypothesis = sample.references[0];
    sample.hypothesis.resize(sample.hypothesis.size() - 2);
  }
  for (auto _ : state) benchmark::DoNotOptimize(metrics::score_all(corpus).cider_d);
  state.counters["images/s"] = benchmark::Counter(1000, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ScoreAll1000x5)->Unit(benchmark::kMillisecond);

// ---- text ------------------------------------------------------------------------------------

// 40k captions (Flickr8k's count); arg 0: default options, 1: every option on
// (stopwords, Porter, and WordNet lemmatising when the database is installed).
void BM_Normalize40k(benchmark::State& state) {
  const char* base[] = {"A man riding a wave on top of a surfboard.",
                        "Two giraffes standing next to each other in a field!",
                        "A plate of food with broccoli, carrots and rice",
                        "People walking down a busy city street at night."};
  std::vector<std::string> captions;
  for (int i = 0; i < 40000; ++i) captions.push_back(base[i % 4]);
  text::TextOptions options;
  if (state.range(0)) {
    options.stem = true;
    options.remove_stopwords = true;
    options.lemmatize = fs::exists(text::default_wordnet_dir() / "index.noun");
    state.SetLabel(options.lemmatize ? "all options" : "all options but lemmatising (no WordNet)");
  } else {
    state.SetLabel("default options");
  }
  const text::Normalizer normalizer(options);
  for (auto _ : state) {
    size_t tokens = 0;
    for (const auto& c : captions) tokens += normalizer.normalize(c).size();
    benchmark::DoNotOptimize(tokens);
  }
  state.counters["captions/s"] = benchmark::Counter(40000, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Normalize40k)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// A 400k-line 50-d GloVe file (as glove.6B.50d.txt) for a 10k-word vocabulary.
void BM_GloveLoad400kx50(benchmark::State& state) {
  const fs::path path = scratch() / "glove400k50.txt";
  std::vector<std::string> tokens = {"<pad>", "<sos>", "<eos>", "<unk>"};
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::string line;
    for (int i = 0; i < 400000; ++i) {
      char word[16];
      std::snprintf(word, sizeof word, "w%d", i);
      line = word;
      for (int k = 0; k < 50; ++k) {
        char num[16];
        const int n = std::snprintf(num, sizeof num, " %.5f", ((i * 31 + k * 7) % 2001 - 1000) * 0.001);
        line.append(num, static_cast<size_t>(n));
      }
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), f);
      if (i % 40 == 0) tokens.emplace_back(word);
    }
    std::fclose(f);
  }
  const auto vocab = text::Vocabulary::from_tokens(tokens, "bench");
  for (auto _ : state) benchmark::DoNotOptimize(text::load_glove_embedding(path, vocab, 5).words_found);
  state.counters["lines/s"] = benchmark::Counter(400000, benchmark::Counter::kIsIterationInvariantRate);
  fs::remove(path);
}
BENCHMARK(BM_GloveLoad400kx50)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
