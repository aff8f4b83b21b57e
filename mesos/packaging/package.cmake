# The CLI, the installation and the Debian package, included by ../CMakeLists.txt once the module is defined.
#
# Layout under CMAKE_INSTALL_PREFIX (default /usr):
#   lib/mesos/modules/libmesos_command_modules.so          the module (the agent's --modules manifest names it)
#   bin/mesos-command-modules                              the CLI, with the Swift runtime linked in
#   share/mesos-command-modules/examples/                  the example scripts, and a modules.json naming them here
#   share/mesos-command-modules/systemd/                   an example drop-in for the mesos-agent unit
#   lib/python3/dist-packages/mesos_command_modules.py     the Python helper (import mesos_command_modules)
#   share/doc/mesos-command-modules/                       copyright, changelog, README
#   share/man/man1/mesos-command-modules.1.gz
#
# CPack's DEB generator, rather than a debian/ directory and dpkg-buildpackage: the package is made from the same
# CMake build that links the module against one Mesos, so the Mesos version it was built for is known here and
# goes into its version and file name, and operators who build their own need nothing but cmake.
set(REPO "${CMAKE_CURRENT_SOURCE_DIR}/..")
set(PACKAGING "${CMAKE_CURRENT_SOURCE_DIR}/packaging")
set(MODULE_DIR "lib/mesos/modules")
set(SHARE_DIR "share/mesos-command-modules")
set(DOC_DIR "share/doc/mesos-command-modules")
set(STAGE "${CMAKE_CURRENT_BINARY_DIR}/stage")

# The CLI, release, with the Swift runtime linked statically: an agent has no Swift toolchain. SwiftPM decides what
# to rebuild; it shares the engine's release build with link-module.sh (run one after the other).
set(CLI_BUILT "${SWIFT_SCRATCH_PATH}/release/mesos-command-modules")
add_custom_target(cli ALL
  COMMAND swift build -c release --static-swift-stdlib --package-path "${REPO}" --scratch-path "${SWIFT_SCRATCH_PATH}"
          --product mesos-command-modules
  BYPRODUCTS "${CLI_BUILT}"
  VERBATIM
  COMMENT "Building the mesos-command-modules CLI (release, static Swift runtime)")
add_dependencies(cli module)

# Stripped copies of both (as dh_strip would), the build identity section kept: it is allocated data, not a symbol.
add_custom_command(
  OUTPUT "${STAGE}/libmesos_command_modules.so" "${STAGE}/mesos-command-modules"
  COMMAND "${CMAKE_COMMAND}" -E make_directory "${STAGE}"
  COMMAND strip --strip-unneeded --remove-section=.comment --remove-section=.note -o
          "${STAGE}/libmesos_command_modules.so" "${MODULE}"
  COMMAND strip --strip-unneeded --remove-section=.comment --remove-section=.note -o
          "${STAGE}/mesos-command-modules" "${CLI_BUILT}"
  DEPENDS "${MODULE}" cli
  VERBATIM)

# The examples' manifest with the paths they have once installed (the checkout's is relative to its directory).
set(INSTALLED_EXAMPLES "${CMAKE_INSTALL_PREFIX}/${SHARE_DIR}/examples")
file(READ "${REPO}/examples/modules.json" manifest)
foreach(dir hooks isolator workers)
  string(REPLACE "\"value\": \"${dir}/" "\"value\": \"${INSTALLED_EXAMPLES}/${dir}/" manifest "${manifest}")
endforeach()
string(REPLACE "\"/usr/lib/mesos/modules/libmesos_command_modules.so\""
               "\"${CMAKE_INSTALL_PREFIX}/${MODULE_DIR}/libmesos_command_modules.so\"" manifest "${manifest}")
if(manifest MATCHES "\"value\": \"[a-z_]+/")
  message(FATAL_ERROR "examples/modules.json has a relative path that package.cmake does not rewrite")
endif()
file(WRITE "${STAGE}/modules.json" "${manifest}")
file(MAKE_DIRECTORY "${STAGE}/lib")

# Who the package names as its maintainer (the Maintainer field, the changelog's trailer). Operators who build
# their own package put their team: -DMCM_PACKAGE_MAINTAINER="Mesos team <mesos-team@example.com>". The default
# names no real person or company: the .invalid domain is reserved and never delivers (RFC 2606).
set(MCM_PACKAGE_MAINTAINER "mesos-command-modules packagers <packagers@localhost.invalid>" CACHE STRING
    "The Debian package's maintainer, as 'Name <address>'")
if(NOT MCM_PACKAGE_MAINTAINER MATCHES "^[^<>@]*[^<>@ ] <[^<>@ ]+@[^<>@ ]+\\.[^<>@ ]+>$")
  message(FATAL_ERROR "MCM_PACKAGE_MAINTAINER is '${MCM_PACKAGE_MAINTAINER}': give 'Name <address>', e.g. "
          "-DMCM_PACKAGE_MAINTAINER=\"Mesos team <mesos-team@example.com>\"")
endif()

# The Debian changelog and the man page, compressed as Debian wants them (gzip -9n: no name, no time stamp).
string(REPLACE "-" "~" MESOS_VERSION_DEB "${MESOS_VERSION}")
string(SUBSTRING "${MESOS_COMMIT}" 0 12 MESOS_COMMIT_SHORT)
set(PACKAGE_VERSION "${MCM_VERSION}+mesos${MESOS_VERSION_DEB}")
string(TIMESTAMP changelog_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE "${STAGE}/changelog" "mesos-command-modules (${PACKAGE_VERSION}) unstable; urgency=medium

  * mesos-command-modules ${MCM_VERSION}, built for Apache Mesos ${MESOS_VERSION}
    (commit ${MESOS_COMMIT_SHORT}).

 -- ${MCM_PACKAGE_MAINTAINER}  ${changelog_date}
")
add_custom_command(
  OUTPUT "${STAGE}/changelog.gz" "${STAGE}/mesos-command-modules.1.gz" "${STAGE}/README.md.gz"
  COMMAND sh -c "gzip -9n < changelog > changelog.gz && gzip -9n < '${PACKAGING}/mesos-command-modules.1' > mesos-command-modules.1.gz && gzip -9n < '${REPO}/README.md' > README.md.gz"
  WORKING_DIRECTORY "${STAGE}"
  DEPENDS "${STAGE}/changelog" "${PACKAGING}/mesos-command-modules.1" "${REPO}/README.md"
  VERBATIM)
add_custom_target(package_files ALL DEPENDS
  "${STAGE}/libmesos_command_modules.so" "${STAGE}/mesos-command-modules" "${STAGE}/changelog.gz"
  "${STAGE}/mesos-command-modules.1.gz" "${STAGE}/README.md.gz")

set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
install(FILES "${STAGE}/libmesos_command_modules.so" DESTINATION "${MODULE_DIR}")
install(PROGRAMS "${STAGE}/mesos-command-modules" DESTINATION bin)
install(DIRECTORY "${REPO}/examples/hooks" "${REPO}/examples/isolator" "${REPO}/examples/workers"
        DESTINATION "${SHARE_DIR}/examples" USE_SOURCE_PERMISSIONS)
install(FILES "${REPO}/examples/lib.sh" "${STAGE}/modules.json" DESTINATION "${SHARE_DIR}/examples")
install(FILES "${PACKAGING}/mesos-command-modules.conf" DESTINATION "${SHARE_DIR}/systemd")
install(FILES "${REPO}/examples/lib/mesos_command_modules.py" DESTINATION lib/python3/dist-packages)
# The examples import the helper from ../lib (as in the checkout), so that any python3 finds it, not only the
# system's: there, a link to the installed one.
file(CREATE_LINK "../../../../lib/python3/dist-packages/mesos_command_modules.py"
     "${STAGE}/lib/mesos_command_modules.py" SYMBOLIC)
install(FILES "${STAGE}/lib/mesos_command_modules.py" DESTINATION "${SHARE_DIR}/examples/lib")
install(FILES "${PACKAGING}/copyright" "${STAGE}/changelog.gz" "${STAGE}/README.md.gz" DESTINATION "${DOC_DIR}")
install(FILES "${STAGE}/mesos-command-modules.1.gz" DESTINATION share/man/man1)
install(FILES "${PACKAGING}/lintian-overrides" DESTINATION share/lintian/overrides RENAME mesos-command-modules)

# The Debian package, one per Mesos version: the version says which (1.0.0+mesos1.11.0; 1.12.0-dev becomes
# 1.12.0~dev, which sorts before 1.12.0 as it should). One package name for all: installing another replaces it.
execute_process(COMMAND dpkg --print-architecture OUTPUT_VARIABLE DEB_ARCH OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
if(NOT DEB_ARCH)
  set(DEB_ARCH amd64)
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mesos-command-modules)
set(CPACK_PACKAGE_VERSION "${PACKAGE_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_PACKAGE_CONTACT "${MCM_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${MCM_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_VERSION "${PACKAGE_VERSION}")
set(CPACK_DEBIAN_FILE_NAME "mesos-command-modules_${PACKAGE_VERSION}_${DEB_ARCH}.deb")
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "${DEB_ARCH}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libc6 (>= 2.34), libgcc-s1, libstdc++6, python3")
# CPack indents each line of the long description by one space itself.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "Mesos modules that run scripts on Hook and Isolator events
mesos-command-modules extends every container's life on an Apache Mesos agent
(or master) with the operator's scripts: on each Hook event (task launch,
executor environment, task status...) and each Isolator event (prepare,
isolate, watch, update, usage, status, cleanup, recover) it runs a command
with the event as JSON and hands its JSON answer back to Mesos.
.
This build is for Apache Mesos ${MESOS_VERSION} only (commit ${MESOS_COMMIT_SHORT}):
an agent refuses a module built for another Mesos. It holds the module, the
mesos-command-modules command (validate a manifest, run one event, simulate a
container), example scripts and their manifest, and a Python helper.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_STRIP_FILES FALSE)
set(CPACK_OUTPUT_FILE_PREFIX "${CMAKE_CURRENT_BINARY_DIR}")
include(CPack)
