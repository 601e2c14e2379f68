// Karpathy split JSON reader (see karpathy_reader.h). nlohmann::json parses the whole
// file (dataset_coco.json is ~140 MB: a few seconds and under 2 GB of memory); field
// access goes through small checked getters so that every missing or mistyped field is
// reported with its full JSON path instead of nlohmann's generic type_error.
#include "data/datasets/karpathy_reader.h"

#include <nlohmann/json.hpp>

#include "data/image/file_io.h"
#include "engine/error.h"

namespace caption::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class Fields {
 public:
  explicit Fields(std::string file) : file_(std::move(file)) {}

  const json& member(const json& obj, const std::string& where, const char* key) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail(where + "." + key, "missing");
    return *it;
  }
  const json& array(const json& obj, const std::string& where, const char* key) const {
    const json& v = member(obj, where, key);
    if (!v.is_array()) fail(where + "." + key, str("must be an array, found ", v.type_name()));
    return v;
  }
  std::string string(const json& obj, const std::string& where, const char* key) const {
    const json& v = member(obj, where, key);
    if (!v.is_string()) fail(where + "." + key, str("must be a string, found ", v.type_name()));
    return v.get<std::string>();
  }
  void object(const json& v, const std::string& where) const {
    if (!v.is_object()) fail(where, str("must be an object, found ", v.type_name()));
  }
  [[noreturn]] void fail(const std::string& where, const std::string& problem) const {
    throw Error(str(file_, ": ", where, ": ", problem));
  }

 private:
  std::string file_;
};

}  // namespace

CaptionDataset read_karpathy_json(const fs::path& json_path, const KarpathyOptions& options) {
  const std::string file = json_path.string();
  const std::vector<std::uint8_t> bytes = read_file_bytes(json_path, std::uintmax_t(4) << 30);
  json root;
  try {
    root = json::parse(bytes.begin(), bytes.end());
  } catch (const json::parse_error& e) {
    throw Error(str(file, ": malformed JSON at byte ", e.byte, " (", e.what(), ")"));
  } catch (const json::exception& e) {  // e.g. a number too large for a double
    throw Error(str(file, ": malformed JSON (", e.what(), ")"));
  }
  const Fields f(file);
  if (!root.is_object()) f.fail("top level", str("must be an object, found ", root.type_name()));

  CaptionDataset ds;
  ds.name = json_path.stem().string();
  if (auto it = root.find("dataset"); it != root.end() && it->is_string()) ds.name = it->get<std::string>();

  const json& images = f.array(root, "top level", "images");
  if (images.empty()) f.fail("top level", "'images' is empty");
  ds.samples.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string where = str("images[", i, "]");
    const json& im = images[i];
    f.object(im, where);
    CaptionSample s;
    s.image_id = f.string(im, where, "filename");
    if (s.image_id.empty()) f.fail(where + ".filename", "empty");
    fs::path rel = s.image_id;
    if (im.contains("filepath")) rel = fs::path(f.string(im, where, "filepath")) / s.image_id;
    s.image_path = options.image_root.empty() ? rel : options.image_root / rel;

    const std::string split = f.string(im, where, "split");
    const auto parsed = parse_split(split);
    if (!parsed) f.fail(where + ".split", "'" + split + "' is not train, val, test or restval");
    s.split = *parsed;
    if (s.split == Split::Restval && options.restval == RestvalPolicy::MergeIntoTrain)
      s.split = Split::Train;

    const json& sentences = f.array(im, where, "sentences");
    if (sentences.empty()) f.fail(where + ".sentences", "empty (an image needs references)");
    for (size_t k = 0; k < sentences.size(); ++k) {
      const std::string sw = str(where, ".sentences[", k, "]");
      const json& sent = sentences[k];
      f.object(sent, sw);
      s.captions.push_back(f.string(sent, sw, "raw"));
      const json& tokens = f.array(sent, sw, "tokens");
      std::vector<std::string> toks;
      toks.reserve(tokens.size());
      for (size_t t = 0; t < tokens.size(); ++t) {
        if (!tokens[t].is_string())
          f.fail(str(sw, ".tokens[", t, "]"), str("must be a string, found ", tokens[t].type_name()));
        toks.push_back(tokens[t].get<std::string>());
      }
      s.tokens.push_back(std::move(toks));
    }
    if (options.check_images == ImageFileCheck::RequireExists) {
      std::error_code ec;
      CAPTION_CHECK(fs::is_regular_file(s.image_path, ec), s.image_path.string(),
                    ": image file missing (", file, ": ", where, ")");
    }
    ds.samples.push_back(std::move(s));
  }
  return ds;
}

}  // namespace caption::data
