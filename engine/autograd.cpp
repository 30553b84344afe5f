#include "engine/autograd.h"

#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops/ops.h"
#include "engine/profile.h"
#include "engine/tensor_impl.h"

namespace rg {

namespace {
std::atomic<int64_t> g_live_nodes{0};
thread_local bool g_grad_mode = true;
}  // namespace

Node::Node(std::string name) : name_(std::move(name)) { g_live_nodes.fetch_add(1); }
Node::~Node() { g_live_nodes.fetch_sub(1); }
int64_t Node::live_count() { return g_live_nodes.load(); }

bool grad_mode_enabled() { return g_grad_mode; }
NoGradGuard::NoGradGuard() : previous_(g_grad_mode) { g_grad_mode = false; }
NoGradGuard::~NoGradGuard() { g_grad_mode = previous_; }

AccumulateGrad::AccumulateGrad(Tensor leaf) : Node("accumulate_grad"), leaf_(std::move(leaf)) {}

std::vector<Tensor> AccumulateGrad::backward(const Tensor& grad_output) {
  Tensor g = grad_output;
  if (g.dtype() != leaf_.dtype()) g = g.to(leaf_.dtype());
  if (g.device() != leaf_.device()) g = g.to(leaf_.device());
  Tensor current = leaf_.grad();
  if (!current.defined()) {
    // Own the buffer: the incoming gradient may be shared with other inputs of an op.
    leaf_.set_grad(g.clone());
  } else {
    add_(current, g);
  }
  for (const auto& hook : leaf_.impl()->post_accumulate_hooks) hook(leaf_);
  return {};
}

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  return std::make_shared<AccumulateGrad>(t);  // same handle: the grad lands on the leaf
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_mode) return false;
  for (const Tensor* t : inputs) {
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  }
  return false;
}

void record(Tensor& output, const std::shared_ptr<Node>& node,
            std::initializer_list<const Tensor*> inputs) {
  node->next.clear();
  for (const Tensor* t : inputs) node->next.push_back(t ? gradient_edge(*t) : nullptr);
  output.set_grad_fn(node);
}

void record(Tensor& output, const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs) {
  node->next.clear();
  for (const Tensor& t : inputs) node->next.push_back(gradient_edge(t));
  output.set_grad_fn(node);
}

void run_backward(const Tensor& root, const Tensor& grad_in) {
  RG_CHECK(root.requires_grad(), "backward: tensor of shape ", shape_str(root.shape()),
           " does not require grad (no input of its computation requires grad, or it was "
           "computed under NoGradGuard / detach())");
  Tensor grad = grad_in;
  if (!grad.defined()) {
    RG_CHECK(root.numel() == 1, "backward: tensor of shape ", shape_str(root.shape()),
             " is not a scalar; pass an explicit gradient of the same shape");
    grad = Tensor::ones(root.shape(), root.dtype(), root.device());
  } else {
    RG_CHECK(grad.shape() == root.shape(), "backward: gradient shape ", shape_str(grad.shape()),
             " differs from tensor shape ", shape_str(root.shape()));
  }

  NoGradGuard no_grad;  // backward computations are not themselves recorded
  std::shared_ptr<Node> root_node = gradient_edge(root);
  RG_CHECK(!root_node->released(), "backward: the graph of this tensor was already freed by an "
           "earlier backward; recompute the forward pass");

  // Count, for every node, how many edges point at it, so a node runs only after all the
  // gradients flowing into it have been summed.
  std::unordered_map<Node*, int> dependencies;
  {
    std::vector<Node*> stack{root_node.get()};
    std::unordered_set<Node*> seen{root_node.get()};
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (const auto& next : n->next) {
        if (!next) continue;
        dependencies[next.get()]++;
        if (seen.insert(next.get()).second) stack.push_back(next.get());
      }
    }
  }

  std::unordered_map<Node*, Tensor> pending;  // summed incoming gradient per node
  pending[root_node.get()] = grad;
  std::vector<std::shared_ptr<Node>> ready{root_node};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    RG_CHECK(!node->released(), "backward: node '", node->name(),
             "' was already freed by an earlier backward; recompute the forward pass");
    Tensor g;
    if (auto it = pending.find(node.get()); it != pending.end()) {
      g = std::move(it->second);
      pending.erase(it);
    }
    // A node no gradient reached (every path into it was cut) still runs so that its inputs'
    // dependency counts settle and its saved tensors are freed; it just computes nothing.
    std::vector<Tensor> input_grads;
    if (g.defined()) {
      // Op-level NVTX range (RG_NVTX=1): one per backward node, named after its op.
      ProfileRange range(profiling_enabled() ? node->name() + " backward" : std::string());
      input_grads = node->backward(g);
    }
    g = Tensor();
    for (size_t i = 0; i < node->next.size(); ++i) {
      const std::shared_ptr<Node>& next = node->next[i];
      if (!next) continue;
      if (i < input_grads.size() && input_grads[i].defined()) {
        auto it = pending.find(next.get());
        if (it == pending.end() || !it->second.defined()) {
          pending[next.get()] = std::move(input_grads[i]);
        } else {
          it->second = add(it->second, input_grads[i]);
        }
      }
      if (--dependencies[next.get()] == 0) ready.push_back(next);
    }
    node->release_saved();
    node->mark_released();
    node->next.clear();
  }
}

}  // namespace rg
