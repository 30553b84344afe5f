// A procedural lung-CT phantom: the built-in default dataset for lung segmentation, written in
// LUNA16's layout so that the LUNA16 preparation path is the one exercised.
//
// Each subject is an axial chest CT in Hounsfield units: air outside the body (-1000), an
// elliptical body with subcutaneous fat (~-100) and muscle (~+40), ribs, sternum and spine
// (~+700), heart and aorta (~+40), trachea (air), two lungs (~-850) with branching vessel trees
// (~+40), a few solid nodules (~+30), optional lesions (ground-glass halo around a solid core,
// for anomaly detection), and Gaussian noise. A lung mask volume uses LUNA16's seg-lungs
// labels: 3 = right lung, 4 = left lung, 0 elsewhere. Everything is a function of the seed
// (our own generator, so every standard library gives the same volumes).
//
// Orientation matches LUNA16 scans (LPS on disk, identity direction cosines): voxel i runs from
// the patient's right to left, j from anterior to posterior, k from inferior to superior. The
// Volume's affine is RAS+ as everywhere in rg::data, so its first two columns are negative.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/volume.h"

namespace rg::data {

struct PhantomOptions {
  // Voxels along i (right->left), j (anterior->posterior), k (inferior->superior).
  std::array<int64_t, 3> dims{192, 192, 64};
  // Voxel size in mm: anisotropic like a clinical chest CT (thick axial slices).
  std::array<double, 3> spacing{1.8, 1.8, 2.5};
  double noise_hu = 20.0;  // standard deviation of the additive Gaussian noise
  int nodules = 3;         // solid nodules (most inside the lungs)
  int lesions = 0;         // extra lesions inside the lungs (anomalies), positions returned
  int vessel_generations = 7;
};

// The default anatomy on a coarser grid: `dims`, with the spacing scaled so that the field of
// view (dims x spacing) stays the default one. Small test phantoms (48x48x12) at the default
// spacing would see only the mediastinum, and their lung masks would be empty.
PhantomOptions phantom_options_for_grid(const std::array<int64_t, 3>& dims);

// A spherical finding (nodule or lesion).
struct PhantomFinding {
  std::string kind;                  // "nodule" or "lesion"
  std::array<double, 3> voxel{};     // centre in voxel coordinates (i, j, k)
  std::array<double, 3> world{};     // centre in world mm, RAS+ (the Volume's affine)
  double diameter_mm = 0;
  int lung_label = 0;                // 3/4 when the centre is inside a lung, else 0
};

// Tissue classes of the phantom's label map (Phantom::tissue), the anatomy both the CT and the
// MR-like rendering (render_phantom_mr) are drawn from. Soft tissue covers muscle, mediastinum,
// liver and CSF; bone covers cortex and marrow; blood covers heart, aorta and the lung vessels;
// lesion covers nodules and the solid core of lesions; halo is a lesion's ground-glass rim
// (partly filled air spaces: -450 HU on CT, a signal between lung and soft tissue on MR), a class
// of its own so that an MR rendering shows where the solid core ends.
enum PhantomTissue : int {
  kTissueAir = 0,
  kTissueFat = 1,
  kTissueSoft = 2,
  kTissueBone = 3,
  kTissueBlood = 4,
  kTissueLung = 5,
  kTissueLesion = 6,
  kTissueHalo = 7,
};
inline constexpr int kPhantomTissueClasses = 8;
// "air", "fat", "soft", "bone", "blood", "lung", "lesion", "halo"; throws for other values.
const char* phantom_tissue_name(int tissue);

struct Phantom {
  Volume ct;     // Hounsfield units (integers after rounding)
  Volume lungs;  // 0, 3 (right lung), 4 (left lung)
  Volume tissue; // PhantomTissue per voxel (partial-volume shapes: the class covering >= half)
  std::vector<PhantomFinding> nodules;
  std::vector<PhantomFinding> lesions;
  // 1 where a lesion (its ground-glass halo inside the lungs, or its solid core) covers the
  // voxel at least half (the painted blend >= 0.5), 0 elsewhere; all 0 without lesions. Same grid
  // as ct: the ground truth of anomaly detection.
  Volume lesion_mask;
};

// Generates one subject. Same seed and options => bit-identical volumes.
Phantom make_lung_phantom(uint64_t seed, const PhantomOptions& options = {});

// An MR-like rendering of the phantom's tissue map, T1- or T2-weighted: per-tissue intensities
// (T1: fat brightest, then lesion and soft tissue, blood and bone darker, lung and air near 0;
// T2: lesions brightest (oedema), then fat, soft tissue darker, flowing blood a flow void), each
// scaled per subject by a random factor (sd `tissue_jitter`), a smooth multiplicative bias field
// (a random low-order polynomial in the body's coordinates, within 1 +- `bias_amplitude`), an
// in-plane Gaussian point spread of `psf_sigma_mm` (the CT has none), and Rician noise: the
// magnitude of the signal plus complex Gaussian noise of sd `noise_sigma` per channel. Values are
// arbitrary MR units (the brightest tissue ~ 1 before bias), never negative. A function of
// (tissue map, seed, options). The two contrasts of one seed are one session: the same bias
// field and tissue jitter draws, their own noise.
enum class MrContrast { T1, T2 };
struct MrOptions {
  MrContrast contrast = MrContrast::T1;
  double tissue_jitter = 0.05;
  double bias_amplitude = 0.2;
  double psf_sigma_mm = 1.5;
  double noise_sigma = 0.02;
};
// The mean intensity of a tissue class in a contrast before jitter, bias, blur and noise.
double phantom_mr_intensity(int tissue, MrContrast contrast = MrContrast::T1);
Volume render_phantom_mr(const Volume& tissue, uint64_t seed, const MrOptions& options = {});

// Subject `index` of a phantom dataset made with `seed`: its generator seed and its series UID
// (a DICOM-like dotted number, as LUNA16 names files).
uint64_t phantom_subject_seed(uint64_t seed, int index);
std::string phantom_uid(uint64_t seed, int index);

struct PhantomSubjectFiles {
  std::string uid;
  std::string scan_mhd;  // <dir>/subset0/<uid>.mhd (+ .raw, int16)
  std::string mask_mhd;  // <dir>/seg-lungs-LUNA16/<uid>.mhd (+ .zraw, uint8, zlib)
  std::string lesion_mhd;  // options.lesions > 0: <dir>/lesion-masks/<uid>.mhd (0/1, uint8, zlib)
  std::vector<PhantomFinding> nodules, lesions;
};

// Writes `subjects` phantoms in LUNA16's layout under `dir`:
//   subset0/<uid>.mhd/.raw, seg-lungs-LUNA16/<uid>.mhd/.zraw,
//   annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm: nodules, LPS world mm as in
//   LUNA16) and, when options.lesions > 0, lesions.csv (same columns) and the lesion masks
//   lesion-masks/<uid>.mhd/.zraw (Phantom::lesion_mask, on the scan's grid).
// `on_subject(done, total)` is called after each subject (progress reporting); may be empty.
std::vector<PhantomSubjectFiles> write_phantom_luna16(
    const std::string& dir, int subjects, uint64_t seed, const PhantomOptions& options = {},
    const std::function<void(int, int)>& on_subject = {});

}  // namespace rg::data
