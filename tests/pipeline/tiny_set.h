// Shared by the trainer tests (trainer_test.cpp, cuda_trainer_test.cpp): a tiny
// synthetic captioning set and training options for it.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "data/synthetic/generator.h"
#include "pipeline/train_options.h"

namespace caption::testing {

// Shared by the tests of a program. CTest runs each test in its own process, several at once,
// so the set is made under a file lock: the first process generates it, the others wait
// and then find it complete (two generators racing to rename into place would fail).
inline const std::filesystem::path& tiny_set() {
  static const std::filesystem::path root = [] {
    std::filesystem::path r = std::filesystem::path(CAPTION_TEST_TMP) / "trainer_synthetic";
    std::filesystem::create_directories(r.parent_path());
    const std::string lock_path = r.string() + ".lock";
    const int lock = ::open(lock_path.c_str(), O_CREAT | O_RDWR, 0644);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0)
      throw std::runtime_error("cannot lock " + lock_path);
    struct Unlock {
      int fd;
      ~Unlock() {
        ::flock(fd, LOCK_UN);
        ::close(fd);
      }
    } unlock{lock};
    if (!std::filesystem::exists(r / "Flickr8k.token.txt")) {
      std::filesystem::remove_all(r);
      data::SyntheticOptions o;
      o.seed = 5;
      o.image_size = 64;
      o.train_images = 24;
      o.val_images = 6;
      o.test_images = 6;
      data::generate_synthetic_dataset(r, o);
    }
    return r;
  }();
  return root;
}

inline pipeline::TrainOptions tiny_options(const std::string& run) {
  pipeline::TrainOptions o;
  o.data.root = tiny_set().string();
  o.min_word_freq = 1;
  o.model.encoder = "resnet18";
  o.model.image_size = 64;
  o.model.encoder_size = 2;
  o.model.embed_dim = 8;
  o.model.decoder_dim = 16;
  o.model.attention_dim = 8;
  o.model.dropout = 0.3;  // exercises the generator across resume
  o.model.max_decode_len = 12;
  o.batch_size = 16;
  o.eval_batch_size = 8;
  o.epochs = 3;
  o.decoder_lr = 3e-3;
  o.scheduler = pipeline::SchedulerKind::OneCycle;
  o.early_stopping = 5;
  o.workers = 1;
  o.device = "cpu";
  o.output = (std::filesystem::path(CAPTION_TEST_TMP) / run).string();
  std::filesystem::remove_all(o.output);
  return o;
}

}  // namespace caption::testing
