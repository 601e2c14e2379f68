// Caption templates for synthetic scenes (see captions.h for the grammar). Templates are
// small functions over a phrase builder; the template order is shuffled per image with
// the image's stream and the first `count` are used, so the five references of an image
// are different sentences about the same facts.
#include "data/synthetic/captions.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <functional>
#include <string_view>

#include "engine/error.h"

namespace caption::data {

Relation relation_of(const SceneObject& a, const SceneObject& b) {
  const int dx = a.cx - b.cx, dy = a.cy - b.cy;
  if (std::abs(dx) >= std::abs(dy)) return dx < 0 ? Relation::LeftOf : Relation::RightOf;
  return dy < 0 ? Relation::Above : Relation::Below;
}

namespace {

template <size_t N>
std::string_view pick(const std::array<std::string_view, N>& words, Prng& rng) {
  return words[rng.below(N)];
}

std::string_view shape_word(Shape shape, Prng& rng) {
  static constexpr std::array<std::string_view, 2> circle{"circle", "disc"};
  static constexpr std::array<std::string_view, 2> square{"square", "box"};
  switch (shape) {
    case Shape::Circle: return pick(circle, rng);
    case Shape::Square: return pick(square, rng);
    case Shape::Triangle: return "triangle";
  }
  return "shape";
}

std::string_view size_word(ObjectSize size, Prng& rng) {
  static constexpr std::array<std::string_view, 3> small{"small", "little", "tiny"};
  static constexpr std::array<std::string_view, 2> large{"large", "big"};
  return size == ObjectSize::Small ? pick(small, rng) : pick(large, rng);
}

std::string_view relation_words(Relation rel, Prng& rng) {
  static constexpr std::array<std::string_view, 3> left{"to the left of", "on the left of", "left of"};
  static constexpr std::array<std::string_view, 3> right{"to the right of", "on the right of", "right of"};
  static constexpr std::array<std::string_view, 3> above{"above", "over", "on top of"};
  static constexpr std::array<std::string_view, 3> below{"below", "under", "beneath"};
  switch (rel) {
    case Relation::LeftOf: return pick(left, rng);
    case Relation::RightOf: return pick(right, rng);
    case Relation::Above: return pick(above, rng);
    case Relation::Below: return pick(below, rng);
  }
  return "near";
}

// The region of a lone object in the 3x3 grid, as a prepositional phrase.
std::string region_phrase(const SceneObject& o, int image_size) {
  const int col = std::clamp(3 * o.cx / image_size, 0, 2);
  const int row = std::clamp(3 * o.cy / image_size, 0, 2);
  static constexpr std::array<std::string_view, 3> rows{"top", "", "bottom"};
  static constexpr std::array<std::string_view, 3> cols{"left", "", "right"};
  if (row == 1 && col == 1) return "in the middle";
  if (row == 1) return std::string("on the ") + std::string(cols[col]);
  if (col == 1) return std::string("at the ") + std::string(rows[row]);
  return std::string("in the ") + std::string(rows[row]) + " " + std::string(cols[col]) + " corner";
}

std::string with_article(std::string phrase) {
  const bool vowel = !phrase.empty() && std::string_view("aeiou").find(phrase[0]) != std::string_view::npos;
  return (vowel ? "an " : "a ") + phrase;
}

enum class WithSize { No, Yes };

// "small red circle" (no article).
std::string bare_np(const SceneObject& o, WithSize with_size, Prng& rng) {
  std::string s;
  if (with_size == WithSize::Yes) s = std::string(size_word(o.size, rng)) + " ";
  return s + std::string(colour_name(o.colour)) + " " + std::string(shape_word(o.shape, rng));
}

std::string np(const SceneObject& o, WithSize with_size, Prng& rng) {
  return with_article(bare_np(o, with_size, rng));
}

using Template = std::function<std::string(Prng&)>;

std::vector<Template> one_object(const Scene& scene) {
  const SceneObject& o = scene.objects[0];
  const std::string region = region_phrase(o, scene.image_size);
  return {
      [&](Prng& r) { return np(o, WithSize::Yes, r); },
      [&](Prng& r) { return np(o, WithSize::No, r); },
      [&](Prng& r) { return "there is " + np(o, WithSize::Yes, r); },
      [&, region](Prng& r) { return np(o, WithSize::No, r) + " " + region; },
      [&, region](Prng& r) { return np(o, WithSize::Yes, r) + " " + region; },
      [&](Prng& r) { return "a single " + bare_np(o, WithSize::No, r); },
      [&, region](Prng& r) { return "there is " + np(o, WithSize::No, r) + " " + region; },
      [&](Prng& r) { return "one " + bare_np(o, WithSize::Yes, r) + " on a plain background"; },
  };
}

std::vector<Template> two_objects(const Scene& scene) {
  const SceneObject& p = scene.objects[0];
  const SceneObject& q = scene.objects[1];
  // Each caption mentions the two objects in an order of its own.
  auto order = [&](Prng& r) {
    return r.below(2) == 0 ? std::pair<const SceneObject*, const SceneObject*>{&p, &q}
                           : std::pair<const SceneObject*, const SceneObject*>{&q, &p};
  };
  auto rel = [](const SceneObject* a, const SceneObject* b, Prng& r) {
    return std::string(relation_words(relation_of(*a, *b), r));
  };
  return {
      [=](Prng& r) {
        auto [a, b] = order(r);
        return np(*a, WithSize::Yes, r) + " " + rel(a, b, r) + " " + np(*b, WithSize::Yes, r);
      },
      [=](Prng& r) {
        auto [a, b] = order(r);
        return "there is " + np(*a, WithSize::No, r) + " " + rel(a, b, r) + " " + np(*b, WithSize::No, r);
      },
      [=](Prng& r) {
        auto [a, b] = order(r);
        return np(*a, WithSize::No, r) + " " + rel(a, b, r) + " " + np(*b, WithSize::Yes, r);
      },
      [=](Prng& r) {
        auto [a, b] = order(r);
        return "the " + bare_np(*a, WithSize::No, r) + " is " + rel(a, b, r) + " the " +
               bare_np(*b, WithSize::No, r);
      },
      [=](Prng& r) {
        auto [a, b] = order(r);
        return np(*a, WithSize::Yes, r) + " and " + np(*b, WithSize::Yes, r);
      },
      [=](Prng& r) {
        auto [a, b] = order(r);
        return "two shapes : " + np(*a, WithSize::No, r) + " " + rel(a, b, r) + " " + np(*b, WithSize::No, r);
      },
      [=](Prng& r) {
        auto [a, b] = order(r);
        return "a picture of " + np(*a, WithSize::Yes, r) + " " + rel(a, b, r) + " " + np(*b, WithSize::No, r);
      },
  };
}

std::vector<Template> three_objects(const Scene& scene) {
  std::array<const SceneObject*, 3> lr{&scene.objects[0], &scene.objects[1], &scene.objects[2]};
  std::sort(lr.begin(), lr.end(), [](const SceneObject* a, const SceneObject* b) { return a->cx < b->cx; });
  auto list = [lr](WithSize with_size, Prng& r) {
    return np(*lr[0], with_size, r) + " , " + np(*lr[1], with_size, r) + " and " + np(*lr[2], with_size, r);
  };
  return {
      [=](Prng& r) { return list(WithSize::No, r); },
      [=](Prng& r) { return "from left to right : " + list(WithSize::Yes, r); },
      [=](Prng& r) { return "three shapes : " + list(WithSize::No, r); },
      [=](Prng& r) { return list(WithSize::Yes, r); },
      [=](Prng& r) { return "there are three shapes : " + list(WithSize::No, r); },
      [=](Prng& r) {
        return np(*lr[0], WithSize::No, r) + " on the left , " + np(*lr[1], WithSize::No, r) +
               " in the middle and " + np(*lr[2], WithSize::No, r) + " on the right";
      },
  };
}

}  // namespace

std::vector<std::string> make_captions(const Scene& scene, Prng& rng, int count) {
  const size_t n = scene.objects.size();
  CAPTION_CHECK(n >= 1 && n <= 3, "synthetic captions: scene has ", n, " objects (1 to 3 supported)");
  CAPTION_CHECK(count >= 1, "synthetic captions: caption count ", count, " must be positive");
  std::vector<Template> templates =
      n == 1 ? one_object(scene) : n == 2 ? two_objects(scene) : three_objects(scene);
  // Fisher-Yates with our generator, then cycle through the shuffled list.
  std::vector<size_t> order(templates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size() - 1; i > 0; --i)
    std::swap(order[i], order[rng.below(static_cast<std::uint32_t>(i + 1))]);
  std::vector<std::string> out;
  for (int k = 0; k < count; ++k) out.push_back(templates[order[k % order.size()]](rng));
  return out;
}

}  // namespace caption::data
