// Kernel launches in the CUDA host emulator.
//
// A grid runs block by block on the calling thread. A kernel that never synchronises
// runs its threads as plain calls, one after another ("direct" mode). A kernel that
// does (__syncthreads, warp shuffles) runs each thread of a block as a fiber with its
// own stack, and a small scheduler resumes the fibers of a block in turn:
// a fiber runs until it reaches a barrier or ends; a block barrier opens when every
// live thread of the block waits at one, a warp's exchange point when every live lane
// of the warp does. A block whose threads wait at barriers that can never open
// (divergent __syncthreads) is reported as a failed launch instead of hanging.
//
// Which kernels synchronise is learnt: the first launch of every kernel runs in fiber
// mode and records whether any thread reached a barrier. A later direct-mode launch
// that meets a barrier after all is rerun in fiber mode when only its first thread had
// started; otherwise the launch fails with a message (CAPTION_EMU_FIBERS=1 runs every
// launch in fiber mode).
//
// Checks a GPU would make or that catch real bugs: an empty grid or block, a block over
// 1024 threads or dynamic shared memory over 48 KiB are configuration errors; a full-
// mask shuffle or __syncwarp while lanes of the warp have exited is an error; dynamic
// shared memory starts as 0xFF bytes (NaN for floats), so a read of a slot nobody wrote
// shows. CAPTION_EMU_REVERSE=1 runs threads in reverse order, to shake out kernels that
// depend on the order of threads between barriers.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_runtime.h"
#include "emu_internal.h"

// Switching fibers: on x86-64 a dozen instructions of our own (callee-saved registers,
// MXCSR and the x87 control word, then the stack pointer); ucontext's swapcontext also
// saves the signal mask, a system call per switch, which made fiber-mode kernels ~50x
// slower. Elsewhere, ucontext.
// Under AddressSanitizer, ucontext: ASan intercepts swapcontext and clears the shadow of
// the stack it switches to, where our own switch would leave a finished fiber's stack
// redzones poisoned under the next fiber.
#if defined(__SANITIZE_ADDRESS__) && !defined(CAPTION_EMU_UCONTEXT)
#define CAPTION_EMU_UCONTEXT 1
#endif
#if defined(__x86_64__) && !defined(CAPTION_EMU_UCONTEXT)
#define CAPTION_EMU_FAST_SWITCH 1
extern "C" void caption_emu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .globl caption_emu_switch
  .hidden caption_emu_switch
  .type caption_emu_switch, @function
caption_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size caption_emu_switch, .-caption_emu_switch
)");
#else
#define CAPTION_EMU_FAST_SWITCH 0
#endif

namespace caption_emu {

thread_local ThreadState* t_thread = nullptr;

namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "1") == 0;
}

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

constexpr size_t kStackBytes = 256 * 1024;

// One fiber's stack, mapped once with a guard page below it and reused.
struct Stack {
  void* base = nullptr;
  size_t bytes = 0;
  Stack() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    bytes = kStackBytes + page;
    base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1, 0);
    if (base == MAP_FAILED) throw std::runtime_error("cuda emulator: cannot map a fiber stack");
    mprotect(base, page, PROT_NONE);  // overflow faults instead of corrupting a neighbour
  }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  ~Stack() { munmap(base, bytes); }
  char* usable() const { return static_cast<char*>(base) + (bytes - kStackBytes); }
};

struct Fiber {
#if CAPTION_EMU_FAST_SWITCH
  void* sp = nullptr;  // saved stack pointer while suspended
#else
  ucontext_t context;
#endif
  State state = State::Ready;
  ThreadState ts{};
};

struct DirectModeBarrier {};

// What the running block needs while its threads run.
struct Block {
  bool direct = false;
  bool barrier_seen = false;
  std::vector<Fiber>* fibers = nullptr;
  Fiber* current = nullptr;
#if CAPTION_EMU_FAST_SWITCH
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler;
#endif
  void (*body)(void*) = nullptr;
  void* closure = nullptr;
  std::exception_ptr error;
  std::vector<std::array<unsigned long long, 32>> warp_slots;
  std::vector<unsigned char> dynamic_shared;
  std::vector<unsigned> live_in_warp;
};

thread_local Block* t_block = nullptr;
thread_local std::vector<std::unique_ptr<Stack>>* t_stacks = nullptr;

std::mutex g_kinds_mutex;
std::unordered_map<const void*, bool>& cooperative_kernels() {
  static auto* m = new std::unordered_map<const void*, bool>();
  return *m;
}

void run_thread_body() {
  Block* b = t_block;
  Fiber* f = b->current;
  try {
    b->body(b->closure);
  } catch (...) {
    b->error = std::current_exception();
  }
  f->state = State::Done;
  --b->live_in_warp[f->ts.warp];
}

#if CAPTION_EMU_FAST_SWITCH
// The first frame of every fiber: runs the thread, then hands control back for good.
[[noreturn]] void fiber_trampoline() {
  run_thread_body();
  void* unused = nullptr;
  caption_emu_switch(&unused, t_block->scheduler_sp);
  __builtin_unreachable();
}

// A fresh fiber's stack, laid out as caption_emu_switch leaves a suspended one: the
// saved MXCSR and x87 control word, six callee-saved registers, then the address the
// final `ret` jumps to (the trampoline), above which a zero return address ends
// backtraces. The trampoline is entered with rsp = 8 (mod 16), as after a call.
void* initial_stack(char* base, size_t bytes) {
  auto top = reinterpret_cast<uintptr_t>(base + bytes) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uint64_t*>(top - 72);
  uint32_t mxcsr = 0;
  uint16_t fpcw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpcw));
  sp[0] = mxcsr | (static_cast<uint64_t>(fpcw) << 32);
  for (int i = 1; i <= 6; ++i) sp[i] = 0;
  sp[7] = reinterpret_cast<uint64_t>(&fiber_trampoline);
  sp[8] = 0;
  return sp;
}

void resume(Block& b, Fiber& f) { caption_emu_switch(&b.scheduler_sp, f.sp); }

void yield_to_scheduler(State waiting) {
  Block* b = t_block;
  Fiber* f = b->current;
  f->state = waiting;
  caption_emu_switch(&f->sp, b->scheduler_sp);
}
#else
void fiber_entry() { run_thread_body(); }  // returning resumes uc_link, the scheduler

void resume(Block& b, Fiber& f) { swapcontext(&b.scheduler, &f.context); }

void yield_to_scheduler(State waiting) {
  Block* b = t_block;
  Fiber* f = b->current;
  f->state = waiting;
  swapcontext(&f->context, &b->scheduler);
}
#endif

uint3 unlinear(unsigned i, const dim3& d) { return {i % d.x, (i / d.x) % d.y, i / (d.x * d.y)}; }

// Runs one block in fiber mode.
void run_block_fibers(Block& b, std::vector<Fiber>& fibers, bool reverse) {
  const size_t n = fibers.size();
  if (t_stacks == nullptr) t_stacks = new std::vector<std::unique_ptr<Stack>>();
  while (t_stacks->size() < n) t_stacks->push_back(std::make_unique<Stack>());
  for (size_t i = 0; i < n; ++i) {
    Fiber& f = fibers[i];
    f.state = State::Ready;
#if CAPTION_EMU_FAST_SWITCH
    f.sp = initial_stack((*t_stacks)[i]->usable(), kStackBytes);
#else
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = (*t_stacks)[i]->usable();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &b.scheduler;
    makecontext(&f.context, fiber_entry, 0);
#endif
  }
  size_t live = n;
  for (;;) {
    for (size_t k = 0; k < n; ++k) {
      Fiber& f = fibers[reverse ? n - 1 - k : k];
      if (f.state != State::Ready) continue;
      b.current = &f;
      t_thread = &f.ts;
      resume(b, f);
      if (b.error) std::rethrow_exception(b.error);
      if (f.state == State::Done) --live;
    }
    if (live == 0) return;
    // Open the barriers whose waiters are complete.
    bool opened = false;
    const size_t warps = b.live_in_warp.size();
    for (size_t w = 0; w < warps; ++w) {
      if (b.live_in_warp[w] == 0) continue;
      const size_t lo = w * 32, hi = std::min(n, lo + 32);
      unsigned waiting = 0;
      for (size_t i = lo; i < hi; ++i) waiting += fibers[i].state == State::AtWarpBarrier;
      if (waiting == b.live_in_warp[w]) {
        // Every exchange is a full-mask one (check_full_warp): lanes that exited cannot
        // take part, which is undefined on a GPU.
        if (waiting != hi - lo)
          throw std::runtime_error("warp " + std::to_string(w) +
                                   " exchanges values with a full mask while " +
                                   std::to_string(hi - lo - waiting) +
                                   " of its lanes have exited (undefined on a GPU)");
        for (size_t i = lo; i < hi; ++i)
          if (fibers[i].state == State::AtWarpBarrier) fibers[i].state = State::Ready;
        opened = true;
      }
    }
    size_t at_block = 0;
    for (const Fiber& f : fibers) at_block += f.state == State::AtBlockBarrier;
    if (at_block == live) {
      for (Fiber& f : fibers)
        if (f.state == State::AtBlockBarrier) f.state = State::Ready;
      opened = true;
    }
    bool any_ready = false;
    for (const Fiber& f : fibers) any_ready |= f.state == State::Ready;
    if (!opened && !any_ready)
      throw std::runtime_error(
          "deadlock: threads wait at barriers that cannot open (divergent __syncthreads or "
          "warp exchange)");
  }
}

}  // namespace

void sync_block() {
  Block* b = t_block;
  if (b == nullptr) throw std::runtime_error("__syncthreads outside a kernel");
  b->barrier_seen = true;
  if (b->direct) throw DirectModeBarrier{};
  yield_to_scheduler(State::AtBlockBarrier);
}

void sync_warp() {
  Block* b = t_block;
  if (b == nullptr) throw std::runtime_error("warp exchange outside a kernel");
  b->barrier_seen = true;
  if (b->direct) throw DirectModeBarrier{};
  yield_to_scheduler(State::AtWarpBarrier);
}

unsigned long long* warp_slots() { return t_block->warp_slots[t_thread->warp].data(); }

void* dynamic_shared() {
  Block* b = t_block;
  return b->dynamic_shared.empty() ? nullptr : b->dynamic_shared.data();
}

void check_full_warp(unsigned mask, const char* what) {
  Block* b = t_block;
  if (b == nullptr) throw std::runtime_error(std::string(what) + " outside a kernel");
  if (b->direct) {
    b->barrier_seen = true;
    throw DirectModeBarrier{};
  }
  const unsigned warp = t_thread->warp;
  const size_t n = b->fibers->size();
  const unsigned lanes = static_cast<unsigned>(std::min<size_t>(32, n - warp * 32));
  const unsigned expected = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  if (mask != 0xffffffffu && mask != expected)
    throw std::runtime_error(std::string(what) + " with a partial mask is not emulated");
}

void run_grid(const LaunchConfig& c, const void* kernel, void (*body)(void*), void* closure) {
  const unsigned long long threads = 1ull * c.block.x * c.block.y * c.block.z;
  const unsigned long long blocks = 1ull * c.grid.x * c.grid.y * c.grid.z;
  const std::string kernel_name = c.name;
  if (threads == 0 || blocks == 0 || threads > 1024 || c.block.z > 64 || c.grid.y > 65535 ||
      c.grid.z > 65535 || c.shared_bytes > 48 * 1024) {
    set_launch_error(cudaErrorInvalidConfiguration,
                     kernel_name + ": invalid launch configuration (grid " +
                         std::to_string(c.grid.x) + "x" + std::to_string(c.grid.y) + "x" +
                         std::to_string(c.grid.z) + ", block " + std::to_string(c.block.x) + "x" +
                         std::to_string(c.block.y) + "x" + std::to_string(c.block.z) +
                         ", shared " + std::to_string(c.shared_bytes) + " bytes)");
    return;
  }
  if (!stream_is_valid(c.stream)) {
    set_launch_error(cudaErrorInvalidValue, kernel_name + ": launched on a destroyed stream");
    return;
  }
  static const bool force_fibers = env_flag("CAPTION_EMU_FIBERS");
  static const bool reverse = env_flag("CAPTION_EMU_REVERSE");
  bool known = false, cooperative = true;
  {
    std::lock_guard lock(g_kinds_mutex);
    auto it = cooperative_kernels().find(kernel);
    if (it != cooperative_kernels().end()) {
      known = true;
      cooperative = it->second;
    }
  }
  const bool fibers_mode = force_fibers || !known || cooperative;

  Block b;
  Block* const saved_block = t_block;
  ThreadState* const saved_thread = t_thread;
  t_block = &b;
  b.body = body;
  b.closure = closure;
  std::vector<Fiber> fibers(threads);
  b.fibers = &fibers;
  const unsigned warps = static_cast<unsigned>((threads + 31) / 32);
  b.warp_slots.resize(warps);
  b.live_in_warp.resize(warps);
  struct Restore {
    Block* block;
    ThreadState* thread;
    ~Restore() {
      t_block = block;
      t_thread = thread;
    }
  } restore{saved_block, saved_thread};

  auto run = [&](bool use_fibers) {
    b.direct = !use_fibers;
    for (unsigned long long bl = 0; bl < blocks; ++bl) {
      const uint3 block_idx = unlinear(static_cast<unsigned>(bl), c.grid);
      for (unsigned long long i = 0; i < threads; ++i) {
        ThreadState& ts = fibers[i].ts;
        ts.thread_idx = unlinear(static_cast<unsigned>(i), c.block);
        ts.block_idx = block_idx;
        ts.block_dim = c.block;
        ts.grid_dim = c.grid;
        ts.lane = static_cast<unsigned>(i % 32);
        ts.warp = static_cast<unsigned>(i / 32);
      }
      for (unsigned w = 0; w < warps; ++w)
        b.live_in_warp[w] = static_cast<unsigned>(std::min<unsigned long long>(32, threads - w * 32ull));
      b.dynamic_shared.assign(c.shared_bytes, 0xFF);
      if (use_fibers) {
        run_block_fibers(b, fibers, reverse);
      } else {
        for (unsigned long long k = 0; k < threads; ++k) {
          const unsigned long long i = reverse ? threads - 1 - k : k;
          t_thread = &fibers[i].ts;
          try {
            body(closure);
          } catch (DirectModeBarrier&) {
            if (bl == 0 && k == 0) throw;  // nothing else ran yet: rerun with fibers
            throw std::runtime_error(
                kernel_name + " reached a barrier on a path its earlier launches never took, "
                              "after other threads of this launch had run without fibers; "
                              "rerun with CAPTION_EMU_FIBERS=1");
          }
        }
      }
    }
  };

  try {
    try {
      run(fibers_mode);
    } catch (DirectModeBarrier&) {
      b.barrier_seen = false;
      run(true);
      b.barrier_seen = true;
    }
    if (!known || (b.barrier_seen && !cooperative)) {
      std::lock_guard lock(g_kinds_mutex);
      cooperative_kernels()[kernel] = b.barrier_seen;
    }
  } catch (const std::exception& e) {
    set_launch_error(cudaErrorLaunchFailure, kernel_name + ": " + e.what());
  }
}

}  // namespace caption_emu
