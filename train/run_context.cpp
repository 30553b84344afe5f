#include "train/run_context.h"

#include <iostream>

#include "engine/dist/communicator.h"
#include "engine/dist/data_parallel.h"
#include "train/settings.h"

namespace rg::train {

RunContext make_run_context(dist::Communicator& host_comm, Device requested) {
  RunContext ctx;
  ctx.device = device_for_rank(requested, host_comm);
  if (requested.is_cuda() && requested.index != 0 && host_comm.world_size() > 1 &&
      host_comm.rank() == 0) {
    std::cerr << "--device " << requested.str() << " under " << host_comm.world_size()
              << " ranks: each rank uses cuda:<local rank> instead\n";
  }
  ctx.data_parallel = host_comm.name() != "local";
  if (ctx.data_parallel && !host_comm.supports(ctx.device)) {
    ctx.device_comm = dist::make_device_communicator(host_comm, ctx.device);
  }
  ctx.comm = ctx.device_comm ? ctx.device_comm.get() : &host_comm;
  ctx.world_size = ctx.comm->world_size();
  ctx.rank = ctx.comm->rank();
  return ctx;
}

}  // namespace rg::train
