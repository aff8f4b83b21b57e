#!/usr/bin/env python3
"""Generate Sources/MesosCommandModules/Schema/MesosSchema+Generated.swift from Mesos' .proto files.

The engine checks a command's output against the Mesos message its event expects (field names, JSON types,
required fields, enum names) the way stout's `protobuf::parse` will in the agent, so that a mistake is reported
with the field at fault, in the CLI as in the agent. This script extracts the field tables of the messages the
engine needs from Mesos' own .proto files; it reads them and builds nothing.

Usage:
  scripts/generate-mesos-schema.py --source MESOS_ROOT_DIR
  scripts/generate-mesos-schema.py --git MESOS_GIT_DIR [--rev HEAD]
"""
import argparse
import os
import re
import subprocess
import sys

FILES = [
    "include/mesos/mesos.proto",
    "include/mesos/module/hook.proto",
    "include/mesos/slave/containerizer.proto",
    "include/mesos/appc/spec.proto",
    "include/mesos/docker/v1.proto",
    "include/mesos/seccomp/seccomp.proto",
]

# The messages whose JSON form commands produce (SPEC §4, §5), and the ones the state file holds.
ROOTS = [
    "mesos.Labels", "mesos.Resource", "mesos.Environment", "mesos.DockerTaskExecutorPrepareInfo",
    "mesos.TaskStatus", "mesos.Attribute", "mesos.ResourceStatistics", "mesos.ContainerStatus",
    "mesos.slave.ContainerLaunchInfo", "mesos.slave.ContainerLimitation", "mesos.slave.ContainerConfig",
    "mesos.ContainerID",
]

SCALARS = {"string", "bytes", "bool", "double", "float", "int32", "int64", "uint32", "uint64", "sint32",
           "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64"}


def tokenize(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.findall(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_.]*|-?\d+|[{}\[\]<>=;,()]', text)


class Parser:
    def __init__(self, tokens, package):
        self.t, self.i, self.package = tokens, 0, package
        self.messages, self.enums = {}, {}

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected=None):
        tok = self.t[self.i]
        self.i += 1
        if expected is not None and tok != expected:
            raise SystemExit(f"expected {expected!r}, got {tok!r} at token {self.i}")
        return tok

    def skip_statement(self):
        depth = 0
        while True:
            tok = self.take()
            if tok == "{":
                depth += 1
            elif tok == "}":
                depth -= 1
                if depth == 0:
                    return
            elif tok == ";" and depth == 0:
                return

    def skip_options(self):
        if self.peek() == "[":
            while self.take() != "]":
                pass

    def parse_file(self):
        while self.peek() is not None:
            tok = self.peek()
            if tok == "message":
                self.parse_message(self.package)
            elif tok == "enum":
                self.parse_enum(self.package)
            else:
                self.skip_statement()

    def parse_enum(self, scope):
        self.take("enum")
        name = f"{scope}.{self.take()}"
        self.take("{")
        values = []
        while self.peek() != "}":
            tok = self.take()
            if tok in ("option", "reserved"):
                self.i -= 1
                self.skip_statement()
                continue
            self.take("=")
            self.take()
            self.skip_options()
            self.take(";")
            values.append(tok)
        self.take("}")
        self.enums[name] = values

    def parse_field(self, label, scope, fields):
        if self.peek() == "map":
            self.take("map")
            self.take("<")
            key = self.take()
            self.take(",")
            value = self.take()
            self.take(">")
            ftype = ("map", key, value, scope)
        else:
            ftype = ("ref", self.take(), scope)
        name = self.take()
        self.take("=")
        self.take()
        self.skip_options()
        self.take(";")
        fields.append((name, label, ftype))

    def parse_message(self, scope):
        self.take("message")
        name = f"{scope}.{self.take()}"
        self.take("{")
        fields = []
        while self.peek() != "}":
            tok = self.peek()
            if tok == "message":
                self.parse_message(name)
            elif tok == "enum":
                self.parse_enum(name)
            elif tok in ("optional", "required", "repeated"):
                self.parse_field(self.take(), name, fields)
            elif tok == "oneof":
                self.take("oneof")
                self.take()
                self.take("{")
                while self.peek() != "}":
                    if self.peek() == "option":
                        self.skip_statement()
                    else:
                        self.parse_field("optional", name, fields)
                self.take("}")
            elif tok == "map":
                self.parse_field("optional", name, fields)
            else:
                self.skip_statement()
        self.take("}")
        self.messages[name] = fields


def resolve(name, scope, messages, enums):
    if name in SCALARS:
        return name
    if name.startswith("."):
        name = name[1:]
    parts = scope.split(".")
    for n in range(len(parts), -1, -1):
        candidate = ".".join(parts[:n] + [name]) if n else name
        if candidate in messages:
            return "msg:" + candidate
        if candidate in enums:
            return "enum:" + candidate
    raise SystemExit(f"cannot resolve type {name} in {scope}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source")
    ap.add_argument("--git")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Sources", "MesosCommandModules",
                                                  "Schema", "MesosSchema+Generated.swift"))
    args = ap.parse_args()
    messages, enums = {}, {}
    for path in FILES:
        if args.source:
            with open(os.path.join(args.source, path)) as f:
                text = f.read()
        elif args.git:
            text = subprocess.run(["git", "--git-dir", args.git, "show", f"{args.rev}:{path}"], check=True,
                                  capture_output=True, text=True).stdout
        else:
            sys.exit("give --source MESOS_ROOT_DIR or --git MESOS_GIT_DIR")
        package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M).group(1)
        p = Parser(tokenize(text), package)
        p.parse_file()
        messages.update(p.messages)
        enums.update(p.enums)

    lines, seen_msgs, seen_enums, todo = [], set(), set(), list(ROOTS)
    while todo:
        name = todo.pop(0)
        if name in seen_msgs:
            continue
        seen_msgs.add(name)
        lines.append(f"M {name}")
        for fname, label, ftype in messages[name]:
            mark = {"optional": "?", "required": "!", "repeated": "*"}[label]
            if ftype[0] == "map":
                key = resolve(ftype[1], ftype[3], messages, enums)
                value = resolve(ftype[2], ftype[3], messages, enums)
                refs, rendered = [key, value], f"map:{key}:{value}"
            else:
                value = resolve(ftype[1], ftype[2], messages, enums)
                refs, rendered = [value], value
            for ref in refs:
                if ref.startswith("msg:"):
                    todo.append(ref[4:])
                elif ref.startswith("enum:"):
                    seen_enums.add(ref[5:])
            lines.append(f"F {fname} {mark} {rendered}")
    for name in sorted(seen_enums):
        lines.append(f"E {name} " + " ".join(enums[name]))

    rev = args.rev if args.git else "source tree"
    body = "\n".join(lines)
    out = f'''// Generated by scripts/generate-mesos-schema.py from Mesos' .proto files ({rev}). Do not edit.
//
// One line per item: `M <message>` starts a message; `F <field> <?|!|*> <type>` is one of its fields
// (optional, required, repeated); `E <enum> <value>...` lists an enum's value names.

extension MesosSchema {{
    static let definitions = """
{body}
"""
}}
'''
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(out)
    print(f"wrote {len(seen_msgs)} messages and {len(seen_enums)} enums to {args.out}")


if __name__ == "__main__":
    main()
