// The shim's side of the C ABI: an engine module behind a C++ object, events as process::Futures, results
// parsed with stout. No policy and no process handling live here: that is the engine's job.
#ifndef MESOS_COMMAND_MODULES_ENGINE_HPP
#define MESOS_COMMAND_MODULES_ENGINE_HPP

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/repeated_field.h>

#include <mesos/mesos.hpp>

#include <process/future.hpp>
#include <process/metrics/metric.hpp>
#include <process/metrics/pull_gauge.hpp>
#include <process/id.hpp>
#include <process/owned.hpp>
#include <process/process.hpp>

#include <stout/duration.hpp>
#include <stout/hashmap.hpp>
#include <stout/json.hpp>
#include <stout/option.hpp>
#include <stout/protobuf.hpp>
#include <stout/stringify.hpp>
#include <stout/try.hpp>

#include "mesos_command_modules.h"

namespace criteo {
namespace mesos {

// An event's input envelope: (key, JSON text) pairs.
using Fragments = std::vector<std::pair<std::string, std::string>>;


// A latency histogram in libprocess' metrics, fed one value at a time by the engine: /metrics/snapshot shows it
// exactly as a process::metrics::Timer<Milliseconds> — `<name>` (the last value) and, over `window`,
// `<name>/count`, `/min`, `/max`, `/p50`, `/p90`, `/p95`, `/p99`, `/p999`, `/p9999`. (A Timer itself can only
// time what it starts or a Future; the engine measures each command and reports the value.)
class LatencyTimer : public process::metrics::Metric
{
public:
  LatencyTimer(const std::string& name, const Duration& window);

  process::Future<double> value() const override;

  // Records one latency, in milliseconds. Thread-safe.
  void record(double milliseconds);

private:
  struct Last
  {
    std::atomic_flag lock = ATOMIC_FLAG_INIT;
    Option<double> value;
  };

  std::shared_ptr<Last> last_;
};

class Engine : public std::enable_shared_from_this<Engine>
{
public:
  // Creates the engine module from the manifest's parameters; the error names the module and each key.
  static Try<std::shared_ptr<Engine>> create(
      mcm_kind kind, const ::mesos::Parameters& parameters);

  ~Engine();

  const std::string& name() const { return name_; }

  // Whether the module has a command for `event` (e.g. "hook_slave_run_task_label_decorator").
  bool handles(const std::string& event) const;

  // Runs an event. The future holds the JSON result, or None for "none / no change"; it fails with the
  // engine's message and is discarded when the event is cancelled. Discarding it cancels the event.
  // `bounded` (every event but the watch loop, which runs until a limitation comes): should the engine not
  // answer by the event's answer limit plus a margin, the future fails then, with an ERROR line, as a hook does.
  process::Future<Option<std::string>> run(
      const std::string& event, const Fragments& fragments, bool bounded = true);

  // Runs an event and blocks the calling thread until it is done: for Mesos' synchronous hook methods.
  Try<Option<std::string>> runAndWait(
      const std::string& event, const Fragments& fragments);

  // Where the engine's outcomes are handed to Mesos: the promises of `run` are completed by this libprocess
  // process, never on an engine thread, so that Mesos' continuations (the containerizer's prepare chain is not
  // deferred) run in a libprocess context, as they would with any Mesos isolator.
  class Completions : public process::Process<Completions>
  {
  public:
    Completions() : ProcessBase(process::ID::generate("command-modules-completions")) {}
  };

  // The latency timers of the module's events, by event key; filled before any event runs, read-only after.
  struct Timers
  {
    hashmap<std::string, LatencyTimer> byEvent;
  };

private:
  Engine(mcm_module* module, std::string name, std::unique_ptr<Timers> timers);
  void registerMetrics();

  mcm_module* module_;
  std::string name_;
  std::unique_ptr<Timers> timers_;
  std::vector<process::metrics::PullGauge> gauges_;
  process::Owned<Completions> completions_;
};


// stout's JSON mapping of a protobuf, as text.
template <typename T>
std::string render(const T& message)
{
  return stringify(JSON::protobuf(message));
}


// Parses an engine result (already checked against the message by the engine) with stout.
template <typename T>
Try<T> parse(const std::string& json)
{
  Try<JSON::Value> value = JSON::parse(json);
  if (value.isError()) {
    return Error("Malformed JSON. " + value.error());
  }
  Try<T> message = ::protobuf::parse<T>(value.get());
  if (message.isError()) {
    return Error("Error while converting JSON to protobuf. " + message.error());
  }
  return message.get();
}

} // namespace mesos {
} // namespace criteo {

#endif
