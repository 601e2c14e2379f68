// The common in-memory form of a captioning data set, whatever file layout it came from
// (Flickr8k's own files, Karpathy's split JSON, the synthetic set): one sample per
// image, with its raw reference captions and, when the source provides them, the
// references already tokenised (Karpathy's "tokens"), and the split it belongs to.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace caption::data {

enum class Split { Train, Val, Test, Restval };

std::string_view split_name(Split split);                     // "train", "val", ...
std::optional<Split> parse_split(std::string_view name);      // inverse of split_name

struct CaptionSample {
  std::string image_id;                 // file name, e.g. "1000268201_693b08cb0e.jpg"
  std::filesystem::path image_path;     // where the image file is (may not be checked)
  std::vector<std::string> captions;    // raw references, file order
  // Pre-tokenised references, one token list per caption, when the source has them
  // (Karpathy JSON); empty otherwise.
  std::vector<std::vector<std::string>> tokens;
  Split split = Split::Train;
};

struct CaptionDataset {
  std::string name;                     // "flickr8k", "coco", ...
  std::vector<CaptionSample> samples;

  size_t count(Split split) const;
  // The samples of one split, in data set order.
  std::vector<const CaptionSample*> of_split(Split split) const;
};

}  // namespace caption::data
