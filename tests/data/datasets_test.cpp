// Tests of data/datasets: the Flickr8k layout reader on hand-written files (the real
// file's bogus "*.jpg.1#k" keys, CRLF endings, images in no split, malformed lines and
// split problems reported with file and line) and the Karpathy JSON reader (restval
// handling, COCO filepath, pre-tokenised references, malformed variants naming the
// field and image index).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/datasets/caption_dataset.h"
#include "data/datasets/flickr8k_reader.h"
#include "data/datasets/karpathy_reader.h"
#include "engine/error.h"
#include "tests/harness/scratch.h"

namespace fs = std::filesystem;
using namespace caption::data;

namespace {

fs::path tmp_dir(const std::string& sub) {
  const fs::path dir = caption::testing::scratch_dir("data_datasets") / sub;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

template <typename F>
void expect_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "expected caption::Error";
  } catch (const caption::Error& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << msg;
  }
}

const char* kTokens =
    "1000_a.jpg#0\tA dog runs .\n"
    "1000_a.jpg#1\tA brown dog is running on grass .\r\n"
    "2258277193_586949ec62.jpg.1#0\tA bogus key from the real file .\n"
    "2000_b.jpg#0\tTwo children play .\n"
    "\n"
    "2258277193_586949ec62.jpg.1#1\tAnother bogus line .\n"
    "2000_b.jpg#1\tKids playing in a park\n"
    "3000_c.jpg#0\tA man on a bike .\n"
    "4000_d.jpg#0\tNot in any split .\n";

fs::path flickr_root(const std::string& name, const std::string& tokens = kTokens) {
  const fs::path root = tmp_dir(name);
  write(root / "Flickr8k.token.txt", tokens);
  write(root / "Flickr_8k.trainImages.txt", "1000_a.jpg\n2000_b.jpg\n");
  write(root / "Flickr_8k.devImages.txt", "3000_c.jpg");  // no final newline
  write(root / "Flickr_8k.testImages.txt", "\n");
  return root;
}

}  // namespace

TEST(Flickr8kReader, ReadsHandWrittenFiles) {
  const fs::path root = flickr_root("ok");
  const Flickr8kData d = read_flickr8k(root);
  ASSERT_EQ(d.dataset.samples.size(), 3u);
  EXPECT_EQ(d.dataset.name, "flickr8k");
  const auto& a = d.dataset.samples[0];
  EXPECT_EQ(a.image_id, "1000_a.jpg");
  EXPECT_EQ(a.image_path, root / "Flicker8k_Dataset" / "1000_a.jpg");
  ASSERT_EQ(a.captions.size(), 2u);
  EXPECT_EQ(a.captions[1], "A brown dog is running on grass .");  // CR stripped
  EXPECT_TRUE(a.tokens.empty());
  EXPECT_EQ(a.split, Split::Train);
  EXPECT_EQ(d.dataset.samples[1].captions[1], "Kids playing in a park");
  EXPECT_EQ(d.dataset.samples[2].split, Split::Val);
  EXPECT_EQ(d.dataset.count(Split::Train), 2u);
  EXPECT_EQ(d.dataset.count(Split::Test), 0u);
  EXPECT_EQ(d.dataset.of_split(Split::Val).size(), 1u);
  EXPECT_EQ(d.report.skipped_keys, 2u);
  ASSERT_EQ(d.report.skipped_examples.size(), 2u);
  EXPECT_NE(d.report.skipped_examples[0].find("Flickr8k.token.txt:3: 2258277193_586949ec62.jpg.1#0"),
            std::string::npos)
      << d.report.skipped_examples[0];
  EXPECT_EQ(d.report.unsplit_images, 1u);
  EXPECT_EQ(d.report.caption_lines, 6u);
}

TEST(Flickr8kReader, MalformedLinesNameFileAndLine) {
  const std::string good = "1000_a.jpg#0\tA dog .\n";
  expect_error([&] { read_flickr8k(flickr_root("notab", good + "1000_a.jpg#1 no tab here\n")); },
               {"Flickr8k.token.txt:2:", "no tab"});
  expect_error([&] { read_flickr8k(flickr_root("nohash", good + "1000_a.jpg\tA dog .\n")); },
               {"Flickr8k.token.txt:2:", "name#k"});
  expect_error([&] { read_flickr8k(flickr_root("badnum", "\n" + good + "1000_a.jpg#x\tA dog .\n")); },
               {"Flickr8k.token.txt:3:", "digits"});
  expect_error([&] { read_flickr8k(flickr_root("empty", good + "1000_a.jpg#1\t  \n")); },
               {"Flickr8k.token.txt:2:", "empty caption"});
  expect_error([&] { read_flickr8k(flickr_root("twice", good + "1000_a.jpg#0\tAgain .\n")); },
               {"Flickr8k.token.txt:2:", "twice"});
}

TEST(Flickr8kReader, SplitProblems) {
  // 2000_b.jpg and 3000_c.jpg are in the split files but have no captions here.
  expect_error([&] { read_flickr8k(flickr_root("nocaps", "1000_a.jpg#0\tA dog .\n")); },
               {"Flickr_8k.trainImages.txt:2:", "2000_b.jpg", "no captions"});

  const fs::path dup = flickr_root("dup");
  write(dup / "Flickr_8k.testImages.txt", "4000_d.jpg\n1000_a.jpg\n");
  expect_error([&] { read_flickr8k(dup); }, {"Flickr_8k.testImages.txt:2:", "1000_a.jpg", "twice"});

  const fs::path missing = flickr_root("missing");
  fs::remove(missing / "Flickr_8k.devImages.txt");
  expect_error([&] { read_flickr8k(missing); }, {"Flickr_8k.devImages.txt", "no such file"});

  expect_error([&] { read_flickr8k(tmp_dir("nothing")); }, {"Flickr8k.token.txt", "no such file"});

  // A folder that yields no sample is refused here, not later as an empty training set.
  expect_error([&] { read_flickr8k(flickr_root("blank", "\n\n")); },
               {"Flickr8k.token.txt", "no captions"});
  const fs::path unlisted = flickr_root("unlisted");
  for (const char* f : {"Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt"}) write(unlisted / f, "");
  expect_error([&] { read_flickr8k(unlisted); }, {"unlisted", "split files", "list no image"});

  const fs::path noimg = flickr_root("noimg");
  Flickr8kOptions check;
  check.check_images = ImageFileCheck::RequireExists;
  expect_error([&] { read_flickr8k(noimg, check); },
               {"Flicker8k_Dataset/1000_a.jpg", "missing", "Flickr_8k.trainImages.txt:1"});
  fs::create_directories(noimg / "Flicker8k_Dataset");
  for (const char* n : {"1000_a.jpg", "2000_b.jpg", "3000_c.jpg"}) write(noimg / "Flicker8k_Dataset" / n, "x");
  EXPECT_EQ(read_flickr8k(noimg, check).dataset.samples.size(), 3u);
}

namespace {

const char* kKarpathy = R"({
  "dataset": "coco",
  "images": [
    {"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "imgid": 0,
     "split": "test", "cocoid": 391895,
     "sentences": [{"tokens": ["a", "man", "with", "a", "red", "helmet"], "raw": "A man with a red helmet.", "imgid": 0},
                   {"tokens": ["a", "biker"], "raw": "A biker ."}]},
    {"filepath": "val2014", "filename": "COCO_val2014_000000522418.jpg", "split": "restval",
     "sentences": [{"tokens": ["a", "woman", "cutting", "a", "cake"], "raw": "A woman cutting a cake."}]},
    {"filepath": "train2014", "filename": "COCO_train2014_000000000009.jpg", "split": "train",
     "sentences": [{"tokens": [], "raw": ""}]},
    {"filename": "1000_a.jpg", "split": "val",
     "sentences": [{"tokens": ["a", "dog"], "raw": "A dog"}]}
  ]
})";

}  // namespace

TEST(KarpathyReader, ReadsSplitsAndPaths) {
  const fs::path dir = tmp_dir("karpathy");
  write(dir / "dataset_coco.json", kKarpathy);
  const CaptionDataset ds = read_karpathy_json(dir / "dataset_coco.json");
  EXPECT_EQ(ds.name, "coco");
  ASSERT_EQ(ds.samples.size(), 4u);
  const auto& s0 = ds.samples[0];
  EXPECT_EQ(s0.image_id, "COCO_val2014_000000391895.jpg");
  EXPECT_EQ(s0.image_path, fs::path("val2014") / "COCO_val2014_000000391895.jpg");
  EXPECT_EQ(s0.split, Split::Test);
  ASSERT_EQ(s0.captions.size(), 2u);
  EXPECT_EQ(s0.captions[0], "A man with a red helmet.");
  ASSERT_EQ(s0.tokens.size(), 2u);
  EXPECT_EQ(s0.tokens[0], (std::vector<std::string>{"a", "man", "with", "a", "red", "helmet"}));
  EXPECT_EQ(ds.samples[1].split, Split::Restval);
  EXPECT_EQ(ds.samples[3].image_path, fs::path("1000_a.jpg"));
  EXPECT_EQ(ds.samples[3].split, Split::Val);
  EXPECT_EQ(ds.count(Split::Restval), 1u);

  KarpathyOptions merge;
  merge.restval = RestvalPolicy::MergeIntoTrain;
  merge.image_root = "/data/coco";
  const CaptionDataset m = read_karpathy_json(dir / "dataset_coco.json", merge);
  EXPECT_EQ(m.samples[1].split, Split::Train);
  EXPECT_EQ(m.count(Split::Restval), 0u);
  EXPECT_EQ(m.count(Split::Train), 2u);
  EXPECT_EQ(m.samples[0].image_path, fs::path("/data/coco/val2014/COCO_val2014_000000391895.jpg"));

  KarpathyOptions check;
  check.image_root = dir;
  check.check_images = ImageFileCheck::RequireExists;
  expect_error([&] { read_karpathy_json(dir / "dataset_coco.json", check); },
               {"COCO_val2014_000000391895.jpg", "missing", "images[0]"});

  // Without "dataset", the name is the file's stem.
  write(dir / "dataset_flickr8k.json",
        R"({"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"tokens": ["a"], "raw": "a"}]}]})");
  const CaptionDataset unnamed = read_karpathy_json(dir / "dataset_flickr8k.json");
  EXPECT_EQ(unnamed.name, "dataset_flickr8k");
  EXPECT_EQ(unnamed.samples.size(), 1u);
}

TEST(KarpathyReader, MalformedInputNamesFieldAndIndex) {
  const fs::path dir = tmp_dir("karpathy_bad");
  struct Case {
    std::string json;
    std::vector<std::string> fragments;
  };
  const std::string ok_image = R"({"filename": "a.jpg", "split": "train", "sentences": [{"tokens": ["a"], "raw": "a"}]})";
  const std::vector<Case> cases = {
      {R"({"images": [)", {"malformed JSON"}},
      {"", {"malformed JSON"}},
      {R"([1, 2])", {"top level", "must be an object"}},
      {R"({"imgs": []})", {"top level.images", "missing"}},
      {R"({"images": []})", {"top level", "'images' is empty"}},
      {R"({"images": {}})", {"images", "must be an array"}},
      {R"({"images": [)" + ok_image + R"(, 7]})", {"images[1]", "must be an object"}},
      {R"({"images": [)" + ok_image + R"(, {"split": "train", "sentences": []}]})", {"images[1].filename", "missing"}},
      {R"({"images": [{"filename": 5, "split": "train", "sentences": []}]})", {"images[0].filename", "must be a string"}},
      {R"({"images": [{"filename": "a.jpg", "sentences": []}]})", {"images[0].split", "missing"}},
      {R"({"images": [{"filename": "a.jpg", "split": "dev", "sentences": []}]})", {"images[0].split", "'dev'"}},
      {R"({"images": [{"filename": "a.jpg", "split": "val"}]})", {"images[0].sentences", "missing"}},
      {R"({"images": [{"filename": "a.jpg", "split": "val", "sentences": []}]})", {"images[0].sentences", "empty"}},
      {R"({"images": [{"filename": "a.jpg", "split": "val", "sentences": [{"raw": "x"}]}]})",
       {"images[0].sentences[0].tokens", "missing"}},
      {R"({"images": [{"filename": "a.jpg", "split": "val", "sentences": [{"tokens": ["x"]}]}]})",
       {"images[0].sentences[0].raw", "missing"}},
      {R"({"images": [{"filename": "a.jpg", "split": "val", "sentences": [{"tokens": "x", "raw": "x"}]}]})",
       {"images[0].sentences[0].tokens", "must be an array"}},
      {R"({"images": [{"filename": "a.jpg", "split": "val", "sentences": [{"tokens": ["x", 3], "raw": "x"}]}]})",
       {"images[0].sentences[0].tokens[1]", "must be a string"}},
      {R"({"images": [{"filepath": 2014, "filename": "a.jpg", "split": "val", "sentences": []}]})",
       {"images[0].filepath", "must be a string"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const fs::path p = dir / ("bad_" + std::to_string(i) + ".json");
    write(p, cases[i].json);
    auto fragments = cases[i].fragments;
    fragments.push_back(p.string() + ": ");
    SCOPED_TRACE(cases[i].json);
    expect_error([&] { read_karpathy_json(p); }, fragments);
  }
  expect_error([&] { read_karpathy_json(dir / "absent.json"); }, {"absent.json", "no such file"});
}

TEST(CaptionDataset, SplitNames) {
  for (Split s : {Split::Train, Split::Val, Split::Test, Split::Restval})
    EXPECT_EQ(parse_split(split_name(s)), s);
  EXPECT_FALSE(parse_split("dev").has_value());
}
