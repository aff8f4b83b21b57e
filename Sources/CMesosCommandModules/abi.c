/* The C ABI is implemented in Swift (Sources/MesosCommandModulesABI); this target carries its header, and the
   accessor of the build identity that mesos/link-module.sh links in (weak: a program without it gets NULL). */
#include "mesos_command_modules.h"

extern const char mcm_build_identity_text[] __attribute__((weak));

const char *mcm_build_identity(void) { return mcm_build_identity_text; }
