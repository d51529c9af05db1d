// Turning C++ failures into JS errors: nothing thrown by libtorch may escape into Node.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <functional>
#include <string>

#include "addon/threads.h"

namespace sdtorch::addon {

inline std::string message_of(const std::exception& e) {
  if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
  return e.what();
}

// Runs `body` for a synchronous binding; any std::exception becomes a JS Error with its message.
template <typename F>
Napi::Value guard(const Napi::CallbackInfo& info, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), message_of(e));
  } catch (...) {
    throw Napi::Error::New(info.Env(), "unknown native error");
  }
}

// Runs `work` on the compute thread (addon/threads.h; a libuv worker thread waits for it) and settles a
// Promise with `done(env, result)`. The Error is created on the calling thread so a rejection carries
// the caller's JS stack.
template <typename R>
class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<R()>;
  using Done = std::function<Napi::Value(Napi::Env, R&)>;

  static Napi::Promise run(Napi::Env env, Work work, Done done) {
    auto* task = new Task(env, std::move(work), std::move(done));
    auto promise = task->deferred_.Promise();
    task->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      run_on_compute_thread([this] {
        c10::InferenceMode inference;
        result_ = work_();
      });
    } catch (const std::exception& e) {
      SetError(message_of(e));
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    try {
      deferred_.Resolve(done_(Env(), result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(Env(), message_of(e)).Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    auto err = error_.Value();
    err.Set("message", e.Message());
    // V8 renders the stack's first line from the message at creation time: rebuild it.
    auto stack = err.Get("stack");
    if (stack.IsString()) {
      std::string s = stack.As<Napi::String>();
      auto nl = s.find('\n');
      err.Set("stack", "Error: " + e.Message() + (nl == std::string::npos ? "" : s.substr(nl)));
    }
    deferred_.Reject(err);
  }

 private:
  Task(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env, "sdtorch"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)) {
    error_ = Napi::Persistent(Napi::Error::New(env, "").Value());
  }
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  Napi::ObjectReference error_;
  R result_{};
};

}  // namespace sdtorch::addon
