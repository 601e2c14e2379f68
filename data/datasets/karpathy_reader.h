// Reader for Karpathy's split files (dataset_flickr8k.json, dataset_flickr30k.json,
// dataset_coco.json):
//   {"dataset": "coco", "images": [{"filepath": "val2014",        (COCO only)
//                                   "filename": "COCO_val2014_000000391895.jpg",
//                                   "split": "train" | "val" | "test" | "restval",
//                                   "sentences": [{"tokens": [...], "raw": "..."}, ...],
//                                   ...}, ...]}
// Only the fields above are read; others (imgid, cocoid, sentids) are ignored. Every
// error names the file, the JSON path of the field and, for images, the index:
// "dataset_coco.json: images[12].sentences[3].tokens: missing".
//
// The image path is image_root / filepath / filename (filepath when present).
// RestvalPolicy::MergeIntoTrain turns COCO's "restval" images into training images, as
// the usual Karpathy training setup does; KeepSeparate leaves them as Split::Restval.
#pragma once

#include <filesystem>

#include "data/datasets/caption_dataset.h"
#include "data/datasets/flickr8k_reader.h"  // ImageFileCheck

namespace caption::data {

enum class RestvalPolicy { KeepSeparate, MergeIntoTrain };

struct KarpathyOptions {
  RestvalPolicy restval = RestvalPolicy::KeepSeparate;
  std::filesystem::path image_root;  // prefix of every image path; may be empty
  ImageFileCheck check_images = ImageFileCheck::Skip;
};

// Samples in file order. Throws caption::Error on unreadable or malformed input.
CaptionDataset read_karpathy_json(const std::filesystem::path& json_path,
                                  const KarpathyOptions& options = {});

}  // namespace caption::data
