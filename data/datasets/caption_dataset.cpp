// Split names and per-split views of a CaptionDataset (see caption_dataset.h).
#include "data/datasets/caption_dataset.h"

namespace caption::data {

std::string_view split_name(Split split) {
  switch (split) {
    case Split::Train: return "train";
    case Split::Val: return "val";
    case Split::Test: return "test";
    case Split::Restval: return "restval";
  }
  return "unknown";
}

std::optional<Split> parse_split(std::string_view name) {
  for (Split s : {Split::Train, Split::Val, Split::Test, Split::Restval})
    if (split_name(s) == name) return s;
  return std::nullopt;
}

size_t CaptionDataset::count(Split split) const {
  size_t n = 0;
  for (const auto& s : samples) n += s.split == split;
  return n;
}

std::vector<const CaptionSample*> CaptionDataset::of_split(Split split) const {
  std::vector<const CaptionSample*> out;
  for (const auto& s : samples)
    if (s.split == split) out.push_back(&s);
  return out;
}

}  // namespace caption::data
