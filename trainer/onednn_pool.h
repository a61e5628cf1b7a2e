// A thread pool for oneDNN's threadpool runtime (shared by trainer/cpu_conv.cc and bench/experiments/conv_layouts.cpp).
#pragma once

#include <oneapi/dnnl/dnnl_threadpool_iface.hpp>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

// MindSpore builds oneDNN with the threadpool runtime: a caller must bring its own pool. This one keeps its
// workers asleep on a condition variable between parallel_for calls (as MindSpore's own pool does).
struct Pool : dnnl::threadpool_interop::threadpool_iface {
  explicit Pool(int n) : n_(n) {
    for (int t = 1; t < n_; ++t) workers_.emplace_back([this] { Work(); });
  }
  ~Pool() override {
    { std::lock_guard<std::mutex> lock(mu_); stop_ = true; }
    wake_.notify_all();
    for (auto &w : workers_) w.join();
  }
  int get_num_threads() const override { return n_; }
  bool get_in_parallel() const override { return in_parallel_; }
  uint64_t get_flags() const override { return 0; }  // synchronous
  void wait() override {}
  void parallel_for(int jobs, const std::function<void(int, int)> &fn) override {
    if (jobs == 1 || n_ == 1) {
      in_parallel_ = true;
      for (int i = 0; i < jobs; ++i) fn(i, jobs);
      in_parallel_ = false;
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn; jobs_ = jobs; next_ = 0; busy_ = n_ - 1; ++generation_;
    }
    wake_.notify_all();
    in_parallel_ = true;
    Drain();
    in_parallel_ = false;
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return busy_ == 0; });
  }

 private:
  void Drain() { for (int i; (i = next_++) < jobs_;) (*fn_)(i, jobs_); }
  void Work() {
    in_parallel_ = true;
    for (long seen = 0;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      Drain();
      std::lock_guard<std::mutex> lock(mu_);
      if (--busy_ == 0) done_.notify_one();
    }
  }
  int n_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int, int)> *fn_ = nullptr;
  int jobs_ = 0, busy_ = 0;
  std::atomic<int> next_{0};
  long generation_ = 0;
  bool stop_ = false;
  static inline thread_local bool in_parallel_ = false;
};
