#!/usr/bin/env bash
# Links a shared library from the Swift engine (the MesosCommandModulesABI static archive, built here in
# release mode) with the Swift runtime linked statically, plus any extra objects/flags given (the Mesos shim's).
#
#   mesos/link-module.sh OUTPUT.so [OBJECT.o ... -lfoo ...]
#
# Why each flag (measured on a prototype: a C++ host dlopen()ing a Swift .so):
# - the Swift runtime is linked statically (libswiftCore.a, …): the agent host needs no Swift toolchain and no
#   LD_LIBRARY_PATH, and the .so is one file to deploy; --static-swift-stdlib is ignored for SwiftPM .dynamic
#   products, hence this explicit link;
# - swiftrt.o registers the Swift metadata sections: without it the first call crashes in the concurrency runtime;
# - -z nodelete: Dispatch's threads run code of this library; unmapping it at dlclose would crash them;
# - the version script exports only the Mesos module symbols and the C ABI (otherwise ~1,650 Swift symbols);
# - the build identity (the project's version from Sources/MesosCommandModules/Build/Version.swift, and
#   MCM_MESOS_VERSION / MCM_MESOS_COMMIT, which mesos/CMakeLists.txt sets; `none` for the engine linked without
#   the shim) is text in a section of its own, `.mesos_command_modules`: `mesos-command-modules inspect FILE.so`
#   (or `readelf -p .mesos_command_modules FILE.so`) reads it without loading the library, and the engine logs it
#   when a module loads.
set -euo pipefail
output=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
scratch=${SWIFT_SCRATCH_PATH:-$repo/.build}
swift_bin=$(dirname "$(command -v swift)")
swift_static=${SWIFT_STATIC_LIB_DIR:-$(cd "$swift_bin/../lib/swift_static/linux" && pwd)}

version=$(sed -n 's/^ *public static let version = "\(.*\)"$/\1/p' "$repo/Sources/MesosCommandModules/Build/Version.swift")
mesos_version=${MCM_MESOS_VERSION:-none}
mesos_commit=${MCM_MESOS_COMMIT:-none}
for field in "$version" "$mesos_version" "$mesos_commit"; do
  if ! [[ $field =~ ^[A-Za-z0-9._+~-]+$ ]]; then
    echo "link-module.sh: build identity field '$field' is empty or has characters other than [A-Za-z0-9._+~-]" >&2
    exit 1
  fi
done
identity_dir=$(mktemp -d)
trap 'rm -rf "$identity_dir"' EXIT
printf '%s\n' \
  '/* The build identity (see mesos/link-module.sh); the engine reads it through mcm_build_identity(). */' \
  '__attribute__((section(".mesos_command_modules"), used, visibility("hidden")))' \
  "const char mcm_build_identity_text[] = \"mesos-command-modules build identity\\nversion=$version\\nmesos_version=$mesos_version\\nmesos_commit=$mesos_commit\\n\";" \
  > "$identity_dir/identity.c"
"${CC:-cc}" -c -fPIC -o "$identity_dir/identity.o" "$identity_dir/identity.c"

# --static-swift-stdlib, as the CLI is built: the same flags let both share one release build instead of
# recompiling the engine each time the other is built.
swift build -c release --static-swift-stdlib --package-path "$repo" --scratch-path "$scratch" \
  --product MesosCommandModulesABI >&2
archive="$scratch/release/libMesosCommandModulesABI.a"

"${CXX:-g++}" -shared -fPIC -o "$output" "$@" \
  "$identity_dir/identity.o" "$swift_static/x86_64/swiftrt.o" \
  -Wl,--whole-archive "$archive" -Wl,--no-whole-archive \
  -L"$swift_static" \
  -lswift_Concurrency -lswiftSynchronization -lswiftGlibc -lswiftDispatch -lswift_StringProcessing \
  -lswift_RegexParser -lswiftCore -ldispatch -lBlocksRuntime \
  -lstdc++ -lm -ldl -lpthread \
  -Wl,-z,nodelete -Wl,--version-script="$here/exports.map"
echo "linked $output" >&2
