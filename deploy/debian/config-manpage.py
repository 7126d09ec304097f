#!/usr/bin/env python3
"""Writes echod.yaml(5), in man(7) roff, from the comments of config/echod.yaml.

config/echod.yaml documents every key in the comment block right above it (what it does, its range and unit) and
shows its default as the value, so the manual is generated from it rather than kept by hand:
- comment paragraphs before the first key (separated by a blank line or a bare "#") become DESCRIPTION;
- each key becomes an entry of KEYS, named by its dotted path (limits.max_connections), with its default and the
  comment block directly above it; a key without a value (limits:) is a section that prefixes the keys under it.

Usage: config-manpage.py CONFIG --version VERSION --date YYYY-MM-DD > echod.yaml.5
"""

import argparse
import re
import sys

KEY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z0-9_]+):(?:\s+(?P<value>.*?))?\s*$")


def roff_text(line: str) -> str:
    """One line of running text, escaped for roff: backslashes, hyphens, and a leading control character."""
    line = line.replace("\\", "\\e").replace("-", "\\-")
    if line.startswith((".", "'")):
        line = "\\&" + line
    return line


def parse(lines: list[str]) -> tuple[list[list[str]], list[tuple[str, str, list[list[str]]]]]:
    """(description paragraphs, [(dotted key, default, doc paragraphs)]) from the YAML file's lines."""
    description: list[list[str]] = []
    keys: list[tuple[str, str, list[list[str]]]] = []
    block: list[list[str]] = []  # the comment block being read, as paragraphs
    path: list[tuple[int, str]] = []  # (indent, name) of the sections enclosing the current line
    for raw in lines:
        stripped = raw.strip()
        if stripped.startswith("#"):
            text = stripped[1:].strip()
            if not text:
                if block and block[-1]:
                    block.append([])
            else:
                if not block:
                    block.append([])
                block[-1].append(text)
            continue
        paragraphs = [p for p in block if p]
        block = []
        if not stripped:
            if not keys:
                description.extend(paragraphs)
            elif paragraphs:
                raise SystemExit(f"config-manpage: a comment not attached to a key after {keys[-1][0]}")
            continue
        match = KEY.match(raw)
        if not match:
            raise SystemExit(f"config-manpage: cannot read line {raw!r}")
        indent = len(match["indent"])
        while path and path[-1][0] >= indent:
            path.pop()
        dotted = ".".join([name for _, name in path] + [match["name"]])
        if match["value"] is None:
            if paragraphs:
                raise SystemExit(f"config-manpage: section {dotted} has a comment; document its keys instead")
            path.append((indent, match["name"]))
            continue
        if not paragraphs:
            raise SystemExit(f"config-manpage: key {dotted} has no comment")
        keys.append((dotted, match["value"], paragraphs))
    return description, keys


def render(description, keys, version: str, date: str) -> str:
    out = [
        '.\\" Generated from config/echod.yaml by deploy/debian/config-manpage.py; edit those comments, not this file.',
        f'.TH ECHOD.YAML 5 "{date}" "echod {version}" "File Formats Manual"',
        ".SH NAME",
        "echod.yaml \\- configuration file of the echod TCP echo server",
        ".SH SYNOPSIS",
        ".B /etc/echod/echod.yaml",
        ".SH DESCRIPTION",
    ]
    for i, paragraph in enumerate(description):
        if i:
            out.append(".PP")
        out.extend(roff_text(line) for line in paragraph)
    out.append(".SH KEYS")
    for dotted, default, paragraphs in keys:
        out += [".TP", f"\\fB{roff_text(dotted)}\\fR (default: \\fB{roff_text(default)}\\fR)"]
        for i, paragraph in enumerate(paragraphs):
            if i:
                out.append(".IP")
            out.extend(roff_text(line) for line in paragraph)
    out += [
        ".SH FILES",
        ".TP",
        ".I /etc/echod/echod.yaml",
        "The configuration echod.service starts echod with (a conffile: local edits survive upgrades).",
        ".SH SEE ALSO",
        ".BR echod (8),",
        ".BR systemctl (1)",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--version", required=True)
    parser.add_argument("--date", required=True, help="YYYY-MM-DD")
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as f:
        description, keys = parse(f.read().splitlines())
    if not keys:
        raise SystemExit("config-manpage: no keys found")
    sys.stdout.write(render(description, keys, args.version, args.date))


if __name__ == "__main__":
    main()
