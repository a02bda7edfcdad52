#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Fills in the cover letter of the patch series (scripts/make-patches.sh).

Usage: scripts/cover-letter.py COVER_LETTER rust/todo.rst
"""
import re
import sys
import textwrap

SUBJECT = "Rust dma-buf exporter abstractions and an ownership-aware heap"

BLURB = """\
This series adds safe Rust abstractions for dma-buf exporters and dma-buf
heaps, with the fence, reservation-object, streaming-DMA and memory pieces
they need, then a heap written on them: a system heap whose buffers track
who owns them, so that CPU cache maintenance runs only when ownership
really changes.

Patches 1-12 add one kernel crate module each, with its C helpers, its
bindings and its doctests (CONFIG_RUST_KERNEL_DOCTESTS). Patch 13 gives
dma-buf files thp_get_unmapped_area, so that mappings without a hint can
take the huge entries of an exporter that faults them in. Patch 14 adds
the heap as drivers/dma-buf/heaps/rust/ with its KUnit suites
(CONFIG_DMABUF_HEAPS_RUST_KUNIT_TEST); in tree it uses the kernel crate's
SpinLockIrq.

Where the kernel crate lacks something, the modules work around it and
say so with a keyed TODO:

{todos}

checkpatch.pl --strict reports nothing for patches 1-13. For patch 14 it
reports:

- EXPORT_SYMBOL (6): the exported C API (include/linux/rust_dmabuf_heap.h)
  is implemented in Rust (c_api.rs), which cannot export a symbol, so its
  EXPORT_SYMBOL_GPL lines are in glue/exports.c, away from the
  definitions.
- LONG_LINE_COMMENT (17): the rows of the transition tables in the
  documentation of ownership.rs, Markdown tables that rustdoc renders and
  whose rows cannot wrap.

Built, booted (the heap's KUnit suites and the kernel crate's doctests),
and checked with CLIPPY=1 and make rustdoc, without warnings, by the
project's scripts/check-intree.sh."""


def main():
    path, todo = sys.argv[1:]
    items = re.findall(r"^(TODO\([\w-]+\))\n((?:    .*\n)+)", open(todo).read(), re.M)
    todos = "\n".join(
        textwrap.fill(
            f"- {key}: " + " ".join(body.replace("``", "").split()).split(". ")[0].rstrip(".") + ".",
            width=74,
            subsequent_indent="  ",
        )
        for key, body in items
    )
    text = open(path).read()
    text = text.replace("*** SUBJECT HERE ***", SUBJECT)
    text = text.replace("*** BLURB HERE ***", BLURB.format(todos=todos))
    open(path, "w").write(text)


if __name__ == "__main__":
    main()
