#include "Engine.hpp"

#include <chrono>
#include <future>

#include <glog/logging.h>

#include <process/clock.hpp>
#include <process/dispatch.hpp>
#include <process/id.hpp>
#include <process/metrics/metrics.hpp>

#include <stout/stringify.hpp>
#include <stout/synchronized.hpp>

namespace criteo {
namespace mesos {

namespace {

// A command's latency, into its event's timer (the map is read-only once events run).
void recordLatency(void* context, const char* event, double milliseconds)
{
  Engine::Timers* timers = static_cast<Engine::Timers*>(context);
  auto timer = timers->byEvent.find(event);
  if (timer != timers->byEvent.end()) {
    timer->second.record(milliseconds);
  }
}

// The engine's log lines, into the agent's log.
void logLine(void*, mcm_log_level level, const char* message, size_t length)
{
  const std::string text(message, length);
  switch (level) {
    case MCM_LOG_DEBUG: VLOG(1) << text; break;
    case MCM_LOG_INFO: LOG(INFO) << text; break;
    case MCM_LOG_WARNING: LOG(WARNING) << text; break;
    default: LOG(ERROR) << text; break;
  }
}

// An event's promise, shared by the engine's callback and the answer-limit fallback (see Engine::run): whichever
// comes second finds it alive and already completed, and changes nothing.
struct Pending
{
  process::Promise<Option<std::string>> promise;
  process::PID<Engine::Completions> completions;
  // The fallback's timer, cancelled by the answer; set before the event starts, then used on Completions only.
  Option<process::Timer> fallback;
};

// Called on an engine thread: copies the outcome and hands it to the Completions process, which completes the
// promise (and so runs Mesos' continuations) in a libprocess context.
void completePending(void* context, mcm_status status, const char* data, size_t length)
{
  std::unique_ptr<std::shared_ptr<Pending>> holder(static_cast<std::shared_ptr<Pending>*>(context));
  std::shared_ptr<Pending> pending = *holder;
  std::string text(data, length);
  process::dispatch(pending->completions, [pending, status, text]() {
    if (pending->fallback.isSome()) {
      process::Clock::cancel(pending->fallback.get());
      pending->fallback = None(); // its thunk holds `pending`
    }
    switch (status) {
      case MCM_STATUS_RESULT:
        pending->promise.set(Option<std::string>(text));
        break;
      case MCM_STATUS_NONE:
        pending->promise.set(Option<std::string>::none());
        break;
      case MCM_STATUS_ERROR:
        pending->promise.fail(text);
        break;
      default:
        pending->promise.discard();
        break;
    }
  });
}

// A hook's answer, awaited by the thread that runs the hook. Shared with the callback: the thread may stop
// waiting (see runAndWait) before the callback comes.
struct Waiting
{
  std::promise<std::pair<mcm_status, std::string>> done;
};

void completeWaiting(void* context, mcm_status status, const char* data, size_t length)
{
  std::unique_ptr<std::shared_ptr<Waiting>> waiting(static_cast<std::shared_ptr<Waiting>*>(context));
  (*waiting)->done.set_value({status, std::string(data, length)});
}

// How long past the engine's own answer limit a hook still waits, or an isolator's future stays pending: the
// engine answers by its limit; this is only for an engine that cannot (e.g. its threads starved), so that no
// agent or master actor blocks forever and no container launch or cleanup hangs without a message.
const double ANSWER_MARGIN_SECONDS = 5;

std::vector<mcm_fragment> toFragments(const Fragments& fragments)
{
  std::vector<mcm_fragment> result;
  for (const auto& fragment : fragments) {
    result.push_back({fragment.first.c_str(), fragment.second.data(), fragment.second.size()});
  }
  return result;
}

const char* const EVENTS[] = {
  "hook_master_launch_task_label_decorator", "hook_master_launch_task_resource_decorator",
  "hook_slave_run_task_label_decorator", "hook_master_slave_lost_hook",
  "hook_slave_executor_environment_decorator", "hook_slave_pre_launch_docker_task_executor_decorator",
  "hook_slave_post_fetch_hook", "hook_slave_remove_executor_hook", "hook_slave_task_status_decorator",
  "hook_slave_resources_decorator", "hook_slave_attributes_decorator", "isolator_recover", "isolator_prepare",
  "isolator_isolate", "isolator_watch", "isolator_update", "isolator_usage", "isolator_status",
  "isolator_cleanup"};

const std::pair<mcm_metric, const char*> COUNTERS[] = {
  {MCM_METRIC_CALLS, "calls"}, {MCM_METRIC_FAILURES, "failures"}, {MCM_METRIC_TIMEOUTS, "timeouts"},
  {MCM_METRIC_SKIPPED, "skipped"}, {MCM_METRIC_BREAKER_OPEN, "breaker_open"},
  {MCM_METRIC_SHORT_CIRCUITED, "short_circuited"}, {MCM_METRIC_CPU_SECONDS, "cpu_seconds"}};

// The window of the latency percentiles, as Mesos' own timers (e.g. the allocator's) use.
const Duration LATENCY_WINDOW = Hours(1);

} // namespace {


LatencyTimer::LatencyTimer(const std::string& name, const Duration& window)
  : Metric(name, window), last_(new Last()) {}


process::Future<double> LatencyTimer::value() const
{
  Option<double> value;
  synchronized (last_->lock) {
    value = last_->value;
  }
  if (value.isNone()) {
    return process::Failure("No value");
  }
  return value.get();
}


void LatencyTimer::record(double milliseconds)
{
  synchronized (last_->lock) {
    last_->value = milliseconds;
  }
  push(milliseconds);
}


Try<std::shared_ptr<Engine>> Engine::create(
    mcm_kind kind, const ::mesos::Parameters& parameters)
{
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const ::mesos::Parameter& parameter : parameters.parameter()) {
    keys.push_back(parameter.key().c_str());
    values.push_back(parameter.value().c_str());
  }
  std::unique_ptr<Timers> timers(new Timers());
  const mcm_callbacks callbacks = {logLine, recordLatency, timers.get()};
  char* error = nullptr;
  mcm_module* module = mcm_module_create(
      kind, keys.data(), values.data(), keys.size(), &callbacks, &error);
  if (module == nullptr) {
    std::string message = error != nullptr ? error : "unknown error";
    mcm_free(error);
    return Error(message);
  }
  std::shared_ptr<Engine> engine(new Engine(module, mcm_module_name(module), std::move(timers)));
  engine->registerMetrics();
  return engine;
}


Engine::Engine(mcm_module* module, std::string name, std::unique_ptr<Timers> timers)
  : module_(module), name_(std::move(name)), timers_(std::move(timers)), completions_(new Completions())
{
  process::spawn(completions_.get());
}


Engine::~Engine()
{
  for (const process::metrics::PullGauge& gauge : gauges_) {
    process::metrics::remove(gauge);
  }
  for (const auto& timer : timers_->byEvent) {
    process::metrics::remove(timer.second);
  }
  // Every event's callback has been called when this returns; the completions it dispatched are still queued:
  // terminate after them (inject = false), so that no promise is left pending.
  mcm_module_destroy(module_);
  process::terminate(completions_.get(), false);
  process::wait(completions_.get());
}


bool Engine::handles(const std::string& event) const
{
  return mcm_module_handles(module_, event.c_str()) != 0;
}


// Per configured event, in Mesos' conventions: the counters command_modules/<module_name>/<event>/{calls,
// failures,timeouts,skipped,breaker_open,short_circuited,cpu_seconds} (breaker_open and short_circuited stay 0
// without <event>_breaker_failures, so that one alert rule fits every module; worker_restarts in worker mode) and
// the timer
// command_modules/<module_name>/<event>/latency_ms (with its percentiles). Called before any event runs: the
// timers' map is read-only afterwards.
void Engine::registerMetrics()
{
  std::weak_ptr<Engine> self = shared_from_this();
  for (const char* event : EVENTS) {
    if (!handles(event)) {
      continue;
    }
    const std::string prefix = "command_modules/" + name_ + "/" + event + "/";
    std::vector<std::pair<mcm_metric, const char*>> counters(std::begin(COUNTERS), std::end(COUNTERS));
    if (mcm_module_mode(module_, event) == MCM_MODE_WORKER) {
      counters.push_back({MCM_METRIC_WORKER_RESTARTS, "worker_restarts"});
    }
    for (const auto& counter : counters) {
      const std::string key = event;
      const mcm_metric which = counter.first;
      process::metrics::PullGauge gauge(
          prefix + counter.second,
          [self, key, which]() -> process::Future<double> {
            std::shared_ptr<Engine> engine = self.lock();
            return engine ? mcm_module_metric(engine->module_, key.c_str(), which) : 0.0;
          });
      process::metrics::add(gauge);
      gauges_.push_back(gauge);
    }
    LatencyTimer timer(prefix + "latency_ms", LATENCY_WINDOW);
    process::metrics::add(timer);
    timers_->byEvent.put(event, timer);
  }
}


process::Future<Option<std::string>> Engine::run(
    const std::string& event, const Fragments& fragments, bool bounded)
{
  std::shared_ptr<Pending> pending = std::make_shared<Pending>();
  pending->completions = completions_->self();
  process::Future<Option<std::string>> future = pending->promise.future();
  std::vector<mcm_fragment> input = toFragments(fragments);
  std::weak_ptr<Engine> self = shared_from_this();
  // The token is known once mcm_run_event returns, long before the fallback can fire.
  std::shared_ptr<std::atomic<uint64_t>> started = std::make_shared<std::atomic<uint64_t>>(0);
  if (bounded) {
    const double limit = mcm_module_answer_limit(module_, event.c_str()) + ANSWER_MARGIN_SECONDS;
    const std::string message = "[METHOD=" + event + "] the module '" + name_ + "' gave no answer within " +
      stringify(limit) + "s (the event's timeout, grace_period and a margin); the event fails";
    // Armed before the event starts, so that the answer, whenever it comes, finds the timer to cancel.
    pending->fallback = process::Clock::timer(
        Milliseconds(static_cast<int64_t>(limit * 1000)), [pending, self, started, message]() {
          process::dispatch(pending->completions, [pending, self, started, message]() {
            pending->fallback = None(); // its thunk holds `pending`
            if (!pending->promise.future().isPending()) {
              return;
            }
            LOG(ERROR) << message;
            pending->promise.fail(message);
            if (std::shared_ptr<Engine> engine = self.lock()) {
              mcm_cancel(engine->module_, started->load());
            }
          });
        });
  }
  const uint64_t token = mcm_run_event(
      module_, event.c_str(), input.data(), input.size(), completePending, new std::shared_ptr<Pending>(pending));
  started->store(token);

  future.onDiscard([self, token]() {
    if (std::shared_ptr<Engine> engine = self.lock()) {
      mcm_cancel(engine->module_, token);
    }
  });
  return future;
}


Try<Option<std::string>> Engine::runAndWait(
    const std::string& event, const Fragments& fragments)
{
  std::shared_ptr<Waiting> waiting = std::make_shared<Waiting>();
  std::future<std::pair<mcm_status, std::string>> done = waiting->done.get_future();
  std::vector<mcm_fragment> input = toFragments(fragments);
  const double limit = mcm_module_answer_limit(module_, event.c_str()) + ANSWER_MARGIN_SECONDS;
  const uint64_t token = mcm_run_event(
      module_, event.c_str(), input.data(), input.size(), completeWaiting,
      new std::shared_ptr<Waiting>(waiting));
  // Every command has a timeout, so the engine answers by its limit; should it not, the hook fails rather
  // than block the agent's (or master's) actor forever.
  if (done.wait_for(std::chrono::duration<double>(limit)) != std::future_status::ready) {
    mcm_cancel(module_, token);
    const std::string message = "[METHOD=" + event + "] the module '" + name_ + "' gave no answer within " +
      stringify(limit) + "s (the event's timeout, grace_period and a margin); the hook fails";
    LOG(ERROR) << message;
    return Error(message);
  }
  std::pair<mcm_status, std::string> result = done.get();
  switch (result.first) {
    case MCM_STATUS_RESULT: return Option<std::string>(result.second);
    case MCM_STATUS_NONE: return Option<std::string>::none();
    case MCM_STATUS_ERROR: return Error(result.second);
    default: return Error("cancelled");
  }
}

} // namespace mesos {
} // namespace criteo {
