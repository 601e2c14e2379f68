// Tests of data/synthetic: determinism (same seed -> same bytes in every file, whatever
// the thread count; another seed -> other bytes), captions consistent with the pixels
// and positions of the objects drawn, atomic output, and loading through the Flickr8k
// reader (a small whole set; the default-size set is timed in bench/data_bench.cpp).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data/datasets/flickr8k_reader.h"
#include "data/image/file_io.h"
#include "data/image/image.h"
#include "data/synthetic/captions.h"
#include "data/synthetic/generator.h"
#include "engine/error.h"
#include "tests/harness/scratch.h"

namespace fs = std::filesystem;
using namespace caption::data;

namespace {

fs::path tmp_dir() { return caption::testing::scratch_dir("data_synthetic"); }

SyntheticOptions small_options(std::uint64_t seed) {
  SyntheticOptions o;
  o.seed = seed;
  o.train_images = 40;
  o.val_images = 10;
  o.test_images = 10;
  return o;
}

// Relative path -> bytes of every file under root.
std::map<std::string, std::vector<std::uint8_t>> snapshot(const fs::path& root) {
  std::map<std::string, std::vector<std::uint8_t>> files;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) files[fs::relative(e.path(), root).string()] = read_file_bytes(e.path());
  return files;
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream is(s);
  std::vector<std::string> out;
  for (std::string w; is >> w;) out.push_back(w);
  return out;
}

struct Mention {
  size_t position;  // token index of the colour word
  Colour colour;
  Shape shape;
  std::optional<ObjectSize> size;
};

std::vector<Mention> mentions(const std::vector<std::string>& words) {
  std::vector<Mention> out;
  for (size_t i = 0; i + 1 < words.size(); ++i)
    for (Colour c : kAllColours) {
      if (words[i] != colour_name(c)) continue;
      Mention m{i, c, Shape::Circle, std::nullopt};
      const std::string& s = words[i + 1];
      EXPECT_TRUE(s == "circle" || s == "disc" || s == "square" || s == "box" || s == "triangle") << s;
      m.shape = (s == "circle" || s == "disc") ? Shape::Circle : (s == "triangle") ? Shape::Triangle : Shape::Square;
      if (i > 0) {
        const std::string& z = words[i - 1];
        if (z == "small" || z == "little" || z == "tiny") m.size = ObjectSize::Small;
        if (z == "large" || z == "big") m.size = ObjectSize::Large;
      }
      out.push_back(m);
    }
  return out;
}

std::optional<Relation> relation_between(const std::vector<std::string>& w, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i) {
    if (w[i] == "left") return Relation::LeftOf;
    if (w[i] == "right") return Relation::RightOf;
    if (w[i] == "above" || w[i] == "over" || w[i] == "top") return Relation::Above;
    if (w[i] == "below" || w[i] == "under" || w[i] == "beneath") return Relation::Below;
  }
  return std::nullopt;
}

}  // namespace

TEST(Synthetic, SameSeedSameBytesAnyThreadCount) {
  auto a = small_options(7), b = small_options(7), c = small_options(8);
  a.threads = 1;
  b.threads = 3;
  const fs::path ra = tmp_dir() / "seed7_t1", rb = tmp_dir() / "seed7_t3", rc = tmp_dir() / "seed8";
  for (const auto& r : {ra, rb, rc}) fs::remove_all(r);
  generate_synthetic_dataset(ra, a);
  generate_synthetic_dataset(rb, b);
  generate_synthetic_dataset(rc, c);
  const auto sa = snapshot(ra), sb = snapshot(rb), sc = snapshot(rc);
  EXPECT_EQ(sa.size(), 60u + 4u);
  EXPECT_TRUE(sa == sb) << "same seed, different thread count: files differ";
  ASSERT_EQ(sa.size(), sc.size());
  EXPECT_NE(sa.at("Flickr8k.token.txt"), sc.at("Flickr8k.token.txt"));
  size_t same_images = 0;
  for (const auto& [name, bytes] : sa) same_images += sc.at(name) == bytes;
  EXPECT_LE(same_images, 3u);  // only the split lists may coincide
  // Nothing left behind next to the outputs.
  for (const auto& e : fs::directory_iterator(tmp_dir()))
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
}

TEST(Synthetic, CaptionsMatchWhatIsDrawn) {
  SyntheticOptions o;
  o.seed = 11;
  std::map<size_t, int> objects_seen;
  std::set<std::string> distinct_captions;
  for (int index = 0; index < 300; ++index) {
    const SyntheticImage im = describe_synthetic_image(o, index);
    const RgbImage px = render_synthetic_image(o, im);
    ASSERT_EQ(px.width, o.image_size);
    const auto& objs = im.scene.objects;
    ASSERT_GE(objs.size(), 1u);
    ASSERT_LE(objs.size(), 3u);
    ++objects_seen[objs.size()];
    for (const auto& obj : objs) {
      const auto rgb = colour_rgb(obj.colour);
      for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(px.at(obj.cx, obj.cy, ch), rgb[ch]) << im.file_name;
    }
    ASSERT_EQ(im.captions.size(), 5u);
    for (const auto& cap : im.captions) {
      distinct_captions.insert(cap);
      const auto words = split_words(cap);
      const auto ms = mentions(words);
      ASSERT_EQ(ms.size(), objs.size()) << im.file_name << ": " << cap;
      std::vector<const SceneObject*> which;
      for (const auto& m : ms) {
        const SceneObject* match = nullptr;
        for (const auto& obj : objs)
          if (obj.colour == m.colour && obj.shape == m.shape) match = &obj;
        ASSERT_NE(match, nullptr) << im.file_name << ": '" << cap << "' names an object not drawn";
        if (m.size) {
          EXPECT_EQ(*m.size, match->size) << im.file_name << ": " << cap;
        }
        which.push_back(match);
      }
      if (objs.size() == 2) {
        EXPECT_NE(which[0], which[1]) << cap;
        const auto rel = relation_between(words, ms[0].position + 1, ms[1].position);
        if (rel) {
          EXPECT_EQ(*rel, relation_of(*which[0], *which[1])) << im.file_name << ": " << cap;
        }
      } else if (objs.size() == 3) {
        EXPECT_LT(which[0]->cx, which[1]->cx) << cap;
        EXPECT_LT(which[1]->cx, which[2]->cx) << cap;
      } else {
        const int third = o.image_size / 3;
        if (cap.find("left") != std::string::npos) {
          EXPECT_LT(objs[0].cx, third) << cap;
        }
        if (cap.find("right") != std::string::npos) {
          EXPECT_GE(objs[0].cx, 2 * third) << cap;
        }
        if (cap.find("top") != std::string::npos) {
          EXPECT_LT(objs[0].cy, third) << cap;
        }
        if (cap.find("bottom") != std::string::npos) {
          EXPECT_GE(objs[0].cy, 2 * third) << cap;
        }
      }
    }
    // Objects never overlap: no drawn pixel of one lies at another's centre.
    for (size_t i = 0; i < objs.size(); ++i)
      for (size_t j = i + 1; j < objs.size(); ++j) {
        const double d = std::hypot(objs[i].cx - objs[j].cx, objs[i].cy - objs[j].cy);
        EXPECT_GT(d, 1.3 * (objs[i].radius + objs[j].radius)) << im.file_name;
      }
  }
  for (size_t n = 1; n <= 3; ++n) EXPECT_GT(objects_seen[n], 50) << n << " objects";
  EXPECT_GT(distinct_captions.size(), 1000u);
  std::printf("example captions:\n");
  for (int index = 0; index < 4; ++index)
    for (const auto& cap : describe_synthetic_image(o, index).captions) std::printf("  %d: %s\n", index, cap.c_str());
}

TEST(Synthetic, LoadsThroughFlickr8kReaderAndRefusesToOverwrite) {
  const fs::path root = tmp_dir() / "reader";
  fs::remove_all(root);
  auto o = small_options(3);
  const auto truth = generate_synthetic_dataset(root, o);
  Flickr8kOptions ro;
  ro.check_images = ImageFileCheck::RequireExists;
  const Flickr8kData data = read_flickr8k(root, ro);
  EXPECT_EQ(data.dataset.samples.size(), truth.size());
  EXPECT_EQ(data.dataset.count(Split::Train), 40u);
  EXPECT_EQ(data.dataset.count(Split::Val), 10u);
  EXPECT_EQ(data.dataset.count(Split::Test), 10u);
  EXPECT_EQ(data.report.skipped_keys, 0u);
  EXPECT_EQ(data.report.unsplit_images, 0u);
  for (size_t i = 0; i < truth.size(); ++i) {
    EXPECT_EQ(data.dataset.samples[i].image_id, truth[i].file_name);
    EXPECT_EQ(data.dataset.samples[i].captions, truth[i].captions);
    EXPECT_EQ(data.dataset.samples[i].split, truth[i].split);
    const RgbImage im = load_image(data.dataset.samples[i].image_path);
    EXPECT_EQ(im.pixels, render_synthetic_image(o, truth[i]).pixels);
  }

  try {
    generate_synthetic_dataset(root, o);
    ADD_FAILURE() << "expected an error for an existing directory";
  } catch (const caption::Error& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
  o.seed = 4;
  o.existing = ExistingOutput::Replace;
  const auto replaced = generate_synthetic_dataset(root, o);
  EXPECT_EQ(read_flickr8k(root).dataset.samples[0].captions, replaced[0].captions);

  SyntheticOptions bad;
  bad.image_size = 8;
  EXPECT_THROW(generate_synthetic_dataset(tmp_dir() / "bad", bad), caption::Error);
  EXPECT_FALSE(fs::exists(tmp_dir() / "bad"));
}

// A whole set (three splits, five captions each) through the Flickr8k reader. Small on
// purpose: the default-size set (3000/500/500) is generated and timed by
// bench/data_bench.cpp, since speed goals live in benchmarks, not tests.
TEST(Synthetic, SmallSetLoadsThroughFlickrReader) {
  const fs::path root = tmp_dir() / "small_full";
  fs::remove_all(root);
  SyntheticOptions options;
  options.image_size = 32;
  options.train_images = 30;
  options.val_images = 5;
  options.test_images = 5;
  const auto truth = generate_synthetic_dataset(root, options);
  EXPECT_EQ(truth.size(), 40u);
  const Flickr8kData data = read_flickr8k(root);
  EXPECT_EQ(data.dataset.count(Split::Train), 30u);
  EXPECT_EQ(data.dataset.count(Split::Val), 5u);
  EXPECT_EQ(data.dataset.count(Split::Test), 5u);
  EXPECT_EQ(data.report.caption_lines, 200u);
  fs::remove_all(root);
}
