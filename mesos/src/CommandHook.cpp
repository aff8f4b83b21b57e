#include "CommandHook.hpp"

namespace criteo {
namespace mesos {

namespace {

// A decorator's result: Error on failure, None for no change, else the parsed message.
template <typename T>
Result<T> decorated(const Try<Option<std::string>>& output)
{
  if (output.isError()) {
    return Error(output.error());
  }
  if (output->isNone()) {
    return None();
  }
  Try<T> message = parse<T>(output->get());
  if (message.isError()) {
    return Error(message.error());
  }
  return message.get();
}

Try<Nothing> done(const Try<Option<std::string>>& output)
{
  if (output.isError()) {
    return Error(output.error());
  }
  return Nothing();
}

std::string jsonString(const std::string& value)
{
  return stringify(JSON::String(value));
}

using RepeatedResources = google::protobuf::RepeatedPtrField<::mesos::Resource>;
using RepeatedAttributes = google::protobuf::RepeatedPtrField<::mesos::Attribute>;

Result<::mesos::Resources> resources(const Try<Option<std::string>>& output)
{
  Result<RepeatedResources> parsed = decorated<RepeatedResources>(output);
  if (parsed.isError()) {
    return Error(parsed.error());
  }
  if (parsed.isNone()) {
    return None();
  }
  return ::mesos::Resources(parsed.get());
}

} // namespace {


Result<::mesos::Labels> CommandHook::masterLaunchTaskLabelDecorator(
    const ::mesos::TaskInfo& taskInfo,
    const ::mesos::FrameworkInfo& frameworkInfo,
    const ::mesos::SlaveInfo& slaveInfo)
{
  const std::string event = "hook_master_launch_task_label_decorator";
  if (!engine_->handles(event)) {
    return None();
  }
  return decorated<::mesos::Labels>(engine_->runAndWait(event, {
      {"task_info", render(taskInfo)},
      {"framework_info", render(frameworkInfo)},
      {"slave_info", render(slaveInfo)}}));
}


Result<::mesos::Resources> CommandHook::masterLaunchTaskResourceDecorator(
    const ::mesos::TaskInfo& taskInfo,
    const ::mesos::Resources& slaveResources)
{
  const std::string event = "hook_master_launch_task_resource_decorator";
  if (!engine_->handles(event)) {
    return None();
  }
  const RepeatedResources& repeated = slaveResources;
  return resources(engine_->runAndWait(event, {
      {"task_info", render(taskInfo)},
      {"slave_resources", render(repeated)}}));
}


Result<::mesos::Labels> CommandHook::slaveRunTaskLabelDecorator(
    const ::mesos::TaskInfo& taskInfo,
    const ::mesos::ExecutorInfo& executorInfo,
    const ::mesos::FrameworkInfo& frameworkInfo,
    const ::mesos::SlaveInfo& slaveInfo)
{
  const std::string event = "hook_slave_run_task_label_decorator";
  if (!engine_->handles(event)) {
    return None();
  }
  return decorated<::mesos::Labels>(engine_->runAndWait(event, {
      {"task_info", render(taskInfo)},
      {"executor_info", render(executorInfo)},
      {"framework_info", render(frameworkInfo)},
      {"slave_info", render(slaveInfo)}}));
}


Try<Nothing> CommandHook::masterSlaveLostHook(const ::mesos::SlaveInfo& slaveInfo)
{
  const std::string event = "hook_master_slave_lost_hook";
  if (!engine_->handles(event)) {
    return Nothing();
  }
  return done(engine_->runAndWait(event, {{"slave_info", render(slaveInfo)}}));
}


Result<::mesos::Environment> CommandHook::slaveExecutorEnvironmentDecorator(
    const ::mesos::ExecutorInfo& executorInfo)
{
  const std::string event = "hook_slave_executor_environment_decorator";
  if (!engine_->handles(event)) {
    return None();
  }
  return decorated<::mesos::Environment>(
      engine_->runAndWait(event, {{"executor_info", render(executorInfo)}}));
}


process::Future<Option<::mesos::DockerTaskExecutorPrepareInfo>>
CommandHook::slavePreLaunchDockerTaskExecutorDecorator(
    const Option<::mesos::TaskInfo>& taskInfo,
    const ::mesos::ExecutorInfo& executorInfo,
    const std::string& containerName,
    const std::string& containerWorkDirectory,
    const std::string& mappedSandboxDirectory,
    const Option<std::map<std::string, std::string>>& env)
{
  using Info = ::mesos::DockerTaskExecutorPrepareInfo;
  const std::string event = "hook_slave_pre_launch_docker_task_executor_decorator";
  if (!engine_->handles(event)) {
    return None();
  }
  Fragments fragments;
  if (taskInfo.isSome()) {
    fragments.push_back({"task_info", render(taskInfo.get())});
  }
  fragments.push_back({"executor_info", render(executorInfo)});
  fragments.push_back({"container_name", jsonString(containerName)});
  fragments.push_back({"container_work_directory", jsonString(containerWorkDirectory)});
  fragments.push_back({"mapped_sandbox_directory", jsonString(mappedSandboxDirectory)});
  if (env.isSome()) {
    JSON::Object object;
    for (const auto& variable : env.get()) {
      object.values[variable.first] = variable.second;
    }
    fragments.push_back({"env", stringify(object)});
  }
  return engine_->run(event, fragments)
    .then([](const Option<std::string>& output) -> process::Future<Option<Info>> {
      if (output.isNone()) {
        return None();
      }
      Try<Info> info = parse<Info>(output.get());
      if (info.isError()) {
        return process::Failure(info.error());
      }
      return Option<Info>(info.get());
    });
}


Try<Nothing> CommandHook::slavePostFetchHook(
    const ::mesos::ContainerID& containerId,
    const std::string& directory)
{
  const std::string event = "hook_slave_post_fetch_hook";
  if (!engine_->handles(event)) {
    return Nothing();
  }
  return done(engine_->runAndWait(event, {
      {"container_id", render(containerId)},
      {"directory", jsonString(directory)}}));
}


Try<Nothing> CommandHook::slaveRemoveExecutorHook(
    const ::mesos::FrameworkInfo& frameworkInfo,
    const ::mesos::ExecutorInfo& executorInfo)
{
  const std::string event = "hook_slave_remove_executor_hook";
  if (!engine_->handles(event)) {
    return Nothing();
  }
  return done(engine_->runAndWait(event, {
      {"framework_info", render(frameworkInfo)},
      {"executor_info", render(executorInfo)}}));
}


Result<::mesos::TaskStatus> CommandHook::slaveTaskStatusDecorator(
    const ::mesos::FrameworkID& frameworkId,
    const ::mesos::TaskStatus& status)
{
  const std::string event = "hook_slave_task_status_decorator";
  if (!engine_->handles(event)) {
    return None();
  }
  // The engine returns the whole status with the command's labels and container_status merged over it.
  return decorated<::mesos::TaskStatus>(engine_->runAndWait(event, {
      {"framework_id", render(frameworkId)},
      {"task_status", render(status)}}));
}


Result<::mesos::Resources> CommandHook::slaveResourcesDecorator(
    const ::mesos::SlaveInfo& slaveInfo)
{
  const std::string event = "hook_slave_resources_decorator";
  if (!engine_->handles(event)) {
    return None();
  }
  return resources(engine_->runAndWait(event, {{"slave_info", render(slaveInfo)}}));
}


Result<::mesos::Attributes> CommandHook::slaveAttributesDecorator(
    const ::mesos::SlaveInfo& slaveInfo)
{
  const std::string event = "hook_slave_attributes_decorator";
  if (!engine_->handles(event)) {
    return None();
  }
  Result<RepeatedAttributes> attributes = decorated<RepeatedAttributes>(
      engine_->runAndWait(event, {{"slave_info", render(slaveInfo)}}));
  if (attributes.isError()) {
    return Error(attributes.error());
  }
  if (attributes.isNone()) {
    return None();
  }
  return ::mesos::Attributes(attributes.get());
}

} // namespace mesos {
} // namespace criteo {
