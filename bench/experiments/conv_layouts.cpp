// Times one InceptionV4 train step's convolutions (forward, backward data, backward weights) through the oneDNN
// library MindSpore ships (mindspore/lib/libdnnl.so.3), two ways:
//   plain   - every tensor in plain NCHW / OIHW memory, as MindSpore's CPU kernels describe them (oneDNN then
//             picks its im2col + GEMM implementation, "x64:gemm:jit", for nearly every shape);
//   blocked - format_tag::any, so oneDNN picks its direct JIT kernels and blocked layouts ("jit:avx2",
//             "jit_1x1:avx2", as PyTorch gets), plus the reorders from and to NCHW that a MindSpore kernel would
//             need because every other MindSpore CPU kernel holds NCHW;
//   blocked, no reorders - the same kernels with every operand already in the layout they want (the ceiling of
//             a network whose every op, not just the convolutions, works on blocked memory).
// Input: one oneDNN problem descriptor per line (mb8_ic64oc96_ih35oh33kh3sh1dh0ph0_iw35ow33kw3sw1dw0pw0, as
// ONEDNN_VERBOSE prints them). Output: one line per convolution, then a summary line.
// Usage: conv_layouts CONVS_FILE [THREADS] [ROUNDS]
#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_threadpool.h>
#include <oneapi/dnnl/dnnl_threadpool_iface.hpp>

#include "onednn_pool.h"  // trainer/onednn_pool.h (the build adds -I trainer)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;


struct Conv { long mb, ic, oc, ih, oh, kh, sh, ph, iw, ow, kw, sw, pw; };

enum class Way { kPlain, kBlocked, kBlockedNoReorders };

// One untimed call first (oneDNN generates its JIT code then), then the mean of `reps` timed calls.
template <typename Fn>
double SecondsPerRep(Fn &&fn, int reps) {
  fn();
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

// Seconds per forward + backward-data + backward-weights of one convolution, NCHW in and out (except
// kBlockedNoReorders).
double TimeConv(const engine &eng, stream &s, const Conv &c, Way way, int reps) {
  bool blocked = way != Way::kPlain;
  memory::dims src{c.mb, c.ic, c.ih, c.iw}, wei{c.oc, c.ic, c.kh, c.kw}, dst{c.mb, c.oc, c.oh, c.ow};
  memory::dims strides{c.sh, c.sw}, dilation{0, 0}, pad_l{c.ph, c.pw};
  memory::dims pad_r{(c.oh - 1) * c.sh + c.kh - c.ih - c.ph, (c.ow - 1) * c.sw + c.kw - c.iw - c.pw};
  tag layout = blocked ? tag::any : tag::abcd;
  memory::desc sd(src, dt::f32, layout), wd(wei, dt::f32, layout), dd(dst, dt::f32, layout);
  auto fwd_pd = convolution_forward::primitive_desc(eng, prop_kind::forward_training,
                                                    algorithm::convolution_direct, sd, wd, dd, strides, dilation,
                                                    pad_l, pad_r);
  auto data_pd = convolution_backward_data::primitive_desc(eng, algorithm::convolution_direct, sd, wd, dd,
                                                           strides, dilation, pad_l, pad_r, fwd_pd);
  auto weights_pd = convolution_backward_weights::primitive_desc(eng, algorithm::convolution_direct, sd, wd, dd,
                                                                 strides, dilation, pad_l, pad_r, fwd_pd);
  // the tensors as MindSpore holds them
  memory x({src, dt::f32, tag::abcd}, eng), w({wei, dt::f32, tag::abcd}, eng), y({dst, dt::f32, tag::abcd}, eng);
  memory dx(x.get_desc(), eng), dw(w.get_desc(), eng), dy(y.get_desc(), eng);
  for (memory *m : {&x, &w, &dy}) {
    float *p = static_cast<float *>(m->get_data_handle());
    for (size_t i = 0, n = m->get_desc().get_size() / sizeof(float); i < n; ++i) p[i] = (i % 7) * 0.1f;
  }
  convolution_forward fwd(fwd_pd);
  convolution_backward_data bwd_data(data_pd);
  convolution_backward_weights bwd_weights(weights_pd);
  auto to = [&](memory &plain, const memory::desc &want) {
    if (plain.get_desc() == want) return plain;
    memory m(want, eng);
    reorder(plain, m).execute(s, plain, m);
    return m;
  };
  auto result = [&](const memory::desc &have, memory &plain) {
    return have == plain.get_desc() ? plain : memory(have, eng);
  };
  auto back = [&](memory &m, memory &plain) { if (m != plain) reorder(m, plain).execute(s, m, plain); };
  auto step = [&] {
    memory xs = to(x, fwd_pd.src_desc()), ws = to(w, fwd_pd.weights_desc()), ys = result(fwd_pd.dst_desc(), y);
    fwd.execute(s, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, ws}, {DNNL_ARG_DST, ys}});
    back(ys, y);
    memory gy = to(dy, data_pd.diff_dst_desc()), wb = to(w, data_pd.weights_desc());
    memory gx = result(data_pd.diff_src_desc(), dx);
    bwd_data.execute(s, {{DNNL_ARG_DIFF_DST, gy}, {DNNL_ARG_WEIGHTS, wb}, {DNNL_ARG_DIFF_SRC, gx}});
    back(gx, dx);
    memory xw = to(x, weights_pd.src_desc()), gyw = to(dy, weights_pd.diff_dst_desc());
    memory gw = result(weights_pd.diff_weights_desc(), dw);
    bwd_weights.execute(s, {{DNNL_ARG_SRC, xw}, {DNNL_ARG_DIFF_DST, gyw}, {DNNL_ARG_DIFF_WEIGHTS, gw}});
    back(gw, dw);
    s.wait();
  };
  if (way == Way::kBlockedNoReorders) {  // operands converted once, outside the timed loop
    memory xs = to(x, fwd_pd.src_desc()), ws = to(w, fwd_pd.weights_desc()), ys(fwd_pd.dst_desc(), eng);
    memory gy = to(dy, data_pd.diff_dst_desc()), wb = to(w, data_pd.weights_desc());
    memory gx(data_pd.diff_src_desc(), eng);
    memory xw = to(x, weights_pd.src_desc()), gyw = to(dy, weights_pd.diff_dst_desc());
    memory gw(weights_pd.diff_weights_desc(), eng);
    s.wait();
    auto kernels_only = [&] {
      fwd.execute(s, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, ws}, {DNNL_ARG_DST, ys}});
      bwd_data.execute(s, {{DNNL_ARG_DIFF_DST, gy}, {DNNL_ARG_WEIGHTS, wb}, {DNNL_ARG_DIFF_SRC, gx}});
      bwd_weights.execute(s, {{DNNL_ARG_SRC, xw}, {DNNL_ARG_DIFF_DST, gyw}, {DNNL_ARG_DIFF_WEIGHTS, gw}});
      s.wait();
    };
    return SecondsPerRep(kernels_only, reps);
  }
  return SecondsPerRep(step, reps);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: conv_layouts CONVS_FILE [THREADS] [ROUNDS]\n"); return 2; }
  int threads = argc > 2 ? atoi(argv[2]) : 2, rounds = argc > 3 ? atoi(argv[3]) : 3;
  engine eng(engine::kind::cpu, 0);
  Pool pool(threads);
  dnnl_stream_t raw_stream;
  if (dnnl_threadpool_interop_stream_create(&raw_stream, eng.get(), &pool) != dnnl_success) {
    fprintf(stderr, "conv_layouts: this libdnnl is not built with the threadpool runtime\n");
    return 1;
  }
  stream s(raw_stream);
  std::ifstream in(argv[1]);
  std::vector<Conv> convs;
  for (std::string line; std::getline(in, line);) {
    Conv c; long dh, dw;
    if (sscanf(line.c_str(), "mb%ld_ic%ldoc%ld_ih%ldoh%ldkh%ldsh%lddh%ldph%ld_iw%ldow%ldkw%ldsw%lddw%ldpw%ld", &c.mb,
               &c.ic, &c.oc, &c.ih, &c.oh, &c.kh, &c.sh, &dh, &c.ph, &c.iw, &c.ow, &c.kw, &c.sw, &dw, &c.pw) == 15)
      convs.push_back(c);
  }
  double plain_total = 0, blocked_total = 0, best_total = 0, bare_total = 0;
  for (const Conv &c : convs) {
    double plain = 0, blocked = 0, bare = 0;
    for (int r = 0; r < rounds; ++r) {  // alternate the ways, as the bench does with its sides
      plain += TimeConv(eng, s, c, Way::kPlain, 2) / rounds;
      blocked += TimeConv(eng, s, c, Way::kBlocked, 2) / rounds;
      bare += TimeConv(eng, s, c, Way::kBlockedNoReorders, 2) / rounds;
    }
    plain_total += plain; blocked_total += blocked; best_total += std::min(plain, blocked); bare_total += bare;
    printf("conv mb%ld ic%ld oc%ld k%ldx%ld s%ld in%ldx%ld plain_ms %.3f blocked_ms %.3f no_reorders_ms %.3f\n",
           c.mb, c.ic, c.oc, c.kh, c.kw, c.sh, c.ih, c.iw, plain * 1e3, blocked * 1e3, bare * 1e3);
  }
  printf("total convs %zu plain_ms %.1f blocked_ms %.1f best_of_each_ms %.1f no_reorders_ms %.1f\n", convs.size(),
         plain_total * 1e3, blocked_total * 1e3, best_total * 1e3, bare_total * 1e3);
  return 0;
}
