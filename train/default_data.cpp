#include "train/default_data.h"

#include <cstdlib>
#include <iostream>

#include "engine/error.h"

namespace rg::train {

std::filesystem::path default_data_dir() {
  const char* env = std::getenv("RG_DATA_DIR");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path(RG_DEFAULT_DATA_DIR);
}

std::string find_default_dataset(const std::string& app, const std::vector<std::string>& file_names,
                                 const std::string& how_to_make) {
  const std::filesystem::path dir = default_data_dir();
  std::string missing;
  for (const std::string& name : file_names) {
    const std::filesystem::path path = dir / name;
    if (std::filesystem::exists(path)) {
      std::cerr << app << ": default dataset " << path.string();
      if (!missing.empty()) std::cerr << " (" << missing << " not prepared: " << how_to_make << ")";
      std::cerr << "\n";
      return path.string();
    }
    missing += (missing.empty() ? "" : ", ") + name;
  }
  RG_FAIL("no default dataset in ", dir.string(), " (looked for ", missing, "): ", how_to_make,
          ", or pass --data FILE.h5");
}

}  // namespace rg::train
