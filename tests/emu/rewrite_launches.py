#!/usr/bin/env python3
"""Rewrites CUDA launches for the CPU emulation (tests/emu).

    kernel<T><<<grid, block, smem, stream>>>(a, b);
becomes
    ::rg_emu::Launch("kernel<T>", __FILE__, __LINE__, grid, block, smem, stream)(
        [&](const auto&... rg_emu_a) { kernel<T>(rg_emu_a...); }, a, b);

on one line per original line (newlines inside the launch are kept), after a #line directive
naming the original file, so compiler messages, __FILE__/__LINE__ and sanitizer reports point at
the unmodified source. The generic lambda lets the kernel's template arguments be deduced from
the arguments, as a launch does. The sources themselves are never modified.

The kernel must be named before `<<<` (a qualified name with optional template arguments); a
launch through anything else stops the build with the file and line rather than being rewritten
wrongly.

Usage: rewrite_launches.py INPUT OUTPUT
"""
import re
import sys


def blank_comments_and_strings(text):
    """The text with comments and string/char literals replaced by spaces (newlines kept), so
    that scanning for brackets and statement boundaries sees only code. Same length."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if text[k] != "\n":
                    out[k] = " "
            i = j
        elif c == '"' or c == "'":
            # Raw strings do not occur in the kernel sources; plain literals with escapes do.
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            for k in range(i + 1, min(j, n)):
                if text[k] != "\n":
                    out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def matching(code, start, open_ch, close_ch):
    """Index of the bracket closing the one at `start`."""
    depth = 0
    for i in range(start, len(code)):
        if code[i] == open_ch:
            depth += 1
        elif code[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i
    return -1


def split_top_level(code, begin, end):
    """[(b, e)] spans of the comma-separated items of code[begin:end] (brackets respected)."""
    spans, depth, item = [], 0, begin
    for i in range(begin, end):
        c = code[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            spans.append((item, i))
            item = i + 1
    spans.append((item, end))
    return spans


def callee_start(code, launch):
    """Start of the kernel name before `<<<` at `launch`: a qualified name, optionally with a
    template argument list (whose brackets are matched backwards). -1 if there is none."""
    i = launch
    while i > 0 and code[i - 1].isspace():
        i -= 1
    if i > 0 and code[i - 1] == ">":
        depth = 0
        while i > 0:
            i -= 1
            if code[i] == ">":
                depth += 1
            elif code[i] == "<":
                depth -= 1
                if depth == 0:
                    break
        if depth != 0:
            return -1
        while i > 0 and code[i - 1].isspace():
            i -= 1
    end = i
    while i > 0 and (code[i - 1].isalnum() or code[i - 1] in "_:"):
        i -= 1
    return i if i < end else -1


CALLEE = re.compile(r"^[A-Za-z_][\w:]*(<.*>)?$", re.S)


def rewrite(text, path):
    code = blank_comments_and_strings(text)
    out, pos = [], 0
    for m in re.finditer(r"<<<", code):
        launch = m.start()
        if launch < pos:
            continue
        start = callee_start(code, launch)
        callee_code = code[start:launch].strip()
        if start < 0 or not CALLEE.match(callee_code):
            sys.exit(f"{path}:{line_of(text, launch)}: cannot rewrite this launch for the CUDA "
                     f"emulation: expected a (qualified, template) kernel name before '<<<'")
        config_end = code.find(">>>", launch)
        if config_end < 0:
            sys.exit(f"{path}:{line_of(text, launch)}: '<<<' without '>>>'")
        paren = config_end + 3
        while paren < len(code) and code[paren].isspace():
            paren += 1
        if paren >= len(code) or code[paren] != "(":
            sys.exit(f"{path}:{line_of(text, launch)}: expected '(' after '>>>'")
        close = matching(code, paren, "(", ")")
        if close < 0:
            sys.exit(f"{path}:{line_of(text, launch)}: unbalanced launch arguments")
        callee = text[start:launch].strip()
        config = text[launch + 3:config_end]
        args = text[paren + 1:close]
        name = " ".join(callee_code.split()).replace('"', "")
        has_args = args.strip() != ""
        # Newlines of the original launch, kept so that later lines keep their numbers.
        newlines = "\n" * text.count("\n", start, close + 1)
        replacement = (f'::rg_emu::Launch("{name}", __FILE__, __LINE__, {" ".join(config.split())})'
                       f'([&](const auto&... rg_emu_a) {{ {" ".join(callee.split())}(rg_emu_a...); }}'
                       f'{", " if has_args else ""}{" ".join(args.split())}){newlines}')
        out.append(text[pos:start])
        out.append(replacement)
        pos = close + 1
    out.append(text[pos:])
    return "".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    result = f'#line 1 "{src}"\n' + rewrite(text, src)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(result)


if __name__ == "__main__":
    main()
