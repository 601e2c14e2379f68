// Shared by the decoder tests (train_step_test.cpp, cuda_train_graph_test.cpp,
// cuda_model_test.cpp): a small decoder configuration over ResNet-18 features (D = 512,
// a 2x2 grid, 13 words) and three captions of unequal length, longest first.
#pragma once

#include "nn/caption_model.h"

namespace caption::nn::testing {

inline ModelConfig small_decoder_config(double dropout) {
  ModelConfig c;
  c.encoder = "resnet18";  // D = 512
  c.encoder_size = 2;
  c.vocab_size = 13;
  c.embed_dim = 16;
  c.decoder_dim = 24;
  c.attention_dim = 20;
  c.dropout = dropout;
  c.text = {{"lowercase", true}};
  return c;
}

// <sos>=1, <eos>=2, <pad>=0: lengths 7, 5 and 4 tokens (6, 4 and 3 decode steps).
inline CaptionBatch three_captions() {
  CaptionBatch b;
  b.captions = Tensor::from_vector<int64_t>({1, 5, 6, 7, 8, 9, 2,  //
                                             1, 10, 4, 11, 2, 0, 0,  //
                                             1, 12, 5, 2, 0, 0, 0},
                                            {3, 7});
  b.lengths = {7, 5, 4};
  return b;
}

}  // namespace caption::nn::testing
