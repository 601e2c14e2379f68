// A full ResNet-50 with random torchvision weights, converted by our converter, against
// torchvision on a real decoded image (weights-tools/make_resnet_reference.py, run by
// CTest as the fixture "torchvision_reference" into $CAPTION_TORCHVISION_DIR). The
// encoder must match within 1e-4 relative error; our own decoding, resizing and
// normalisation must match PIL + torchvision's transforms within one 8-bit level.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "data/image/transform.h"
#include "nn/checkpoint.h"
#include "tests/harness/harness.h"

namespace caption::nn {
namespace {

const char* kRegenerate = CAPTION_REFERENCE_PYTHON " weights-tools/make_resnet_reference.py --out <dir>";

std::string reference_dir() {
  const char* dir = std::getenv("CAPTION_TORCHVISION_DIR");
  return dir ? dir : CAPTION_TORCHVISION_DIR;  // filled by CTest's fixture torchvision_reference
}

TEST(Torchvision, ResNet50FeaturesMatchOnARealImage) {
  const std::string dir = reference_dir();
  ASSERT_TRUE(std::filesystem::exists(dir + "/reference.safetensors")) << "missing; make it with " << kRegenerate;
  const LoadedTensors ref = load_tensors(dir + "/reference.safetensors");

  ModelConfig c;
  c.encoder = "resnet50";
  c.vocab_size = 5;
  c.embed_dim = c.decoder_dim = c.attention_dim = 4;
  Generator g(0);
  CaptionModel model(c, g);
  load_encoder_weights(model, dir + "/resnet50.safetensors");
  model.eval();

  // Our image pipeline against PIL's resize and torchvision's normalisation.
  data::ImageTransform t;
  const data::ChwImage img = data::load_and_preprocess(dir + "/image.png", t);
  const Tensor ours = Tensor::from_vector<float>(img.data, {1, 3, 224, 224});
  const double level = 1.0 / (255.0 * 0.224);  // one 8-bit level after normalisation (worst std)
  EXPECT_TRUE(testing::allclose(ours, ref.at("input"), {level * 1.001, 0.0}, "preprocessed image"));

  NoGradGuard ng;
  const Tensor features = model.encode(ref.at("input"));
  const std::vector<double> got = features.to_vector<double>(), want = ref.at("features").to_vector<double>();
  ASSERT_EQ(got.size(), want.size());
  double diff2 = 0, ref2 = 0, max_abs = 0, max_ref = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff2 += (got[i] - want[i]) * (got[i] - want[i]);
    ref2 += want[i] * want[i];
    max_abs = std::max(max_abs, std::abs(got[i] - want[i]));
    max_ref = std::max(max_ref, std::abs(want[i]));
  }
  const double rel = std::sqrt(diff2 / ref2);
  std::cout << "ResNet-50 vs torchvision: relative error (L2) " << rel << ", max |diff| " << max_abs
            << " for max |ref| " << max_ref << "\n";
  EXPECT_LT(rel, 1e-4) << "regenerate: " << kRegenerate;
  EXPECT_LT(max_abs / max_ref, 1e-4);
}

}  // namespace
}  // namespace caption::nn
