// CUDA graphs on a device's stream: the runtime half of engine/graph.h.
#include <cuda_runtime.h>

#include "engine/backend.h"
#include "engine/cuda/check.h"
#include "engine/cuda/context.h"

namespace caption {

namespace {
// What cudaGraphInstantiate made, with the graph it came from.
struct Captured {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
};
}  // namespace

void cuda_begin_capture(int device) {
  const cudaStream_t s = cuda::stream(Device::cuda(device));
  // Relaxed: the caching allocator may cudaMalloc blocks for the graph's private pool
  // while capturing; a synchronisation still invalidates the capture.
  CAPTION_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
}

void* cuda_end_capture(int device, std::string* error) {
  const cudaStream_t s = cuda::stream(Device::cuda(device));
  cudaGraph_t graph = nullptr;
  cudaError_t status = cudaStreamEndCapture(s, &graph);
  cudaGetLastError();  // a failed capture leaves its error sticky; it is reported here
  if (status != cudaSuccess || graph == nullptr) {
    if (error) *error = str("stream capture failed: ", cudaGetErrorString(status));
    if (graph) cudaGraphDestroy(graph);
    return nullptr;
  }
  cudaGraphExec_t exec = nullptr;
  status = cudaGraphInstantiate(&exec, graph, 0);
  if (status != cudaSuccess) {
    cudaGetLastError();
    cudaGraphDestroy(graph);
    if (error) *error = str("graph instantiation failed: ", cudaGetErrorString(status));
    return nullptr;
  }
  return new Captured{graph, exec};
}

void cuda_launch_graph(int device, void* graph) {
  auto* c = static_cast<Captured*>(graph);
  CAPTION_CUDA_CHECK(cudaGraphLaunch(c->exec, cuda::stream(Device::cuda(device))));
}

void cuda_destroy_graph(void* graph) noexcept {
  auto* c = static_cast<Captured*>(graph);
  if (c == nullptr) return;
  cudaGraphExecDestroy(c->exec);
  cudaGraphDestroy(c->graph);
  delete c;
}

}  // namespace caption
