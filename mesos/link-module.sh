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
# - the version script exports only the Mesos module symbols and the C ABI (otherwise ~1,650 Swift symbols).
set -euo pipefail
output=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
scratch=${SWIFT_SCRATCH_PATH:-$repo/.build}
swift_bin=$(dirname "$(command -v swift)")
swift_static=${SWIFT_STATIC_LIB_DIR:-$(cd "$swift_bin/../lib/swift_static/linux" && pwd)}

swift build -c release --package-path "$repo" --scratch-path "$scratch" --product MesosCommandModulesABI >&2
archive="$scratch/release/libMesosCommandModulesABI.a"

"${CXX:-g++}" -shared -fPIC -o "$output" "$@" \
  "$swift_static/x86_64/swiftrt.o" \
  -Wl,--whole-archive "$archive" -Wl,--no-whole-archive \
  -L"$swift_static" \
  -lswift_Concurrency -lswiftSynchronization -lswiftGlibc -lswiftDispatch -lswift_StringProcessing \
  -lswift_RegexParser -lswiftCore -ldispatch -lBlocksRuntime \
  -lstdc++ -lm -ldl -lpthread \
  -Wl,-z,nodelete -Wl,--version-script="$here/exports.map"
echo "linked $output" >&2
