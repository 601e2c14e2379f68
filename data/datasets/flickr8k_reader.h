// Reader for Flickr8k's own file layout (also the layout of the synthetic set):
//   <root>/Flickr8k.token.txt        "name.jpg#k<TAB>caption", five lines per image
//   <root>/Flickr_8k.trainImages.txt one image name per line (6000 in Flickr8k)
//   <root>/Flickr_8k.devImages.txt   (1000; loaded as Split::Val)
//   <root>/Flickr_8k.testImages.txt  (1000)
//   <root>/Flicker8k_Dataset/        the images (sic: "Flicker")
//
// Choices:
//  - A key whose name part is not an image file name (the real token file holds five
//    lines keyed "2258277193_586949ec62.jpg.1#k") is skipped and counted in the report.
//  - A malformed line (no tab, no "#k" caption number, empty caption, a caption number
//    seen twice) is an error naming the file and line: the file is damaged, and
//    training on a silently shortened set is worse than stopping.
//  - An image named in a split file but without captions is an error (file and line),
//    as is an image listed twice. Images with captions but in no split are counted
//    (the real file captions 8091 images, the splits name 8000).
//  - Samples come in split-file order: train, then val, then test.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "data/datasets/caption_dataset.h"

namespace caption::data {

enum class ImageFileCheck { Skip, RequireExists };

struct Flickr8kOptions {
  ImageFileCheck check_images = ImageFileCheck::Skip;
};

struct Flickr8kReport {
  size_t caption_lines = 0;                     // lines of captions kept
  size_t skipped_keys = 0;                      // lines whose key is not an image name
  std::vector<std::string> skipped_examples;    // "Flickr8k.token.txt:123: <key>", first 10
  size_t unsplit_images = 0;                    // captioned images in no split file
};

struct Flickr8kData {
  CaptionDataset dataset;
  Flickr8kReport report;
};

// Throws caption::Error naming the file (and line) on missing files or malformed lines.
Flickr8kData read_flickr8k(const std::filesystem::path& root, const Flickr8kOptions& options = {});

}  // namespace caption::data
