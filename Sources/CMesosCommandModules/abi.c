/* The C ABI is implemented in Swift (Sources/MesosCommandModulesABI); this target only carries its header. */
#include "mesos_command_modules.h"
