// Writes a small seed corpus for the fuzz targets: make_seeds <nifti_dir> <metaimage_dir>.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/metaimage.h"
#include "data/nifti.h"

namespace fs = std::filesystem;
using rg::data::Volume;

static std::vector<char> slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

static void spit(const std::string& p, const std::vector<char>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds NIFTI_DIR META_DIR\n");
    return 2;
  }
  const std::string nd = argv[1], md = argv[2];
  fs::create_directories(nd);
  fs::create_directories(md);
  Volume v;
  v.dims = {3, 2, 2};
  v.spacing = {0.7, 0.8, 2.5};
  v.affine = {{{-0.7, 0, 0, 10}, {0, -0.8, 0, 20}, {0, 0, 2.5, -30}, {0, 0, 0, 1}}};
  v.voxels = {-1024, -1, 0, 1, 2, 3, 40, 50, 60, 70, 80, 3071};
  using rg::data::NiftiOut;
  int i = 0;
  for (auto dt : {NiftiOut::Int16, NiftiOut::Float32, NiftiOut::Float64}) {
    for (int version : {1, 2}) {
      for (const char* ext : {".nii", ".nii.gz"}) {
        rg::data::write_nifti(nd + "/seed" + std::to_string(i++) + ext, v, dt, version);
      }
    }
  }
  using rg::data::MetaOut;
  for (bool z : {false, true}) {
    for (auto dt : {MetaOut::Short, MetaOut::Float, MetaOut::UChar}) {
      const std::string base = md + "/tmp" + std::to_string(i);
      for (auto& x : v.voxels) x = x < 0 ? 0 : (x > 255 ? 255 : x);
      rg::data::write_metaimage(base + ".mhd", v, dt, z);
      std::vector<char> seed = slurp(base + ".mhd");
      seed.push_back('\0');
      const auto raw = slurp(base + (z ? ".zraw" : ".raw"));
      seed.insert(seed.end(), raw.begin(), raw.end());
      spit(md + "/seed" + std::to_string(i++), seed);
      fs::remove(base + ".mhd");
      fs::remove(base + (z ? ".zraw" : ".raw"));
    }
  }
  // An .mha with LOCAL data.
  std::string mha = "ObjectType = Image\nNDims = 2\nDimSize = 2 2\nElementSpacing = 1 1\n"
                    "ElementType = MET_USHORT\nBinaryDataByteOrderMSB = True\nElementDataFile = LOCAL\n";
  std::vector<char> seed(mha.begin(), mha.end());
  for (char c : {0, 1, 0, 2, 1, 0, 255}) seed.push_back(c);
  seed.push_back(3);
  spit(md + "/seed_local", seed);
  std::printf("seeds written to %s and %s\n", nd.c_str(), md.c_str());
  return 0;
}
