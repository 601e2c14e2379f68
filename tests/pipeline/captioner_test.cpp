// The Captioner and the attention-map figures on a tiny random checkpoint: results equal
// direct model decoding (greedy and beam), batching changes nothing, attention maps are
// distributions over the grid, figures are deterministic and follow the attention, and
// bad inputs (corrupt image, missing or truncated checkpoint, bad options) are refused
// with messages that name them.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "data/image/file_io.h"
#include "data/image/image.h"
#include "data/image/transform.h"
#include "engine/autograd.h"
#include "pipeline/attention_map.h"
#include "pipeline/captioner.h"
#include "pipeline/session.h"
#include "tests/harness/expect_error.h"
#include "tests/pipeline/concurrent_captioning.h"
#include "tests/pipeline/tiny_checkpoint.h"

namespace caption::pipeline {
namespace {

namespace fs = std::filesystem;

class CaptionerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(testing::fresh_test_dir("pipeline_captioner"));
    checkpoint_ = new std::string(testing::write_tiny_checkpoint(*dir_));
    images_ = new std::vector<std::string>{
        testing::write_test_picture(*dir_, "one.png", 40, 30, 0),
        testing::write_test_picture(*dir_, "two.png", 32, 32, 1),
        testing::write_test_picture(*dir_, "three.png", 17, 45, 2),
        testing::write_test_picture(*dir_, "four.png", 64, 48, 3),
        testing::write_test_picture(*dir_, "five.png", 33, 31, 1),
    };
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete images_;
    delete checkpoint_;
    delete dir_;
  }

  // The model decoding of one image, without the Captioner.
  static nn::DecodedCaption decode_directly(const nn::Checkpoint& ck, const std::string& image,
                                            const nn::DecodeOptions& options) {
    const data::ChwImage chw = data::load_and_preprocess(image, image_transform(ck.config));
    NoGradGuard no_grad;
    const Tensor x = Tensor::from_vector<float>(chw.data, {1, 3, chw.height, chw.width});
    const std::vector<nn::DecodedCaption> out = nn::decode(ck.model->decoder, ck.model->encode(x), options);
    return out.at(0);
  }

  static void expect_same(const CaptionResult& a, const CaptionResult& b, float tolerance) {
    EXPECT_EQ(a.image_path, b.image_path);
    EXPECT_EQ(a.words, b.words);
    EXPECT_EQ(a.text, b.text);
    EXPECT_EQ(a.finished, b.finished);
    EXPECT_NEAR(a.score, b.score, tolerance);
    ASSERT_EQ(a.log_probs.size(), b.log_probs.size());
    for (size_t i = 0; i < a.log_probs.size(); ++i) EXPECT_NEAR(a.log_probs[i], b.log_probs[i], tolerance);
    ASSERT_EQ(a.attention.size(), b.attention.size());
    for (size_t i = 0; i < a.attention.size(); ++i) {
      ASSERT_EQ(a.attention[i].size(), b.attention[i].size());
      for (size_t p = 0; p < a.attention[i].size(); ++p)
        EXPECT_NEAR(a.attention[i][p], b.attention[i][p], tolerance);
    }
  }

  static nn::DecodeOptions beam(const Captioner& c, int width) {
    nn::DecodeOptions o = c.default_options();
    o.beam = width;
    return o;
  }

  static fs::path* dir_;
  static std::string* checkpoint_;
  static std::vector<std::string>* images_;
};

fs::path* CaptionerTest::dir_ = nullptr;
std::string* CaptionerTest::checkpoint_ = nullptr;
std::vector<std::string>* CaptionerTest::images_ = nullptr;

TEST_F(CaptionerTest, DefaultsComeFromTheCheckpoint) {
  const Captioner c(*checkpoint_);
  EXPECT_EQ(c.default_options().max_len, 7);
  EXPECT_EQ(c.default_options().beam, 1);
  EXPECT_EQ(c.default_options().length_penalty, 0);
  EXPECT_EQ(c.transform().image_size, 64);
  EXPECT_FLOAT_EQ(c.transform().normalization.mean[1], 0.456f);
  EXPECT_EQ(c.vocab(), testing::tiny_captioner_vocab());
  EXPECT_FALSE(c.model().training());
}

// The Captioner encodes through its snapshot with every batch norm folded
// (nn/folded_resnet.h): the same bits as the model folding every pair itself.
TEST_F(CaptionerTest, EqualsDirectModelDecodingGreedyAndBeam) {
  const Captioner c(*checkpoint_);
  const nn::Checkpoint ck = nn::load_checkpoint(*checkpoint_);
  ck.model->encoder.batch_norm_folding = nn::BatchNormFolding::Always;
  size_t words = 0;
  for (int width : {1, 2}) {
    for (const std::string& image : *images_) {
      const nn::DecodeOptions options = beam(c, width);
      const CaptionResult r = c.caption(image, options);
      const nn::DecodedCaption d = decode_directly(ck, image, options);
      ASSERT_EQ(r.words.size(), d.tokens.size()) << image << " beam " << width;
      std::string text;
      for (size_t i = 0; i < d.tokens.size(); ++i) {
        EXPECT_EQ(r.words[i], ck.vocab[d.tokens[i]]);
        text += (i ? " " : "") + ck.vocab[d.tokens[i]];
      }
      EXPECT_EQ(r.text, text);
      EXPECT_EQ(r.image_path, image);
      EXPECT_EQ(r.log_probs, d.log_probs);
      EXPECT_EQ(r.attention, d.attention);
      EXPECT_EQ(r.score, d.score);
      EXPECT_EQ(r.finished, d.finished);
      EXPECT_EQ(r.grid_size, 2);
      words += r.words.size();
    }
  }
  EXPECT_GT(words, 0u) << "the tiny model decoded no words at all: the comparison would be empty";
}

// A Captioner moves with its folded encoder (which points into the model it owns): the
// moved-to one captions as a fresh one does, also after a move assignment.
TEST_F(CaptionerTest, MovedCaptionerCaptionsAlike) {
  const Captioner fresh(*checkpoint_);
  const CaptionResult want = fresh.caption(images_->front());
  Captioner moved(std::move(*std::make_unique<Captioner>(*checkpoint_)));
  expect_same(moved.caption(images_->front()), want, 0.0f);
  Captioner assigned(*checkpoint_);
  assigned = Captioner(*checkpoint_);
  expect_same(assigned.caption(images_->front()), want, 0.0f);
}

TEST_F(CaptionerTest, BatchedEqualsOneByOne) {
  Captioner c(*checkpoint_);
  for (int width : {1, 2}) {
    const nn::DecodeOptions options = beam(c, width);
    std::vector<CaptionResult> single;
    for (const std::string& image : *images_) single.push_back(c.caption(image, options));
    for (int batch_size : {1, 2, 16}) {
      c.set_batch_size(batch_size);
      // Batching changes the grouping of the encoder's products, not the arithmetic of
      // one image, up to float rounding; reading ahead on threads changes nothing.
      for (int threads : {0, 1, 3}) {
        c.set_read_threads(threads);
        const std::vector<CaptionResult> batched = c.caption(*images_, options);
        ASSERT_EQ(batched.size(), images_->size());
        for (size_t i = 0; i < batched.size(); ++i) expect_same(batched[i], single[i], 1e-5f);
      }
      std::vector<PreparedImage> prepared;
      for (const std::string& image : *images_) prepared.push_back(c.prepare(image));
      const std::vector<CaptionResult> from_prepared = c.caption_prepared(prepared, options);
      for (size_t i = 0; i < from_prepared.size(); ++i) expect_same(from_prepared[i], single[i], 1e-5f);
    }
  }
}

// Images already in memory (an upload's bytes, a decoded frame) caption as their files
// do; the name given stands for the path in the result and in errors.
TEST_F(CaptionerTest, ImagesInMemoryCaptionAsTheirFiles) {
  const Captioner c(*checkpoint_);
  for (int width : {1, 2}) {
    const nn::DecodeOptions options = beam(c, width);
    for (const std::string& image : *images_) {
      const PreparedImage from_file = c.prepare(image);
      const std::vector<std::uint8_t> bytes = data::read_file_bytes(image);
      const PreparedImage encoded = c.prepare_encoded(bytes, "upload:" + image);
      const PreparedImage pixels = c.prepare_pixels(data::load_image(image), "frame:" + image);
      EXPECT_EQ(encoded.path, "upload:" + image);
      EXPECT_EQ(encoded.input.data, from_file.input.data) << image;
      EXPECT_EQ(pixels.input.data, from_file.input.data) << image;
      EXPECT_EQ(pixels.image.pixels, from_file.image.pixels) << image;
      // One at a time: a batch of two groups the encoder's products differently.
      CaptionResult want = c.caption(image, options);
      want.image_path = "upload:" + image;
      expect_same(c.caption_prepared({encoded}, options).at(0), want, 0.0f);
      want.image_path = "frame:" + image;
      expect_same(c.caption_prepared({pixels}, options).at(0), want, 0.0f);
    }
  }
  const std::vector<std::uint8_t> garbage = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
  EXPECT_ERROR_WITH(c.prepare_encoded(garbage, "upload-7"), "upload-7: not a decodable image");
  EXPECT_ERROR_WITH(c.prepare_encoded({}, "upload-8"), "upload-8: empty file");
  EXPECT_ERROR_WITH(c.prepare_pixels(data::RgbImage{}, "frame-0"), "frame-0: the image is empty");
  data::RgbImage short_pixels(4, 3);
  short_pixels.pixels.pop_back();
  EXPECT_ERROR_WITH(c.prepare_pixels(short_pixels, "frame-1"), "frame-1: 4x3 RGB needs 36 bytes of pixels, got 35");
}

// Four threads on one Captioner (a service's request threads): the same results as alone.
TEST_F(CaptionerTest, ConcurrentCallsGiveTheResultsOfCallsAlone) {
  Captioner alone(*checkpoint_), shared(*checkpoint_);
  alone.set_batch_size(2);  // several batches per list, so the threads' batches interleave
  shared.set_batch_size(2);
  testing::expect_concurrent_calls_match(alone, shared, *images_, 4, 6);
}

TEST_F(CaptionerTest, AttentionMapsAreDistributionsOverTheGrid) {
  const Captioner c(*checkpoint_);
  for (int width : {1, 3}) {
    for (const CaptionResult& r : c.caption(*images_, beam(c, width))) {
      ASSERT_EQ(r.attention.size(), r.words.size());
      ASSERT_EQ(r.log_probs.size(), r.words.size());
      for (const auto& a : r.attention) {
        ASSERT_EQ(a.size(), 4u);
        EXPECT_NEAR(std::accumulate(a.begin(), a.end(), 0.0), 1.0, 1e-5);
        for (float w : a) EXPECT_GE(w, 0.0f);
      }
      for (float lp : r.log_probs) EXPECT_LE(lp, 0.0f);
    }
  }
}

TEST_F(CaptionerTest, CaptionEachReportsUnreadableImagesAndGoesOn) {
  const std::string corrupt = (*dir_ / "corrupt.png").string();
  data::write_file_atomic(corrupt, std::string_view("\x89PNG\r\n\x1a\n this is not really a png"));
  const std::string missing = (*dir_ / "missing.jpg").string();
  Captioner c(*checkpoint_);
  c.set_batch_size(2);
  const std::vector<std::string> inputs{(*images_)[0], corrupt, (*images_)[1], (*images_)[2], missing,
                                        (*images_)[3]};
  std::vector<std::string> serial_texts;
  for (int threads : {0, 2}) {
    c.set_read_threads(threads);
    std::vector<std::string> order, errors, texts;
    c.caption_each(
        inputs, c.default_options(),
        [&](const CaptionResult& r, const PreparedImage& p) {
          EXPECT_EQ(r.image_path, p.path);
          EXPECT_FALSE(p.image.empty());
          order.push_back(r.image_path);
          texts.push_back(r.text);
        },
        [&](const std::string& path, const Error& e) {
          EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
          errors.push_back(path);
          order.push_back(path);
        });
    EXPECT_EQ(order, inputs) << threads << " read threads";  // results and errors arrive in input order
    EXPECT_EQ(errors, (std::vector<std::string>{corrupt, missing})) << threads << " read threads";
    if (threads == 0) serial_texts = texts;
    EXPECT_EQ(texts, serial_texts) << threads << " read threads";
  }
  EXPECT_THROW(c.set_read_threads(-1), Error);
  // The strict forms throw, naming the image.
  try {
    c.caption(corrupt);
    FAIL() << "a corrupt image was captioned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt.png"), std::string::npos) << e.what();
  }
  EXPECT_THROW(c.caption(std::vector<std::string>{(*images_)[0], missing}, c.default_options()), Error);
  c.set_read_threads(3);
  try {
    c.caption(std::vector<std::string>{(*images_)[0], missing, corrupt, (*images_)[1]}, c.default_options());
    FAIL() << "a list with a missing image was captioned";
  } catch (const Error& e) {
    // The first unreadable image in input order, whichever thread read it first.
    EXPECT_NE(std::string(e.what()).find("missing.jpg"), std::string::npos) << e.what();
  }
}

TEST_F(CaptionerTest, MissingAndTruncatedCheckpointsAreRefusedNamingTheFile) {
  const std::string missing = (*dir_ / "no-such-model.safetensors").string();
  try {
    Captioner c(missing);
    FAIL() << "a missing checkpoint was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-model.safetensors"), std::string::npos) << e.what();
  }
  const std::vector<std::uint8_t> bytes = data::read_file_bytes(*checkpoint_);
  for (size_t keep : {size_t{4}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string cut = (*dir_ / ("cut-" + std::to_string(keep) + ".safetensors")).string();
    data::write_file_atomic(cut, std::span<const std::uint8_t>(bytes.data(), keep));
    try {
      Captioner c(cut);
      FAIL() << "a checkpoint cut to " << keep << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(cut), std::string::npos) << e.what();
    }
  }
}

TEST_F(CaptionerTest, BadOptionsAreRefused) {
  Captioner c(*checkpoint_);
  EXPECT_THROW(c.set_batch_size(0), Error);
  nn::DecodeOptions o = c.default_options();
  o.beam = 0;
  EXPECT_THROW(c.caption((*images_)[0], o), Error);
  o = c.default_options();
  o.max_len = 0;
  EXPECT_THROW(c.caption(*images_, o), Error);
}

TEST_F(CaptionerTest, AttentionFigureIsWrittenAndDeterministic) {
  const Captioner c(*checkpoint_);
  AttentionMapOptions options;
  options.panel_size = 64;
  const PreparedImage p = c.prepare((*images_)[0]);
  const CaptionResult r = c.caption((*images_)[0], beam(c, 2));
  const fs::path a = *dir_ / "map-a.png", b = *dir_ / "map-b.png";
  write_attention_map(a, p.image, r, options);
  write_attention_map(b, p.image, r, options);
  EXPECT_EQ(data::read_file_bytes(a), data::read_file_bytes(b));
  const data::RgbImage figure = data::load_image(a);
  const AttentionMapLayout l = attention_map_layout(static_cast<int>(r.words.size()) + 1, options);
  EXPECT_EQ(figure.width, l.width);
  EXPECT_EQ(figure.height, l.height);
  // Heat style too, and it differs from Darken.
  options.style = OverlayStyle::Heat;
  const data::RgbImage heat = render_attention_map(p.image, r, options);
  EXPECT_EQ(heat.pixels, render_attention_map(p.image, r, options).pixels);
  if (!r.words.empty()) {
    EXPECT_NE(heat.pixels, figure.pixels);
  }
}

// Mean brightness of a square region.
double mean_brightness(const data::RgbImage& img, int x0, int y0, int size) {
  double sum = 0;
  for (int y = y0; y < y0 + size; ++y)
    for (int x = x0; x < x0 + size; ++x)
      for (int ch = 0; ch < 3; ++ch) sum += img.at(x, y, ch);
  return sum / (3.0 * size * size);
}

TEST(AttentionMap, WordPanelBrightnessFollowsTheAttention) {
  data::RgbImage grey(50, 40);
  std::fill(grey.pixels.begin(), grey.pixels.end(), std::uint8_t{180});
  AttentionMapOptions options;
  options.panel_size = 64;
  const std::vector<std::string> words{"dog", "sits"};
  const std::vector<std::vector<float>> attention{{1, 0, 0, 0}, {0, 0, 0.25f, 0.75f}};
  const data::RgbImage fig = render_attention_map(grey, words, attention, 2, options);
  const AttentionMapLayout l = attention_map_layout(3, options);
  ASSERT_EQ(l.columns, 3);
  const int q = options.panel_size / 4;  // a corner region well inside one grid cell
  // Image panel: untouched.
  EXPECT_NEAR(mean_brightness(fig, l.panel_x(0), l.panel_y(0), q), 180, 0.5);
  // "dog": all weight top-left.
  const double dog_tl = mean_brightness(fig, l.panel_x(1), l.panel_y(1), q);
  const double dog_br = mean_brightness(fig, l.panel_x(1) + 3 * q, l.panel_y(1) + 3 * q, q);
  EXPECT_GT(dog_tl, dog_br + 60);
  EXPECT_NEAR(dog_tl, 180, 2);
  EXPECT_NEAR(dog_br, 180 * options.darken_floor, 2);
  // "sits": bottom-right brightest, then bottom-left, the top dark.
  const double s_tl = mean_brightness(fig, l.panel_x(2), l.panel_y(2), q);
  const double s_bl = mean_brightness(fig, l.panel_x(2), l.panel_y(2) + 3 * q, q);
  const double s_br = mean_brightness(fig, l.panel_x(2) + 3 * q, l.panel_y(2) + 3 * q, q);
  EXPECT_GT(s_br, s_bl + 20);
  EXPECT_GT(s_bl, s_tl + 10);
  // Labels: ink in the strip under each word panel, none under the image panel.
  auto ink = [&](int index) {
    int dark = 0;
    for (int y = l.panel_y(index) + l.panel_size; y < l.panel_y(index) + l.panel_size + l.label_height; ++y)
      for (int x = l.panel_x(index); x < l.panel_x(index) + l.panel_size; ++x) dark += fig.at(x, y, 0) < 128;
    return dark;
  };
  EXPECT_EQ(ink(0), 0);
  EXPECT_GT(ink(1), 10);
  EXPECT_GT(ink(2), ink(1));  // "sits" has more ink than "dog"
}

TEST(AttentionMap, PanelsWrapAtFivePerRow) {
  const AttentionMapLayout l = attention_map_layout(12);
  EXPECT_EQ(l.columns, 5);
  EXPECT_EQ(l.rows, 3);
  EXPECT_EQ(l.panel_x(5), l.panel_x(0));
  EXPECT_GT(l.panel_y(5), l.panel_y(4));
  EXPECT_EQ(l.width, l.gap + 5 * (224 + l.gap));
}

TEST(AttentionMap, TextUsesTheBuiltInFont) {
  data::RgbImage canvas(80, 20);
  std::fill(canvas.pixels.begin(), canvas.pixels.end(), std::uint8_t{255});
  EXPECT_EQ(draw_text(canvas, "ab", 1, 1, 1, {0, 0, 0}), text_width("ab", 1));
  EXPECT_EQ(text_width("ab", 1), 11);
  EXPECT_EQ(text_width("ab", 2), 22);
  // 'a' and 'A' share a glyph; characters outside the font draw a box, not nothing.
  data::RgbImage lower(8, 10), upper(8, 10), other(8, 10);
  draw_text(lower, "a", 0, 0, 1, {255, 255, 255});
  draw_text(upper, "A", 0, 0, 1, {255, 255, 255});
  draw_text(other, "\xc3", 0, 0, 1, {255, 255, 255});
  EXPECT_EQ(lower.pixels, upper.pixels);
  EXPECT_NE(std::count(other.pixels.begin(), other.pixels.end(), 255), 0);
  // Clipped at the canvas edges, never written outside.
  EXPECT_NO_THROW(draw_text(canvas, "clipped text", 70, 15, 2, {0, 0, 0}));
}

TEST(AttentionMap, InconsistentInputsAreRefused) {
  data::RgbImage img(10, 10);
  EXPECT_THROW(render_attention_map(img, {"a"}, {{1, 0, 0}}, 2), Error);
  EXPECT_THROW(render_attention_map(img, {"a", "b"}, {{1, 0, 0, 0}}, 2), Error);
  EXPECT_THROW(render_attention_map(data::RgbImage(), {}, {}, 2), Error);
  AttentionMapOptions tiny;
  tiny.panel_size = 4;
  EXPECT_THROW(render_attention_map(img, {}, {}, 2, tiny), Error);
  // No words: just the image panel.
  EXPECT_EQ(render_attention_map(img, {}, {}, 2).width, attention_map_layout(1).width);
}

}  // namespace
}  // namespace caption::pipeline
