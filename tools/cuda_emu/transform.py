#!/usr/bin/env python3
"""transform.py — rewrites CUDA C++ so that g++ builds it against the host emulator
(tools/cuda_emu/cuda_runtime.h). Four rewrites, each keeping the newlines it spans so
that line numbers do not move; everything else (comments and strings included) is left
byte for byte:

  k<T, 4><<<grid, block, smem, stream>>>(args)
      -> ::emu::launch(::emu::LaunchConfig(grid, block, smem, stream), "k<T, 4>", k<T, 4>, args)
  __shared__ float tile[16][68];          (inside a function)
      -> the same, then ::emu::shared_fresh(&tile, sizeof(tile)); which poisons it per block
  extern __shared__ float smem[];
      -> float* const smem = ::emu::dynamic_shared<float>();
  __global__ void __launch_bounds__(256, 2) k(...) {
      -> ... { ::emu::check_launch_bounds(256, 2);   (a larger block then fails to launch)

Usage: transform.py [--line] IN [OUT]   (--line starts the output with #line 1 "IN", so
compiler messages, gdb and ASan point at the original file; OUT defaults to stdout).
"""
import re
import sys


class TransformError(Exception):
    pass


def _ident_char(c):
    return c.isalnum() or c == "_"


def mask_code(src):
    """src with the insides of comments and string/character literals blanked (newlines
    kept), so that searches see only code and offsets are those of src."""
    out = list(src)
    n = len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif c == '"' or (c == "R" and src.startswith('R"', i)):
            raw = c == "R"
            if raw and i > 0 and _ident_char(src[i - 1]) and src[i - 1] not in "uU8L":
                i += 1  # an identifier ending in R, not a raw string
                continue
            if raw:
                m = re.match(r'R"([^()\\\s]{0,16})\(', src[i:])
                if not m:
                    i += 1
                    continue
                end = src.find(")" + m.group(1) + '"', i + m.end())
                end = n if end < 0 else end + len(m.group(1)) + 2
                blank(i + 2, end - 1)
                i = end
                continue
            j = i + 1
            while j < n and src[j] != '"' and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c == "'":
            j = i + 1
            while j < n and src[j] != "'" and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c.isdigit() and (i == 0 or not _ident_char(src[i - 1])):
            # A pp-number, whose ' digit separators must not open a character literal.
            j = i + 1
            while j < n and (_ident_char(src[j]) or src[j] in ".'" or
                             (src[j] in "+-" and src[j - 1] in "eEpP")):
                j += 1
            i = j
        else:
            i += 1
    return "".join(out)


_CLOSE = {"(": ")", "[": "]", "{": "}"}


def _match(masked, i):
    """Index of the bracket closing the one at masked[i]."""
    depth = 0
    for j in range(i, len(masked)):
        c = masked[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return j
    raise TransformError("unbalanced bracket at offset %d" % i)


def _match_back(masked, i):
    """Index of the bracket opening the one at masked[i] (scanning backwards)."""
    depth = 0
    for j in range(i, -1, -1):
        c = masked[j]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            depth -= 1
            if depth == 0:
                return j
    raise TransformError("unbalanced bracket before offset %d" % i)


def _line_of(src, pos):
    return src.count("\n", 0, pos) + 1


def _on_directive_line(masked, pos):
    start = masked.rfind("\n", 0, pos) + 1
    return masked[start:pos].lstrip().startswith("#")


def _kernel_start(masked, end):
    """Start of the kernel expression ending just before `end`: a qualified name with
    optional template arguments, as in ns::k<T, (N > 2)>."""
    j = end - 1
    while True:
        if j >= 0 and masked[j] == ">":
            depth = 0
            while j >= 0:
                c = masked[j]
                if c == ">":
                    depth += 1
                elif c == "<":
                    depth -= 1
                    if depth == 0:
                        break
                elif c in ")]":
                    j = _match_back(masked, j)
                j -= 1
            j -= 1
            while j >= 0 and masked[j].isspace():
                j -= 1
        name_end = j
        while j >= 0 and (_ident_char(masked[j]) or masked[j] == ":"):
            j -= 1
        if j == name_end:
            raise TransformError("cannot find the kernel name before <<<")
        # ns::tmpl<A>::k: more qualification with template arguments continues leftwards.
        if masked[j + 1] == ":" and j >= 0 and masked[j] == ">":
            continue
        return j + 1


def _launches(src, masked):
    edits = []
    for m in re.finditer(r"<<<", masked):
        chevrons = m.start()
        line = _line_of(src, chevrons)
        kernel_end = chevrons
        while kernel_end > 0 and masked[kernel_end - 1].isspace():
            kernel_end -= 1
        try:
            kernel_start = _kernel_start(masked, kernel_end)
        except TransformError as e:
            raise TransformError("line %d: %s" % (line, e))
        # The configuration ends at the first >>> outside brackets.
        i, depth = chevrons + 3, 0
        while i < len(masked):
            c = masked[i]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            elif depth == 0 and masked.startswith(">>>", i):
                break
            i += 1
        else:
            raise TransformError("line %d: no >>> closes the launch configuration" % line)
        config_end = i
        paren = config_end + 3
        while paren < len(masked) and masked[paren].isspace():
            paren += 1
        if paren >= len(masked) or masked[paren] != "(":
            raise TransformError("line %d: no argument list after >>>" % line)
        close = _match(masked, paren)
        kernel = src[kernel_start:kernel_end]
        name = " ".join(kernel.split())
        has_args = masked[paren + 1:close].strip() != ""
        replacement = ("::emu::launch(::emu::LaunchConfig(%s), \"%s\", %s%s%s%s" % (
            src[chevrons + 3:config_end], name, kernel, src[kernel_end:chevrons],
            src[config_end + 3:paren], ", " if has_args else ""))
        edits.append((kernel_start, paren + 1, replacement))
    return edits


def _brace_kinds(masked):
    """For each '{', whether it opens a namespace (or extern "C"), a class, or a block."""
    kinds = {}
    for m in re.finditer(r"\{", masked):
        before = masked[max(0, m.start() - 400):m.start()]
        if re.search(r'\bnamespace(\s+[\w:]+)?\s*$|\bextern\s*"\s*"\s*$', before):
            kinds[m.start()] = "namespace"
        elif re.search(r"\b(struct|class|union|enum)\b[^;{}()]*$", before):
            kinds[m.start()] = "class"
        else:
            kinds[m.start()] = "block"
    return kinds


def _in_function(masked, kinds, pos):
    stack = []
    for i in range(pos):
        c = masked[i]
        if c == "{":
            stack.append(kinds[i])
        elif c == "}" and stack:
            stack.pop()
    return "block" in stack


def _top_level(decl, chars):
    """Whether any of `chars` occurs in decl outside (), [], {} and <>."""
    depth = 0
    for c in decl:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif depth == 0 and c in chars:
            return True
    return False


def _shared(src, masked):
    edits = []
    kinds = None
    for m in re.finditer(r"\b__shared__\b", masked):
        if _on_directive_line(masked, m.start()):
            continue
        semi = m.end()
        depth = 0
        while semi < len(masked):
            c = masked[semi]
            if c in "([":
                depth += 1
            elif c in ")]":
                depth -= 1
            elif depth == 0 and c in ";{}":
                break
            semi += 1
        if semi >= len(masked) or masked[semi] != ";":
            continue  # not a plain declaration: left to `#define __shared__ static`
        decl = masked[m.end():semi]
        if _top_level(decl, ",="):
            continue  # several declarators, or an initialiser
        bracket = decl.find("[")
        names = list(re.finditer(r"[A-Za-z_]\w*", decl[:bracket if bracket >= 0 else len(decl)]))
        if not names:
            continue
        name = names[-1].group(0)
        if kinds is None:
            kinds = _brace_kinds(masked)
        in_function = _in_function(masked, kinds, m.start())
        extern = re.search(r"\bextern\s*$", masked[:m.start()])
        if extern:
            if bracket < 0 or not re.fullmatch(r"\[\s*\]\s*", decl[bracket:]):
                continue  # extern __shared__ is always an unsized array
            type_text = src[m.end():m.end() + names[-1].start()]
            type_text = re.sub(r"\b__align__\s*\(\s*\w+\s*\)|\balignas\s*\([^)]*\)", "", type_text)
            type_text = " ".join(type_text.split())
            span = src[extern.start():semi + 1]
            newlines = "\n" * span.count("\n")
            if in_function:
                text = "%s* const %s = ::emu::dynamic_shared<%s>();" % (type_text, name, type_text)
            else:
                text = "static ::emu::DynamicShared<%s> %s;" % (type_text, name)
            edits.append((extern.start(), semi + 1, text + newlines))
        elif in_function:
            edits.append((semi + 1, semi + 1,
                          " ::emu::shared_fresh(&%s, sizeof(%s));" % (name, name)))
    return edits


def _launch_bounds(src, masked):
    edits = []
    for m in re.finditer(r"\b__launch_bounds__\s*\(", masked):
        if _on_directive_line(masked, m.start()):
            continue
        open_paren = m.end() - 1
        close = _match(masked, open_paren)
        args = " ".join(src[open_paren + 1:close].split())
        # The kernel's parameter list is the next '(' ; its body the '{' right after it.
        params = close + 1
        while params < len(masked) and masked[params] not in "(;{":
            params += 1
        if params >= len(masked) or masked[params] != "(":
            continue
        body = _match(masked, params) + 1
        while body < len(masked) and masked[body].isspace():
            body += 1
        if body < len(masked) and masked[body] == "{":
            edits.append((body + 1, body + 1, " ::emu::check_launch_bounds(%s);" % args))
    return edits


def transform(src):
    masked = mask_code(src)
    edits = _launches(src, masked) + _shared(src, masked) + _launch_bounds(src, masked)
    edits.sort()
    for (a0, a1, _), (b0, _b1, _t) in zip(edits, edits[1:]):
        if b0 < a1:
            raise TransformError("overlapping rewrites at offsets %d and %d" % (a0, b0))
    out = []
    pos = 0
    for start, end, text in edits:
        out.append(src[pos:start])
        out.append(text)
        pos = end
    out.append(src[pos:])
    return "".join(out)


def main(argv):
    line = "--line" in argv
    args = [a for a in argv if a != "--line"]
    if len(args) not in (1, 2):
        sys.stderr.write(__doc__)
        return 2
    with open(args[0], encoding="utf-8") as f:
        src = f.read()
    try:
        out = transform(src)
    except TransformError as e:
        sys.stderr.write("transform.py: %s: %s\n" % (args[0], e))
        return 1
    if line:
        out = '#line 1 "%s"\n%s' % (args[0].replace("\\", "\\\\").replace('"', '\\"'), out)
    if len(args) == 2:
        with open(args[1], "w", encoding="utf-8") as f:
            f.write(out)
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
