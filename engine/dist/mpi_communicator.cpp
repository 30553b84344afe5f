// The communicators that need a launcher library: MPI between processes (and the choice, in
// init_from_environment, between it and the local one), and NCCL for device tensors
// (make_device_communicator). They live in the rg_dist library, apart from the engine, so that
// programs that never communicate (prepare_data, infer_seg, the NIfTI reader) do not link MPI
// or NCCL.
#include "engine/dist/communicator.h"

#if RG_WITH_MPI
#include <mpi.h>
#endif

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <mutex>

#if RG_WITH_CUDA
#include "engine/dist/nccl_communicator.h"
#endif

namespace rg::dist {

namespace {

#if RG_WITH_MPI
// Every MPI call goes through this: the communicator's error handler is MPI_ERRORS_RETURN, so a
// failing call returns here and becomes an rg::Error naming the call and where it was made.
void mpi_check(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) std::snprintf(text, sizeof(text), "code %d", rc);
  RG_FAIL("MPI error in ", call, " at ", file, ":", line, ": ", text);
}
#define RG_MPI_CHECK(call) ::rg::dist::mpi_check((call), #call, __FILE__, __LINE__)

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    default: break;
  }
  RG_FAIL("all_reduce_sum: no MPI sum for dtype ", dtype_name(t));
}

// MPI counts are int: larger tensors go in chunks of at most kMaxChunk elements.
constexpr int64_t kMaxChunk = INT_MAX / 2;

class MpiPending final : public PendingReduce {
 public:
  explicit MpiPending(std::vector<MPI_Request> requests) : requests_(std::move(requests)) {}
  ~MpiPending() override {
    try {
      wait();
    } catch (const std::exception& e) {
      std::cerr << "roentgen: an all-reduce failed while its handle was destroyed: " << e.what() << "\n";
    }
  }
  void wait() override {
    if (requests_.empty()) return;
    RG_MPI_CHECK(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE));
    requests_.clear();
  }
  bool test() override {
    if (requests_.empty()) return true;
    int done = 0;
    RG_MPI_CHECK(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE));
    if (done) requests_.clear();
    return done != 0;
  }

 private:
  std::vector<MPI_Request> requests_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int& argc, char**& argv) {
    int initialized = 0;
    RG_MPI_CHECK(MPI_Initialized(&initialized));
    if (!initialized) {
      int provided = 0;
      // Only the thread that runs the training loop calls MPI (loader threads never do).
      RG_MPI_CHECK(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided));
      owns_mpi_ = true;
    }
    RG_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    RG_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    RG_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    RG_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    MPI_Comm node = MPI_COMM_NULL;
    RG_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
    RG_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
    RG_MPI_CHECK(MPI_Comm_free(&node));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&comm_);
    if (owns_mpi_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string name() const override { return "mpi"; }

  void all_reduce_sum(Tensor& t) override {
    check_reducible(t, "all_reduce_sum");
    const MPI_Datatype type = mpi_type(t.dtype());
    char* p = static_cast<char*>(t.raw_data());
    const size_t elem = dtype_size(t.dtype());
    for (int64_t done = 0; done < t.numel(); done += kMaxChunk) {
      const int n = static_cast<int>(std::min<int64_t>(kMaxChunk, t.numel() - done));
      RG_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + done * elem, n, type, MPI_SUM, comm_));
    }
  }

  std::unique_ptr<PendingReduce> start_all_reduce_sum(Tensor& t) override {
    check_reducible(t, "start_all_reduce_sum");
    const MPI_Datatype type = mpi_type(t.dtype());
    char* p = static_cast<char*>(t.raw_data());
    const size_t elem = dtype_size(t.dtype());
    std::vector<MPI_Request> requests;
    for (int64_t done = 0; done < t.numel(); done += kMaxChunk) {
      const int n = static_cast<int>(std::min<int64_t>(kMaxChunk, t.numel() - done));
      MPI_Request r = MPI_REQUEST_NULL;
      RG_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p + done * elem, n, type, MPI_SUM, comm_, &r));
      requests.push_back(r);
    }
    return std::make_unique<MpiPending>(std::move(requests));
  }

  void broadcast(Tensor& t, int root) override {
    RG_CHECK(t.defined() && t.is_contiguous() && t.device().is_cpu(),
             "broadcast: needs a contiguous CPU tensor, got ",
             t.defined() ? shape_str(t.shape()) : std::string("an undefined tensor"));
    RG_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " outside the world of ", size_, " ranks");
    char* p = static_cast<char*>(t.raw_data());
    const int64_t bytes = static_cast<int64_t>(t.nbytes());
    for (int64_t done = 0; done < bytes; done += kMaxChunk) {
      const int n = static_cast<int>(std::min<int64_t>(kMaxChunk, bytes - done));
      RG_MPI_CHECK(MPI_Bcast(p + done, n, MPI_BYTE, root, comm_));
    }
  }

  void all_reduce_sum(std::vector<double>& values) override {
    if (values.empty()) return;
    RG_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()),
                               MPI_DOUBLE, MPI_SUM, comm_));
  }

  void barrier() override { RG_MPI_CHECK(MPI_Barrier(comm_)); }

  [[noreturn]] void abort(int code, const std::string& message) override {
    std::fprintf(stderr, "roentgen: rank %d of %d failed: %s\nroentgen: aborting all ranks (MPI_Abort %d)\n",
                 rank_, size_, message.c_str(), code);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; in case it does
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool owns_mpi_ = false;
};

bool g_mpi_used = false;
#endif  // RG_WITH_MPI

std::mutex g_mutex;
std::weak_ptr<Communicator> g_comm;

}  // namespace

std::shared_ptr<Communicator> init_from_environment(int& argc, char**& argv) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (auto existing = g_comm.lock()) return existing;
  std::shared_ptr<Communicator> comm;
  if (launched_by_mpirun()) {
#if RG_WITH_MPI
    RG_CHECK(!g_mpi_used, "init_from_environment: MPI was already finalized in this process "
             "(keep the communicator alive for the whole run: MPI cannot be initialized twice)");
    g_mpi_used = true;
    comm = std::make_shared<MpiCommunicator>(argc, argv);
#else
    (void)argc;
    (void)argv;
    RG_FAIL("this process was started by mpirun, but roentgen was built without MPI (RG_MPI=OFF, "
            "or AUTO with no MPI found): run a single process, or rebuild with MPI (RG_MPI=ON)");
#endif
  } else {
    comm = std::make_shared<LocalCommunicator>();
  }
  g_comm = comm;
  return comm;
}

std::shared_ptr<Communicator> init_from_environment() {
  int argc = 0;
  char** argv = nullptr;
  return init_from_environment(argc, argv);
}

std::shared_ptr<Communicator> make_device_communicator(Communicator& host, Device device) {
  if (device.is_cpu()) return std::shared_ptr<Communicator>(std::shared_ptr<Communicator>(), &host);
#if RG_WITH_CUDA
  return make_nccl_communicator(host, device.index);
#else
  RG_FAIL("make_device_communicator: ", device.str(), " needs the NCCL communicator, and this "
          "build has no CUDA (configure with RG_CUDA=ON)");
#endif
}

}  // namespace rg::dist
