// Where the training apps find their data when --data is not given: the embedded default
// datasets of the checkout (data/prepared, made by scripts/prepare_defaults.sh), or the folder
// the environment variable RG_DATA_DIR names.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace rg::train {

// $RG_DATA_DIR when set, else the checkout's data/prepared.
std::filesystem::path default_data_dir();

// The first of `file_names` present in default_data_dir(). Says on stderr which one `app`
// uses, and which preferred ones were missing; throws rg::Error naming the folder, the names
// and `how_to_make` when none is there.
std::string find_default_dataset(const std::string& app, const std::vector<std::string>& file_names,
                                 const std::string& how_to_make);

}  // namespace rg::train
