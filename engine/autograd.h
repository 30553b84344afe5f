// Reverse-mode automatic differentiation.
//
// Each differentiable op that sees an input requiring grad records a Node holding what its
// backward needs (saved tensors, shapes) and one Edge per input to the node that produced that
// input (or to an AccumulateGrad node for a leaf). Tensor::backward() walks the graph in
// topological order, sums the gradients arriving at each node, calls its backward, and frees
// every node it passed (saved tensors and edges), so activations are released as soon as the
// backward no longer needs them.
//
// Gradients of gradients: grad(..., create_graph=true) runs the same walk with grad mode on, so
// each node's backward is itself recorded (nodes express it with differentiable ops, or with a
// dedicated node whose backward is again made of ops), and keeps the forward graph alive for
// the second differentiation (docs/design.md, "Double backward").
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace rg {

// enable_shared_from_this: a node hands out its own saved output reconnected to itself
// (saved_output) when its backward is being recorded.
class Node : public std::enable_shared_from_this<Node> {
 public:
  explicit Node(std::string name);
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Gradients of the loss w.r.t. each input, given the gradient w.r.t. this node's output.
  // Entry i may be undefined when next[i] is null (input i needs no gradient).
  virtual std::vector<Tensor> backward(const Tensor& grad_output) = 0;
  // Drops saved tensors; called once the node's backward has run.
  virtual void release_saved() {}
  // True when backward(), called with grad mode on (create_graph), returns gradients recorded
  // as differentiable functions of its upstream gradient and saved tensors. A node whose
  // backward only runs raw kernels keeps the default: the engine then gives its gradients a
  // grad_fn that throws "double backward not supported for op X" if they are differentiated.
  virtual bool supports_double_backward() const { return false; }

  const std::string& name() const { return name_; }
  // next[i]: where the gradient of input i goes; null when input i needs no gradient.
  std::vector<std::shared_ptr<Node>> next;
  // True when next[i] is non-null and the running backward wants that gradient (grad() skips
  // edges that lead to none of its inputs): the op may skip computing it otherwise.
  bool needs_input_grad(size_t i) const {
    return i < next.size() && next[i] != nullptr && (i >= skip_.size() || !skip_[i]);
  }
  // Set by the engine around one backward() call; empty means every edge with a node.
  void set_skipped_inputs(std::vector<bool> skip) { skip_ = std::move(skip); }
  bool released() const { return released_; }
  void mark_released() { released_ = true; }

  // Number of Node objects alive in the process (tests use it to prove the graph is freed).
  static int64_t live_count();

 protected:
  // A saved output of this node, for use inside backward(). It is stored detached (a node that
  // held its own output with grad_fn set would own itself and never be freed); when grad mode is
  // on (create_graph) the returned handle is reconnected to this node, so the recorded backward
  // differentiates through the output back into the inputs.
  Tensor saved_output(const Tensor& saved);

 private:
  std::string name_;
  bool released_ = false;
  std::vector<bool> skip_;
};

// Sink for the gradient of a leaf tensor: adds it to leaf.grad().
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor leaf);
  std::vector<Tensor> backward(const Tensor& grad_output) override;
  bool supports_double_backward() const override { return true; }
  const Tensor& leaf() const { return leaf_; }

 private:
  Tensor leaf_;
};

// Gradient recording is on by default; NoGradGuard turns it off for its scope (thread-local).
bool grad_mode_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Sets grad mode to `enabled` for its scope (the engine turns it on for create_graph).
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled);
  ~GradModeGuard();
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

// The edge a gradient for `t` should follow: t's grad_fn, a new AccumulateGrad for a leaf that
// requires grad, or null.
std::shared_ptr<Node> gradient_edge(const Tensor& t);

// True when grad mode is on and any input requires grad: the op must record a node.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);

// Connects `node` to its inputs and makes it the grad_fn of `output`.
void record(Tensor& output, const std::shared_ptr<Node>& node,
            std::initializer_list<const Tensor*> inputs);
void record(Tensor& output, const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs);

// Runs the backward pass from `root` with gradient `grad` (see Tensor::backward).
void run_backward(const Tensor& root, const Tensor& grad);

// The gradients of `outputs` (weighted by `grad_outputs`) w.r.t. each of `inputs`, returned
// instead of accumulated into .grad (leaves' .grad are left untouched).
//  - grad_outputs: one per output, or empty; an undefined entry means ones for a one-element
//    output (a larger output needs an explicit gradient, as in Tensor::backward).
//  - create_graph: record the backward pass itself, so the results can be differentiated again
//    (a loss may contain them; Tensor::backward or grad on that loss reaches the inputs and
//    parameters through both the recorded backward and the forward graph). Ops without a
//    recorded backward make the results throw when they are differentiated (design.md).
//  - retain_graph: keep the graph's nodes and saved tensors after the call (default: the value
//    of create_graph, which needs them for the second differentiation). Without it the graph
//    is freed as by Tensor::backward. Retained nodes are freed when the last tensor that
//    refers to them is dropped.
//  - allow_unused: an input that no output depends on gets an undefined tensor instead of an
//    error.
// Only the part of the graph between the outputs and the inputs runs.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool create_graph = false,
                         std::optional<bool> retain_graph = std::nullopt,
                         bool allow_unused = false);

}  // namespace rg
