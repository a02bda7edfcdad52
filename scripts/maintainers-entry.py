#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Adds files to a MAINTAINERS section, made (in order) if missing.

Usage: scripts/maintainers-entry.py MAINTAINERS IDENT SECTION LISTS FILE...
where LISTS are the section's mailing lists, comma separated, and IDENT its
maintainer ("Name <email>"). Used by scripts/make-patches.sh.
"""
import re
import sys


def main():
    path, ident, section, lists, *files = sys.argv[1:]
    text = open(path).read().split("\n")

    def is_header(i):
        return (
            i + 1 < len(text)
            and re.match(r"[A-Z0-9]", text[i] or " ")
            and re.match(r"[A-Z]:\t", text[i + 1])
            and text[i - 1] == ""
        )

    if section not in text:
        # After the section it sorts after, among those it shares the
        # longest prefix with (the file is sorted, with exceptions).
        headers = [i for i in range(1, len(text)) if is_header(i)]

        def shared(i):
            n = 0
            while n < min(len(text[i]), len(section)) and text[i][n] == section[n]:
                n += 1
            return n

        gaps = [(a, b) for a, b in zip(headers, headers[1:]) if text[a] < section < text[b]]
        _, at = max(gaps, key=lambda gap: shared(gap[0]))
        block = [section, f"M:\t{ident}"]
        block += [f"L:\t{name}" for name in lists.split(",")]
        block += ["S:\tMaintained", ""]
        text[at:at] = block
    start = text.index(section)
    end = start
    while text[end] != "":
        end += 1
    lines = text[start:end]
    entries = [l for l in lines if l.startswith("F:\t")] + [f"F:\t{f}" for f in files]
    text[start:end] = [l for l in lines if not l.startswith("F:\t")] + sorted(set(entries))
    open(path, "w").write("\n".join(text))


if __name__ == "__main__":
    main()
