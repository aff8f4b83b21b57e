#ifndef MESOS_COMMAND_MODULES_COMMAND_HOOK_HPP
#define MESOS_COMMAND_MODULES_COMMAND_HOOK_HPP

#include <map>
#include <memory>
#include <string>

#include <mesos/attributes.hpp>
#include <mesos/hook.hpp>
#include <mesos/resources.hpp>

#include "Engine.hpp"

namespace criteo {
namespace mesos {

// mesos::Hook: each method renders its messages, runs its event in the engine, parses the result.
class CommandHook : public ::mesos::Hook
{
public:
  explicit CommandHook(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {}

  Result<::mesos::Labels> masterLaunchTaskLabelDecorator(
      const ::mesos::TaskInfo& taskInfo,
      const ::mesos::FrameworkInfo& frameworkInfo,
      const ::mesos::SlaveInfo& slaveInfo) override;

  Result<::mesos::Resources> masterLaunchTaskResourceDecorator(
      const ::mesos::TaskInfo& taskInfo,
      const ::mesos::Resources& slaveResources) override;

  Result<::mesos::Labels> slaveRunTaskLabelDecorator(
      const ::mesos::TaskInfo& taskInfo,
      const ::mesos::ExecutorInfo& executorInfo,
      const ::mesos::FrameworkInfo& frameworkInfo,
      const ::mesos::SlaveInfo& slaveInfo) override;

  Try<Nothing> masterSlaveLostHook(const ::mesos::SlaveInfo& slaveInfo) override;

  Result<::mesos::Environment> slaveExecutorEnvironmentDecorator(
      const ::mesos::ExecutorInfo& executorInfo) override;

  process::Future<Option<::mesos::DockerTaskExecutorPrepareInfo>>
  slavePreLaunchDockerTaskExecutorDecorator(
      const Option<::mesos::TaskInfo>& taskInfo,
      const ::mesos::ExecutorInfo& executorInfo,
      const std::string& containerName,
      const std::string& containerWorkDirectory,
      const std::string& mappedSandboxDirectory,
      const Option<std::map<std::string, std::string>>& env) override;

  Try<Nothing> slavePostFetchHook(
      const ::mesos::ContainerID& containerId,
      const std::string& directory) override;

  Try<Nothing> slaveRemoveExecutorHook(
      const ::mesos::FrameworkInfo& frameworkInfo,
      const ::mesos::ExecutorInfo& executorInfo) override;

  Result<::mesos::TaskStatus> slaveTaskStatusDecorator(
      const ::mesos::FrameworkID& frameworkId,
      const ::mesos::TaskStatus& status) override;

  Result<::mesos::Resources> slaveResourcesDecorator(
      const ::mesos::SlaveInfo& slaveInfo) override;

  Result<::mesos::Attributes> slaveAttributesDecorator(
      const ::mesos::SlaveInfo& slaveInfo) override;

private:
  std::shared_ptr<Engine> engine_;
};

} // namespace mesos {
} // namespace criteo {

#endif
