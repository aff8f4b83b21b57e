// The 22 Mesos module names of the C++ project (SPEC §1): com_criteo_mesos_CommandHook, …Hook2 … …Hook11 and
// com_criteo_mesos_CommandIsolator, …Isolator2 … …Isolator11. Mesos refuses to load one module name twice with
// different parameters, hence the numbered copies.
#include <glog/logging.h>

#include <mesos/module/hook.hpp>
#include <mesos/module/isolator.hpp>

#include "CommandHook.hpp"
#include "CommandIsolator.hpp"

namespace criteo {
namespace mesos {

::mesos::Hook* createHook(const ::mesos::Parameters& parameters)
{
  Try<std::shared_ptr<Engine>> engine = Engine::create(MCM_KIND_HOOK, parameters);
  if (engine.isError()) {
    LOG(ERROR) << "mesos-command-modules: cannot create the hook: " << engine.error();
    return nullptr;
  }
  return new CommandHook(engine.get());
}


::mesos::slave::Isolator* createIsolator(const ::mesos::Parameters& parameters)
{
  Try<std::shared_ptr<Engine>> engine = Engine::create(MCM_KIND_ISOLATOR, parameters);
  if (engine.isError()) {
    LOG(ERROR) << "mesos-command-modules: cannot create the isolator: " << engine.error();
    return nullptr;
  }
  return new CommandIsolator(engine.get());
}

} // namespace mesos {
} // namespace criteo {


#define COMMAND_HOOK(NAME)                                                  \
  mesos::modules::Module<::mesos::Hook> NAME(                               \
      MESOS_MODULE_API_VERSION, MESOS_VERSION, "Criteo Mesos",              \
      "mesos@criteo.com", "Command hook module", nullptr,                   \
      criteo::mesos::createHook);

#define COMMAND_ISOLATOR(NAME)                                              \
  mesos::modules::Module<::mesos::slave::Isolator> NAME(                    \
      MESOS_MODULE_API_VERSION, MESOS_VERSION, "Criteo Mesos",              \
      "mesos@criteo.com", "Command isolator module", nullptr,               \
      criteo::mesos::createIsolator);

COMMAND_HOOK(com_criteo_mesos_CommandHook)
COMMAND_HOOK(com_criteo_mesos_CommandHook2)
COMMAND_HOOK(com_criteo_mesos_CommandHook3)
COMMAND_HOOK(com_criteo_mesos_CommandHook4)
COMMAND_HOOK(com_criteo_mesos_CommandHook5)
COMMAND_HOOK(com_criteo_mesos_CommandHook6)
COMMAND_HOOK(com_criteo_mesos_CommandHook7)
COMMAND_HOOK(com_criteo_mesos_CommandHook8)
COMMAND_HOOK(com_criteo_mesos_CommandHook9)
COMMAND_HOOK(com_criteo_mesos_CommandHook10)
COMMAND_HOOK(com_criteo_mesos_CommandHook11)

COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator2)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator3)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator4)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator5)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator6)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator7)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator8)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator9)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator10)
COMMAND_ISOLATOR(com_criteo_mesos_CommandIsolator11)
