#include "CommandIsolator.hpp"

namespace criteo {
namespace mesos {

using ::mesos::ContainerID;
using ::mesos::slave::ContainerConfig;
using ::mesos::slave::ContainerLaunchInfo;
using ::mesos::slave::ContainerLimitation;
using ::mesos::slave::ContainerState;

using process::Failure;
using process::Future;

namespace {

Future<Nothing> nothing(const Future<Option<std::string>>& output)
{
  return output.then([](const Option<std::string>&) { return Nothing(); });
}

// The event's JSON result parsed as T; `none` when the engine had none.
template <typename T>
Future<T> message(const Future<Option<std::string>>& output, const Option<T>& none)
{
  return output.then([none](const Option<std::string>& json) -> Future<T> {
    if (json.isNone()) {
      if (none.isSome()) {
        return none.get();
      }
      return Future<T>(); // pending: e.g. a watch with nothing to watch
    }
    Try<T> parsed = parse<T>(json.get());
    if (parsed.isError()) {
      return Failure(parsed.error());
    }
    return parsed.get();
  });
}

} // namespace {


Future<Nothing> CommandIsolator::recover(
    const std::vector<ContainerState>& states,
    const hashset<ContainerID>& orphans)
{
  JSON::Array statesJson;
  for (const ContainerState& state : states) {
    statesJson.values.push_back(JSON::protobuf(state));
  }
  JSON::Array orphansJson;
  for (const ContainerID& orphan : orphans) {
    orphansJson.values.push_back(JSON::protobuf(orphan));
  }
  return nothing(engine_->run("isolator_recover", {
      {"states", stringify(statesJson)},
      {"orphans", stringify(orphansJson)}}));
}


Future<Option<ContainerLaunchInfo>> CommandIsolator::prepare(
    const ContainerID& containerId,
    const ContainerConfig& containerConfig)
{
  return engine_->run("isolator_prepare", {
      {"container_id", render(containerId)},
      {"container_config", render(containerConfig)}})
    .then([](const Option<std::string>& json) -> Future<Option<ContainerLaunchInfo>> {
      if (json.isNone()) {
        return None();
      }
      Try<ContainerLaunchInfo> info = parse<ContainerLaunchInfo>(json.get());
      if (info.isError()) {
        return Failure(info.error());
      }
      return Option<ContainerLaunchInfo>(info.get());
    });
}


Future<Nothing> CommandIsolator::isolate(const ContainerID& containerId, pid_t pid)
{
  return nothing(engine_->run("isolator_isolate", {
      {"container_id", render(containerId)},
      {"pid", stringify(pid)}}));
}


// The engine runs the watch loop; discarding the returned future (Mesos does when the container is
// destroyed) cancels it, its command included. Unbounded: it stays pending until a limitation comes.
Future<ContainerLimitation> CommandIsolator::watch(const ContainerID& containerId)
{
  return message<ContainerLimitation>(
      engine_->run("isolator_watch", {{"container_id", render(containerId)}}, false), None());
}


#if MESOS_MAJOR_VERSION_NUM == 1 && MESOS_MINOR_VERSION_NUM < 10
Future<Nothing> CommandIsolator::update(
    const ContainerID& containerId,
    const ::mesos::Resources& resources)
{
  return updateWith(containerId, resources, "{}");
}
#else
Future<Nothing> CommandIsolator::update(
    const ContainerID& containerId,
    const ::mesos::Resources& resourceRequests,
    const google::protobuf::Map<std::string, ::mesos::Value::Scalar>& resourceLimits)
{
  JSON::Object limits;
  for (const auto& limit : resourceLimits) {
    limits.values[limit.first] = JSON::protobuf(limit.second);
  }
  return updateWith(containerId, resourceRequests, stringify(limits));
}
#endif


Future<Nothing> CommandIsolator::updateWith(
    const ContainerID& containerId,
    const ::mesos::Resources& requests,
    const std::string& limits)
{
  const google::protobuf::RepeatedPtrField<::mesos::Resource>& repeated = requests;
  return nothing(engine_->run("isolator_update", {
      {"container_id", render(containerId)},
      {"resource_requests", render(repeated)},
      {"resource_limits", limits}}));
}


Future<::mesos::ResourceStatistics> CommandIsolator::usage(const ContainerID& containerId)
{
  return message<::mesos::ResourceStatistics>(
      engine_->run("isolator_usage", {{"container_id", render(containerId)}}),
      ::mesos::ResourceStatistics());
}


Future<::mesos::ContainerStatus> CommandIsolator::status(const ContainerID& containerId)
{
  return message<::mesos::ContainerStatus>(
      engine_->run("isolator_status", {{"container_id", render(containerId)}}),
      ::mesos::ContainerStatus());
}


Future<Nothing> CommandIsolator::cleanup(const ContainerID& containerId)
{
  return nothing(engine_->run("isolator_cleanup", {{"container_id", render(containerId)}}));
}

} // namespace mesos {
} // namespace criteo {
