// Reverse-mode automatic differentiation.
//
// Each differentiable op that sees an input requiring grad records a Node holding what its
// backward needs (saved tensors, shapes) and one Edge per input to the node that produced that
// input (or to an AccumulateGrad node for a leaf). Tensor::backward() walks the graph in
// topological order, sums the gradients arriving at each node, calls its backward, and frees
// every node it passed (saved tensors and edges), so activations are released as soon as the
// backward no longer needs them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace rg {

class Node {
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

  const std::string& name() const { return name_; }
  // next[i]: where the gradient of input i goes; null when input i needs no gradient.
  std::vector<std::shared_ptr<Node>> next;
  // True when next[i] is non-null: the op may skip computing that gradient otherwise.
  bool needs_input_grad(size_t i) const { return i < next.size() && next[i] != nullptr; }
  bool released() const { return released_; }
  void mark_released() { released_ = true; }

  // Number of Node objects alive in the process (tests use it to prove the graph is freed).
  static int64_t live_count();

 private:
  std::string name_;
  bool released_ = false;
};

// Sink for the gradient of a leaf tensor: adds it to leaf.grad().
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor leaf);
  std::vector<Tensor> backward(const Tensor& grad_output) override;

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

}  // namespace rg
