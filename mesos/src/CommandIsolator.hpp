#ifndef MESOS_COMMAND_MODULES_COMMAND_ISOLATOR_HPP
#define MESOS_COMMAND_MODULES_COMMAND_ISOLATOR_HPP

#include <memory>
#include <string>
#include <vector>

#include <mesos/resources.hpp>
#include <mesos/slave/isolator.hpp>
#include <mesos/version.hpp>

#include <stout/hashset.hpp>

#include "Engine.hpp"

namespace criteo {
namespace mesos {

// mesos::slave::Isolator: each method renders its messages, runs its event in the engine (which keeps the
// containers' state and never makes one container wait for another) and turns the result into a Future.
class CommandIsolator : public ::mesos::slave::Isolator
{
public:
  explicit CommandIsolator(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {}

  bool supportsNesting() override { return true; }

  process::Future<Nothing> recover(
      const std::vector<::mesos::slave::ContainerState>& states,
      const hashset<::mesos::ContainerID>& orphans) override;

  process::Future<Option<::mesos::slave::ContainerLaunchInfo>> prepare(
      const ::mesos::ContainerID& containerId,
      const ::mesos::slave::ContainerConfig& containerConfig) override;

  process::Future<Nothing> isolate(
      const ::mesos::ContainerID& containerId, pid_t pid) override;

  process::Future<::mesos::slave::ContainerLimitation> watch(
      const ::mesos::ContainerID& containerId) override;

#if MESOS_MAJOR_VERSION_NUM == 1 && MESOS_MINOR_VERSION_NUM < 10
  process::Future<Nothing> update(
      const ::mesos::ContainerID& containerId,
      const ::mesos::Resources& resources) override;
#else
  process::Future<Nothing> update(
      const ::mesos::ContainerID& containerId,
      const ::mesos::Resources& resourceRequests,
      const google::protobuf::Map<std::string, ::mesos::Value::Scalar>& resourceLimits = {}) override;
#endif

  process::Future<::mesos::ResourceStatistics> usage(
      const ::mesos::ContainerID& containerId) override;

  process::Future<::mesos::ContainerStatus> status(
      const ::mesos::ContainerID& containerId) override;

  process::Future<Nothing> cleanup(const ::mesos::ContainerID& containerId) override;

private:
  process::Future<Nothing> updateWith(
      const ::mesos::ContainerID& containerId,
      const ::mesos::Resources& requests,
      const std::string& limits);

  std::shared_ptr<Engine> engine_;
};

} // namespace mesos {
} // namespace criteo {

#endif
