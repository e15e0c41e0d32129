#!/usr/bin/env python3
"""Turns the benchmark TSV into the comparison table, a Markdown report and an SVG plot (stdlib only).

    report.py render RESULTS.tsv --out DIR [--svg-copy PATH] [--command TEXT] [--quick 0|1]
    report.py times GROUP CASE IMPL FILE...   (one TSV line from hyperfine JSON files and/or files of
                                               times in ns, one a line, e.g. from `microvm-bench spawn --raw`)

TSV columns (microvm-bench's format): group case impl param unit median min max runs note.
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

# ---------------------------------------------------------------------------------------------- input


class Row:
    def __init__(self, fields):
        fields = fields + [""] * (10 - len(fields))
        self.group, self.case, self.impl, self.param, self.unit = fields[:5]
        num = lambda s: None if s in ("-", "") else float(s)
        self.median, self.min, self.max = num(fields[5]), num(fields[6]), num(fields[7])
        self.runs = int(fields[8]) if fields[8] not in ("", "-") else 0
        self.note = fields[9]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            rows.append(Row(line.split("\t")))
    return rows


def find(rows, group, case, impl, param="-"):
    for r in rows:
        if r.group == group and r.case == case and r.impl == impl and r.param == str(param):
            return r
    return None


# ------------------------------------------------------------------------------------------ formatting


def fmt_time(ns):
    if ns is None:
        return "-"
    if ns < 1e3:
        return f"{ns:.0f} ns" if ns >= 100 else f"{ns:.1f} ns"
    if ns < 1e6:
        v = ns / 1e3
        return f"{v:.0f} us" if v >= 100 else f"{v:.2f} us" if v < 10 else f"{v:.1f} us"
    if ns < 1e9:
        v = ns / 1e6
        return f"{v:.0f} ms" if v >= 100 else f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_decade(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3), ("ns", 1)):
        if ns >= scale:
            return f"{ns / scale:.0f} {unit}"
    return f"{ns:g} ns"


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}/s"


def fmt_bytes(v):
    if v is None:
        return "-"
    return f"{v / 1024:.1f} KiB" if abs(v) >= 1024 else f"{v:.0f} B"


def fmt_value(row, v):
    if row.unit == "ops/s":
        return fmt_rate(v)
    if row.unit == "bytes":
        return fmt_bytes(v)
    return fmt_time(v)


def fmt_size(b):
    b = int(b)
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if b >= 1 << shift and b % (1 << shift) == 0:
            return f"{b >> shift} {unit}"
    return f"{b} B"


# ------------------------------------------------------------------------------------------- figures

GIB = 1 << 30


class Figure:
    """One line of the table: ours vs a baseline, a ratio, a bar and its verdict."""

    def __init__(self, name, ours, base, bar="", verdict=None, ratio=None, ratio_text=None, note=""):
        self.name, self.ours, self.base, self.bar, self.verdict, self.note = name, ours, base, bar, verdict, note
        if ratio is None and ours is not None and base is not None and ours.median and base.median:
            ratio = ours.median / base.median
        self.ratio = ratio
        self.ratio_text = ratio_text


def figures(rows):
    out = []

    def pair(group, case, param="-", ours_impl="swift", base_impl="c"):
        return find(rows, group, case, ours_impl, param), find(rows, group, case, base_impl, param)

    # Page-table setup and translate, 1 GiB of 4 KiB leaves: the engine against the C loop, both modes.
    for arch in ("amd64", "i686"):
        s, c = pair("setup", f"{arch}/4k/prefaulted", GIB)
        if s and c:
            out.append(Figure(f"map 1 GiB, 4 KiB leaves, pre-faulted ({arch})", s, c, "<= 1.1x C",
                              s.median <= 1.1 * c.median))
    for arch, leaf in (("amd64", "2m"), ("i686", "4m")):
        s, c = pair("setup", f"{arch}/{leaf}/prefaulted", GIB)
        if s and c:
            out.append(Figure(f"map 1 GiB, large leaves ({arch}, {leaf[0]} MiB)", s, c, "< 10 us", s.median < 10_000))
    # The same maps through the path Machine takes (any AddressSpace -> GuestPageTables<Mode>).
    s, c = pair("setup-product", "amd64/4k/prefaulted", GIB)
    if s and c:
        out.append(Figure("map 1 GiB, 4 KiB leaves, via MicroVM AddressSpace (amd64)", s, c, "<= 1.3x C, < 0.40 ms",
                          s.median <= 1.3 * c.median and s.median < 400_000))
    s, c = pair("setup-product", "amd64/2m/prefaulted", GIB)
    if s and c:
        out.append(Figure("map 1 GiB, 2 MiB leaves, via MicroVM AddressSpace (amd64)", s, c, "< 10 us",
                          s.median < 10_000))
    for arch in ("amd64", "i686"):
        s, c = pair("setup", f"{arch}/4k/fresh", GIB)
        if s and c:
            out.append(Figure(f"map 1 GiB, 4 KiB leaves, fresh mmap ({arch})", s, c, "<= C on fresh memory",
                              s.median <= c.median))
    for arch in ("amd64", "i686"):
        s, c = pair("translate", f"{arch}/4k/prefaulted", GIB)
        if s and c:
            out.append(Figure(f"translate 1 GiB, 4 KiB leaves ({arch})", s, c, "<= 1.15x C",
                              s.median <= 1.15 * c.median))
    s, c = pair("spaces", "amd64/3x64m-shared-upper-half")
    if s and c:
        out.append(Figure("walkSpaces: 3 spaces x 64 MiB, shared 64 MiB upper half (amd64)", s, c,
                          "(info: C only sums)", None))

    # Machines.
    # The bar compares the same work: microvm waits for its (normally background) teardown, as the C host
    # tears down inline. The product's figure, with teardown off the critical path, follows as info.
    s, c = find(rows, "boot", "amd64/sync-teardown", "swift"), find(rows, "boot", "amd64", "c")
    if s and c:
        out.append(Figure("boot in process, hello64 (amd64, teardown waited for)", s, c, "<= 1.2x C host",
                          s.median <= 1.2 * c.median))
    s = find(rows, "boot", "amd64/shared-host", "swift")
    if s and c:
        out.append(Figure("boot in process, hello64 (amd64, teardown in background)", s, c, "(info)", None))
    s = find(rows, "boot", "amd64/own-host", "swift")
    if s and c:
        out.append(Figure("boot in process, hello64 (amd64, Machine opens /dev/kvm)", s, c, "(info)", None))
    na = find(rows, "boot", "i686/shared-host", "swift")
    if na and na.unit == "na":
        out.append(Figure("boot in process (i686)", None, None, na.note, None, note="na"))
    elif na:
        out.append(Figure("boot in process, hello32 (i686)", na, None, "(info)", None))
    s, c = pair("exits", "amd64/out")
    if s and c:
        out.append(Figure("exit round trip, per OUT exit", s, c, "<= 1.1x C host", s.median <= 1.1 * c.median))
    for threads in ("1-thread", "2-threads"):
        s, c = pair("rate", f"amd64/{threads}")
        if s and c:
            # A rate: the time ratio is baseline rate / our rate.
            out.append(Figure(f"creation rate, {threads.replace('-', ' ')} (create+run+destroy)", s, c, ">= 1,000/s",
                              s.median >= 1000, ratio=c.median / s.median))
    s, c = pair("memory", "amd64/idle-16MiB")
    if s and c:
        out.append(Figure("resident memory per idle 16 MiB VM", s, c, "(info)", None))

    # Reuse: reset + run to HLT against the C reference doing the same cycle, and what restoring costs.
    for memory in (16 << 20, 256 << 20, 1 << 30):
        for pages in (1, 16, 256):
            name = f"{pages}p/{memory >> 20}M"
            s, c = find(rows, "reset", name, "swift", memory), find(rows, "reset", name, "c", memory)
            if s and c:
                out.append(Figure(f"reset + run, {pages} dirty page{'s' if pages > 1 else ''}, {fmt_size(memory)} RAM",
                                  s, c, "<= 1.15x C", s.median <= 1.15 * c.median))
            t = find(rows, "reset", name, "c-timer", memory)
            if s and t:
                out.append(Figure(f"  the same vs C with a per-run timer (as microvm arms)", s, t, "(info)", None))
    # Flatness from the interleaved pair (both sizes in one loop); the cells above are a minute apart.
    small = find(rows, "reset", "1p/16M/interleaved", "swift", 16 << 20)
    large = find(rows, "reset", "1p/1024M/interleaved", "swift", 1 << 30)
    if not (small and large):
        small, large = find(rows, "reset", "1p/16M", "swift", 16 << 20), find(rows, "reset", "1p/1024M", "swift", 1 << 30)
    if small and large:
        out.append(Figure("reset flat in RAM size: 1 dirty page, 1 GiB vs 16 MiB (interleaved)", large, small, "<= 1.1x",
                          large.median <= 1.1 * small.median))
    c_small = find(rows, "reset", "1p/16M/interleaved", "c", 16 << 20)
    c_large = find(rows, "reset", "1p/1024M/interleaved", "c", 1 << 30)
    if c_small and c_large:
        out.append(Figure("  the same for the C reference (the kernel's own cost of RAM size)", c_large, c_small,
                          "(info)", None))
    small = find(rows, "reset", "1p/16M", "swift", 16 << 20)
    if small:
        out.append(Figure("reset + run, 1 dirty page (goal)", small, None, "< 12 us", small.median < 12_000))
    for threads in ("1 thread", "2 threads"):
        r = find(rows, "reset-rate", threads, "swift")
        if r:
            out.append(Figure(f"reset cycles per second, {threads}", r, None, "(info)", None))
    s, f = find(rows, "restore", "64M/from-file", "swift"), find(rows, "restore", "64M/fresh-boot", "swift")
    if s and f:
        out.append(Figure("restore a 64 MiB snapshot file into a new machine vs a fresh boot", s, f, "(info)", None))
    s = find(rows, "snapshot", "64M/capture", "swift")
    if s:
        out.append(Figure(f"snapshot capture, 64 MiB machine ({s.note})", s, None, "(info)", None))
    s, f = find(rows, "restored-memory", "per machine/restored", "swift"), find(rows, "restored-memory", "per machine/fresh", "swift")
    if s and f:
        out.append(Figure("resident memory per machine: restored from one snapshot vs fresh", s, f, "(info)", None))

    # Calls across the boundary, against the C host making the same entries and exits.
    for case, bar in (("host->guest (nothing)", 1.1), ("host->guest (add, 2 integers)", 1.1),
                      ("guest->host inside a call (shout)", 1.1)):
        s, c = pair("calls", case)
        if s and c:
            out.append(Figure(f"call round trip, {case}", s, c, f"<= {bar}x C host", s.median <= bar * c.median))
    for threads in ("1 thread", "2 threads"):
        r = find(rows, "call-rate", threads, "swift")
        if r:
            out.append(Figure(f"calls per second, {threads}", r, None, "(info)", None))
    for case in ("create->byte", "run->byte"):
        s, a = find(rows, "first-byte", case, "swift"), find(rows, "first-byte", case, "asm")
        if s and a:
            out.append(Figure(f"boot to first console byte ({case}): Swift guest vs assembly", s, a, "(info)", None))

    s, c, q = (find(rows, "process", "hello64", i) for i in ("swift", "c", "qemu"))
    for peer in (s, c, q):
        if peer and peer.unit == "na":
            out.append(Figure(f"whole process: {peer.impl}", None, None, peer.note, None, note="na"))
    s, c, q = (r if r and r.unit != "na" else None for r in (s, c, q))
    if s and c:
        out.append(Figure("whole process: microvm vs C host", s, c, "<= 1.3x C host", s.median <= 1.3 * c.median))
    if s and q:
        speedup = q.median / s.median
        out.append(Figure("whole process: microvm vs QEMU microvm", s, q, "QEMU >= 15x slower", speedup >= 15,
                          ratio_text=f"1/{speedup:.1f}"))
    return out


def ratio_text(f):
    if f.ratio_text:
        return f.ratio_text
    return "-" if f.ratio is None else f"{f.ratio:.2f}x"


def verdict_text(f):
    return "n/a" if f.note == "na" else "info" if f.verdict is None else "pass" if f.verdict else "MISS"


def value_with_range(row):
    if row is None:
        return "-"
    if row.min is None:
        return fmt_value(row, row.median)
    return f"{fmt_value(row, row.median)} ({fmt_value(row, row.min)}-{fmt_value(row, row.max)})"


def table_lines(figs, with_range):
    header = ["figure", "ours", "baseline", "ratio", "bar", "result"]
    body = []
    for f in figs:
        show = value_with_range if with_range else (lambda r: "-" if r is None else fmt_value(r, r.median))
        body.append([f.name, show(f.ours), show(f.base), ratio_text(f), f.bar, verdict_text(f)])
    return header, body


def print_table(figs):
    header, body = table_lines(figs, with_range=False)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i in (0, 4, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print(line(r))


# ------------------------------------------------------------------------------------------- the plot

COLORS = {("swift", "4k"): "#1f5fbf", ("c", "4k"): "#8fb3e8", ("swift", "large"): "#c0392b", ("c", "large"): "#f2a097"}


def svg_plot(rows):
    """Log-log: page-table setup time vs mapped size, one panel per architecture."""
    import math

    panels = [("amd64", "2m", "amd64 (4-level, 8-byte entries)"), ("i686", "4m", "i686 (2-level, 4-byte entries)")]
    pw, ph, ml, mr, mt, mb, gap = 430, 330, 78, 12, 74, 44, 64
    width = ml + 2 * pw + gap + mr + 170
    height = mt + ph + mb + 8
    series_all = [r for r in rows if r.group == "setup" and r.unit == "ns" and r.median]
    if not series_all:
        return None
    ys = [r.median for r in series_all]
    y_lo = 10 ** math.floor(math.log10(min(ys)))
    y_hi = 10 ** math.ceil(math.log10(max(ys)))
    x_lo, x_hi = 12, 32  # log2 of 4 KiB .. 4 GiB
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2 - 85}" y="20" text-anchor="middle" font-size="15" font-weight="bold">'
           'Page-table setup time vs mapped size: microvm engine vs plain C loop</text>',
           f'<text x="{width / 2 - 85}" y="38" text-anchor="middle" fill="#555">median per map, log-log; '
           'solid = pre-faulted memory, dashed = fresh mmap (page faults included)</text>']
    for p, (arch, leaf, title) in enumerate(panels):
        x0 = ml + p * (pw + gap)
        y0 = mt
        X = lambda size: x0 + (math.log2(size) - x_lo) / (x_hi - x_lo) * pw
        Y = lambda ns: y0 + ph - (math.log10(ns) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * ph
        out.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>')
        out.append(f'<text x="{x0 + pw / 2}" y="{y0 - 6}" text-anchor="middle" font-weight="bold">{title}</text>')
        d = y_lo
        while d <= y_hi * 1.0001:
            y = Y(d)
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#e2e2e2"/>')
            out.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{fmt_decade(d)}</text>')
            d *= 10
        for e in range(x_lo, x_hi + 1, 4):
            x = X(2 ** e)
            out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + ph}" stroke="#e2e2e2"/>')
            out.append(f'<text x="{x:.1f}" y="{y0 + ph + 15}" text-anchor="middle">{fmt_size(2 ** e)}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 32}" text-anchor="middle">mapped size</text>')
        for policy, leafname in (("4k", "4k"), ("large", leaf)):
            for backing, dash in (("prefaulted", ""), ("fresh", ' stroke-dasharray="6,4"')):
                for impl in ("swift", "c"):
                    pts = sorted((int(r.param), r.median) for r in series_all
                                 if r.case == f"{arch}/{leafname}/{backing}" and r.impl == impl)
                    if not pts:
                        continue
                    color = COLORS[(impl, policy)]
                    path = " ".join(f"{'M' if i == 0 else 'L'}{X(s):.1f},{Y(t):.1f}" for i, (s, t) in enumerate(pts))
                    wid = 2.2 if impl == "swift" else 1.6
                    out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="{wid}"{dash}/>')
                    for s, t in pts:
                        if impl == "swift":
                            out.append(f'<circle cx="{X(s):.1f}" cy="{Y(t):.1f}" r="2.6" fill="{color}"/>')
                        else:
                            out.append(f'<rect x="{X(s) - 2.3:.1f}" y="{Y(t) - 2.3:.1f}" width="4.6" height="4.6" '
                                       f'fill="{color}"/>')
    out.append(f'<text transform="translate(16,{mt + ph / 2}) rotate(-90)" text-anchor="middle">time per map</text>')
    lx, ly = ml + 2 * pw + gap + 16, mt + 10
    legend = [("swift", "4k", "engine, 4 KiB leaves"), ("c", "4k", "C loop, 4 KiB leaves"),
              ("swift", "large", "engine, large leaves"), ("c", "large", "C loop, large leaves")]
    for i, (impl, policy, label) in enumerate(legend):
        y = ly + i * 20
        color = COLORS[(impl, policy)]
        out.append(f'<line x1="{lx}" y1="{y}" x2="{lx + 26}" y2="{y}" stroke="{color}" stroke-width="2.2"/>')
        if impl == "swift":
            out.append(f'<circle cx="{lx + 13}" cy="{y}" r="2.6" fill="{color}"/>')
        else:
            out.append(f'<rect x="{lx + 10.7}" y="{y - 2.3}" width="4.6" height="4.6" fill="{color}"/>')
        out.append(f'<text x="{lx + 32}" y="{y + 4}">{label}</text>')
    y = ly + 4 * 20 + 8
    out.append(f'<line x1="{lx}" y1="{y}" x2="{lx + 26}" y2="{y}" stroke="#444" stroke-width="1.6"/>')
    out.append(f'<text x="{lx + 32}" y="{y + 4}">pre-faulted</text>')
    out.append(f'<line x1="{lx}" y1="{y + 18}" x2="{lx + 26}" y2="{y + 18}" stroke="#444" stroke-width="1.6" '
               'stroke-dasharray="6,4"/>')
    out.append(f'<text x="{lx + 32}" y="{y + 22}">fresh mmap</text>')
    out.append(f'<text x="{lx}" y="{y + 50}" fill="#555">large = 2 MiB (amd64),</text>')
    out.append(f'<text x="{lx}" y="{y + 64}" fill="#555">4 MiB (i686); no 1 GiB</text>')
    out.append(f'<text x="{lx}" y="{y + 78}" fill="#555">leaves on kvm_pvm</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ markdown


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return ""


def machine_line():
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    backend = "kvm_pvm" if os.path.exists("/sys/module/kvm_pvm") else \
        "kvm_intel" if os.path.exists("/sys/module/kvm_intel") else \
        "kvm_amd" if os.path.exists("/sys/module/kvm_amd") else "unknown"
    return f"{cpu or platform.processor()}, {os.cpu_count()} cores, Linux {platform.release()}, /dev/kvm by {backend}"


def markdown(rows, figs, command, quick, svg_name):
    md = ["# microvm benchmark report", ""]
    md.append(f"- When: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    md.append(f"- Machine: {machine_line()}")
    md.append(f"- Command: `{command}`" + (" (quick: few runs, a smoke test, not figures to quote)" if quick else ""))
    md.append("- Release builds. Medians with (min-max) over the runs; ratio = our time / baseline time "
              "(for rates: baseline rate / our rate), so < 1 is faster than the baseline.")
    md.append("")
    md.append("## Figures and bars")
    md.append("")
    header, body = table_lines(figs, with_range=True)
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "|".join("---" for _ in header) + "|")
    for r in body:
        md.append("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
    md.append("")
    md.append("Baselines: *C* is a plain C loop writing the same entries (Benchmarks/Sources/CBaseline/pagetables.c), "
              "or a minimal C KVM host doing the same kernel steps as `Machine` "
              "(Benchmarks/Sources/CBaseline/khost.c; whole process: `chost`). QEMU is "
              "`qemu-system-x86_64 -M microvm -accel kvm` booting the same `hello64.bin` through a 64 KiB "
              "`-bios` stub (Benchmarks/qemu/bios64.S) and `-device loader`.")
    md.append("")
    if svg_name:
        md.append("## Page-table setup vs mapped size")
        md.append("")
        md.append(f"![page-table setup time vs mapped size]({svg_name})")
        md.append("")
    for group, title in (("setup", "Page-table setup (time per map)"),
                         ("setup-product", "Page-table setup through MicroVM's `any AddressSpace` (the path `Machine` takes)"),
                         ("translate", "Translate (forEachLeaf, trivial body)")):
        cases = []
        for r in rows:
            if r.group == group and r.case not in cases:
                cases.append(r.case)
        if not cases:
            continue
        md.append(f"## {title}")
        md.append("")
        md.append("| case | size | engine | C | ratio | batch |")
        md.append("|---|---|---|---|---|---|")
        for case in cases:
            sizes = sorted({int(r.param) for r in rows if r.group == group and r.case == case})
            for size in sizes:
                s, c = find(rows, group, case, "swift", size), find(rows, group, case, "c", size)
                ratio = f"{s.median / c.median:.2f}x" if s and c and c.median else "-"
                batch = s.note.split()[0].replace("batch=", "") if s and s.note else ""
                md.append(f"| {case} | {fmt_size(size)} | {value_with_range(s)} | {value_with_range(c)} | {ratio} | {batch} |")
        md.append("")
    others = [r for r in rows if r.group not in ("setup", "setup-product", "translate")]
    if others:
        md.append("## Machines and processes (raw)")
        md.append("")
        md.append("| group | case | impl | median | min | max | runs | note |")
        md.append("|---|---|---|---|---|---|---|---|")
        for r in others:
            md.append(f"| {r.group} | {r.case} | {r.impl} | {fmt_value(r, r.median) if r.median is not None else '-'} | "
                      f"{fmt_value(r, r.min) if r.min is not None else '-'} | {fmt_value(r, r.max) if r.max is not None else '-'} | "
                      f"{r.runs} | {r.note} |")
        md.append("")
    return "\n".join(md) + "\n"


# ---------------------------------------------------------------------------------------------- main


def main(argv):
    if len(argv) >= 6 and argv[1] == "times":
        group, case, impl, paths = argv[2], argv[3], argv[4], argv[5:]
        times, tools = [], set()
        for path in paths:
            if path.endswith(".json"):
                with open(path) as f:
                    times += [t * 1e9 for t in json.load(f)["results"][0]["times"]]
                tools.add("hyperfine -N")
            else:
                with open(path) as f:
                    times += [float(line) for line in f if line.strip()]
                tools.add("posix_spawn loop")
        if not times:
            return 1
        note = f"{', '.join(sorted(tools))}, {len(times)} runs in {len(paths)} alternating rounds"
        print("\t".join([group, case, impl, "-", "ns", f"{statistics.median(times):.0f}", f"{min(times):.0f}",
                         f"{max(times):.0f}", str(len(times)), note]))
        return 0
    if len(argv) >= 3 and argv[1] == "render":
        path = argv[2]
        args = argv[3:]
        opt = lambda name, default=None: args[args.index(name) + 1] if name in args else default
        out_dir = opt("--out", os.path.dirname(path) or ".")
        command = opt("--command", "scripts/bench.sh")
        quick = opt("--quick", "0") == "1"
        svg_copy = opt("--svg-copy")
        rows = load(path)
        figs = figures(rows)
        os.makedirs(out_dir, exist_ok=True)
        svg = svg_plot(rows)
        svg_name = None
        if svg:
            svg_name = "pagetable-setup.svg"
            with open(os.path.join(out_dir, svg_name), "w") as f:
                f.write(svg)
            if svg_copy:
                os.makedirs(os.path.dirname(svg_copy), exist_ok=True)
                shutil.copyfile(os.path.join(out_dir, svg_name), svg_copy)
        with open(os.path.join(out_dir, "report.md"), "w") as f:
            f.write(markdown(rows, figs, command, quick, svg_name))
        print_table(figs)
        print()
        print(f"report: {os.path.join(out_dir, 'report.md')}" + (f", plot: {os.path.join(out_dir, svg_name)}" if svg_name else "")
              + (f" (copied to {svg_copy})" if svg and svg_copy else ""))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
