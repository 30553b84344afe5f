#include "engine/autograd.h"

#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include "engine/core_backend.h"
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
GradModeGuard::GradModeGuard(bool enabled) : previous_(g_grad_mode) { g_grad_mode = enabled; }
GradModeGuard::~GradModeGuard() { g_grad_mode = previous_; }

Tensor Node::saved_output(const Tensor& saved) {
  if (!g_grad_mode || !saved.defined()) return saved;
  Tensor out = saved.detach();
  out.set_grad_fn(shared_from_this());
  return out;
}

AccumulateGrad::AccumulateGrad(Tensor leaf) : Node("accumulate_grad"), leaf_(std::move(leaf)) {}

std::vector<Tensor> AccumulateGrad::backward(const Tensor& grad_output) {
  // .grad holds values, never a graph: a recorded gradient stored on a parameter would keep the
  // graph (and, through its saved tensors, the parameter itself) alive.
  NoGradGuard no_grad;
  Tensor g = grad_output.detach();
  if (g.dtype() != leaf_.dtype()) g = g.to(leaf_.dtype());
  if (g.device() != leaf_.device()) g = g.to(leaf_.device());
  Tensor current = leaf_.grad();
  if (!current.defined()) {
    // Own the buffer: the incoming gradient may be shared with other inputs of an op.
    leaf_.set_grad(g.clone());
  } else {
    core_backend::accumulate_into(current, g);
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

namespace {

// Stands in for the backward of a node that cannot record its backward (raw kernels only): the
// gradients such a node returned under create_graph get this as grad_fn, so differentiating
// them again fails with the op's name instead of silently treating them as constants.
class DoubleBackwardUnsupported final : public Node {
 public:
  explicit DoubleBackwardUnsupported(std::string op)
      : Node(op + "_backward"), op_(std::move(op)) {}
  std::vector<Tensor> backward(const Tensor&) override {
    RG_FAIL("double backward not supported for op '", op_, "': its gradient was computed with "
            "create_graph=true and is being differentiated again (docs/design.md lists the ops "
            "with double backward)");
  }

 private:
  std::string op_;
};

// The validated gradient that starts the walk at `root`.
Tensor root_gradient(const Tensor& root, const Tensor& grad_in, const char* api) {
  RG_CHECK(root.defined(), api, ": an output tensor is undefined");
  RG_CHECK(root.requires_grad(), api, ": tensor of shape ", shape_str(root.shape()),
           " does not require grad (no input of its computation requires grad, or it was "
           "computed under NoGradGuard / detach())");
  if (!grad_in.defined()) {
    RG_CHECK(root.numel() == 1, api, ": tensor of shape ", shape_str(root.shape()),
             " is not a scalar; pass an explicit gradient of the same shape");
    return Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  RG_CHECK(grad_in.shape() == root.shape(), api, ": gradient shape ", shape_str(grad_in.shape()),
           " differs from tensor shape ", shape_str(root.shape()));
  return grad_in;
}

// What grad() asks for: the gradient arriving at the grad_fn of a non-leaf input, or at the
// AccumulateGrad nodes of a leaf input (a leaf gets one such node per use).
struct Targets {
  std::unordered_map<Node*, std::vector<size_t>> nodes;
  std::unordered_map<const TensorImpl*, std::vector<size_t>> leaves;

  const std::vector<size_t>* find(Node* n) const {
    if (auto it = nodes.find(n); it != nodes.end()) return &it->second;
    if (auto* acc = dynamic_cast<AccumulateGrad*>(n)) {
      if (auto it = leaves.find(acc->leaf().impl()); it != leaves.end()) return &it->second;
    }
    return nullptr;
  }
};

// The one graph walk behind Tensor::backward (targets == nullptr: gradients accumulate into the
// leaves) and grad() (targets given: gradients are captured into `captured`, AccumulateGrad
// nodes never run, and only nodes on a path to a target run). With create_graph the nodes run
// with grad mode on, so their backward is recorded; with retain_graph the nodes keep their
// saved tensors and edges.
void execute(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
             const Targets* targets, bool create_graph, bool retain_graph,
             std::vector<Tensor>* captured) {
  GradModeGuard grad_mode(create_graph);  // first order: backward computations are not recorded

  std::vector<std::shared_ptr<Node>> root_nodes;
  for (const Tensor& root : roots) {
    root_nodes.push_back(gradient_edge(root));
    RG_CHECK(!root_nodes.back()->released(), "backward: the graph of this tensor was already "
             "freed by an earlier backward; recompute the forward pass");
  }

  // Count, for every node, how many edges point at it, so a node runs only after all the
  // gradients flowing into it have been summed. `order` lists the nodes found (grad() needs it).
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> order;
  {
    std::vector<Node*> stack;
    std::unordered_set<Node*> seen;
    for (const auto& r : root_nodes) {
      if (seen.insert(r.get()).second) stack.push_back(r.get());
    }
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      if (targets) order.push_back(n);
      for (const auto& next : n->next) {
        if (!next) continue;
        dependencies[next.get()]++;
        if (seen.insert(next.get()).second) stack.push_back(next.get());
      }
    }
  }

  // grad(): a node is needed when it is a target or leads to one. Decided children first, over a
  // topological order of the nodes (Kahn on a copy of the counts), without recursion, so deep
  // graphs cannot overflow the stack.
  std::unordered_set<Node*> needed;
  if (targets) {
    std::unordered_map<Node*, int> remaining = dependencies;
    std::vector<Node*> topo, frontier;
    for (Node* n : order) {
      if (remaining[n] == 0) frontier.push_back(n);
    }
    while (!frontier.empty()) {
      Node* n = frontier.back();
      frontier.pop_back();
      topo.push_back(n);
      for (const auto& next : n->next) {
        if (next && --remaining[next.get()] == 0) frontier.push_back(next.get());
      }
    }
    for (auto it = topo.rbegin(); it != topo.rend(); ++it) {
      Node* n = *it;
      bool need = targets->find(n) != nullptr;
      for (const auto& next : n->next) need = need || (next && needed.count(next.get()) > 0);
      if (need) needed.insert(n);
    }
  }

  std::unordered_map<Node*, Tensor> pending;  // summed incoming gradient per node
  std::vector<std::shared_ptr<Node>> ready;
  for (size_t r = 0; r < root_nodes.size(); ++r) {
    Node* n = root_nodes[r].get();
    auto it = pending.find(n);
    if (it == pending.end()) {
      pending[n] = root_grads[r];
      if (dependencies[n] == 0) ready.push_back(root_nodes[r]);
    } else {
      it->second = core_backend::add_gradients(it->second, root_grads[r]);
    }
  }
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
    bool run = g.defined();
    if (targets) {
      if (const std::vector<size_t>* slots = targets->find(node.get()); slots && g.defined()) {
        for (size_t slot : *slots) {
          Tensor& c = (*captured)[slot];
          c = c.defined() ? core_backend::add_gradients(c, g) : g;
        }
      }
      // Leaves' .grad stay untouched; other nodes run only when they lead to a target.
      run = run && dynamic_cast<AccumulateGrad*>(node.get()) == nullptr;
      if (run) {
        std::vector<bool> skip(node->next.size(), false);
        bool any = false;
        for (size_t i = 0; i < node->next.size(); ++i) {
          skip[i] = !node->next[i] || needed.count(node->next[i].get()) == 0;
          any = any || !skip[i];
        }
        run = any;
        if (run) node->set_skipped_inputs(std::move(skip));  // cleared after backward()
      }
    }
    if (run) {
      // The skip mask holds for this call only, also when the backward throws (the node may be
      // walked again by a later backward that wants every edge).
      struct ClearSkip {
        Node* node;
        ~ClearSkip() { node->set_skipped_inputs({}); }
      } clear_skip{node.get()};
      // Op-level NVTX range (RG_NVTX=1): one per backward node, named after its op.
      ProfileRange range(profiling_enabled() ? node->name() + " backward" : std::string());
      input_grads = node->backward(g);
      if (create_graph && !node->supports_double_backward()) {
        for (Tensor& ig : input_grads) {
          if (!ig.defined()) continue;
          ig = ig.detach();
          ig.set_grad_fn(std::make_shared<DoubleBackwardUnsupported>(node->name()));
        }
      }
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
          it->second = core_backend::add_gradients(it->second, input_grads[i]);
        }
      }
      if (--dependencies[next.get()] == 0) ready.push_back(next);
    }
    if (!retain_graph) {
      node->release_saved();
      node->mark_released();
      node->next.clear();
    }
  }
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_in) {
  Tensor grad = root_gradient(root, grad_in, "backward");
  execute({root}, {grad}, nullptr, false, false, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool create_graph,
                         std::optional<bool> retain_graph, bool allow_unused) {
  RG_CHECK(!outputs.empty(), "grad: no outputs given");
  RG_CHECK(!inputs.empty(), "grad: no inputs given");
  RG_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), "grad: ",
           grad_outputs.size(), " grad_outputs for ", outputs.size(), " outputs");
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < outputs.size(); ++i) {
    root_grads.push_back(
        root_gradient(outputs[i], grad_outputs.empty() ? Tensor() : grad_outputs[i], "grad"));
  }
  Targets targets;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    RG_CHECK(t.defined(), "grad: input ", i, " is undefined");
    RG_CHECK(t.requires_grad(), "grad: input ", i, " of shape ", shape_str(t.shape()),
             " does not require grad");
    if (t.grad_fn()) {
      targets.nodes[t.grad_fn().get()].push_back(i);
    } else {
      targets.leaves[t.impl()].push_back(i);
    }
  }
  std::vector<Tensor> result(inputs.size());
  execute(outputs, root_grads, &targets, create_graph, retain_graph.value_or(create_graph),
          &result);
  GradModeGuard grad_mode(create_graph);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!result[i].defined()) {
      RG_CHECK(allow_unused, "grad: input ", i, " of shape ", shape_str(inputs[i].shape()),
               " is not reached from the outputs (its gradient is undefined); pass "
               "allow_unused=true to get an undefined tensor instead");
      continue;
    }
    // A node that returned a gradient of the wrong shape is a bug in that op's backward; say so
    // here rather than hand it on to an optimizer or a penalty.
    RG_CHECK(result[i].shape() == inputs[i].shape(), "grad: the gradient for input ", i,
             " has shape ", shape_str(result[i].shape()), " but the input has shape ",
             shape_str(inputs[i].shape()), " (a backward returned a wrongly shaped gradient)");
    if (result[i].dtype() != inputs[i].dtype()) result[i] = result[i].to(inputs[i].dtype());
    if (result[i].device() != inputs[i].device()) result[i] = result[i].to(inputs[i].device());
  }
  return result;
}

}  // namespace rg
