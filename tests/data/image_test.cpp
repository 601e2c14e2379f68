// Tests of data/image: decoding each accepted format (fixtures written here with
// stb_image_write, and a GIF assembled byte by byte), JPEG and PNG decoding equal to
// PIL's byte for byte (tests/data/pil_decode_reference.py), refusal of broken and hostile
// inputs with messages that name the file, PIL-compatible resizing (against PIL itself
// through tests/data/pil_resize_reference.py), normalisation and its inverse, and PNG
// writing.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <cmath>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "data/image/file_io.h"
#include "data/image/image.h"
#include "data/image/png_writer.h"
#include "data/image/resize.h"
#include "data/image/transform.h"
#include "engine/error.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include "stb_image_write.h"
#include "tests/harness/scratch.h"
#pragma GCC diagnostic pop

namespace fs = std::filesystem;
using caption::data::RgbImage;

namespace {

fs::path tmp_dir() { return caption::testing::scratch_dir("data_image"); }

void append(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(ctx);
  out->insert(out->end(), static_cast<std::uint8_t*>(data), static_cast<std::uint8_t*>(data) + size);
}

enum class Fmt { Png, Bmp, Jpeg };

std::vector<std::uint8_t> encode(Fmt fmt, int w, int h, int comp, const std::vector<std::uint8_t>& px) {
  std::vector<std::uint8_t> out;
  switch (fmt) {
    case Fmt::Png: stbi_write_png_to_func(append, &out, w, h, comp, px.data(), w * comp); break;
    case Fmt::Bmp: stbi_write_bmp_to_func(append, &out, w, h, comp, px.data()); break;
    case Fmt::Jpeg: stbi_write_jpg_to_func(append, &out, w, h, comp, px.data(), 100); break;
  }
  return out;
}

fs::path write_bytes(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  const fs::path p = tmp_dir() / name;
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return p;
}

// A 2x2 GIF: 4-entry global palette (red, green, blue, white), one frame whose LZW
// stream is clear, 0, 1, 2, 3, end (3-bit codes, widening to 4 bits after two entries).
std::vector<std::uint8_t> tiny_gif() {
  return {'G', 'I', 'F', '8', '9', 'a', 2, 0, 2, 0, 0x81, 0, 0,  // header, screen
          255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255,        // palette
          0x2C, 0, 0, 0, 0, 2, 0, 2, 0, 0,                       // image descriptor
          2, 3, 68, 52, 5, 0,                                    // LZW data
          0x3B};                                                 // trailer
}

std::vector<std::uint8_t> pattern(int w, int h, int comp) {
  std::vector<std::uint8_t> px(static_cast<size_t>(w) * h * comp);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<std::uint8_t>((i * 53 + 7) % 256);
  return px;
}

// Runs f, expects a caption::Error whose message holds every fragment.
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

}  // namespace

TEST(ImageDecode, PngAndBmpAreExact) {
  const int w = 5, h = 3;
  const auto px = pattern(w, h, 3);
  for (Fmt fmt : {Fmt::Png, Fmt::Bmp}) {
    const fs::path p = write_bytes(fmt == Fmt::Png ? "exact.png" : "exact.bmp", encode(fmt, w, h, 3, px));
    const RgbImage im = caption::data::load_image(p);
    ASSERT_EQ(im.width, w);
    ASSERT_EQ(im.height, h);
    EXPECT_EQ(im.pixels, px) << p;
  }
}

TEST(ImageDecode, JpegIsClose) {
  const int w = 16, h = 16;
  std::vector<std::uint8_t> px(w * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      px[(y * w + x) * 3 + 0] = static_cast<std::uint8_t>(100 + 4 * x);
      px[(y * w + x) * 3 + 1] = static_cast<std::uint8_t>(80 + 3 * y);
      px[(y * w + x) * 3 + 2] = 120;
    }
  const RgbImage im = caption::data::load_image(write_bytes("smooth.jpg", encode(Fmt::Jpeg, w, h, 3, px)));
  ASSERT_EQ(im.width, w);
  ASSERT_EQ(im.height, h);
  for (size_t i = 0; i < px.size(); ++i) EXPECT_NEAR(im.pixels[i], px[i], 6) << i;
}

TEST(ImageDecode, GreyAndAlphaBecomeRgb) {
  const int w = 4, h = 2;
  const auto grey = pattern(w, h, 1);
  const RgbImage g = caption::data::load_image(write_bytes("grey.png", encode(Fmt::Png, w, h, 1, grey)));
  ASSERT_EQ(g.pixels.size(), grey.size() * 3);
  for (size_t i = 0; i < grey.size(); ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(g.pixels[i * 3 + c], grey[i]);

  const auto rgba = pattern(w, h, 4);
  const RgbImage a = caption::data::load_image(write_bytes("rgba.png", encode(Fmt::Png, w, h, 4, rgba)));
  ASSERT_EQ(a.pixels.size(), static_cast<size_t>(w * h * 3));
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(a.pixels[i * 3 + c], rgba[i * 4 + c]);

  const auto ga = pattern(w, h, 2);
  const RgbImage b = caption::data::load_image(write_bytes("grey_alpha.png", encode(Fmt::Png, w, h, 2, ga)));
  for (int i = 0; i < w * h; ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(b.pixels[i * 3 + c], ga[i * 2]);
}

TEST(ImageDecode, HandMadeGif) {
  const auto bytes = tiny_gif();
  const RgbImage im = caption::data::decode_image(bytes, "tiny.gif");
  ASSERT_EQ(im.width, 2);
  ASSERT_EQ(im.height, 2);
  const std::vector<std::uint8_t> want = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
  EXPECT_EQ(im.pixels, want);
  EXPECT_EQ(caption::data::sniff_image_format(bytes), caption::data::ImageFormat::Gif);
}

TEST(ImageDecode, RefusesTruncatedFiles) {
  const auto px = pattern(64, 48, 3);
  for (Fmt fmt : {Fmt::Png, Fmt::Bmp, Fmt::Jpeg}) {
    auto bytes = encode(fmt, 64, 48, 3, px);
    for (double frac : {0.97, 0.6, 0.1}) {
      std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() * frac));
      const std::string name = "cut_" + std::to_string(int(frac * 100)) +
                               (fmt == Fmt::Png ? ".png" : fmt == Fmt::Bmp ? ".bmp" : ".jpg");
      const fs::path p = write_bytes(name, cut);
      expect_error([&] { caption::data::load_image(p); }, {p.string() + ": "});
    }
  }
  auto gif = tiny_gif();
  for (size_t keep : {size_t(30), size_t(36), size_t(39)}) {
    std::vector<std::uint8_t> cut(gif.begin(), gif.begin() + static_cast<long>(keep));
    expect_error([&] { caption::data::decode_image(cut, "cut.gif"); }, {"cut.gif: ", "GIF"});
  }
}

TEST(ImageDecode, RefusesNonImages) {
  const fs::path empty = write_bytes("empty.jpg", {});
  expect_error([&] { caption::data::load_image(empty); }, {empty.string(), "empty"});

  std::mt19937 rng(5);
  std::vector<std::uint8_t> noise(4096);
  for (auto& b : noise) b = static_cast<std::uint8_t>(rng());
  const fs::path junk = write_bytes("junk.jpg", noise);
  expect_error([&] { caption::data::load_image(junk); }, {junk.string(), "not a decodable image"});

  const std::string text = "this is a caption file, not a picture\n";
  const fs::path txt = write_bytes("text.png", std::vector<std::uint8_t>(text.begin(), text.end()));
  expect_error([&] { caption::data::load_image(txt); }, {txt.string(), "not a decodable image"});

  expect_error([&] { caption::data::load_image(tmp_dir() / "missing.png"); }, {"missing.png", "no such file"});
}

namespace {

// PNG signature + IHDR claiming w x h 8-bit RGB, then an IDAT with nothing useful.
std::vector<std::uint8_t> png_header(std::uint32_t w, std::uint32_t h) {
  std::vector<std::uint8_t> b = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (std::uint32_t v : {w, h})
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
  for (std::uint8_t v : std::initializer_list<std::uint8_t>{8, 2, 0, 0, 0}) b.push_back(v);
  for (int i = 0; i < 4; ++i) b.push_back(0);  // CRC (stb does not check it)
  for (std::uint8_t v : std::initializer_list<std::uint8_t>{0, 0, 0, 4, 'I', 'D', 'A', 'T', 0x78, 0x9c, 0, 0, 0, 0, 0, 0})
    b.push_back(v);
  return b;
}

}  // namespace

TEST(ImageDecode, RefusesHugeAndZeroDimensions) {
  const fs::path bomb = write_bytes("bomb.png", png_header(100000, 100000));
  expect_error([&] { caption::data::load_image(bomb); }, {bomb.string(), "100000x100000", "exceed"});
  const fs::path wide = write_bytes("wide.png", png_header(20000, 20000));
  expect_error([&] { caption::data::load_image(wide); }, {wide.string(), "20000x20000", "exceed"});
  const fs::path zero = write_bytes("zero.png", png_header(0, 10));
  expect_error([&] { caption::data::load_image(zero); }, {zero.string()});

  // The cap is configurable: a real 20x20 image is refused under a 100-pixel cap.
  const auto ok = encode(Fmt::Png, 20, 20, 3, pattern(20, 20, 3));
  caption::data::DecodeLimits small;
  small.max_pixels = 100;
  expect_error([&] { caption::data::decode_image(ok, "small-cap.png", small); }, {"small-cap.png", "20x20"});
  EXPECT_EQ(caption::data::decode_image(ok, "no-cap.png").width, 20);
}

TEST(ImageResize, SameSizeIsCopyAndConstantStaysConstant) {
  RgbImage im(37, 23);
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<std::uint8_t>(i % 3 == 0 ? 200 : 17);
  EXPECT_EQ(caption::data::resize_bilinear(im, 37, 23).pixels, im.pixels);
  for (auto [w, h] : {std::pair{224, 224}, std::pair{5, 3}, std::pair{37, 100}, std::pair{1, 1}}) {
    const RgbImage r = caption::data::resize_bilinear(im, w, h);
    ASSERT_EQ(r.width, w);
    ASSERT_EQ(r.height, h);
    for (size_t i = 0; i < r.pixels.size(); ++i) ASSERT_EQ(r.pixels[i], i % 3 == 0 ? 200 : 17);
  }
  expect_error([&] { caption::data::resize_bilinear(im, 0, 5); }, {"resize", "0x5"});
}

namespace {

RgbImage noise_image(int w, int h, unsigned seed) {
  std::mt19937 rng(seed);
  RgbImage im(w, h);
  for (auto& p : im.pixels) p = static_cast<std::uint8_t>(rng());
  return im;
}

RgbImage gradient_image(int w, int h) {
  RgbImage im(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      im.at(x, y, 0) = static_cast<std::uint8_t>(255 * x / std::max(1, w - 1));
      im.at(x, y, 1) = static_cast<std::uint8_t>(255 * y / std::max(1, h - 1));
      im.at(x, y, 2) = static_cast<std::uint8_t>((x * 7 + y * 3) % 256);
    }
  return im;
}

}  // namespace

TEST(ImageResize, MatchesPilBilinear) {
  const char* python = CAPTION_REFERENCE_PYTHON;
  if (!fs::exists(python)) GTEST_SKIP() << python << " not found: no PIL reference";
  if (std::system((std::string(python) + " -c 'import PIL' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "PIL is not installed for " << python << " (python3-pil)";

  struct Case {
    std::string name;
    RgbImage image;
    int w, h;
  };
  std::vector<Case> cases = {
      {"noise_500x375", noise_image(500, 375, 1), 224, 224},
      {"grad_500x375", gradient_image(500, 375), 224, 224},
      {"noise_97x61", noise_image(97, 61, 2), 224, 224},
      {"grad_97x61", gradient_image(97, 61), 224, 224},
      {"noise_224x224", noise_image(224, 224, 3), 224, 224},
      {"noise_50x300", noise_image(50, 300, 4), 224, 224},
      {"grad_50x300", gradient_image(50, 300), 224, 224},
      {"noise_640x480_to_77x33", noise_image(640, 480, 5), 77, 33},
      {"noise_1x1", noise_image(1, 1, 6), 224, 224},
      {"noise_300x7_to_3x224", noise_image(300, 7, 7), 3, 224},
  };
  const std::string script = std::string(CAPTION_SOURCE_DIR) + "/tests/data/pil_resize_reference.py";
  // One python run per target size.
  std::map<std::pair<int, int>, std::string> args;
  for (const auto& c : cases) {
    const fs::path in = tmp_dir() / ("pil_in_" + c.name + ".png");
    const fs::path out = tmp_dir() / ("pil_out_" + c.name + ".png");
    fs::remove(out);
    caption::data::write_png(c.image, in);
    args[{c.w, c.h}] += " '" + in.string() + "' '" + out.string() + "'";
  }
  for (const auto& [size, files] : args) {
    const std::string cmd = std::string(python) + " '" + script + "' " + std::to_string(size.first) +
                            " " + std::to_string(size.second) + files;
    const int rc = std::system(cmd.c_str());
    ASSERT_EQ(rc, 0) << cmd;
  }
  for (const auto& c : cases) {
    const RgbImage want = caption::data::load_image(tmp_dir() / ("pil_out_" + c.name + ".png"));
    const RgbImage got = caption::data::resize_bilinear(c.image, c.w, c.h);
    ASSERT_EQ(got.width, want.width) << c.name;
    ASSERT_EQ(got.height, want.height) << c.name;
    int worst = 0;
    size_t differing = 0;
    for (size_t i = 0; i < got.pixels.size(); ++i) {
      const int d = std::abs(int(got.pixels[i]) - int(want.pixels[i]));
      worst = std::max(worst, d);
      differing += d != 0;
    }
    EXPECT_LE(worst, 1) << c.name;
    EXPECT_EQ(differing, 0u) << c.name << ": " << differing << " values differ by one level";
  }
}

// JPEG and PNG decode as PIL decodes them (Image.open(f).convert("RGB"), torchvision's
// loader), byte for byte: the files and PIL's pixels come from
// tests/data/pil_decode_reference.py (baseline JPEG at 4:2:0, 4:2:2 and 4:4:4,
// progressive, optimised Huffman tables, odd sizes, greyscale, CMYK; PNG in RGB, RGBA,
// grey, grey + alpha, palettes with and without transparency, 1 bit).
TEST(ImageDecode, JpegAndPngMatchPilExactly) {
  const char* python = CAPTION_REFERENCE_PYTHON;
  if (!fs::exists(python)) GTEST_SKIP() << python << " not found: no PIL reference";
  if (std::system((std::string(python) + " -c 'import PIL' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "PIL is not installed for " << python << " (python3-pil)";
  const fs::path dir = tmp_dir() / "pil_decode";
  fs::remove_all(dir);
  const std::string cmd = std::string(python) + " '" + CAPTION_SOURCE_DIR +
                          "/tests/data/pil_decode_reference.py' '" + dir.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream list(dir / "cases.txt");
  std::string name;
  int cases = 0;
  while (std::getline(list, name)) {
    if (name.empty()) continue;
    ++cases;
    std::ifstream ref(dir / (fs::path(name).stem().string() + ".rgb"), std::ios::binary);
    int w = 0, h = 0;
    ref >> w >> h;
    ref.get();  // the newline
    std::vector<std::uint8_t> want(static_cast<size_t>(w) * h * 3);
    ref.read(reinterpret_cast<char*>(want.data()), static_cast<std::streamsize>(want.size()));
    ASSERT_TRUE(ref.good()) << name;
    const RgbImage got = caption::data::load_image(dir / name);
    ASSERT_EQ(got.width, w) << name;
    ASSERT_EQ(got.height, h) << name;
    size_t differing = 0;
    int worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      const int d = std::abs(int(got.pixels[i]) - int(want[i]));
      differing += d != 0;
      worst = std::max(worst, d);
    }
    EXPECT_EQ(differing, 0u) << name << ": " << differing << " of " << want.size()
                             << " values differ from PIL's, by up to " << worst;
  }
  EXPECT_EQ(cases, 16);
}

// 16-bit samples keep their high byte. PIL differs here on purpose of ours: it opens a
// 16-bit greyscale PNG as 32-bit integers and its convert("RGB") clips them at 255, so
// nearly every pixel turns white; the high byte is the image.
TEST(ImageDecode, SixteenBitPngKeepsTheHighByte) {
  // A 3x1 greyscale PNG, 16 bits per sample, values 0x1234, 0xABCD, 0xFF00.
  const std::vector<std::uint16_t> values = {0x1234, 0xABCD, 0xFF00};
  std::vector<std::uint8_t> raw = {0};  // filter type of the one row
  for (std::uint16_t v : values) {
    raw.push_back(static_cast<std::uint8_t>(v >> 8));
    raw.push_back(static_cast<std::uint8_t>(v & 0xFF));
  }
  // stb_image_write's zlib wrapper compresses the row; the chunks are assembled here.
  int zlen = 0;
  unsigned char* z = stbi_zlib_compress(raw.data(), static_cast<int>(raw.size()), &zlen, 8);
  ASSERT_NE(z, nullptr);
  std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  auto chunk = [&](const char* type, const std::vector<std::uint8_t>& data) {
    const std::uint32_t n = static_cast<std::uint32_t>(data.size());
    for (int s = 24; s >= 0; s -= 8) png.push_back(static_cast<std::uint8_t>(n >> s));
    std::vector<std::uint8_t> body(type, type + 4);
    body.insert(body.end(), data.begin(), data.end());
    png.insert(png.end(), body.begin(), body.end());
    const std::uint32_t crc = stbiw__crc32(body.data(), static_cast<int>(body.size()));
    for (int s = 24; s >= 0; s -= 8) png.push_back(static_cast<std::uint8_t>(crc >> s));
  };
  chunk("IHDR", {0, 0, 0, 3, 0, 0, 0, 1, 16, 0, 0, 0, 0});
  chunk("IDAT", std::vector<std::uint8_t>(z, z + zlen));
  chunk("IEND", {});
  STBIW_FREE(z);
  const RgbImage im = caption::data::decode_image(png, "grey16.png");
  ASSERT_EQ(im.width, 3);
  ASSERT_EQ(im.height, 1);
  EXPECT_EQ(im.pixels, (std::vector<std::uint8_t>{0x12, 0x12, 0x12, 0xAB, 0xAB, 0xAB, 0xFF, 0xFF, 0xFF}));
}

TEST(ImageTransform, NormaliseAndInverse) {
  RgbImage im(2, 1);
  im.pixels = {255, 0, 128, 0, 255, 64};
  const caption::data::Normalization norm;
  const auto chw = caption::data::normalize_to_chw(im, norm);
  ASSERT_EQ(chw.data.size(), 6u);
  EXPECT_FLOAT_EQ(chw.at(0, 0, 0), (1.0f - 0.485f) / 0.229f);
  EXPECT_FLOAT_EQ(chw.at(0, 0, 1), (0.0f - 0.485f) / 0.229f);
  EXPECT_FLOAT_EQ(chw.at(1, 0, 1), (1.0f - 0.456f) / 0.224f);
  EXPECT_FLOAT_EQ(chw.at(2, 0, 0), (128.0f / 255.0f - 0.406f) / 0.225f);
  // CHW layout: channel planes one after another.
  EXPECT_FLOAT_EQ(chw.data[2], chw.at(1, 0, 0));

  const RgbImage all = noise_image(31, 17, 11);
  EXPECT_EQ(caption::data::denormalize_from_chw(caption::data::normalize_to_chw(all, norm), norm).pixels,
            all.pixels);
  caption::data::Normalization custom;
  custom.mean = {0.5f, 0.5f, 0.5f};
  custom.std = {0.5f, 0.25f, 2.0f};
  const auto c2 = caption::data::normalize_to_chw(all, custom);
  EXPECT_FLOAT_EQ(c2.at(1, 0, 0), (all.at(0, 0, 1) / 255.0f - 0.5f) / 0.25f);
  EXPECT_EQ(caption::data::denormalize_from_chw(c2, custom).pixels, all.pixels);

  // Out-of-range values clamp.
  caption::data::ChwImage wild;
  wild.height = 1;
  wild.width = 1;
  wild.data = {100.0f, -100.0f, 0.0f};
  const RgbImage w = caption::data::denormalize_from_chw(wild, norm);
  EXPECT_EQ(w.pixels[0], 255);
  EXPECT_EQ(w.pixels[1], 0);
  EXPECT_EQ(w.pixels[2], static_cast<std::uint8_t>(std::lround(0.406f * 255.0f)));

  custom.std[2] = 0.0f;
  expect_error([&] { caption::data::normalize_to_chw(all, custom); }, {"std"});
}

TEST(ImageTransform, PreprocessFile) {
  const fs::path p = tmp_dir() / "pre.png";
  caption::data::write_png(gradient_image(500, 375), p);
  caption::data::ImageTransform t;
  const auto chw = caption::data::load_and_preprocess(p, t);
  EXPECT_EQ(chw.channels, 3);
  EXPECT_EQ(chw.height, 224);
  EXPECT_EQ(chw.width, 224);
  const auto direct = caption::data::normalize_to_chw(
      caption::data::resize_bilinear(gradient_image(500, 375), 224, 224));
  EXPECT_EQ(chw.data, direct.data);
  t.image_size = 64;
  EXPECT_EQ(caption::data::load_and_preprocess(p, t).width, 64);
}

TEST(ImagePng, WriteIsAtomicAndRoundTrips) {
  const RgbImage im = noise_image(13, 9, 3);
  const fs::path dir = tmp_dir() / "png_out";
  fs::remove_all(dir);
  fs::create_directories(dir);
  caption::data::write_png(im, dir / "a.png");
  caption::data::write_png(im, dir / "a.png");  // overwrite
  EXPECT_EQ(caption::data::load_image(dir / "a.png").pixels, im.pixels);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(e.path().filename(), "a.png");
  }
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(caption::data::encode_png(im), caption::data::encode_png(im));
  expect_error([&] { caption::data::write_png(im, dir / "no_such_dir" / "b.png"); }, {"b.png", "cannot create"});
  expect_error([&] { caption::data::encode_png(RgbImage()); }, {"encode_png"});
}
