#include "data/phantom.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/metaimage.h"
#include "data/rng.h"
#include "engine/error.h"

namespace rg::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Tissue values (HU) before noise.
constexpr double kAir = -1000, kFat = -100, kMuscle = 40, kSoft = 30, kLung = -850;
constexpr double kBone = 700, kMarrow = 350, kBlood = 40, kVessel = 40, kNodule = 30;
constexpr double kLiver = 55, kCsf = 15;
constexpr double kLesionCore = 20, kLesionHalo = -450;

struct Vec3 {
  double x = 0, y = 0, z = 0;
};
inline Vec3 operator+(Vec3 a, Vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline Vec3 operator-(Vec3 a, Vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline Vec3 operator*(Vec3 a, double s) { return {a.x * s, a.y * s, a.z * s}; }
inline double dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline Vec3 cross(Vec3 a, Vec3 b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
inline Vec3 normalized(Vec3 a) {
  const double n = std::sqrt(dot(a, a));
  return n > 0 ? a * (1.0 / n) : Vec3{1, 0, 0};
}

// Per-subject anatomy, all lengths in mm. Patient coordinates: X to the patient's left, Y to
// posterior (both from the body centre), Z up from the lowest slice; t = Z / height.
struct Anatomy {
  double a = 0, b = 0;          // body semi-axes (X, Y)
  double cx = 0, cy = 0;        // body centre offset
  double fat = 0, muscle = 0;   // layer thicknesses
  double rib_thick = 0, rib_pitch = 0, rib_phase = 0;
  double ca = 0, cb = 0;        // thoracic cavity semi-axes
  double lung_x = 0, lung_y = 0, lung_a = 0, lung_b = 0;  // lung ellipse (mirrored)
  double right_scale = 1.05;    // the right lung is a little bigger
  double dia_right = 0, dia_left = 0, dome = 0, apex = 0;  // diaphragm and apex heights (t)
  double heart_x = 0, heart_y = 0, heart_a = 0, heart_b = 0, heart_t0 = 0, heart_t1 = 0;
  double aorta_x = 0, aorta_y = 0, aorta_r = 0;
  double trachea_y = 0, trachea_r = 0, trachea_t = 0;
  double spine_y = 0, spine_r = 0, canal_r = 0, arch_r = 0;
};

Anatomy make_anatomy(Rng& rng, double fov_x, double fov_y) {
  Anatomy s;
  s.a = 0.41 * fov_x * rng.uniform(0.92, 1.04);
  s.b = 0.28 * fov_y * rng.uniform(0.92, 1.06);
  s.cx = rng.uniform(-4, 4);
  s.cy = rng.uniform(-4, 4);
  s.fat = rng.uniform(6, 16);
  s.muscle = rng.uniform(8, 13);
  s.rib_thick = rng.uniform(6, 9);
  s.rib_pitch = rng.uniform(22, 28);
  s.rib_phase = rng.uniform();
  const double wall = s.fat + s.muscle + s.rib_thick + 3;
  s.ca = s.a - wall;
  s.cb = s.b - wall;
  s.lung_x = 0.52 * s.ca;
  s.lung_y = rng.uniform(0.0, 0.08) * s.cb;
  s.lung_a = rng.uniform(0.38, 0.42) * s.ca;
  s.lung_b = rng.uniform(0.84, 0.9) * s.cb;
  s.right_scale = rng.uniform(1.02, 1.07);
  s.dia_left = rng.uniform(0.04, 0.12);
  s.dia_right = s.dia_left + rng.uniform(0.02, 0.06);
  s.dome = rng.uniform(0.18, 0.28);
  s.apex = rng.uniform(0.93, 0.99);
  s.heart_x = rng.uniform(0.10, 0.18) * s.ca;
  s.heart_y = -rng.uniform(0.2, 0.3) * s.cb;
  s.heart_a = rng.uniform(0.34, 0.40) * s.ca;
  s.heart_b = rng.uniform(0.42, 0.50) * s.cb;
  s.heart_t0 = s.dia_left + 0.02;
  s.heart_t1 = rng.uniform(0.55, 0.65);
  s.aorta_x = rng.uniform(0.12, 0.18) * s.ca;
  s.aorta_y = 0.45 * s.cb;
  s.aorta_r = rng.uniform(10, 13);
  s.trachea_y = -0.05 * s.cb;
  s.trachea_r = rng.uniform(7.5, 9.5);
  s.trachea_t = rng.uniform(0.62, 0.72);
  s.spine_r = rng.uniform(14, 17);
  s.spine_y = s.cb - 0.3 * s.spine_r;
  s.canal_r = 7;
  s.arch_r = 12;
  return s;
}

double sq(double v) { return v * v; }

// Normalized ellipse radius squared of the lung (right: X < 0) at height t; the lungs shrink
// towards the apex. Returns > 1 outside.
double lung_e(const Anatomy& s, bool right, double X, double Y, double t) {
  const double taper = std::sqrt(std::clamp((s.apex - t) / 0.3, 0.0, 1.0));
  if (taper <= 0.02) return 2.0;
  const double scale = (right ? s.right_scale : 1.0) * taper;
  const double xc = right ? -s.lung_x : s.lung_x;
  return sq((X - xc) / (s.lung_a * scale)) + sq((Y - s.lung_y) / (s.lung_b * (0.6 + 0.4 * taper)));
}

struct Segment {
  Vec3 p0, p1;
  double radius = 0;
  int lung = 0;  // label of the lung the tree grows in
};

void grow_tree(Rng& rng, Vec3 p, Vec3 dir, double length, double radius, int generation,
               int lung, std::vector<Segment>& out) {
  if (generation <= 0 || radius < 0.4) return;
  const Vec3 q = p + dir * length;
  out.push_back({p, q, radius, lung});
  // Two children, rotated either way about a random axis perpendicular to dir.
  Vec3 helper = std::fabs(dir.z) < 0.9 ? Vec3{0, 0, 1} : Vec3{1, 0, 0};
  Vec3 u = normalized(cross(dir, helper));
  Vec3 v = cross(dir, u);
  const double phi = rng.uniform(0, 2 * kPi);
  const Vec3 axis = u * std::cos(phi) + v * std::sin(phi);
  for (int c = 0; c < 2; ++c) {
    const double ang = (c == 0 ? 1 : -1) * rng.uniform(0.35, 0.7);
    // Rodrigues rotation of dir about axis (axis is perpendicular to dir).
    const Vec3 d = normalized(dir * std::cos(ang) + cross(axis, dir) * std::sin(ang));
    grow_tree(rng, q, d, length * rng.uniform(0.7, 0.85), radius * rng.uniform(0.66, 0.78),
              generation - 1, lung, out);
  }
}

}  // namespace

uint64_t phantom_subject_seed(uint64_t seed, int index) {
  return derive_seed(seed, {0x70686e746dULL, static_cast<uint64_t>(index)});
}

std::string phantom_uid(uint64_t seed, int index) {
  // 1.3.6.1.4.1.<fictitious enterprise number>.<seed>.<index>: numeric like LUNA16's UIDs.
  std::ostringstream os;
  os << "1.3.6.1.4.1.9590.100.1.2." << seed << "." << index;
  return os.str();
}

PhantomOptions phantom_options_for_grid(const std::array<int64_t, 3>& dims) {
  const PhantomOptions defaults;
  PhantomOptions o;
  for (int a = 0; a < 3; ++a) {
    RG_CHECK(dims[a] > 0, "phantom_options_for_grid: dims must be positive, got ", dims[a], " along axis ", a);
    o.dims[a] = dims[a];
    o.spacing[a] = defaults.spacing[a] * static_cast<double>(defaults.dims[a]) / static_cast<double>(dims[a]);
  }
  return o;
}

Phantom make_lung_phantom(uint64_t seed, const PhantomOptions& opt) {
  const int64_t nx = opt.dims[0], ny = opt.dims[1], nz = opt.dims[2];
  RG_CHECK(nx >= 16 && ny >= 16 && nz >= 2, "phantom: dims must be at least 16x16x2, got ", nx,
           "x", ny, "x", nz);
  RG_CHECK(nx * ny * nz <= (int64_t(1) << 31), "phantom: volume too large (", nx, "x", ny, "x",
           nz, ")");
  for (double sp : opt.spacing) RG_CHECK(sp > 0, "phantom: spacing must be positive");
  RG_CHECK(opt.nodules >= 0 && opt.lesions >= 0, "phantom: nodule/lesion counts must be >= 0");
  const double sx = opt.spacing[0], sy = opt.spacing[1], sz = opt.spacing[2];
  const double height = std::max(1e-6, (nz - 1) * sz);

  Rng rng(seed);
  const Anatomy s = make_anatomy(rng, nx * sx, ny * sy);

  Phantom ph;
  for (Volume* v : {&ph.ct, &ph.lungs, &ph.tissue, &ph.lesion_mask}) {
    v->dims = {nx, ny, nz};
    v->spacing = opt.spacing;
    // RAS+ affine of an LPS volume with identity direction cosines (LUNA16 style), origin so
    // that the body centre is near world (0, 0).
    const double ox_lps = -0.5 * (nx - 1) * sx, oy_lps = -0.5 * (ny - 1) * sy;
    const double oz_lps = -std::round(0.5 * nz * sz);
    v->affine = {{{-sx, 0, 0, -ox_lps}, {0, -sy, 0, -oy_lps}, {0, 0, sz, oz_lps}, {0, 0, 0, 1}}};
    v->voxels.assign(static_cast<size_t>(nx * ny * nz), 0.0f);
  }
  ph.ct.source_dtype = "int16";
  ph.lungs.source_dtype = "uint8";
  ph.tissue.source_dtype = "uint8";
  ph.lesion_mask.source_dtype = "uint8";
  ph.ct.source = ph.lungs.source = ph.tissue.source = "phantom:" + std::to_string(seed);
  ph.lesion_mask.source = ph.ct.source + " lesions";

  auto Xof = [&](double i) { return (i - 0.5 * (nx - 1)) * sx - s.cx; };
  auto Yof = [&](double j) { return (j - 0.5 * (ny - 1)) * sy - s.cy; };

  // ---- 1. Tissue classes and lung labels, voxel by voxel.
  for (int64_t k = 0; k < nz; ++k) {
    const double Z = k * sz, t = Z / height;
    for (int64_t j = 0; j < ny; ++j) {
      const double Y = Yof(static_cast<double>(j));
      for (int64_t i = 0; i < nx; ++i) {
        const double X = Xof(static_cast<double>(i));
        const size_t idx = static_cast<size_t>(i + nx * (j + ny * k));
        const double rb = std::sqrt(sq(X / s.a) + sq(Y / s.b));
        double hu = kAir;
        float label = 0;
        int tissue = kTissueAir;
        if (rb <= 1.0) {
          const double depth = (1.0 - rb) * 0.5 * (s.a + s.b);  // approx. mm below the skin
          const double ring0 = s.fat + s.muscle;
          if (depth < s.fat) {
            hu = kFat;
            tissue = kTissueFat;
          } else if (depth < ring0) {
            hu = kMuscle;
            tissue = kTissueSoft;
          } else if (depth < ring0 + s.rib_thick) {
            // Ribs: arcs of the ring whose height varies with the angle (they slope).
            const double theta = std::atan2(Y / s.b, X / s.a);  // -pi/2 = anterior
            double from_front = std::fabs(std::remainder(theta + kPi / 2, 2 * kPi));
            if (from_front < 0.3) {
              hu = (t > 0.25) ? kBone : kMuscle;  // sternum
              tissue = (t > 0.25) ? kTissueBone : kTissueSoft;
            } else {
              const double phase = Z / s.rib_pitch + 0.9 * from_front / kPi + s.rib_phase;
              hu = (phase - std::floor(phase) < 0.32) ? kBone : kMuscle;
              tissue = hu == kBone ? kTissueBone : kTissueSoft;
            }
          } else {
            hu = kSoft;
            tissue = kTissueSoft;
            const double rc = std::sqrt(sq(X / s.ca) + sq(Y / s.cb));
            // Heart (left-anterior, rounded at the top).
            bool heart = false;
            if (t > s.heart_t0 && t < s.heart_t1) {
              const double mid = 0.5 * (s.heart_t0 + s.heart_t1),
                           half = 0.5 * (s.heart_t1 - s.heart_t0);
              const double hs = std::sqrt(std::max(0.0, 1.0 - sq((t - mid) / half)));
              heart = sq((X - s.heart_x) / (s.heart_a * hs + 1e-9)) +
                          sq((Y - s.heart_y) / (s.heart_b * hs + 1e-9)) < 1.0;
            }
            const double aorta_d = std::sqrt(sq(X - s.aorta_x) + sq(Y - s.aorta_y));
            const double trach_d = std::sqrt(sq(X) + sq(Y - s.trachea_y));
            const bool trachea = t > s.trachea_t && trach_d < s.trachea_r + 2.0;
            const double spine_d = std::sqrt(sq(X) + sq(Y - s.spine_y));
            const bool near_spine = spine_d < s.spine_r + 4.0;
            const double dia_tissue_t = std::min(s.dia_left, s.dia_right);
            if (t < dia_tissue_t + s.dome * std::max(0.0, 1.0 - sq(X / s.ca) - sq(Y / s.cb)))
              hu = kLiver;
            if (heart || aorta_d < s.aorta_r) {
              hu = kBlood;
              tissue = kTissueBlood;
            }
            if (trachea) {
              hu = trach_d < s.trachea_r ? kAir : kSoft;
              tissue = trach_d < s.trachea_r ? kTissueAir : kTissueSoft;
            }
            if (!heart && aorta_d >= s.aorta_r + 2.0 && !trachea && !near_spine && rc < 0.97) {
              for (int side = 0; side < 2; ++side) {
                const bool right = side == 0;
                if (right != (X < 0)) continue;
                const double e = lung_e(s, right, X, Y, t);
                if (e >= 1.0) continue;
                const double dia = right ? s.dia_right : s.dia_left;
                if (t <= dia + s.dome * (1.0 - e)) continue;  // under the diaphragm dome
                hu = kLung;
                label = right ? 3.0f : 4.0f;
                tissue = kTissueLung;
              }
            }
          }
          // Spine: vertebral body, canal and arch, spinous process towards the back.
          const double spine_d = std::sqrt(sq(X) + sq(Y - s.spine_y));
          if (spine_d < s.spine_r) {
            hu = spine_d > s.spine_r - 2.5 ? kBone + 200 : kMarrow;
            tissue = kTissueBone;
          } else {
            const double cy = s.spine_y + s.spine_r + s.canal_r;
            const double cd = std::sqrt(sq(X) + sq(Y - cy));
            if (cd < s.canal_r) {
              hu = kCsf;
              tissue = kTissueSoft;
            } else if (cd < s.arch_r || (std::fabs(X) < 4.0 && Y > cy && depth > s.fat + 2.0)) {
              hu = kBone;
              tissue = kTissueBone;
            }
          }
        }
        ph.ct.voxels[idx] = static_cast<float>(hu);
        ph.lungs.voxels[idx] = label;
        ph.tissue.voxels[idx] = static_cast<float>(tissue);
      }
    }
  }

  auto voxel_to_mm = [&](double i, double j, double k) {
    return Vec3{i * sx, j * sy, k * sz};
  };
  auto label_at = [&](const Vec3& p) -> int {
    const int64_t i = std::llround(p.x / sx), j = std::llround(p.y / sy), k = std::llround(p.z / sz);
    if (i < 0 || j < 0 || k < 0 || i >= nx || j >= ny || k >= nz) return 0;
    return static_cast<int>(ph.lungs.voxels[static_cast<size_t>(i + nx * (j + ny * k))]);
  };

  // Paints a tube/sphere with partial-volume edges: value v blends towards `value` where the
  // distance to the shape is below its radius (only where `where(label)` holds); the tissue
  // label becomes `tissue` where the shape covers at least half the voxel. With `mark_lesion`,
  // those voxels are also set in the lesion mask.
  auto paint = [&](auto&& distance, Vec3 lo, Vec3 hi, double radius, double value, int tissue,
                   auto&& where, bool mark_lesion = false) {
    const int64_t i0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(lo.x / sx)) - 1);
    const int64_t j0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(lo.y / sy)) - 1);
    const int64_t k0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(lo.z / sz)) - 1);
    const int64_t i1 = std::min<int64_t>(nx - 1, static_cast<int64_t>(std::ceil(hi.x / sx)) + 1);
    const int64_t j1 = std::min<int64_t>(ny - 1, static_cast<int64_t>(std::ceil(hi.y / sy)) + 1);
    const int64_t k1 = std::min<int64_t>(nz - 1, static_cast<int64_t>(std::ceil(hi.z / sz)) + 1);
    const double soft = 0.5 * std::min(sx, sy);
    for (int64_t k = k0; k <= k1; ++k)
      for (int64_t j = j0; j <= j1; ++j)
        for (int64_t i = i0; i <= i1; ++i) {
          const size_t idx = static_cast<size_t>(i + nx * (j + ny * k));
          if (!where(ph.lungs.voxels[idx])) continue;
          const double d = distance(voxel_to_mm(static_cast<double>(i), static_cast<double>(j),
                                                static_cast<double>(k)));
          const double w = std::clamp(0.5 + (radius - d) / (2.0 * soft), 0.0, 1.0);
          if (w <= 0) continue;
          if (mark_lesion && w >= 0.5) ph.lesion_mask.voxels[idx] = 1.0f;
          float& v = ph.ct.voxels[idx];
          v = static_cast<float>(v + w * (value - v));
          if (w >= 0.5) ph.tissue.voxels[idx] = static_cast<float>(tissue);
        }
  };

  // ---- 2. Vessel trees from each hilum (only painted inside the lungs).
  {
    std::vector<Segment> segs;
    for (int side = 0; side < 2; ++side) {
      const bool right = side == 0;
      const double hx = (right ? -1 : 1) * 0.2 * s.ca + s.cx + 0.5 * (nx - 1) * sx;
      const double hy = s.lung_y + s.cy + 0.5 * (ny - 1) * sy;
      const double hz = 0.55 * height;
      const Vec3 hilum{hx, hy, hz};
      const double lat = right ? -1 : 1;
      const Vec3 dirs[6] = {normalized({lat, 0.1, 0.9}),         normalized({lat, 0.3, 0.0}),
                            normalized({lat, -0.4, -0.5}),       normalized({lat * 0.5, 0.6, -0.8}),
                            normalized({lat * 0.6, -0.7, 0.4}), normalized({lat * 0.4, 0.8, 0.5})};
      for (const Vec3& d0 : dirs) {
        const Vec3 d = normalized(d0 + Vec3{rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15),
                                            rng.uniform(-0.15, 0.15)});
        grow_tree(rng, hilum, d, rng.uniform(24, 32), rng.uniform(3.0, 4.0),
                  opt.vessel_generations, right ? 3 : 4, segs);
      }
    }
    for (const Segment& sg : segs) {
      const Vec3 ab = sg.p1 - sg.p0;
      const double len2 = std::max(1e-12, dot(ab, ab));
      auto dist = [&](const Vec3& p) {
        const double u = std::clamp(dot(p - sg.p0, ab) / len2, 0.0, 1.0);
        const Vec3 c = sg.p0 + ab * u - p;
        return std::sqrt(dot(c, c));
      };
      const Vec3 lo{std::min(sg.p0.x, sg.p1.x) - sg.radius, std::min(sg.p0.y, sg.p1.y) - sg.radius,
                    std::min(sg.p0.z, sg.p1.z) - sg.radius};
      const Vec3 hi{std::max(sg.p0.x, sg.p1.x) + sg.radius, std::max(sg.p0.y, sg.p1.y) + sg.radius,
                    std::max(sg.p0.z, sg.p1.z) + sg.radius};
      paint(dist, lo, hi, sg.radius, kVessel, kTissueBlood, [](float label) { return label > 0; });
    }
  }

  // ---- 3. Nodules and lesions: spheres centred on random lung voxels.
  auto world_of = [&](const Vec3& p) {
    const double i = p.x / sx, j = p.y / sy, k = p.z / sz;
    std::array<double, 3> w{};
    for (int r = 0; r < 3; ++r)
      w[r] = ph.ct.affine[r][0] * i + ph.ct.affine[r][1] * j + ph.ct.affine[r][2] * k +
             ph.ct.affine[r][3];
    return w;
  };
  auto random_lung_point = [&](bool require_lung) {
    Vec3 p;
    for (int attempt = 0; attempt < 20000; ++attempt) {
      p = {rng.uniform(0, (nx - 1) * sx), rng.uniform(0, (ny - 1) * sy),
           rng.uniform(0.1, 0.9) * height};
      if (!require_lung || label_at(p) > 0) return p;
    }
    return p;  // no lung found (tiny volume): use the last point
  };
  auto add_finding = [&](const char* kind, const Vec3& c, double radius) {
    PhantomFinding f;
    f.kind = kind;
    f.voxel = {c.x / sx, c.y / sy, c.z / sz};
    f.world = world_of(c);
    f.diameter_mm = 2 * radius;
    f.lung_label = label_at(c);
    return f;
  };
  auto anywhere = [](float) { return true; };
  for (int n = 0; n < opt.nodules; ++n) {
    // Most nodules in the lungs; every fourth one may sit anywhere in the chest.
    const Vec3 c = random_lung_point(n % 4 != 3);
    const double r = rng.uniform(2.5, 6.0);
    auto dist = [&](const Vec3& p) { return std::sqrt(dot(p - c, p - c)); };
    paint(dist, c - Vec3{r, r, r}, c + Vec3{r, r, r}, r, kNodule, kTissueLesion, anywhere);
    ph.nodules.push_back(add_finding("nodule", c, r));
  }
  for (int n = 0; n < opt.lesions; ++n) {
    const Vec3 c = random_lung_point(true);
    const double r = rng.uniform(5.0, 10.0), halo = r * rng.uniform(1.4, 1.8);
    auto dist = [&](const Vec3& p) { return std::sqrt(dot(p - c, p - c)); };
    paint(dist, c - Vec3{halo, halo, halo}, c + Vec3{halo, halo, halo}, halo, kLesionHalo,
          kTissueHalo, [](float label) { return label > 0; }, true);
    paint(dist, c - Vec3{r, r, r}, c + Vec3{r, r, r}, r, kLesionCore, kTissueLesion, anywhere, true);
    ph.lesions.push_back(add_finding("lesion", c, r));
  }

  // ---- 4. Noise (hashed per voxel index) and rounding to integer HU.
  const uint64_t noise_seed = derive_seed(seed, {0x6e6f697365ULL});
  for (size_t idx = 0; idx < ph.ct.voxels.size(); ++idx) {
    double v = ph.ct.voxels[idx] + opt.noise_hu * hashed_normal(noise_seed, idx);
    v = std::clamp(std::round(v), -1024.0, 3071.0);
    ph.ct.voxels[idx] = static_cast<float>(v);
  }
  return ph;
}

std::vector<PhantomSubjectFiles> write_phantom_luna16(const std::string& dir, int subjects,
                                                      uint64_t seed,
                                                      const PhantomOptions& options,
                                                      const std::function<void(int, int)>& on_subject) {
  namespace fs = std::filesystem;
  RG_CHECK(subjects >= 1, "phantom: --subjects must be at least 1, got ", subjects);
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root / "subset0", ec);
  RG_CHECK(!ec, "phantom: cannot create ", (root / "subset0").string(), ": ", ec.message());
  fs::create_directories(root / "seg-lungs-LUNA16", ec);
  RG_CHECK(!ec, "phantom: cannot create ", (root / "seg-lungs-LUNA16").string(), ": ",
           ec.message());

  std::vector<PhantomSubjectFiles> out;
  std::ostringstream ann, les;
  ann << "seriesuid,coordX,coordY,coordZ,diameter_mm\n";
  les << "seriesuid,coordX,coordY,coordZ,diameter_mm\n";
  auto csv_row = [](std::ostringstream& os, const std::string& uid, const PhantomFinding& f) {
    char buf[160];
    // LUNA16 coordinates are MetaImage world coordinates: LPS (negate RAS x and y).
    std::snprintf(buf, sizeof buf, ",%.4f,%.4f,%.4f,%.4f\n", -f.world[0], -f.world[1],
                  f.world[2], f.diameter_mm);
    os << uid << buf;
  };
  for (int s = 0; s < subjects; ++s) {
    PhantomSubjectFiles files;
    files.uid = phantom_uid(seed, s);
    Phantom ph = make_lung_phantom(phantom_subject_seed(seed, s), options);
    ph.ct.source = ph.lungs.source = "phantom:" + files.uid;
    files.scan_mhd = (root / "subset0" / (files.uid + ".mhd")).string();
    files.mask_mhd = (root / "seg-lungs-LUNA16" / (files.uid + ".mhd")).string();
    write_metaimage(files.scan_mhd, ph.ct, MetaOut::Short, false);
    write_metaimage(files.mask_mhd, ph.lungs, MetaOut::UChar, true);
    if (options.lesions > 0) {
      fs::create_directories(root / "lesion-masks", ec);
      RG_CHECK(!ec, "phantom: cannot create ", (root / "lesion-masks").string(), ": ", ec.message());
      files.lesion_mhd = (root / "lesion-masks" / (files.uid + ".mhd")).string();
      write_metaimage(files.lesion_mhd, ph.lesion_mask, MetaOut::UChar, true);
    }
    for (const auto& f : ph.nodules) csv_row(ann, files.uid, f);
    for (const auto& f : ph.lesions) csv_row(les, files.uid, f);
    files.nodules = std::move(ph.nodules);
    files.lesions = std::move(ph.lesions);
    out.push_back(std::move(files));
    if (on_subject) on_subject(s + 1, subjects);
  }
  auto write_text = [](const fs::path& p, const std::string& text) {
    const fs::path tmp = p.string() + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary);
      RG_CHECK(f.good(), "phantom: cannot write ", tmp.string());
      f << text;
      RG_CHECK(f.good(), "phantom: error writing ", tmp.string());
    }
    std::error_code e;
    fs::rename(tmp, p, e);
    RG_CHECK(!e, "phantom: cannot rename ", tmp.string(), " to ", p.string(), ": ", e.message());
  };
  write_text(root / "annotations.csv", ann.str());
  if (options.lesions > 0) write_text(root / "lesions.csv", les.str());
  return out;
}

}  // namespace rg::data
