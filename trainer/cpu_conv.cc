// MindSpore AOT custom-op kernels (ops.Custom(func_type="aot")) for a 2-D convolution through oneDNN's blocked
// layouts; trainer/cpu_conv.py builds and uses them. MindSpore's own CPU Conv2D kernels hand oneDNN plain NCHW
// memory; here oneDNN picks the layout (format_tag::any) and so its direct JIT kernels (AVX-512 ones on a CPU that
// has them), with reorders from and to NCHW around them because every other MindSpore kernel holds NCHW.
// It links MindSpore's own libdnnl.so.3, so it shares the process's oneDNN (and its ISA cap, if one is set).
//
// Kernels (inputs, then the outputs; float32, NCHW / OIHW; `geom` is int32 [stride_h, stride_w, pad_top, pad_left],
// the bottom/right padding follows from the shapes; `decay` is float32 [weight_decay]):
//   ConvForward(x, w, geom, decay) -> y                (decay unused: it is an input so the backward gets it)
//   ConvBackward(dy, x, w, geom, decay) -> (dx, dw)    dw = dL/dw + decay * w
// One backward kernel for both gradients, so dy is reordered once for the two primitives.
// Threads: INCV4_CPU_THREADS (the launcher's per-worker count), else every core.
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_threadpool.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "onednn_pool.h"

namespace {
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

struct Runtime {
  engine eng{engine::kind::cpu, 0};
  Pool pool{Threads()};
  stream strm;
  Runtime() {
    dnnl_stream_t raw;
    if (dnnl_threadpool_interop_stream_create(&raw, eng.get(), &pool) != dnnl_success) {
      fprintf(stderr, "cpu_conv: this libdnnl is not built with the threadpool runtime\n");
      abort();
    }
    strm = stream(raw);
  }
  static int Threads() {
    const char *env = getenv("INCV4_CPU_THREADS");
    int n = env ? atoi(env) : static_cast<int>(std::thread::hardware_concurrency());
    return n > 0 ? n : 1;
  }
};

// MindSpore may run independent kernels (an Inception block's branches) at the same time; one pool and one stream
// serve every call, so calls take turns.
std::mutex &Lock() {
  static std::mutex mu;
  return mu;
}

Runtime &Rt() {
  static Runtime rt;
  return rt;
}

// The blocked copies live in buffers that every call reuses (calls take turns on Lock()), one per operand role,
// grown to the largest size asked: a step would otherwise allocate, page-fault and free fresh memory ~1300 times.
enum Slot { kSrc, kWeights, kDst, kDiffDst, kSlots };

void *Buffer(Slot slot, size_t bytes) {
  struct Grown {
    std::unique_ptr<char[]> data;
    size_t bytes = 0;
  };
  static Grown slots[kSlots];
  Grown &g = slots[slot];
  if (g.bytes < bytes) {
    g.data.reset(new char[bytes + 64]);
    g.bytes = bytes;
  }
  return g.data.get() + (64 - reinterpret_cast<uintptr_t>(g.data.get()) % 64) % 64;  // 64-byte aligned
}

memory::dims Dims(const int64_t *shape) { return {shape[0], shape[1], shape[2], shape[3]}; }

// The three primitives of one convolution geometry, created on its first call and kept.
struct Conv {
  convolution_forward::primitive_desc fwd_pd;
  convolution_backward_data::primitive_desc data_pd;
  convolution_backward_weights::primitive_desc weights_pd;
  convolution_forward fwd;
  convolution_backward_data data;
  convolution_backward_weights weights;
};

Conv &Get(const memory::dims &x, const memory::dims &w, const memory::dims &y, const int32_t *geom) {
  memory::dims strides{geom[0], geom[1]}, dilation{0, 0}, pad_l{geom[2], geom[3]};
  memory::dims pad_r{(y[2] - 1) * geom[0] + w[2] - x[2] - geom[2], (y[3] - 1) * geom[1] + w[3] - x[3] - geom[3]};
  std::string key;
  const memory::dims *parts[] = {&x, &w, &y, &strides, &pad_l, &pad_r};
  for (const memory::dims *d : parts)
    for (auto v : *d) key += std::to_string(v) + ",";
  static std::map<std::string, std::unique_ptr<Conv>> cache;
  auto &slot = cache[key];
  if (!slot) {
    const engine &eng = Rt().eng;
    memory::desc xd(x, dt::f32, tag::any), wd(w, dt::f32, tag::any), yd(y, dt::f32, tag::any);
    auto fwd_pd = convolution_forward::primitive_desc(eng, prop_kind::forward_training,
                                                      algorithm::convolution_direct, xd, wd, yd, strides, dilation,
                                                      pad_l, pad_r);
    auto data_pd = convolution_backward_data::primitive_desc(eng, algorithm::convolution_direct, xd, wd, yd,
                                                             strides, dilation, pad_l, pad_r, fwd_pd);
    auto weights_pd = convolution_backward_weights::primitive_desc(eng, algorithm::convolution_direct, xd, wd, yd,
                                                                   strides, dilation, pad_l, pad_r, fwd_pd);
    slot.reset(new Conv{fwd_pd, data_pd, weights_pd, convolution_forward(fwd_pd),
                        convolution_backward_data(data_pd), convolution_backward_weights(weights_pd)});
  }
  return *slot;
}

memory Plain(const memory::dims &dims, void *data) { return memory({dims, dt::f32, tag::abcd}, Rt().eng, data); }

// `plain` in the layout `want` (a reorder into `slot`'s buffer, or `plain` itself when it already is).
memory To(memory &plain, const memory::desc &want, Slot slot) {
  if (plain.get_desc() == want) return plain;
  memory m(want, Rt().eng, Buffer(slot, want.get_size()));
  reorder(plain, m).execute(Rt().strm, plain, m);
  return m;
}

// Where a primitive writes a result that must end up in `plain`; Back() reorders it there when they differ.
memory Result(const memory::desc &have, memory &plain, Slot slot) {
  return have == plain.get_desc() ? plain : memory(have, Rt().eng, Buffer(slot, have.get_size()));
}

void Back(memory &m, memory &plain) {
  if (m != plain) reorder(m, plain).execute(Rt().strm, m, plain);
}

// dst += scale * src (both plain): one reorder with a source scale and a sum post-op, i.e. one pass.
void AddScaled(memory &src, memory &dst, float scale) {
  primitive_attr attr;
  attr.set_scales_mask(DNNL_ARG_SRC, 0);
  post_ops sum;
  sum.append_sum(1.0f);
  attr.set_post_ops(sum);
  reorder::primitive_desc pd(Rt().eng, src.get_desc(), Rt().eng, dst.get_desc(), attr);
  memory scales({{1}, dt::f32, tag::x}, Rt().eng, &scale);
  reorder(pd).execute(Rt().strm,
                      {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}, {DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, scales}});
}

template <typename Fn>
int Guarded(const char *name, Fn &&fn) {
  try {
    std::lock_guard<std::mutex> lock(Lock());
    fn();
    Rt().strm.wait();
    return 0;
  } catch (const std::exception &e) {
    fprintf(stderr, "cpu_conv %s: %s\n", name, e.what());
    return 1;
  }
}
}  // namespace

extern "C" int ConvForward(int, void **params, int *, int64_t **shapes, const char **, void *, void *) {
  return Guarded("ConvForward", [&] {
    memory::dims x = Dims(shapes[0]), w = Dims(shapes[1]), y = Dims(shapes[4]);
    Conv &c = Get(x, w, y, static_cast<const int32_t *>(params[2]));
    memory xp = Plain(x, params[0]), wp = Plain(w, params[1]), yp = Plain(y, params[4]);
    memory xs = To(xp, c.fwd_pd.src_desc(), kSrc), ws = To(wp, c.fwd_pd.weights_desc(), kWeights);
    memory ys = Result(c.fwd_pd.dst_desc(), yp, kDst);
    c.fwd.execute(Rt().strm, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, ws}, {DNNL_ARG_DST, ys}});
    Back(ys, yp);
  });
}

extern "C" int ConvBackward(int, void **params, int *, int64_t **shapes, const char **, void *, void *) {
  return Guarded("ConvBackward", [&] {
    memory::dims y = Dims(shapes[0]), x = Dims(shapes[1]), w = Dims(shapes[2]);
    Conv &c = Get(x, w, y, static_cast<const int32_t *>(params[3]));
    const float decay = *static_cast<const float *>(params[4]);
    memory dyp = Plain(y, params[0]), xp = Plain(x, params[1]), wp = Plain(w, params[2]);
    memory dxp = Plain(x, params[5]), dwp = Plain(w, params[6]);

    memory dys = To(dyp, c.data_pd.diff_dst_desc(), kDiffDst), ws = To(wp, c.data_pd.weights_desc(), kWeights);
    memory dxs = Result(c.data_pd.diff_src_desc(), dxp, kSrc);
    c.data.execute(Rt().strm, {{DNNL_ARG_DIFF_DST, dys}, {DNNL_ARG_WEIGHTS, ws}, {DNNL_ARG_DIFF_SRC, dxs}});
    Back(dxs, dxp);

    // dy's blocked copy serves again when backward-weights wants the same layout (nearly always); kSrc and
    // kWeights are free again, kDst is unused in the backward
    const memory::desc &dy_want = c.weights_pd.diff_dst_desc();
    memory dyw = dys.get_desc() == dy_want ? dys : To(dyp, dy_want, kDst);
    memory xs = To(xp, c.weights_pd.src_desc(), kSrc);
    memory dws = Result(c.weights_pd.diff_weights_desc(), dwp, kWeights);
    c.weights.execute(Rt().strm, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_DIFF_DST, dyw}, {DNNL_ARG_DIFF_WEIGHTS, dws}});
    Back(dws, dwp);
    if (decay != 0.0f) AddScaled(wp, dwp, decay);
  });
}
