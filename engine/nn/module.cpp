#include "engine/nn/module.h"

namespace rg::nn {

Tensor Module::forward(const Tensor&) {
  RG_FAIL(type_name_, " has no single-input forward; call its own forward overload");
}

void Module::register_parameter(const std::string& name, Tensor* slot) {
  RG_CHECK(slot != nullptr && slot->defined(), type_name_, ": parameter '", name,
           "' registered undefined");
  slot->set_requires_grad(true);
  parameters_.emplace_back(name, slot);
}

void Module::register_buffer(const std::string& name, Tensor* slot) {
  RG_CHECK(slot != nullptr && slot->defined(), type_name_, ": buffer '", name,
           "' registered undefined");
  buffers_.emplace_back(name, slot);
}

void Module::collect(const std::string& prefix, bool parameters,
                     std::vector<std::pair<std::string, Tensor*>>& out) const {
  for (const auto& [name, slot] : parameters ? parameters_ : buffers_) {
    out.emplace_back(prefix + name, slot);
  }
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", parameters, out);
}

std::vector<std::pair<std::string, Tensor*>> Module::named_parameter_slots() {
  std::vector<std::pair<std::string, Tensor*>> out;
  collect("", true, out);
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::named_buffer_slots() {
  std::vector<std::pair<std::string, Tensor*>> out;
  collect("", false, out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", true, slots);
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, slot] : slots) out.emplace_back(name, *slot);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor*>> slots;
  collect("", false, slots);
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, slot] : slots) out.emplace_back(name, *slot);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (const Tensor& t : parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  apply([on](Module& m) { m.training_ = on; });
}

void Module::zero_grad() {
  for (Tensor& t : parameters()) t.zero_grad();
}

void Module::set_requires_grad(bool requires_grad) {
  for (Tensor& t : parameters()) t.set_requires_grad(requires_grad);
}

void Module::to(Device device) {
  for (auto& [name, slot] : named_parameter_slots()) {
    if (slot->device() == device) continue;
    const bool flag = slot->requires_grad();
    *slot = slot->detach().to(device);
    slot->set_requires_grad(flag);
  }
  for (auto& [name, slot] : named_buffer_slots()) {
    if (slot->device() != device) *slot = slot->to(device);
  }
}

void Module::apply(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& [name, child] : children_) child->apply(fn);
}

}  // namespace rg::nn
