// shim_check LIBRARY DIR: loads libmesos_command_modules.so as the agent does (dlopen, the module symbol's
// create()), with libprocess running, and checks what only a real libprocess shows: the Futures the shim returns
// are completed in a libprocess context — never on an engine thread — so Mesos' continuations (the
// containerizer's prepare chain is not deferred) run where they would with any Mesos isolator. Prints one
// "ok"/"not ok" line per check and "N passed, N failed"; exits 1 if any failed. Run by Tests/MesosAgent/run.sh.
#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>

#include <mesos/hook.hpp>
#include <mesos/mesos.hpp>
#include <mesos/module/hook.hpp>
#include <mesos/module/isolator.hpp>
#include <mesos/slave/isolator.hpp>

#include <process/clock.hpp>
#include <process/future.hpp>
#include <process/metrics/metrics.hpp>
#include <process/process.hpp>

#include <stout/duration.hpp>
#include <stout/stringify.hpp>
#include <unistd.h>

namespace {

int passed = 0;
int failed = 0;

void check(bool condition, const std::string& name, const std::string& detail = "")
{
  if (condition) {
    passed++;
    std::printf("ok - %s\n", name.c_str());
  } else {
    failed++;
    std::printf("not ok - %s %s\n", name.c_str(), detail.c_str());
  }
  std::fflush(stdout);
}

std::string script(const std::string& dir, const std::string& name, const std::string& body)
{
  const std::string path = dir + "/" + name;
  std::ofstream(path) << body;
  chmod(path.c_str(), 0755);
  return path;
}

void add(mesos::Parameters* parameters, const std::string& key, const std::string& value)
{
  mesos::Parameter* parameter = parameters->add_parameter();
  parameter->set_key(key);
  parameter->set_value(value);
}

// Whether the continuation attached to `future` ran inside a libprocess process (not on an engine thread, not
// on this thread). The command sleeps first, so the continuation is attached before the future completes.
template <typename T>
bool continuedInLibprocess(const process::Future<T>& future)
{
  std::atomic<int> where(-1);
  future.onAny([&where](const process::Future<T>&) { where = process::__process__ != nullptr ? 1 : 0; });
  future.await(Seconds(20));
  for (int i = 0; i < 200 && where == -1; i++) {
    usleep(10 * 1000);
  }
  return where == 1;
}

// The thread id of the engine's event loop (named mcm-event-loop), or 0.
pid_t engineLoopThread()
{
  pid_t found = 0;
  DIR* tasks = opendir("/proc/self/task");
  while (tasks != nullptr && found == 0) {
    dirent* entry = readdir(tasks);
    if (entry == nullptr) {
      break;
    }
    std::string comm;
    std::getline(std::ifstream(std::string("/proc/self/task/") + entry->d_name + "/comm"), comm);
    if (comm == "mcm-event-loop") {
      found = atoi(entry->d_name);
    }
  }
  if (tasks != nullptr) {
    closedir(tasks);
  }
  return found;
}

// Stops one thread of this process, and only it, from a child that traces it (PTRACE_SEIZE + PTRACE_INTERRUPT);
// the thread runs again when the child is killed. Returns the child's pid once the thread is stopped, or -1.
pid_t stopThread(pid_t thread)
{
  int ready[2];
  if (pipe(ready) != 0) {
    return -1;
  }
  pid_t tracer = fork();
  if (tracer == 0) {
    close(ready[0]);
    int status = 0;
    bool stopped = ptrace(PTRACE_SEIZE, thread, nullptr, nullptr) == 0 &&
      ptrace(PTRACE_INTERRUPT, thread, nullptr, nullptr) == 0 && waitpid(thread, &status, __WALL) == thread;
    char answer = stopped ? 'y' : 'n';
    if (write(ready[1], &answer, 1) != 1) {
      _exit(1);
    }
    for (;;) {
      pause();
    }
  }
  close(ready[1]);
  char answer = 'n';
  if (tracer < 0 || read(ready[0], &answer, 1) != 1 || answer != 'y') {
    answer = 'n';
  }
  close(ready[0]);
  if (answer != 'y' && tracer > 0) {
    kill(tracer, SIGKILL);
    waitpid(tracer, nullptr, 0);
    return -1;
  }
  return tracer;
}

} // namespace {

int main(int argc, char** argv)
{
  if (argc != 3) {
    std::fprintf(stderr, "usage: shim_check LIBRARY DIR\n");
    return 2;
  }
  const std::string dir = argv[2];
  process::initialize();

  void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  check(library != nullptr, "the module library loads", library ? "" : dlerror());
  if (library == nullptr) {
    return 1;
  }
  auto* isolatorModule = static_cast<mesos::modules::Module<mesos::slave::Isolator>*>(
      dlsym(library, "com_criteo_mesos_CommandIsolator"));
  auto* hookModule = static_cast<mesos::modules::Module<mesos::Hook>*>(dlsym(library, "com_criteo_mesos_CommandHook"));
  check(isolatorModule != nullptr && hookModule != nullptr, "the module symbols are exported");
  if (isolatorModule == nullptr || hookModule == nullptr) {
    return 1;
  }

  mesos::Parameters isolatorParameters;
  add(&isolatorParameters, "module_name", "shim_check");
  add(&isolatorParameters, "temp_dir", dir);
  add(&isolatorParameters, "state_dir", dir + "/state");
  add(&isolatorParameters, "isolator_prepare_command",
      script(dir, "prepare.sh", "#!/bin/sh\nsleep 0.3\necho '{\"user\":\"checked\"}' > \"$2\"\n"));
  add(&isolatorParameters, "isolator_usage_command",
      script(dir, "usage.sh", "#!/bin/sh\nsleep 0.3\necho '{\"cpus_limit\":2}' > \"$2\"\n"));
  add(&isolatorParameters, "isolator_isolate_command", script(dir, "isolate.sh", "#!/bin/sh\nsleep 0.3\nexit 3\n"));
  mesos::slave::Isolator* isolator = isolatorModule->create(isolatorParameters);
  check(isolator != nullptr, "the isolator is created");

  mesos::ContainerID id;
  id.set_value("shim-check");
  mesos::slave::ContainerConfig config;
  config.set_directory(dir);
  config.mutable_command_info();

  process::Future<Option<mesos::slave::ContainerLaunchInfo>> prepared = isolator->prepare(id, config);
  check(continuedInLibprocess(prepared), "prepare's future completes in a libprocess context");
  check(prepared.isReady() && prepared->isSome() && prepared->get().user() == "checked",
        "prepare returns the command's ContainerLaunchInfo");

  process::Future<mesos::ResourceStatistics> usage = isolator->usage(id);
  check(continuedInLibprocess(usage), "usage's future completes in a libprocess context");
  check(usage.isReady() && usage->cpus_limit() == 2, "usage returns the command's statistics");

  // The module's metrics, in Mesos' conventions: counters, and a timer with its percentiles (libprocess reports
  // them from two values on).
  isolator->usage(id).await(Seconds(20));
  process::Future<std::map<std::string, double>> snapshot = process::metrics::snapshot(None());
  snapshot.await(Seconds(10));
  const std::string prefix = "command_modules/shim_check/isolator_usage/";
  std::map<std::string, double> metrics = snapshot.isReady() ? snapshot.get() : std::map<std::string, double>();
  check(metrics[prefix + "calls"] == 2 && metrics[prefix + "failures"] == 0 && metrics.count(prefix + "skipped") == 1 &&
            metrics.count(prefix + "timeouts") == 1,
        "the counters are in the metrics snapshot");
  check(metrics[prefix + "latency_ms/count"] == 2 && metrics[prefix + "latency_ms/p50"] >= 300 &&
            metrics[prefix + "latency_ms/p99"] >= 300 && metrics[prefix + "latency_ms/max"] >= 300 &&
            metrics.count(prefix + "latency_ms/p999") == 1 && metrics.count(prefix + "latency_ms/min") == 1 &&
            metrics[prefix + "latency_ms"] >= 300,
        "the latency is a timer with its percentiles, as libprocess reports them",
        std::to_string(metrics[prefix + "latency_ms/p50"]));

  process::Future<Nothing> isolated = isolator->isolate(id, 1);
  check(continuedInLibprocess(isolated), "a failing isolate's future fails in a libprocess context");
  check(isolated.isFailed() && isolated.failure().find("exited with return code 3") != std::string::npos,
        "isolate fails with the command's exit code", isolated.isFailed() ? isolated.failure() : "");

  mesos::Parameters hookParameters;
  add(&hookParameters, "module_name", "shim_check_hook");
  add(&hookParameters, "temp_dir", dir);
  add(&hookParameters, "hook_slave_pre_launch_docker_task_executor_decorator_command",
      script(dir, "docker.sh", "#!/bin/sh\nsleep 0.3\necho '{}' > \"$2\"\n"));
  mesos::Hook* hook = hookModule->create(hookParameters);
  check(hook != nullptr, "the hook is created");
  mesos::ExecutorInfo executor;
  executor.mutable_executor_id()->set_value("e");
  executor.mutable_command();
  process::Future<Option<mesos::DockerTaskExecutorPrepareInfo>> decorated =
      hook->slavePreLaunchDockerTaskExecutorDecorator(None(), executor, "c", "/w", "/s", None());
  check(continuedInLibprocess(decorated), "the docker decorator's future completes in a libprocess context");

  // An engine that never answers (its event loop thread stopped: no exit, no deadline is learnt): the isolator's
  // future fails after the event's answer limit plus the shim's margin, as a hook's does, and the answer that
  // comes once the engine runs again writes to nothing freed (the next event works).
  mesos::Parameters stalledParameters;
  add(&stalledParameters, "module_name", "shim_check_stalled");
  add(&stalledParameters, "temp_dir", dir);
  add(&stalledParameters, "state_dir", dir + "/state");
  add(&stalledParameters, "grace_period", "0.2");
  add(&stalledParameters, "isolator_prepare_timeout", "1");
  add(&stalledParameters, "isolator_prepare_command", script(dir, "quick.sh", "#!/bin/sh\nexit 0\n"));
  mesos::slave::Isolator* stalled = isolatorModule->create(stalledParameters);
  check(stalled != nullptr, "the isolator of the unanswered event is created");
  mesos::ContainerID first;
  first.set_value("never-answered");
  const pid_t loop = engineLoopThread();
  const pid_t tracer = loop > 0 ? stopThread(loop) : -1;
  check(tracer > 0, "the engine's event loop thread is stopped (ptrace)", std::to_string(loop));
  if (stalled != nullptr && tracer > 0) {
    const process::Time start = process::Clock::now();
    process::Future<Option<mesos::slave::ContainerLaunchInfo>> never = stalled->prepare(first, config);
    never.await(Seconds(30));
    const Duration waited = process::Clock::now() - start;
    check(never.isFailed() && never.failure().find("gave no answer within") != std::string::npos &&
              waited >= Seconds(5) && waited < Seconds(20),
          "an isolator future the engine never answers fails after its answer limit and the margin",
          (never.isFailed() ? never.failure() : std::string("not failed")) + " after " + stringify(waited));
    kill(tracer, SIGKILL);
    waitpid(tracer, nullptr, 0);
    mesos::ContainerID second;
    second.set_value("answered");
    process::Future<Option<mesos::slave::ContainerLaunchInfo>> next = stalled->prepare(second, config);
    next.await(Seconds(20));
    check(next.isReady(), "once the engine runs again, its late answer harms nothing and the next event works",
          next.isFailed() ? next.failure() : "");
  } else if (tracer > 0) {
    kill(tracer, SIGKILL);
    waitpid(tracer, nullptr, 0);
  }
  delete stalled;

  delete hook;
  delete isolator;
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
