#!/usr/bin/env bash
# Lays out a Mesos build tree (MESOS_ROOT_DIR, MESOS_BUILD_DIR) under PREFIX the way `make install` installs Mesos
# when configured with --enable-install-module-dependencies, with symbolic links:
#
#   PREFIX/include/{mesos,csi,process,stout}     Mesos' headers, the generated ones merged with the sources'
#   PREFIX/lib/libmesos*.so*                     the library
#   PREFIX/lib/mesos/3rdparty/include/           the bundled headers a module needs (boost, glog, picojson, …)
#
# CI builds the module against it (MESOS_INSTALL_DIR=PREFIX) to check the README's "installed Mesos" build.
#
#   MESOS_ROOT_DIR=~/mesos MESOS_BUILD_DIR=~/mesos/build Tests/MesosAgent/install-layout.sh /tmp/mesos-prefix
set -euo pipefail
prefix=$1
: "${MESOS_ROOT_DIR:?set MESOS_ROOT_DIR}" "${MESOS_BUILD_DIR:?set MESOS_BUILD_DIR}"
root=$(cd "$MESOS_ROOT_DIR" && pwd)
build=$(cd "$MESOS_BUILD_DIR" && pwd)
third_party=$prefix/lib/mesos/3rdparty/include
mkdir -p "$prefix/include" "$third_party"

cp -rs "$root/include/mesos" "$prefix/include/"
cp -rsn "$build/include/mesos" "$prefix/include/"
if [ -d "$build/include/csi" ]; then cp -rs "$build/include/csi" "$prefix/include/"; fi
cp -rs "$root/3rdparty/libprocess/include/process" "$root/3rdparty/stout/include/stout" "$prefix/include/"
for library in "$build"/src/.libs/libmesos*.so*; do ln -sf "$library" "$prefix/lib/"; done

shopt -s nullglob
for header in "$build"/3rdparty/boost-*/boost "$build"/3rdparty/glog-*/src/glog "$build"/3rdparty/picojson-*/picojson.h \
  "$build"/3rdparty/rapidjson-*/include/rapidjson "$build"/3rdparty/concurrentqueue-*/concurrentqueue.h \
  "$build"/3rdparty/elfio-*/elfio; do
  cp -rs "$header" "$third_party/"
done
