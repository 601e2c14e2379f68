// Flickr8k layout reader (see flickr8k_reader.h for the choices). Files are read whole
// and split into lines by hand so that "\r\n" endings and a missing final newline are
// accepted, and line numbers in errors are 1-based as an editor shows them.
#include "data/datasets/flickr8k_reader.h"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "data/image/file_io.h"
#include "engine/error.h"

namespace caption::data {

namespace fs = std::filesystem;

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Calls f(line_number, line) for every line, without its "\n" or "\r\n".
template <typename F>
void for_each_line(std::string_view text, F&& f) {
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(++line_no, line);
    pos = end + 1;
  }
}

std::string read_text(const fs::path& path) {
  const std::vector<std::uint8_t> bytes = read_file_bytes(path);
  return std::string(bytes.begin(), bytes.end());
}

bool is_image_name(std::string_view name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  std::string ext(name.substr(dot + 1));
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "bmp" || ext == "gif";
}

struct Captioned {
  std::vector<std::string> captions;
  std::vector<int> numbers;  // the k of each caption, to detect repeats
  bool used = false;
};

}  // namespace

Flickr8kData read_flickr8k(const fs::path& root, const Flickr8kOptions& options) {
  Flickr8kData out;
  out.dataset.name = "flickr8k";
  const fs::path token_path = root / "Flickr8k.token.txt";
  const std::string text = read_text(token_path);
  const std::string tname = token_path.string();

  std::unordered_map<std::string, Captioned> by_name;
  for_each_line(text, [&](size_t line_no, std::string_view line) {
    if (trim(line).empty()) return;
    const size_t tab = line.find('\t');
    CAPTION_CHECK(tab != std::string_view::npos, tname, ":", line_no,
                  ": malformed line, no tab between the key and the caption");
    const std::string_view key = trim(line.substr(0, tab));
    const std::string_view caption = trim(line.substr(tab + 1));
    const size_t hash = key.rfind('#');
    CAPTION_CHECK(hash != std::string_view::npos, tname, ":", line_no, ": malformed key '",
                  key, "', expected name#k");
    const std::string_view name = key.substr(0, hash);
    const std::string_view number = key.substr(hash + 1);
    CAPTION_CHECK(!number.empty() && number.size() <= 6 &&
                      std::all_of(number.begin(), number.end(),
                                  [](char c) { return c >= '0' && c <= '9'; }),
                  tname, ":", line_no, ": malformed key '", key,
                  "', the caption number after '#' must be digits");
    if (!is_image_name(name)) {
      ++out.report.skipped_keys;
      if (out.report.skipped_examples.size() < 10)
        out.report.skipped_examples.push_back(str(tname, ":", line_no, ": ", key));
      return;
    }
    CAPTION_CHECK(!caption.empty(), tname, ":", line_no, ": empty caption for '", key, "'");
    Captioned& entry = by_name[std::string(name)];
    const int k = std::stoi(std::string(number));
    CAPTION_CHECK(std::find(entry.numbers.begin(), entry.numbers.end(), k) == entry.numbers.end(),
                  tname, ":", line_no, ": caption number ", k, " of ", name, " appears twice");
    entry.captions.emplace_back(caption);
    entry.numbers.push_back(k);
    ++out.report.caption_lines;
  });
  CAPTION_CHECK(out.report.caption_lines > 0, tname,
                ": no captions (expected lines 'name.jpg#k<TAB>caption')");

  const struct {
    const char* file;
    Split split;
  } split_files[] = {{"Flickr_8k.trainImages.txt", Split::Train},
                     {"Flickr_8k.devImages.txt", Split::Val},
                     {"Flickr_8k.testImages.txt", Split::Test}};
  const fs::path image_dir = root / "Flicker8k_Dataset";
  for (const auto& sf : split_files) {
    const fs::path path = root / sf.file;
    const std::string pname = path.string();
    const std::string list = read_text(path);
    for_each_line(list, [&](size_t line_no, std::string_view line) {
      const std::string_view name = trim(line);
      if (name.empty()) return;
      auto it = by_name.find(std::string(name));
      CAPTION_CHECK(it != by_name.end(), pname, ":", line_no, ": image ", name,
                    " has no captions in ", tname);
      CAPTION_CHECK(!it->second.used, pname, ":", line_no, ": image ", name,
                    " is listed twice (in this or another split file)");
      it->second.used = true;
      CaptionSample sample;
      sample.image_id = std::string(name);
      sample.image_path = image_dir / sample.image_id;
      sample.captions = it->second.captions;
      sample.split = sf.split;
      if (options.check_images == ImageFileCheck::RequireExists) {
        std::error_code ec;
        CAPTION_CHECK(fs::is_regular_file(sample.image_path, ec), sample.image_path.string(),
                      ": image file missing (listed in ", pname, ":", line_no, ")");
      }
      out.dataset.samples.push_back(std::move(sample));
    });
  }
  for (const auto& [name, entry] : by_name) out.report.unsplit_images += !entry.used;
  CAPTION_CHECK(!out.dataset.samples.empty(), root.string(),
                ": the split files (Flickr_8k.trainImages.txt, .devImages.txt, .testImages.txt) "
                "list no image");
  return out;
}

}  // namespace caption::data
