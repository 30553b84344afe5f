#include "train/checkpoint.h"

#include <cstring>
#include <fstream>
#include <set>

#include "engine/checkpoint.h"
#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "engine/error.h"
#include "engine/nn/module.h"
#include "engine/optim/optimizer.h"
#include "engine/tensor.h"

namespace rg::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "roentgen-checkpoint-2";

// Optimizer state is stored as "opt_<optimizer>.<state>", next to the modules' "<module>.<tensor>".
constexpr const char* kOptimizerTag = "opt_";
std::string optimizer_prefix(const std::string& name) { return kOptimizerTag + name + "."; }

}  // namespace

void save_checkpoint(const fs::path& dir, const std::string& tag, const TrainState& state,
                     const LoopProgress& progress, const CheckpointInfo& info) {
  NamedTensors tensors;
  json optimizer_steps = json::object();
  for (const auto& [name, module] : state.modules) {
    NamedTensors ms = module_state(*module, name + ".");
    tensors.insert(tensors.end(), ms.begin(), ms.end());
  }
  for (const auto& [name, opt] : state.optimizers) {
    for (auto& [slot, t] : opt->state()) tensors.emplace_back(optimizer_prefix(name) + slot, t);
    optimizer_steps[name] = opt->step_count();
  }
  json generators = json::object();
  for (const auto& [name, gen] : state.generators) {
    generators[name] = {{"seed", gen->seed()}, {"offset", gen->offset()}};
  }
  json meta = info.extra.is_object() ? info.extra : json::object();
  meta.update(json{{"format", kFormat},
                   {"kind", info.kind},
                   {"epoch", progress.epoch},
                   {"step_in_epoch", progress.step_in_epoch},
                   {"global_step", progress.global_step},
                   // The resume position in samples of the global stream: the same at every
                   // world size.
                   {"samples_seen", progress.global_step * progress.batch_size},
                   {"batch_size", progress.batch_size},
                   {"world_size", progress.world_size},
                   {"best_score", progress.best_score},
                   {"best_epoch", progress.best_epoch},
                   {"optimizer_steps", optimizer_steps},
                   {"generators", generators},
                   {"run", info.run}});
  std::map<std::string, std::string> metadata = info.metadata;
  metadata["roentgen"] = meta.dump();
  fs::create_directories(dir);
  save_safetensors((dir / (tag + ".safetensors")).string(), tensors, metadata);
  write_file_atomic((dir / (tag + ".json")).string(), meta.dump(2) + "\n");
}

json read_checkpoint_json(const fs::path& dir, const std::string& tag, const std::string& kind) {
  const fs::path json_path = dir / (tag + ".json");
  RG_CHECK(fs::exists(json_path), "checkpoint ", json_path.string(), " does not exist");
  std::ifstream in(json_path);
  const json meta = json::parse(in, nullptr, false);
  RG_CHECK(!meta.is_discarded() && meta.is_object(), "checkpoint ", json_path.string(),
           " is not valid JSON (corrupt or truncated)");
  const std::string format = meta.value("format", "");
  RG_CHECK(format == kFormat, "checkpoint ", json_path.string(), " has format '", format,
           "', expected '", kFormat, "' (written by another program or an older roentgen)");
  const std::string got = meta.value("kind", "");
  RG_CHECK(got == kind, "checkpoint ", json_path.string(), " belongs to a '", got,
           "' run, not to a '", kind, "' run");
  return meta;
}

LoopProgress load_checkpoint(const fs::path& dir, const std::string& tag, const TrainState& state,
                             const std::string& kind, bool whole_state) {
  const json meta = read_checkpoint_json(dir, tag, kind);
  const fs::path st_path = dir / (tag + ".safetensors");
  RG_CHECK(fs::exists(st_path), "checkpoint ", st_path.string(), " does not exist (its JSON does)");
  SafetensorsFile file = load_safetensors(st_path.string());
  const json inner = json::parse(file.metadata["roentgen"], nullptr, false);
  RG_CHECK(!inner.is_discarded() &&
               inner.value("global_step", int64_t{-1}) == meta.at("global_step").get<int64_t>(),
           "checkpoint ", st_path.string(), " does not belong to ", (dir / (tag + ".json")).string(),
           " (a save was interrupted between the two files); use the other checkpoint");
  if (whole_state) {
    std::set<std::string> wanted;
    for (const auto& [name, module] : state.modules) wanted.insert(name);
    for (const auto& [tname, t] : file.tensors) {
      if (tname.rfind(kOptimizerTag, 0) == 0) continue;  // optimizer state
      const std::string network = tname.substr(0, tname.find('.'));
      RG_CHECK(wanted.contains(network), "checkpoint ", st_path.string(), " holds network '", network,
               "', which this run does not build: it was trained with other settings (see its "
               "config.json); resume with those");
    }
  }
  try {
    for (const auto& [name, module] : state.modules) {
      const std::string prefix = name + ".";
      NamedTensors mine;
      for (auto& [tname, t] : file.tensors) {
        if (tname.rfind(prefix, 0) == 0) mine.emplace_back(tname.substr(prefix.size()), t);
      }
      RG_CHECK(!mine.empty() || module->named_parameters().empty(), "holds no network '", name, "', which this run builds: it was trained "
               "with other settings (see its config.json)");
      load_module_state(*module, mine);
    }
  } catch (const Error& e) {
    RG_FAIL("checkpoint ", st_path.string(), ": ", e.what());
  }
  for (const auto& [name, opt] : state.optimizers) {
    const std::string prefix = optimizer_prefix(name);
    std::map<std::string, Tensor> by_name;
    for (auto& [tname, t] : file.tensors) {
      if (tname.rfind(prefix, 0) == 0) by_name.emplace(tname.substr(prefix.size()), t);
    }
    for (auto& [slot_name, slot] : opt->state()) {
      auto it = by_name.find(slot_name);
      RG_CHECK(it != by_name.end(), "checkpoint ", st_path.string(), " lacks optimizer state ",
               prefix, slot_name);
      Tensor target = slot;
      target.copy_(it->second);
    }
    const json& steps = meta.at("optimizer_steps");
    RG_CHECK(steps.contains(name), "checkpoint ", st_path.string(), " lacks optimizer ", name);
    opt->set_step_count(steps.at(name).get<int64_t>());
  }
  for (const auto& [name, gen] : state.generators) {
    const json& gens = meta.at("generators");
    RG_CHECK(gens.contains(name), "checkpoint ", st_path.string(), " lacks generator ", name);
    gen->set_state(gens.at(name).at("seed").get<uint64_t>(),
                   gens.at(name).at("offset").get<uint64_t>());
  }
  LoopProgress p;
  p.epoch = meta.at("epoch").get<int64_t>();
  p.step_in_epoch = meta.at("step_in_epoch").get<int64_t>();
  p.global_step = meta.at("global_step").get<int64_t>();
  p.best_score = meta.at("best_score").get<double>();
  p.best_epoch = meta.at("best_epoch").get<int64_t>();
  p.batch_size = meta.value("batch_size", int64_t{0});
  p.world_size = meta.value("world_size", int64_t{0});
  return p;
}

void share_resumed_state(dist::Communicator& comm, LoopProgress& p, const TrainState& state) {
  // Integers, doubles and generator positions travel as raw 8-byte words (exact, whatever
  // their range).
  std::vector<int64_t> words{p.epoch, p.step_in_epoch, p.global_step, 0, p.best_epoch,
                             p.batch_size, p.world_size};
  std::memcpy(&words[3], &p.best_score, 8);
  for (const auto& [name, opt] : state.optimizers) words.push_back(opt->step_count());
  for (const auto& [name, gen] : state.generators) {
    int64_t seed = 0, offset = 0;
    const uint64_t s = gen->seed(), o = gen->offset();
    std::memcpy(&seed, &s, 8);
    std::memcpy(&offset, &o, 8);
    words.push_back(seed);
    words.push_back(offset);
  }
  Tensor packed = Tensor::empty({static_cast<int64_t>(words.size())}, DType::F64);
  std::memcpy(packed.raw_data(), words.data(), words.size() * 8);
  comm.broadcast(packed, 0);
  std::memcpy(words.data(), packed.raw_data(), words.size() * 8);
  size_t k = 0;
  p.epoch = words[k++];
  p.step_in_epoch = words[k++];
  p.global_step = words[k++];
  std::memcpy(&p.best_score, &words[k++], 8);
  p.best_epoch = words[k++];
  p.batch_size = words[k++];
  p.world_size = words[k++];
  for (const auto& [name, opt] : state.optimizers) opt->set_step_count(words[k++]);
  for (const auto& [name, gen] : state.generators) {
    uint64_t s = 0, o = 0;
    std::memcpy(&s, &words[k++], 8);
    std::memcpy(&o, &words[k++], 8);
    gen->set_state(s, o);
  }
  for (const auto& [name, module] : state.modules) dist::broadcast_module_state(*module, comm);
  for (const auto& [name, opt] : state.optimizers) {
    std::vector<Tensor> slots;
    for (auto& [slot_name, t] : opt->state()) slots.push_back(t);
    dist::broadcast_tensors(slots, comm);
  }
}

std::pair<std::filesystem::path, std::string> checkpoint_location(const std::string& given,
                                                                  const std::string& flag,
                                                                  const std::string& app) {
  namespace fs = std::filesystem;
  RG_CHECK(!given.empty(), flag, ": no checkpoint given");
  std::error_code ec;
  fs::path p(given);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "checkpoints" / "best.json", ec)) return {p / "checkpoints", "best"};
    if (fs::exists(p / "best.json", ec)) return {p, "best"};
    RG_FAIL(flag, ": directory ", given, " holds no checkpoints/best.json (is it a ", app, " run?)");
  }
  if (p.extension() == ".safetensors" || p.extension() == ".json") p.replace_extension();
  RG_CHECK(fs::exists(fs::path(p.string() + ".json"), ec) &&
               fs::exists(fs::path(p.string() + ".safetensors"), ec),
           flag, ": ", given, " does not exist (expected ", p.string(), ".json and ",
           p.string(), ".safetensors)");
  return {p.parent_path(), p.filename().string()};
}

TrainState gan_pair_state(nn::Module* g, nn::Module* d, optim::Optimizer* opt_g, optim::Optimizer* opt_d,
                          Generator* train_gen) {
  TrainState s;
  s.modules.emplace_back("G", g);
  if (d) s.modules.emplace_back("D", d);
  s.optimizers.emplace_back("G", opt_g);
  if (opt_d) s.optimizers.emplace_back("D", opt_d);
  s.generators.emplace_back("train", train_gen);
  s.generators.emplace_back("dropout", &default_generator());
  return s;
}

}  // namespace rg::train
