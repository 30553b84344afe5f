// The whole file is CUDA-only: engine/CMakeLists.txt compiles engine/dist/*.cpp in every build.
#if RG_WITH_CUDA

#include "engine/dist/nccl_communicator.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "engine/cuda/runtime.h"
#include "engine/error.h"

namespace rg::dist {

void nccl_check(ncclResult_t result, const char* call, const char* file, int line) {
  if (result == ncclSuccess) return;
  const char* last = ncclGetLastError(nullptr);
  RG_FAIL("NCCL error in ", call, " at ", file, ":", line, ": ", ncclGetErrorString(result),
          last != nullptr && last[0] != '\0' ? std::string(" (") + last + ")" : std::string());
}

double nccl_timeout_from_environment() {
  constexpr double kDefault = 600.0;
  const char* env = std::getenv("RG_NCCL_TIMEOUT_S");
  if (env == nullptr || env[0] == '\0') return kDefault;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  RG_CHECK(end != env && *end == '\0' && v > 0, "RG_NCCL_TIMEOUT_S='", env,
           "': expected a number of seconds > 0");
  return v;
}

namespace {

using Clock = std::chrono::steady_clock;

// Sets the current device for a scope and restores the caller's (NCCL and event calls act on
// the current device; the caller's choice is theirs).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    RG_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) RG_CUDA_CHECK(cudaSetDevice(device));
    changed_ = previous_ != device;
  }
  ~DeviceScope() {
    if (changed_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

ncclDataType_t nccl_sum_type(DType t, const char* op) {
  switch (t) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    default:
      break;
  }
  RG_FAIL(op, ": NCCL sums f32, f64, bf16 or f16 tensors, got ", dtype_name(t));
}

std::string describe(const char* op, uint64_t seq, const Tensor& t) {
  return detail::make_message(op, " #", seq, " (", dtype_name(t.dtype()), ", ", t.numel(),
                              " elements, shape ", shape_str(t.shape()), ")");
}

// A collective enqueued and not yet seen complete by the watchdog.
struct InFlight {
  std::string what;
  Clock::time_point enqueued;
  std::shared_ptr<cuda::Event> done;
};

}  // namespace

struct NcclCommunicator::Impl {
  Communicator& host;
  int device;
  NcclOptions options;
  double timeout_s;
  ncclComm_t comm = nullptr;
  std::unique_ptr<cuda::Stream> stream;
  std::unique_ptr<cuda::Event> ready;  // re-recorded on the caller's stream before each collective

  std::mutex issue_mu;  // one collective is issued at a time (NCCL comms are not thread-safe)
  uint64_t next_seq = 0;
  std::mutex flight_mu;  // in_flight is shared with the watchdog
  std::deque<InFlight> in_flight;
  std::atomic<bool> failing{false};
  std::atomic<bool> destroyed{false};

  std::mutex watchdog_mu;
  std::condition_variable watchdog_cv;
  bool watchdog_stop = false;
  std::thread watchdog;

  Impl(Communicator& h, int dev, NcclOptions opts)
      : host(h),
        device(dev),
        options(opts),
        timeout_s(opts.timeout_s > 0 ? opts.timeout_s : nccl_timeout_from_environment()) {}

  // Stops the whole job: NCCL first (so peers blocked in our collectives are released and no
  // kernel keeps spinning), then the host communicator's abort path. Never returns; a second
  // caller (the other thread) just waits to be terminated.
  [[noreturn]] void fail(int code, const std::string& message) {
    if (failing.exchange(true)) {
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    if (comm != nullptr && !destroyed.load()) ncclCommAbort(comm);
    if (host.name() == "local") {
      // LocalCommunicator::abort runs exit handlers; from the watchdog thread, with the main
      // thread still running, that is not safe: print the same kind of line and leave now.
      std::fprintf(stderr, "roentgen: rank %d of %d failed: %s\n", host.rank(), host.world_size(),
                   message.c_str());
      std::fflush(stderr);
      std::_Exit(code);
    }
    host.abort(code, message);
    std::_Exit(code);  // abort() does not return; a virtual call is not known to be [[noreturn]]
  }

  [[noreturn]] void fail(const std::string& message) {
    fail(options.abort_code, detail::make_message("NCCL on cuda:", device, ": ", message));
  }

  std::string oldest_in_flight() {
    std::lock_guard<std::mutex> lock(flight_mu);
    if (in_flight.empty()) return "no collective in flight";
    return "oldest collective in flight: " + in_flight.front().what;
  }

  void check_async_error() {
    if (comm == nullptr || destroyed.load()) return;
    ncclResult_t async = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm, &async);
    if (r != ncclSuccess) {
      fail(detail::make_message("ncclCommGetAsyncError failed: ", ncclGetErrorString(r), "; ",
                                oldest_in_flight()));
    }
    if (async != ncclSuccess && async != ncclInProgress) {
      const char* last = ncclGetLastError(comm);
      fail(detail::make_message(
          "asynchronous error ", ncclGetErrorString(async),
          last != nullptr && last[0] != '\0' ? std::string(" (") + last + ")" : std::string(), "; ",
          oldest_in_flight()));
    }
  }

  // Retires completed collectives; fails on a CUDA error or an overdue collective.
  void check_in_flight() {
    std::string problem;
    {
      std::lock_guard<std::mutex> lock(flight_mu);
      while (!in_flight.empty()) {
        const InFlight& f = in_flight.front();
        const cudaError_t q = cudaEventQuery(f.done->get());
        if (q == cudaSuccess) {
          in_flight.pop_front();
          continue;
        }
        if (q == cudaErrorCudartUnloading) return;  // the process is exiting: nothing to watch
        if (q != cudaErrorNotReady) {
          problem = detail::make_message(f.what, " failed on the device: ", cudaGetErrorName(q),
                                         ": ", cudaGetErrorString(q));
          break;
        }
        const double waited = std::chrono::duration<double>(Clock::now() - f.enqueued).count();
        if (waited > timeout_s) {
          problem = detail::make_message(
              f.what, " did not complete within ", timeout_s, " s (enqueued ", waited,
              " s ago; RG_NCCL_TIMEOUT_S sets the limit): a rank stopped issuing collectives, "
              "issued them in a different order, or the interconnect hangs");
        }
        break;  // later collectives run after this one on the same stream
      }
    }
    if (!problem.empty()) fail(problem);
  }

  void check_health() {
    if (failing.load()) return;
    check_async_error();
    check_in_flight();
  }

  void watchdog_loop() {
    // Event queries act on the event's own context; the device is set for any other call.
    cudaSetDevice(device);
    // Relaxed capture mode for this thread: its event queries are "potentially unsafe" calls,
    // which, while another thread captures a CUDA graph in the (default) global mode, would
    // fail and invalidate that capture.
    cudaStreamCaptureMode relaxed = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&relaxed);
    const double interval_s = std::min(1.0, std::max(0.01, timeout_s / 10.0));
    const auto interval =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s));
    std::unique_lock<std::mutex> lock(watchdog_mu);
    while (!watchdog_stop) {
      watchdog_cv.wait_for(lock, interval, [&] { return watchdog_stop; });
      if (watchdog_stop) break;
      lock.unlock();
      try {
        check_health();
      } catch (const std::exception& e) {
        fail(detail::make_message("watchdog: ", e.what()));
      }
      lock.lock();
    }
  }

  void stop_watchdog() {
    {
      std::lock_guard<std::mutex> lock(watchdog_mu);
      watchdog_stop = true;
    }
    watchdog_cv.notify_all();
    if (watchdog.joinable()) watchdog.join();
  }

  void check_device_tensor(const Tensor& t, const char* op) const {
    RG_CHECK(t.defined(), op, ": undefined tensor");
    RG_CHECK(t.device() == Device::cuda(device), op, ": tensor on ", t.device().str(),
             ", but this NCCL communicator drives cuda:", device);
    RG_CHECK(t.is_contiguous(), op, ": tensor of shape ", shape_str(t.shape()),
             " is not contiguous");
  }

  // Steps 1-3 of the header: orders the collective after the caller's stream, enqueues it with
  // `call`, records and registers its completion event.
  std::shared_ptr<cuda::Event> enqueue(const char* op, const Tensor& t,
                                       const std::function<void(cudaStream_t)>& call) {
    RG_CHECK(!destroyed.load(), op, ": the NCCL communicator was destroyed");
    if (failing.load()) {
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // the job is being stopped
    }
    std::lock_guard<std::mutex> lock(issue_mu);
    DeviceScope scope(device);
    const cudaStream_t caller = cuda::current_stream(device);
    ready->record(caller);
    ready->wait(stream->get());
    call(stream->get());
    auto done = std::make_shared<cuda::Event>();
    done->record(stream->get());
    const uint64_t seq = next_seq++;
    {
      std::lock_guard<std::mutex> flight(flight_mu);
      in_flight.push_back({describe(op, seq, t), Clock::now(), done});
    }
    return done;
  }

  // Orders the caller's current stream after `done` (no host synchronization).
  void order_caller_after(const cuda::Event& done) {
    DeviceScope scope(device);
    done.wait(cuda::current_stream(device));
  }
};

namespace {

class NcclPending final : public PendingReduce {
 public:
  NcclPending(std::shared_ptr<NcclCommunicator::Impl> impl, std::shared_ptr<cuda::Event> done,
              Tensor keep_alive)
      : impl_(std::move(impl)), done_(std::move(done)), keep_alive_(std::move(keep_alive)) {}
  ~NcclPending() override {
    try {
      wait();
    } catch (const std::exception& e) {
      std::fprintf(stderr,
                   "roentgen: an NCCL all-reduce failed while its handle was destroyed: %s\n",
                   e.what());
    }
  }
  void wait() override {
    if (!done_) return;
    impl_->check_async_error();
    impl_->order_caller_after(*done_);
    done_.reset();
    // The caller's stream now runs after the collective: a stream-ordered free of the buffer
    // can no longer overtake it.
    keep_alive_ = Tensor();
  }
  bool test() override {
    if (!done_) return true;
    const cudaError_t q = cudaEventQuery(done_->get());
    if (q == cudaSuccess) return true;
    RG_CHECK(q == cudaErrorNotReady, "NCCL all-reduce on cuda:", impl_->device,
             " failed on the device: ", cudaGetErrorName(q), ": ", cudaGetErrorString(q));
    return false;
  }

 private:
  std::shared_ptr<NcclCommunicator::Impl> impl_;
  std::shared_ptr<cuda::Event> done_;
  Tensor keep_alive_;
};

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& host, int device, NcclOptions options)
    : impl_(std::make_shared<Impl>(host, device, options)) {
  const int count = cuda_device_count();
  RG_CHECK(device >= 0 && device < count, "NCCL communicator: cuda:", device, " does not exist (",
           count, " CUDA devices visible to rank ", host.rank(), ")");
  Impl& s = *impl_;
  // The caller's current device is theirs: restored when the constructor returns (the
  // communicator's calls set its device themselves).
  DeviceScope scope(device);
  int least = 0, greatest = 0;
  RG_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  s.stream = std::make_unique<cuda::Stream>(device, greatest);  // numerically lowest = highest
  s.ready = std::make_unique<cuda::Event>();

  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (host.rank() == 0) RG_NCCL_CHECK(ncclGetUniqueId(&id));
  if (host.world_size() > 1) {
    Tensor bytes = Tensor::empty({static_cast<int64_t>(sizeof(id))}, DType::U8);
    std::memcpy(bytes.raw_data(), &id, sizeof(id));
    host.broadcast(bytes, 0);
    std::memcpy(&id, bytes.raw_data(), sizeof(id));
  }
  RG_NCCL_CHECK(ncclCommInitRank(&s.comm, host.world_size(), id, host.rank()));
  s.watchdog = std::thread([impl = impl_.get()] { impl->watchdog_loop(); });
}

NcclCommunicator::~NcclCommunicator() {
  Impl& s = *impl_;
  if (s.failing.load()) {
    // The other thread is stopping the job and uses this object until the process ends.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (std::uncaught_exceptions() > 0) {
    // Unwinding from an error: do not wait for collectives that may never finish (the error is
    // what the user needs to see); abort NCCL's side.
    s.stop_watchdog();
    s.destroyed = true;
    if (s.comm != nullptr) ncclCommAbort(s.comm);
    return;
  }
  // Let the collectives in flight finish, still under the timeout (the watchdog keeps running).
  for (;;) {
    s.check_health();
    {
      std::lock_guard<std::mutex> lock(s.flight_mu);
      if (s.in_flight.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  s.stop_watchdog();
  s.destroyed = true;
  if (s.comm != nullptr) {
    const ncclResult_t r = ncclCommDestroy(s.comm);
    if (r != ncclSuccess) {
      std::fprintf(stderr, "roentgen: ncclCommDestroy failed: %s\n", ncclGetErrorString(r));
    }
  }
}

int NcclCommunicator::rank() const {
  return impl_->host.rank();
}
int NcclCommunicator::world_size() const {
  return impl_->host.world_size();
}
int NcclCommunicator::local_rank() const {
  return impl_->host.local_rank();
}

bool NcclCommunicator::supports(Device device) const {
  return device.is_cpu() || device == Device::cuda(impl_->device);
}

int NcclCommunicator::device() const {
  return impl_->device;
}
cudaStream_t NcclCommunicator::stream() const {
  return impl_->stream->get();
}
double NcclCommunicator::timeout_s() const {
  return impl_->timeout_s;
}
void NcclCommunicator::check_health() {
  impl_->check_health();
}

std::unique_ptr<PendingReduce> NcclCommunicator::start_all_reduce_sum(Tensor& t) {
  const char* op = "start_all_reduce_sum";
  RG_CHECK(t.defined(), op, ": undefined tensor");
  if (t.device().is_cpu()) return impl_->host.start_all_reduce_sum(t);
  impl_->check_device_tensor(t, op);
  const ncclDataType_t type = nccl_sum_type(t.dtype(), op);
  if (t.numel() == 0) return std::make_unique<CompletedReduce>();
  void* p = t.raw_data();
  const size_t count = static_cast<size_t>(t.numel());
  ncclComm_t comm = impl_->comm;
  auto done = impl_->enqueue("all_reduce_sum", t, [&](cudaStream_t s) {
    RG_NCCL_CHECK(ncclAllReduce(p, p, count, type, ncclSum, comm, s));
  });
  return std::make_unique<NcclPending>(impl_, std::move(done), t);
}

void NcclCommunicator::all_reduce_sum(Tensor& t) {
  RG_CHECK(t.defined(), "all_reduce_sum: undefined tensor");
  if (t.device().is_cpu()) {
    impl_->host.all_reduce_sum(t);
    return;
  }
  start_all_reduce_sum(t)->wait();
}

void NcclCommunicator::broadcast(Tensor& t, int root) {
  RG_CHECK(t.defined(), "broadcast: undefined tensor");
  RG_CHECK(root >= 0 && root < world_size(), "broadcast: root ", root, " outside the world of ",
           world_size(), " ranks");
  if (t.device().is_cpu()) {
    impl_->host.broadcast(t, root);
    return;
  }
  impl_->check_device_tensor(t, "broadcast");
  if (t.numel() == 0) return;
  void* p = t.raw_data();
  const size_t bytes = t.nbytes();
  ncclComm_t comm = impl_->comm;
  auto done = impl_->enqueue("broadcast", t, [&](cudaStream_t s) {
    RG_NCCL_CHECK(ncclBroadcast(p, p, bytes, ncclUint8, root, comm, s));
  });
  impl_->check_async_error();
  impl_->order_caller_after(*done);
}

void NcclCommunicator::all_reduce_sum(std::vector<double>& values) {
  impl_->host.all_reduce_sum(values);
}

void NcclCommunicator::barrier() {
  impl_->host.barrier();
}

void NcclCommunicator::abort(int code, const std::string& message) {
  impl_->fail(code, message);
}

std::shared_ptr<Communicator> make_nccl_communicator(Communicator& host, int device) {
  return std::make_shared<NcclCommunicator>(host, device);
}

}  // namespace rg::dist

#endif  // RG_WITH_CUDA
