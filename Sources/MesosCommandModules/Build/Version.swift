/// The project's version, and the one place it is written.
///
/// A Swift constant rather than a VERSION file: `swift build` needs no generation step to see it (SwiftPM caches
/// an evaluated Package.swift, so a file read there could go stale), and mesos/CMakeLists.txt and
/// mesos/link-module.sh read the line below with a regular expression for the package's version and the `.so`'s
/// build identity. Keep it on one line, in this form.
public enum ProjectVersion {
    public static let version = "1.0.0"
}
