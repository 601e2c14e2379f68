// Layout and rendering of synthetic scenes (see scene.h). Sizes are fractions of the
// image side: small objects have a half-extent of 8-10% of it, large ones 15-18%, so
// the two classes never overlap in size even at 64 pixels. Layouts are drawn by
// rejection sampling; each try consumes the same random numbers on every platform, so
// the result is deterministic.
#include "data/synthetic/scene.h"

#include <algorithm>
#include <cstdlib>

#include "engine/error.h"

namespace caption::data {

std::string_view shape_name(Shape shape) {
  switch (shape) {
    case Shape::Circle: return "circle";
    case Shape::Square: return "square";
    case Shape::Triangle: return "triangle";
  }
  return "shape";
}

std::string_view colour_name(Colour colour) {
  switch (colour) {
    case Colour::Red: return "red";
    case Colour::Green: return "green";
    case Colour::Blue: return "blue";
    case Colour::Yellow: return "yellow";
    case Colour::Purple: return "purple";
    case Colour::Orange: return "orange";
  }
  return "colour";
}

std::string_view size_name(ObjectSize size) { return size == ObjectSize::Small ? "small" : "large"; }

// Saturated and far apart in RGB (the closest pair, red and orange, differ by 100 in
// green), and all far from the grey background.
std::array<std::uint8_t, 3> colour_rgb(Colour colour) {
  switch (colour) {
    case Colour::Red: return {220, 40, 40};
    case Colour::Green: return {40, 170, 60};
    case Colour::Blue: return {50, 80, 230};
    case Colour::Yellow: return {245, 225, 50};
    case Colour::Purple: return {150, 60, 190};
    case Colour::Orange: return {250, 140, 30};
  }
  return {0, 0, 0};
}

namespace {

// Bounding radius used for the overlap test: a square's corner reaches 0.875*sqrt(2)
// = 1.24 half-extents, a triangle's base corners 1.35.
std::int64_t bounding_radius(const SceneObject& o) { return o.radius + (o.radius * 3 + 7) / 8; }

bool apart(const SceneObject& a, const SceneObject& b, int gap) {
  const std::int64_t dx = a.cx - b.cx, dy = a.cy - b.cy;
  const std::int64_t d = bounding_radius(a) + bounding_radius(b) + gap;
  return dx * dx + dy * dy >= d * d;
}

SceneObject random_object(int size, Prng& rng, const std::vector<SceneObject>& taken) {
  SceneObject o;
  do {
    o.shape = kAllShapes[rng.below(kAllShapes.size())];
    o.colour = kAllColours[rng.below(kAllColours.size())];
  } while (std::any_of(taken.begin(), taken.end(), [&](const SceneObject& t) {
    return t.shape == o.shape && t.colour == o.colour;
  }));
  o.size = rng.below(2) == 0 ? ObjectSize::Small : ObjectSize::Large;
  const int permille = o.size == ObjectSize::Small ? rng.between(80, 100) : rng.between(150, 180);
  o.radius = std::max(3, size * permille / 1000);
  return o;
}

// Keeps the whole bounding circle (plus a margin) inside the image.
int low_bound(const SceneObject& o, int size) {
  return static_cast<int>(bounding_radius(o)) + size / 32;
}

}  // namespace

Scene layout_scene(int image_size, Prng& rng) {
  CAPTION_CHECK(image_size >= 32 && image_size <= 4096, "synthetic scene: image size ",
                image_size, " outside [32, 4096]");
  Scene scene;
  scene.image_size = image_size;
  const int s = image_size;
  const int count = rng.between(1, 3);
  std::vector<SceneObject> objs;
  for (int i = 0; i < count; ++i) objs.push_back(random_object(s, rng, objs));

  if (count == 1) {
    SceneObject& o = objs[0];
    const int lo = low_bound(o, s), hi = s - 1 - lo;
    const int jitter = s / 24;
    o.cx = std::clamp((2 * rng.between(0, 2) + 1) * s / 6 + rng.between(-jitter, jitter), lo, hi);
    o.cy = std::clamp((2 * rng.between(0, 2) + 1) * s / 6 + rng.between(-jitter, jitter), lo, hi);
    scene.objects = objs;
    return scene;
  }

  const int gap = s / 16;
  for (int attempt = 0;; ++attempt) {
    // After many failures, shrink everything to small: always placeable.
    if (attempt == 400)
      for (auto& o : objs) {
        o.size = ObjectSize::Small;
        o.radius = std::max(3, s * 80 / 1000);
      }
    CAPTION_ASSERT(attempt < 100000, "synthetic scene layout did not converge");
    for (auto& o : objs) {
      const int lo = low_bound(o, s);
      o.cx = rng.between(lo, s - 1 - lo);
      o.cy = rng.between(lo, s - 1 - lo);
    }
    bool ok = true;
    for (size_t i = 0; i < objs.size() && ok; ++i)
      for (size_t j = i + 1; j < objs.size() && ok; ++j) ok = apart(objs[i], objs[j], gap);
    if (!ok) continue;
    if (count == 2) {
      const int dx = std::abs(objs[0].cx - objs[1].cx), dy = std::abs(objs[0].cy - objs[1].cy);
      if (dx < 2 * dy && dy < 2 * dx) continue;  // diagonal: the relation would be ambiguous
    } else {
      std::array<int, 3> xs{objs[0].cx, objs[1].cx, objs[2].cx};
      std::sort(xs.begin(), xs.end());
      if (xs[1] - xs[0] < s / 8 || xs[2] - xs[1] < s / 8) continue;
    }
    break;
  }
  scene.objects = objs;
  return scene;
}

namespace {

// Whether the sample point (X, Y), in eighths of a pixel, lies inside the object.
bool inside(const SceneObject& o, std::int64_t X, std::int64_t Y) {
  const std::int64_t cx = 8 * o.cx + 4, cy = 8 * o.cy + 4, r = 8 * o.radius;
  const std::int64_t dx = X - cx, dy = Y - cy;
  switch (o.shape) {
    case Shape::Circle: return dx * dx + dy * dy <= r * r;
    case Shape::Square: {
      const std::int64_t a = r * 7 / 8;
      return std::abs(dx) <= a && std::abs(dy) <= a;
    }
    case Shape::Triangle: {
      // Apex up at cy - r, base at cy + 3r/4, half-base 9r/8.
      const std::int64_t top = cy - r, bottom = cy + r * 3 / 4, half_base = r * 9 / 8;
      if (Y > bottom || Y < top) return false;
      return std::abs(dx) * (bottom - top) <= (Y - top) * half_base;
    }
  }
  return false;
}

}  // namespace

RgbImage render_scene(const Scene& scene, Prng& rng) {
  const int s = scene.image_size;
  RgbImage image(s, s);
  // Background: a grey tone with a slight tint, a gentle linear gradient, soft blotches
  // (value noise on a coarse grid, interpolated) and a little per-pixel grain. The
  // grain is kept small because it dominates the PNG encoding time and file size.
  const int base = rng.between(100, 150);
  std::array<int, 3> tint{};
  for (auto& t : tint) t = rng.between(-10, 10);
  const int gx = rng.between(-20, 20), gy = rng.between(-20, 20);
  constexpr int kCells = 8;
  const int cell = (s + kCells - 1) / kCells;
  std::array<std::array<int, kCells + 1>, kCells + 1> blotch{};
  for (auto& row : blotch)
    for (auto& v : row) v = rng.between(-8, 8);
  for (int y = 0; y < s; ++y) {
    const int by = y / cell, fy = y % cell;
    for (int x = 0; x < s; ++x) {
      const int bx = x / cell, fx = x % cell;
      const int top = blotch[by][bx] * (cell - fx) + blotch[by][bx + 1] * fx;
      const int bottom = blotch[by + 1][bx] * (cell - fx) + blotch[by + 1][bx + 1] * fx;
      const int soft = (top * (cell - fy) + bottom * fy) / (cell * cell);
      const int grad = (gx * (2 * x - s) + gy * (2 * y - s)) / (2 * s);
      const int grain = rng.between(-1, 1);
      for (int c = 0; c < 3; ++c)
        image.at(x, y, c) =
            static_cast<std::uint8_t>(std::clamp(base + tint[c] + grad + soft + grain, 0, 255));
    }
  }

  for (const SceneObject& o : scene.objects) {
    const auto rgb = colour_rgb(o.colour);
    const int extent = static_cast<int>(bounding_radius(o)) + 1;
    for (int y = std::max(0, o.cy - extent); y <= std::min(s - 1, o.cy + extent); ++y)
      for (int x = std::max(0, o.cx - extent); x <= std::min(s - 1, o.cx + extent); ++x) {
        int covered = 0;
        for (int j = 0; j < 4; ++j)
          for (int i = 0; i < 4; ++i) covered += inside(o, 8 * x + 2 * i + 1, 8 * y + 2 * j + 1);
        if (covered == 0) continue;
        for (int c = 0; c < 3; ++c) {
          const int bg = image.at(x, y, c);
          image.at(x, y, c) = static_cast<std::uint8_t>((bg * (16 - covered) + rgb[c] * covered + 8) / 16);
        }
      }
  }
  return image;
}

}  // namespace caption::data
