#!/usr/bin/env python3
"""build_plan.py — reads CMakeLists.txt the way CMake would for this project (variables,
functions, if/else on CMAKE_SYSTEM_PROCESSOR, add_library/pybind11_add_module/
target_sources/target_compile_*), mirrors csrc/ through transform.py, and writes a
Makefile that builds fastnn._C with the CUDA backend emulated. build.sh drives it.

Usage: build_plan.py --repo DIR --build DIR --python PYTHON [--sanitize]
"""
import argparse
import os
import platform
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import transform  # noqa: E402

# CMake's defaults for a GCC Release build of this project (CMAKE_CXX_STANDARD 17 with
# extensions on, CMAKE_POSITION_INDEPENDENT_CODE ON, CMAKE_CXX_FLAGS_RELEASE).
BASE_FLAGS = ["-std=gnu++17", "-fPIC", "-O3", "-DNDEBUG"]
FALSE_CONDITIONS = {"MSVC", "WIN32", "APPLE", "CYGWIN"}


# ---- a small CMake interpreter ----------------------------------------------------------------

def parse_commands(text):
    """[(name, [args])] for every command invocation, comments and quotes handled."""
    commands = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        m = re.compile(r"([A-Za-z_]\w*)\s*\(").match(text, i)
        if not m or (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
            i += 1
            continue
        name, j, depth = m.group(1).lower(), m.end(), 1
        args, current, quoted = [], "", False
        while j < n and depth:
            ch = text[j]
            if quoted:
                if ch == "\\" and j + 1 < n:
                    current += text[j + 1]
                    j += 2
                    continue
                if ch == '"':
                    quoted = False
                    args.append(current)
                    current = None
                else:
                    current += ch
            elif ch == '"' and current:
                # A quote inside an unquoted argument is literal (FOO="${BAR}").
                k = text.find('"', j + 1)
                k = n - 1 if k < 0 else k
                current += text[j:k + 1]
                j = k + 1
                continue
            elif ch == '"':
                quoted, current = True, ""
            elif ch == "#":
                k = text.find("\n", j)
                j = n if k < 0 else k
                continue
            elif ch in "()":
                depth += 1 if ch == "(" else -1
                if depth:
                    current = (current or "") + ch
            elif ch.isspace():
                if current:
                    args.append(current)
                current = ""
            else:
                current = (current or "") + ch
            j += 1
        if current:
            args.append(current)
        commands.append((name, [a for a in args if a is not None]))
        i = j
    return commands


class Project:
    def __init__(self, variables):
        self.vars = dict(variables)
        self.functions = {}
        self.sources = {}      # target -> [source or $<TARGET_OBJECTS:t>]
        self.options = {}      # target -> [compile options]
        self.definitions = {}  # target -> [definitions]

    def expand(self, arg):
        for _ in range(8):
            new = re.sub(r"\$\{(\w+)\}", lambda m: self.vars.get(m.group(1), ""), arg)
            if new == arg:
                break
            arg = new
        return arg

    def expand_args(self, args):
        out = []
        for a in args:
            if "${" in a:  # an unquoted variable reference expands to its list
                out.extend(x for x in self.expand(a).split(";") if x)
            else:
                out.append(a)
        return out

    def condition(self, args):
        negate = bool(args) and args[0] == "NOT"
        args = args[1:] if negate else args
        value = True
        if len(args) == 3 and args[1] == "MATCHES" and args[0] == "CMAKE_SYSTEM_PROCESSOR":
            value = re.search(args[2], platform.machine()) is not None
        elif len(args) == 1 and args[0] in FALSE_CONDITIONS:
            value = False
        elif negate:
            return True  # unknown conditions count as true, even negated
        return value != negate

    def run(self, commands):
        stack = []  # per if: [active now, some branch taken, parent active]
        i = 0
        while i < len(commands):
            name, args = commands[i]
            active = all(frame[0] for frame in stack)
            if name == "if":
                take = active and self.condition(args)
                stack.append([take, take, active])
            elif name == "elseif":
                frame = stack[-1]
                take = frame[2] and not frame[1] and self.condition(args)
                frame[0], frame[1] = take, frame[1] or take
            elif name == "else":
                frame = stack[-1]
                frame[0] = frame[2] and not frame[1]
            elif name == "endif":
                stack.pop()
            elif name == "function":
                depth, j = 1, i + 1
                while depth:
                    depth += {"function": 1, "endfunction": -1}.get(commands[j][0], 0)
                    j += 1
                if active:
                    self.functions[args[0].lower()] = (args[1:], commands[i + 1:j - 1])
                i = j
                continue
            elif active:
                self.command(name, args)
            i += 1

    def command(self, name, raw):
        args = self.expand_args(raw)
        if name == "set" and args:
            if "CACHE" in args:  # a cache default does not override a value set before
                self.vars.setdefault(args[0], ";".join(args[1:args.index("CACHE")]))
            else:
                self.vars[args[0]] = ";".join(a for a in args[1:] if a != "PARENT_SCOPE")
        elif name in self.functions:
            params, body = self.functions[name]
            saved = dict(self.vars)
            for p, a in zip(params, args):
                self.vars[p] = a
            self.vars["ARGN"] = ";".join(args[len(params):])
            self.run(body)
            for k in params + ["ARGN"]:
                self.vars[k] = saved.get(k, "")
        elif name == "add_library" and len(args) >= 2:
            kinds = ("OBJECT", "STATIC", "SHARED")
            self.sources.setdefault(args[0], []).extend(args[2:] if args[1] in kinds else args[1:])
        elif name == "pybind11_add_module" and args:
            self.sources.setdefault(args[0], []).extend(
                a for a in args[1:] if a not in ("MODULE", "SHARED", "THIN_LTO", "NO_EXTRAS"))
        elif name in ("target_sources", "target_compile_options", "target_compile_definitions"):
            table = {"target_sources": self.sources, "target_compile_options": self.options,
                     "target_compile_definitions": self.definitions}[name]
            if args:
                table.setdefault(args[0], []).extend(
                    a for a in args[1:] if a not in ("PRIVATE", "PUBLIC", "INTERFACE"))


def project_version(repo):
    try:
        text = open(os.path.join(repo, "pyproject.toml")).read()
        m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
        return m.group(1) if m else "0"
    except OSError:
        return "0"


# ---- the build ----------------------------------------------------------------------------------

def mirror_sources(repo, mirror):
    """csrc/ through transform.py into mirror/csrc, touching only files whose text changed
    (so make rebuilds only what changed). Returns the mirrored paths."""
    out = []
    src_root = os.path.join(repo, "csrc")
    for root, _dirs, files in os.walk(src_root):
        for f in files:
            if not f.endswith((".h", ".hpp", ".cuh", ".cu", ".cpp", ".cc", ".inc")):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, repo)
            text = open(path, encoding="utf-8").read()
            try:
                text = transform.transform(text)
            except transform.TransformError as e:
                sys.exit("transform.py: %s: %s" % (rel, e))
            text = '#line 1 "%s"\n%s' % (path, text)
            dest = os.path.join(mirror, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if not os.path.exists(dest) or open(dest, encoding="utf-8").read() != text:
                with open(dest, "w", encoding="utf-8") as fh:
                    fh.write(text)
            out.append(rel)
    return out


def has_cpu_flag(flag):
    try:
        return re.search(r"\b%s\b" % flag, open("/proc/cpuinfo").read()) is not None
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--sanitize", action="store_true")
    opts = ap.parse_args()
    repo, build = os.path.abspath(opts.repo), os.path.abspath(opts.build)
    mirror = os.path.join(build, "src")

    proj = Project({"CMAKE_SYSTEM_PROCESSOR": platform.machine(),
                    "SKBUILD_PROJECT_VERSION": project_version(repo)})
    proj.run(parse_commands(open(os.path.join(repo, "CMakeLists.txt")).read()))
    if "_C" not in proj.sources:
        sys.exit("build_plan.py: no pybind11_add_module(_C ...) in CMakeLists.txt")

    mirrored = set(mirror_sources(repo, mirror))
    pybind = subprocess.check_output([opts.python, "-m", "pybind11", "--includes"], text=True).split()
    suffix = subprocess.check_output(
        [opts.python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        text=True).strip()
    debug = ["-g"]
    if opts.sanitize:
        debug += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer"]
    includes = ["-I" + os.path.join(mirror, "csrc"), "-I" + HERE, "-I" + os.path.join(repo, "csrc")]

    def defs(target):
        return ["-D" + d for d in proj.definitions.get(target, [])]

    # Device code as nvcc compiles it: no errno, a*b + c contracted into an FMA.
    device = ["-fno-math-errno", "-ffp-contract=fast"] + (["-mfma"] if has_cpu_flag("fma") else [])
    module_flags = (BASE_FLAGS + proj.options.get("_C", []) + defs("_C") + includes + pybind +
                    ["-DFASTNN_WITH_CUDA=1", "-DFASTNN_CUDA_EMULATED=1", "-fvisibility=hidden",
                     "-Wno-subobject-linkage",  # #line makes GCC take a .cu for a header
                     "-pthread"] + debug)

    rules, objects = [], []

    def add(src_rel, obj_dir, flags, lang_cu=False):
        if src_rel not in mirrored:
            sys.exit("build_plan.py: %s is listed in CMakeLists.txt but not under csrc/" % src_rel)
        src = os.path.join(mirror, src_rel)
        obj = os.path.join(build, "obj", obj_dir, src_rel.replace("/", "__") + ".o")
        cmd = ["$(CXX)"] + flags + ["-MMD", "-MP", "-c"] + (["-x", "c++"] if lang_cu else []) + \
              [src, "-o", obj]
        rules.append("%s: %s\n\t@mkdir -p %s\n\t@echo '  CXX %s%s'\n\t@%s\n" % (
            obj, src, os.path.dirname(obj), src_rel, " [%s]" % obj_dir if obj_dir != "module" else "",
            " ".join(shlex.quote(c) if not c.startswith("$(") else c for c in cmd)))
        objects.append(obj)

    module_sources = []
    for s in proj.sources["_C"]:
        m = re.fullmatch(r"\$<TARGET_OBJECTS:(\w+)>", s)
        if m:
            target = m.group(1)
            flags = BASE_FLAGS + proj.options.get(target, []) + defs(target) + includes + debug
            for src in proj.sources.get(target, []):
                add(src, target, flags)
        elif not s.startswith("$<"):
            module_sources.append(s)
    # Every engine and CUDA source, listed or not yet, so new files are picked up.
    for rel in sorted(mirrored):
        engine_or_cuda = re.fullmatch(r"csrc/(cuda|engine)/[^/]+\.cu|csrc/engine/[^/]+\.cpp", rel)
        if engine_or_cuda and rel not in module_sources:
            module_sources.append(rel)
    for s in module_sources:
        cu = s.endswith(".cu")
        add(s, "module", module_flags + (device if cu else []), lang_cu=cu)

    library = os.path.join(build, "_C" + suffix)
    link = ["$(CXX)", "-shared", "-o", library] + objects + ["-pthread"] + debug
    makefile = os.path.join(build, "Makefile")
    with open(makefile + ".tmp", "w") as f:
        f.write("# Written by tools/cuda_emu/build_plan.py from CMakeLists.txt; do not edit.\n")
        f.write("CXX ?= g++\n\nall: %s\n\n" % library)
        f.write("%s: %s\n\t@echo '  LINK %s'\n\t@%s\n\n" % (
            library, " ".join(objects), os.path.basename(library), " ".join(link)))
        f.write("\n".join(rules))
        f.write("\n-include %s\n" % " ".join(o[:-2] + ".d" for o in objects))
    os.replace(makefile + ".tmp", makefile)
    print(library)


if __name__ == "__main__":
    main()
