// Modules: named parameters, buffers and child modules, train/eval mode. A module owns its
// tensors as members and registers pointers to them, so to(Device) and checkpoint loading can
// replace them in place. Modules are held by shared_ptr and not copyable.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace rg::nn {

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Single-input modules implement forward; modules with several inputs add their own call.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  const std::string& type_name() const { return type_name_; }

  // Recursive, with dotted names ("down.0.weight"), in registration order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<Tensor> parameters() const;
  // Pointers to the registered slots, for code that replaces tensors (checkpoint loading).
  std::vector<std::pair<std::string, Tensor*>> named_parameter_slots();
  std::vector<std::pair<std::string, Tensor*>> named_buffer_slots();
  int64_t parameter_count() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Drops the gradients of every parameter.
  void zero_grad();
  // Freezes (false) or unfreezes (true) every parameter: the GAN loop freezes D during the G step.
  void set_requires_grad(bool requires_grad);
  // Moves (or converts) every parameter and buffer; parameters stay leaves with their flag.
  void to(Device device);
  // Calls fn on this module and every descendant, parents first.
  void apply(const std::function<void(Module&)>& fn);
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }

 protected:
  void register_parameter(const std::string& name, Tensor* slot);
  void register_buffer(const std::string& name, Tensor* slot);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }

 private:
  void collect(const std::string& prefix, bool parameters,
               std::vector<std::pair<std::string, Tensor*>>& out) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor*>> parameters_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace rg::nn
