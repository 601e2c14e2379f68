// Named tensors through safetensors files: round trip of every dtype and of strided
// views, and errors that name the file.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/engine.h"
#include "engine/tensor_io.h"
#include "tests/harness/harness.h"
#include "tests/harness/scratch.h"

namespace caption {
namespace {

std::string tmp_path(const std::string& name) {
  return (caption::testing::scratch_dir("tensor_io") / name).string();
}

TEST(TensorIo, RoundTripIsBitExact) {
  Generator g(3);
  Tensor a = rand_normal({3, 5}, 0, 1, g);
  Tensor b = rand_normal({2, 2}, 0, 1, g, DType::F64).transpose(0, 1);  // strided view
  Tensor c = Tensor::from_vector<int64_t>({1, -2, 3}, {3});
  Tensor d = Tensor::from_vector<int32_t>({7}, {});
  const std::string path = tmp_path("roundtrip.safetensors");
  save_tensors(path, {{"a", a}, {"b.view", b}, {"c", c}, {"d", d}}, {{"format", "test/1"}});
  LoadedTensors l = load_tensors(path);
  EXPECT_EQ(l.metadata.at("format"), "test/1");
  EXPECT_TRUE(testing::equal(l.at("a"), a, "a"));
  EXPECT_TRUE(testing::equal(l.at("b.view"), b, "b"));
  EXPECT_TRUE(testing::equal(l.at("c"), c, "c"));
  EXPECT_TRUE(testing::equal(l.at("d"), d, "d"));
  try {
    (void)l.at("e");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("roundtrip.safetensors: no tensor named 'e'"),
              std::string::npos) << e.what();
  }
}

TEST(TensorIo, MissingFileNamesThePath) {
  try {
    load_tensors(tmp_path("does-not-exist.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does-not-exist.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace caption
