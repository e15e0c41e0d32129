#!/usr/bin/env python3
"""microvm fuzz suite: runs the `microvm` executable against seeded, reproducible generated inputs,
classifies every ending against the CLI's contract (README "Exit status and errors") and fails on any bad
ending, printing the class, the seed and a command that reproduces it.

    scripts/fuzz.sh                                   # --budget short: 1,226 runs, about 50 s, every class (CI)
    scripts/fuzz.sh --budget long                     # about 18 min, by hand
    scripts/fuzz.sh --class vandal --count 200        # one class, seeds 0..199
    scripts/fuzz.sh --class vandal --seed 1234 --count 1   # reproduce one case: verbose, files kept
    scripts/fuzz.sh --self-test                       # classifier, x86 encodings, snapshot checksums

Python 3.11 standard library only. Every input is a pure function of (class, seed): the same seeds
give the same guests, files and command lines on every machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import os
import random
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
GUESTS = ROOT / "Guests"
DEFAULT_BINARY = ".build/debug/microvm"

MiB = 1 << 20
GiB = 1 << 30
OUTPUT_LIMIT = 16 * MiB          # per stream; a run that prints more is a failure (and is killed)
RSS_SLACK = 256 * MiB            # peak RSS may be guest RAM + this much
GRACE = 2.0                      # seconds a run may take beyond its --timeout (or a terminating signal)
FILE_DEADLINE = 3.0              # a run whose file argument is a FIFO / device must end this quickly
KEEP_HEAD = 64 * 1024            # bytes of each stream kept for the report (head) ...
KEEP_TAIL = 16 * 1024            # ... and tail

# ---------------------------------------------------------------------------------------------------------
# The contract: how a run may end. ONE table; `classify` applies it.
# ---------------------------------------------------------------------------------------------------------

ERROR_PREFIX = "microvm: error: "

#: status -> meaning, for endings WITH exactly one error line (`microvm: error: ...`) on stderr.
#: 128+N is only valid when the fuzzer sent signal N. Any status WITHOUT an error line is the guest's own
#: (hlt = 0, or the byte it wrote to port 0xF4), except that a documented error status never comes alone
#: from the host... which the CLI cannot be checked for (a guest may write 2 to port 0xF4), so it is OK.
ERROR_STATUSES = {
    2: "bad input (command line, guest file, layout)",
    3: "KVM unusable or unable to run the mode",
    74: "console output could not be written (closed or full stdout, broken pipe)",
    124: "timeout",
    125: "the guest failed",
    128 + signal.SIGHUP: "terminated by SIGHUP",
    128 + signal.SIGINT: "terminated by SIGINT",
    128 + signal.SIGQUIT: "terminated by SIGQUIT",
    128 + signal.SIGTERM: "terminated by SIGTERM",
}
#: Statuses a `--gdb` run may end with and one error line, without the fuzzer sending a signal: gdb went away
#: (a hang-up, 128 + SIGHUP) or killed the guest (128 + SIGKILL). Valid only for cases that list them.
GDB_STATUSES = {
    129: "gdb went away before the guest ended",
    137: "gdb killed the guest",
}
TERMINATING = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)
HARMLESS = (signal.SIGUSR1, signal.SIGWINCH)

#: Failure categories, in the order they are checked (the first that applies names the failure).
FAILURES = {
    "hang": "ran longer than its --timeout + 2 s (or 2 s after a terminating signal, or 3 s on a FIFO/device "
            "file argument): killed",
    "rss": "peak RSS above guest RAM + 256 MiB",
    "output": "stdout or stderr larger than 16 MiB: killed",
    "signal": "died by a signal (Python returncode < 0; SIGPIPE is status 141 in a shell)",
    "crash": "a crash signature on stderr (Fatal error, Backtrace, Stack dump, Segmentation fault, ...)",
    "stderr-form": "stderr is not empty / one error line (or, with --dump-tables/--trace, their output and at "
                   "most one error line, last)",
    "status": "an error line with a status not in the table (or 128+N without signal N), or status 0 with "
              "an error line",
    "diagnosis": "an ending the CLI does not explain (raw KVM exit reason or internal error leaked)",
    "contract": "an expectation of this case's class failed (e.g. `--trace=no` must be rejected)",
}

CRASH_SIGNATURES = (
    "Fatal error", "Backtrace", "Stack dump", "Current stack trace", "Segmentation fault",
    "Illegal instruction", "\U0001f4a3", "*** Program crashed",
)

#: Error lines that follow the form but leave the user with a raw KVM detail instead of a reason.
DIAGNOSIS_RULES = (
    (re.compile(r"unsupported exit reason"), "raw KVM exit reason"),
    (re.compile(r"^KVM internal error \(suberror \d+\) at RIP 0x[0-9a-f]+$"), "bare KVM internal error"),
)


# ---------------------------------------------------------------------------------------------------------
# A case: everything needed to run one generated input, a pure function of (class, seed).
# ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Expect:
    """Class-specific expectations on top of the contract table."""
    statuses: set[int] | None = None        # the ending's status must be one of these
    error_line: bool | None = None          # True: exactly one error line; False: none
    forbid: str | None = None               # regex the error line must not match
    require: str | None = None              # regex the error line must match
    first_line: str | None = None           # regex the first line of stderr must match
    why: str = ""


@dataclasses.dataclass
class Case:
    cls: str
    seed: int
    args: list                               # str or bytes, after the program name
    description: str = ""
    program: str = "microvm"                 # or "microvm-soak"
    files: dict = dataclasses.field(default_factory=dict)     # name (str|bytes) -> bytes
    setup: list = dataclasses.field(default_factory=list)     # special files: ("fifo", name, data|None), ...
    stdout: str = "pipe"                     # pipe | blocked | full | closed | head10 | null
    timeout: float | None = 10.0             # the run's --timeout in seconds (None: --timeout 0)
    deadline: float | None = None            # overrides timeout + GRACE
    ram: int = 16 * MiB                      # guest RAM, for the RSS bound
    signals: list = dataclasses.field(default_factory=list)   # (delay after first stdout byte, [signals])
    verbose_stderr: bool = False             # --dump-tables / --trace: stderr carries their output
    notices: str | None = None               # regex of non-error stderr lines allowed besides the error line
    extra_statuses: dict = dataclasses.field(default_factory=dict)   # error statuses valid here (GDB_STATUSES)
    driver: Callable | None = None           # driver(pid, workdir, stop: Event), run in a thread during the
                                             # run: feeds a stream format (e.g. gdb packets over a socket)
    expect: Expect = dataclasses.field(default_factory=Expect)


# ---------------------------------------------------------------------------------------------------------
# A tiny amd64 encoder (Intel SDM Vol. 2). Every byte sequence here was checked with llvm-objdump.
# ---------------------------------------------------------------------------------------------------------

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 = range(16)
CR0, CR2, CR3, CR4 = 0, 2, 3, 4
M64 = (1 << 64) - 1


def _rex(w: int, r: int, b: int, force: bool = False) -> bytes:
    value = 0x40 | (w << 3) | ((r >> 3) << 2) | (b >> 3)
    return bytes([value]) if value != 0x40 or force else b""


def _mem(reg: int, base: int, disp: int) -> bytes:
    """ModRM (+SIB) + disp32 for [base + disp] (mod=10: works for every base, rsp/r12 need a SIB)."""
    out = bytes([0x80 | ((reg & 7) << 3) | (base & 7)])
    if base & 7 == 4:
        out += b"\x24"
    return out + struct.pack("<i", disp)


def _abs(reg: int, address: int) -> bytes:
    """ModRM + SIB + disp32 for an absolute [disp32] (no base, no index; sign-extended)."""
    return bytes([((reg & 7) << 3) | 4, 0x25]) + struct.pack("<i", address)


def _rr(reg: int, rm: int) -> bytes:
    return bytes([0xC0 | ((reg & 7) << 3) | (rm & 7)])


class X:
    """amd64 instruction encodings. Operands in Intel order (destination first)."""

    @staticmethod
    def mov_imm(r, v):        # mov r64, imm64
        return _rex(1, 0, r) + bytes([0xB8 + (r & 7)]) + struct.pack("<Q", v & M64)

    @staticmethod
    def mov_imm32(r, v):      # mov r32, imm32 (zero-extends)
        return _rex(0, 0, r) + bytes([0xB8 + (r & 7)]) + struct.pack("<I", v & 0xFFFFFFFF)

    @staticmethod
    def load(r, base, disp=0):     # mov r64, [base + disp]
        return _rex(1, r, base) + b"\x8b" + _mem(r, base, disp)

    @staticmethod
    def store(base, disp, r):      # mov [base + disp], r64
        return _rex(1, r, base) + b"\x89" + _mem(r, base, disp)

    @staticmethod
    def load8(r, base, disp=0):    # mov r8, [base + disp] (al..bl, or with REX)
        return _rex(0, r, base, force=r >= 4) + b"\x8a" + _mem(r, base, disp)

    @staticmethod
    def store8(base, disp, r):     # mov [base + disp], r8
        return _rex(0, r, base, force=r >= 4) + b"\x88" + _mem(r, base, disp)

    @staticmethod
    def store32(base, disp, r):    # mov [base + disp], r32
        return _rex(0, r, base) + b"\x89" + _mem(r, base, disp)

    @staticmethod
    def load_abs(r, address):      # mov r64, [address]
        return _rex(1, r, 0) + b"\x8b" + _abs(r, address)

    @staticmethod
    def mov(dst, src):             # mov r64, r64
        return _rex(1, src, dst) + b"\x89" + _rr(src, dst)

    @staticmethod
    def alu(op, dst, src):         # add/or/and/xor r64, r64
        opcode = {"add": 0x01, "or": 0x09, "and": 0x21, "xor": 0x31}[op]
        return _rex(1, src, dst) + bytes([opcode]) + _rr(src, dst)

    @staticmethod
    def alu_imm(op, dst, imm32):   # add/or/and/xor r64, imm32 (sign-extended)
        ext = {"add": 0, "or": 1, "and": 4, "xor": 6}[op]
        return _rex(1, 0, dst) + b"\x81" + _rr(ext, dst) + struct.pack("<i", imm32)

    @staticmethod
    def mov_from_cr(r, cr):        # mov r64, crN
        return _rex(0, 0, r) + b"\x0f\x20" + _rr(cr, r)

    @staticmethod
    def mov_to_cr(cr, r):          # mov crN, r64
        return _rex(0, 0, r) + b"\x0f\x22" + _rr(cr, r)

    @staticmethod
    def push(r):
        return _rex(0, 0, r) + bytes([0x50 + (r & 7)])

    @staticmethod
    def pop(r):
        return _rex(0, 0, r) + bytes([0x58 + (r & 7)])

    @staticmethod
    def mov_dx(port):              # mov dx, imm16
        return b"\x66\xba" + struct.pack("<H", port & 0xFFFF)

    OUT = {1: b"\xee", 2: b"\x66\xef", 4: b"\xef"}          # out dx, al/ax/eax
    IN = {1: b"\xec", 2: b"\x66\xed", 4: b"\xed"}           # in al/ax/eax, dx
    OUT_IMM = {1: b"\xe6", 2: b"\x66\xe7", 4: b"\xe7"}      # out imm8, al/ax/eax
    IN_IMM = {1: b"\xe4", 2: b"\x66\xe5", 4: b"\xe5"}       # in al/ax/eax, imm8

    @staticmethod
    def invlpg(base):              # invlpg [base + 0]
        return _rex(0, 0, base) + b"\x0f\x01" + _mem(7, base, 0)

    @staticmethod
    def lidt(base):                # lidt [base + 0]
        return _rex(0, 0, base) + b"\x0f\x01" + _mem(3, base, 0)

    @staticmethod
    def lgdt(base):                # lgdt [base + 0]
        return _rex(0, 0, base) + b"\x0f\x01" + _mem(2, base, 0)

    HLT = b"\xf4"
    CLD = b"\xfc"
    REP_STOSQ = b"\xf3\x48\xab"
    REP_MOVSQ = b"\xf3\x48\xa5"
    REP_OUTSB = b"\xf3\x6e"
    REP_INSB = b"\xf3\x6c"


def _jmp_back(size_so_far_after_jmp_target: int) -> bytes:
    """A short `jmp` to a point `n` bytes before the end of this 2-byte jump."""
    return b"\xeb" + struct.pack("<b", -size_so_far_after_jmp_target)


# ---------------------------------------------------------------------------------------------------------
# Interesting addresses and values
# ---------------------------------------------------------------------------------------------------------

def address_pool(ram: int) -> list[int]:
    return [
        0, 8, 0xFF8, 0x1000, 0x2000, 0x3000, 0x3800, 0x7FFF8, 0x80000, 0x100000, 0x100800, 0x200000,
        ram // 2, ram - 0x1000, ram - 8, ram - 0x40, ram - 0x41000, ram, ram + 0x1000,
        0x40000000, 0xD0000000, 0xFEC00000, 0xFEE00000, 0xFEE00030, 0xFFFFF000, 0xFFFFFFFF,
        1 << 32, 1 << 40, 0x0000_7FFF_FFFF_F000, 0x0000_8000_0000_0000, 0xFFFF_8000_0000_0000,
        0xFFFF_FFFF_FFFF_F000, 0xDEAD_BEEF_DEAD_BEEF, M64,
    ]


INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x3F8, 0x510, 0xF4, 0x1000, 0x100000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 1 << 32, 0x7FFF_FFFF_FFFF_FFFF, 1 << 63, M64]


def pick_address(rng: random.Random, ram: int) -> int:
    if rng.random() < 0.15:
        return rng.getrandbits(64)
    if rng.random() < 0.15:
        return rng.randrange(0, ram) & ~7
    return rng.choice(address_pool(ram))


# ---------------------------------------------------------------------------------------------------------
# The mutator framework, shared by every file format (flat guests today; snapshots, ELF, gdb packets later)
# ---------------------------------------------------------------------------------------------------------

Mutator = Callable[[random.Random, bytearray, "FileFormat"], str]


def m_bitflip(rng, data, fmt):
    n = rng.choice((1, 1, 2, 4, 8))
    for _ in range(n):
        if data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    return f"flip {n} bit(s)"


def m_byte(rng, data, fmt):
    if not data:
        return "byte (empty)"
    i = rng.randrange(len(data))
    data[i] = rng.choice((0, 0xFF, 0x7F, 0x80, 0xCC, 0xF4, 0x90, rng.randrange(256)))
    return f"set byte {i}"


def m_int(rng, data, fmt):
    width = rng.choice((2, 4, 8))
    if len(data) < width:
        return "int (too short)"
    i = rng.randrange(len(data) - width + 1)
    data[i:i + width] = (rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return f"interesting u{8 * width} at {i}"


def m_insert(rng, data, fmt):
    i = rng.randrange(len(data) + 1)
    n = rng.choice((1, 2, 4, 16, rng.randrange(1, 256)))
    chunk = bytes(rng.getrandbits(8) for _ in range(n)) if rng.random() < 0.6 else bytes([rng.randrange(256)]) * n
    data[i:i] = chunk
    return f"insert {n} at {i}"


def m_delete(rng, data, fmt):
    if not data:
        return "delete (empty)"
    i = rng.randrange(len(data))
    n = min(len(data) - i, rng.choice((1, 2, 4, 16, rng.randrange(1, 128))))
    del data[i:i + n]
    return f"delete {n} at {i}"


def m_truncate(rng, data, fmt):
    n = rng.randrange(0, len(data) + 1) if data else 0
    del data[n:]
    return f"truncate to {n}"


def m_extend(rng, data, fmt):
    n = rng.choice((1, 7, 64, 4096, rng.randrange(1, 20000)))
    kind = rng.choice(("zero", "random", "cc", "f4"))
    fill = {"zero": b"\0" * n, "cc": b"\xcc" * n, "f4": b"\xf4" * n}.get(kind) or rng.randbytes(n)
    data.extend(fill)
    return f"extend by {n} {kind}"


def m_splice(rng, data, fmt):
    name, other = rng.choice(fmt.corpus())
    if not other:
        return "splice (empty)"
    i = rng.randrange(len(data) + 1)
    a = rng.randrange(len(other))
    b = rng.randrange(a, len(other) + 1)
    if rng.random() < 0.5:
        data[i:] = other[a:b]              # head of this file + a piece of another
    else:
        data[i:i] = other[a:b]
    return f"splice {name}[{a}:{b}] at {i}"


def m_duplicate(rng, data, fmt):
    if not data:
        return "duplicate (empty)"
    a = rng.randrange(len(data))
    b = rng.randrange(a, min(len(data), a + 256) + 1)
    i = rng.randrange(len(data) + 1)
    data[i:i] = data[a:b]
    return f"duplicate [{a}:{b}] at {i}"


GENERIC_MUTATORS: list[tuple[int, Mutator]] = [
    (6, m_bitflip), (4, m_byte), (4, m_int), (3, m_insert), (3, m_delete), (1, m_truncate),
    (1, m_extend), (2, m_splice), (2, m_duplicate),
]


class FileFormat:
    """A file format the fuzzer can feed microvm. Subclasses give a corpus, extra (structure-aware)
    mutators, and how to run one file (`case`). A new format is a subclass plus one line in `CLASSES`,
    e.g. `"snapshot": MutationClass("snapshot", SnapshotFile())`:

    - snapshot files (`SnapshotFile`, class `snapshot`): corpus = snapshots saved by `microvm --save-snapshot`
      from the committed guests at the start of a run (their checksums recomputed here must match); mutators
      (which override `mutate`: a `Snap` is parsed, edited and laid out again, then resealed 85% of the time)
      += header fields, state record framing and contents, page-table entries and pages of the image, the
      file cut or extended, the generic byte mutators before the image; case = `--restore snap.bin`, the file
      written with holes (`Case.setup` kind "pieces").
    - ELF guests (`ELFGuest`, class `elf`): corpus = Guests/elf/*.elf; mutators += ELF header / program
      header field mutators; case = `guest.elf` with --entry / --load / --map now and then.
    - gdb packets (`GDBPackets`, class `gdb`): corpus = sessions as gdb sends them; mutators += number /
      checksum / escape / command / oversize / shuffle mutators; case = `--gdb 127.0.0.1:0 guest` with
      `Case.driver` finding the port microvm listens on and sending the packets.
    """
    name = "bytes"

    def corpus(self) -> list[tuple[str, bytes]]:
        return []

    def mutators(self) -> list[tuple[int, Mutator]]:
        return GENERIC_MUTATORS

    def mutate(self, rng: random.Random, data: bytes, rounds: int) -> tuple[bytes, list[str]]:
        out = bytearray(data)
        table = self.mutators()
        weights = [w for w, _ in table]
        notes = []
        for _ in range(rounds):
            mutator = rng.choices([m for _, m in table], weights)[0]
            notes.append(mutator(rng, out, self))
        return bytes(out), notes

    def case(self, cls: str, seed: int, rng: random.Random, data: bytes, description: str) -> Case:
        raise NotImplementedError


class FlatGuest(FileFormat):
    """A flat amd64 / i686 guest binary (README "The guest contract")."""
    name = "flat-guest"
    _corpus: list[tuple[str, bytes]] | None = None

    def corpus(self):
        if FlatGuest._corpus is None:
            FlatGuest._corpus = [(p.name, p.read_bytes()) for p in sorted(GUESTS.glob("*.bin"))]
        return FlatGuest._corpus

    def mutators(self):
        return GENERIC_MUTATORS + [(3, m_insert_instruction)]

    def case(self, cls, seed, rng, data, description):
        ram = rng.choice((4 * MiB, 8 * MiB, 16 * MiB, 16 * MiB, 32 * MiB, 64 * MiB))
        timeout = rng.choice((0.3, 0.5, 1.0))
        args = ["--memory", f"{ram // MiB}M", "--timeout", f"{int(timeout * 1000)}ms"]
        if rng.random() < 0.1:
            args[0:0] = ["--arch", "i686"]
        if rng.random() < 0.3:
            args += ["--page-size", rng.choice(("4k", "auto"))]
        if rng.random() < 0.05:
            args += ["--trace"]
        args.append("guest.bin")
        return Case(cls, seed, args, description=description, files={"guest.bin": data}, timeout=timeout,
                    ram=ram, verbose_stderr="--trace" in args)


def m_insert_instruction(rng, data, fmt):
    """Structure-aware for flat guests: splice in one instruction from the `instructions` dictionary."""
    name, code = instruction(rng, 16 * MiB)
    i = rng.randrange(len(data) + 1)
    data[i:i] = code
    return f"insert instruction {name} at {i}"


class ELFGuest(FileFormat):
    """An ELF guest (README "ELF guests"): the committed Guests/elf/*.elf, mutated field by field (ELF header
    and program header fields the loader reads, copies of one program header over another) as well as by the
    generic byte mutators; run with the options that meet ELF loading (--entry, --load, --map over the
    segments, small RAM)."""
    name = "elf"
    _corpus: list[tuple[str, bytes]] | None = None

    def corpus(self):
        if ELFGuest._corpus is None:
            ELFGuest._corpus = [(p.name, p.read_bytes()) for p in sorted((GUESTS / "elf").glob("*.elf"))]
        return ELFGuest._corpus

    def mutators(self):
        return GENERIC_MUTATORS + [(8, m_elf_header_field), (14, m_elf_program_header_field),
                                   (2, m_elf_copy_program_header), (2, m_elf_truncate_headers)]

    def case(self, cls, seed, rng, data, description):
        i686 = description.startswith("hello32")
        if rng.random() < 0.05:
            i686 = not i686
        ram = rng.choice((1 * MiB, 4 * MiB, 16 * MiB, 16 * MiB, 64 * MiB))
        timeout = rng.choice((0.3, 0.5, 1.0))
        args = ["--memory", f"{ram // MiB}M", "--timeout", f"{int(timeout * 1000)}ms"]
        if i686:
            args[0:0] = ["--arch", "i686"]
        expect = Expect()
        base = 0xC0000000 if i686 else 0xFFFFFFFF80000000
        if rng.random() < 0.15:                  # the guests' entry table, or anywhere
            entry = rng.choice((base + 0x10 * rng.randrange(6), base + rng.randrange(0x5000), 0x100000,
                                rng.getrandbits(64)))
            args += ["--entry", hex(entry)]
        if rng.random() < 0.05 and data[:4] == b"\x7fELF":
            args += ["--load", "0x200000"]
            expect = Expect(statuses={2}, error_line=True, require=r"^--load does not apply to ELF guest",
                            why="an ELF guest refuses --load")
        if rng.random() < 0.15:                  # over a segment's pages or frames, or beside them
            pa = rng.choice((0x100000, 0x101000, 0x102000, 0x200000))
            va = rng.choice((0x40000000, base, base + 0x1000, pa))
            args += ["--map", f"{hex(va)}={hex(pa)}:4K:{rng.choice(('r', 'rw', 'rx', 'rwx', 'rc', 'rxc'))}"]
        if rng.random() < 0.2:
            args += ["--page-size", rng.choice(("4k", "auto"))]
        if rng.random() < 0.05:
            args += [rng.choice(("--trace", "--dump-tables"))]
        args.append("guest.elf")
        return Case(cls, seed, args, description=description, files={"guest.elf": data}, timeout=timeout,
                    ram=ram, verbose_stderr="--trace" in args or "--dump-tables" in args, expect=expect)


def _elf_layout(data) -> tuple[bool, int, int, int] | None:
    """(wide, phoff, phnum, phentsize) from the mutant's own ELF header, or None when it has none."""
    if len(data) < 52 or data[4] not in (1, 2):
        return None
    wide = data[4] == 2
    if wide and len(data) < 64:
        return None
    phoff, = struct.unpack_from("<Q" if wide else "<I", data, 32 if wide else 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 54 if wide else 42)
    return wide, phoff, phnum, 56 if wide else 32


#: (name, offset, width) of the ELF header fields the loader reads, per class.
ELF_HEADER_FIELDS = {
    True: [("EI_CLASS", 4, 1), ("EI_DATA", 5, 1), ("EI_VERSION", 6, 1), ("e_type", 16, 2), ("e_machine", 18, 2),
           ("e_version", 20, 4), ("e_entry", 24, 8), ("e_phoff", 32, 8), ("e_phentsize", 54, 2),
           ("e_phnum", 56, 2)],
    False: [("EI_CLASS", 4, 1), ("EI_DATA", 5, 1), ("EI_VERSION", 6, 1), ("e_type", 16, 2), ("e_machine", 18, 2),
            ("e_version", 20, 4), ("e_entry", 24, 4), ("e_phoff", 28, 4), ("e_phentsize", 42, 2),
            ("e_phnum", 44, 2)],
}
#: (name, offset, width) of the program header fields, per class.
ELF_PROGRAM_HEADER_FIELDS = {
    True: [("p_type", 0, 4), ("p_flags", 4, 4), ("p_offset", 8, 8), ("p_vaddr", 16, 8), ("p_paddr", 24, 8),
           ("p_filesz", 32, 8), ("p_memsz", 40, 8), ("p_align", 48, 8)],
    False: [("p_type", 0, 4), ("p_offset", 4, 4), ("p_vaddr", 8, 4), ("p_paddr", 12, 4), ("p_filesz", 16, 4),
            ("p_memsz", 20, 4), ("p_flags", 24, 4), ("p_align", 28, 4)],
}
ELF_INTERESTING = [0, 1, 3, 7, 0xFFF, 0x1000, 0x1001, 0xFFFF, 0xFFFE, 0x80000, 0x100000, 0x101000, 0xFFF000,
                   0x1000000, 0x7FFFFFFF, 0x80000000, 0xC0000000, 0xFFFFF000, 0xFFFFFFFF, 1 << 32,
                   0x7FFFFFFFF000, 0x800000000000, 0xFFFF800000000000, 0xFFFFFFFF80000000, 0xFFFFFFFFFFFFF000,
                   1 << 63, M64]


def _elf_write(rng, data, at, width, name, peers):
    """A new value for the field at `at`: interesting, a step from the old one, random, or a peer's value."""
    if at + width > len(data):
        return f"{name} (cut off)"
    old = int.from_bytes(data[at:at + width], "little")
    choice = rng.randrange(4)
    if choice == 0:
        value = rng.choice(ELF_INTERESTING)
    elif choice == 1:
        value = old + rng.randrange(-0x2000, 0x2001)
    elif choice == 2:
        value = rng.getrandbits(8 * width)
    else:
        value = rng.choice(peers)
    value &= (1 << (8 * width)) - 1
    data[at:at + width] = value.to_bytes(width, "little")
    return f"{name} {old:#x} -> {value:#x}"


def m_elf_header_field(rng, data, fmt):
    layout = _elf_layout(data)
    if layout is None:
        return "elf header field (no header)"
    fields = ELF_HEADER_FIELDS[layout[0]]
    name, offset, width = rng.choice(fields)
    peers = [int.from_bytes(data[o:o + w], "little") for _, o, w in fields]
    return _elf_write(rng, data, offset, width, name, peers)


def m_elf_program_header_field(rng, data, fmt):
    layout = _elf_layout(data)
    if layout is None:
        return "program header field (no header)"
    wide, phoff, phnum, size = layout
    count = min(phnum, max(0, (len(data) - phoff) // size)) if phoff < len(data) else 0
    if count == 0:
        return "program header field (no table)"
    index = rng.randrange(count)
    base = phoff + index * size
    fields = ELF_PROGRAM_HEADER_FIELDS[wide]
    name, offset, width = rng.choice(fields)
    peers = [int.from_bytes(data[base + o:base + o + w], "little") for _, o, w in fields]
    return f"phdr {index} " + _elf_write(rng, data, base + offset, width, name, peers)


def m_elf_copy_program_header(rng, data, fmt):
    layout = _elf_layout(data)
    if layout is None:
        return "copy program header (no header)"
    wide, phoff, phnum, size = layout
    count = min(phnum, max(0, (len(data) - phoff) // size)) if phoff < len(data) else 0
    if count < 2:
        return "copy program header (fewer than 2)"
    a, b = rng.randrange(count), rng.randrange(count)
    data[phoff + b * size:phoff + (b + 1) * size] = data[phoff + a * size:phoff + (a + 1) * size]
    return f"copy phdr {a} over {b}"


def m_elf_truncate_headers(rng, data, fmt):
    layout = _elf_layout(data)
    end = 64 if layout is None else min(len(data), layout[1] + layout[2] * layout[3] + 8)
    n = rng.randrange(0, max(1, end))
    del data[n:]
    return f"truncate to {n} (inside the headers)"


# ---------------------------------------------------------------------------------------------------------
# Generator classes. Each is `generate(seed) -> Case`, deterministic from (class, seed).
# ---------------------------------------------------------------------------------------------------------

# --- gdb packet streams ----------------------------------------------------------------------------------

def _pkt(payload: bytes) -> bytes:
    """`$payload#checksum`: a remote-protocol packet (the checksum is the byte sum modulo 256, two hex digits)."""
    return b"$" + payload + b"#" + b"%02x" % (sum(payload) & 0xFF)


PACKET_RE = re.compile(rb"\$([^$#]*)#([0-9a-fA-F]{2})")


def _elf_symbol(path: Path, name: str, default: int) -> int:
    """The address of `name` in an ELF64 file's .symtab, or `default` (no checks beyond the file's bounds)."""
    try:
        data = path.read_bytes()
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        for sh in sections:
            if sh[1] != 2:                                  # SHT_SYMTAB
                continue
            strtab = sections[sh[6]]
            for off in range(sh[4], sh[4] + sh[5], 24):
                st_name, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, off)
                end = data.index(b"\0", strtab[4] + st_name)
                if data[strtab[4] + st_name:end] == name.encode():
                    return value
    except (OSError, struct.error, ValueError, IndexError):
        pass
    return default


DEBUGME = GUESTS / "swift" / "debugme64.elf"
_UPPER = 0xFFFFFFFF80000000
SCALE = _elf_symbol(DEBUGME, "scale", _UPPER + 0x100)
MAGIC = _elf_symbol(DEBUGME, "magic", _UPPER + 0x3008)
REGISTER_FILE_BYTES = 592   # amd64: the `g` packet's data (GDBArchitecture.registerFileByteCount)

#: What gdb 13 sends when it connects (`set debug remote 1`), before any command of the user's.
GDB_HANDSHAKE = [
    b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;exec-events+;"
    b"vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+",
    b"vMustReplyEmpty", b"QStartNoAckMode", b"Hgp0.0", b"qXfer:features:read:target.xml:0,ffb",
    b"qXfer:features:read:microvm-amd64-core.xml:0,ffb", b"qTStatus", b"?", b"qfThreadInfo", b"qsThreadInfo",
    b"qAttached:1", b"Hc-1", b"qC", b"qOffsets", b"g", b"m%x,1" % _UPPER,
]


def _hex(n: int) -> bytes:
    return b"%x" % n


def _session(packets: list[bytes], noack_after: int | None = 2) -> bytes:
    """A stream as gdb writes it: each packet, with `+` acknowledging our replies until no-ack mode."""
    out = bytearray()
    for i, payload in enumerate(packets):
        if payload == b"\x03":
            out += payload
            continue
        if noack_after is None or i <= noack_after:
            out += b"+"
        out += _pkt(payload)
    return bytes(out)


def gdb_corpus() -> list[tuple[str, bytes]]:
    """Packet streams of typical sessions, each named `what@guest`."""
    zeros = b"00" * REGISTER_FILE_BYTES
    return [
        ("inspect@debugme64.elf", _session(GDB_HANDSHAKE + [
            b"p10", b"m%x,40" % _UPPER, b"m%x,8" % MAGIC, b"m103008,8", b"m0,8", b"mffffffff90000000,100",
            b"qXfer:features:read:microvm-amd64-sse.xml:0,ffb", b"D"])),
        ("break-continue@debugme64.elf", _session(GDB_HANDSHAKE + [
            b"Z0,%x,1" % SCALE, b"vCont;c:p1.-1", b"g", b"m%x,1" % SCALE, b"z0,%x,1" % SCALE,
            b"vCont;s:p1.1", b"vCont;s:p1.1", b"vCont;s:p1.1", b"Z0,%x,1" % SCALE, b"vCont;c:p1.-1", b"k"])),
        ("to-the-end@debugme64.elf", _session(GDB_HANDSHAKE + [b"Z1,%x,1" % SCALE, b"c", b"z1,%x,1" % SCALE, b"c"])),
        ("five-breakpoints@debugme64.elf", _session(GDB_HANDSHAKE + [
            b"Z0,%x,1" % (_UPPER + 0x1ff0), b"Z0,%x,1" % (_UPPER + 0x1ff4), b"Z0,%x,1" % (_UPPER + 0x1ff8),
            b"Z1,%x,1" % (_UPPER + 0x1ffc), b"Z0,%x,1" % SCALE, b"c", b"g", b"z0,%x,1" % SCALE, b"s", b"c"])),
        ("steps@debugme64.elf", _session(GDB_HANDSHAKE + [b"s"] * 24 + [b"vCont;s", b"S05", b"k"])),
        ("writes@debugme64.elf", _session(GDB_HANDSHAKE + [
            b"M%x,8:0102030405060708" % MAGIC, b"X%x,4:abcd" % MAGIC, b"M%x,1:90" % SCALE, b"P10=0000000000000000",
            b"P0=2a00000000000000", b"P11=0200000000000000", b"G" + zeros, b"c", b"g", b"c"])),
        ("watch@debugme64.elf", _session(GDB_HANDSHAKE + [
            b"Z2,%x,8" % MAGIC, b"Z3,%x,8" % MAGIC, b"Z4,%x,8" % MAGIC, b"Z1,%x,1" % SCALE, b"z1,%x,1" % SCALE,
            b"Z9,0,0", b"c"])),
        ("interrupt@loop64.bin", _session(GDB_HANDSHAKE + [b"c", b"\x03", b"g", b"s", b"c", b"\x03", b"k"])),
        ("running-drop@loop64.bin", _session(GDB_HANDSHAKE + [b"vCont;c"])),
        ("fault@nullread64.bin", _session(GDB_HANDSHAKE + [b"c", b"g", b"p8", b"c", b"c"])),
        ("hello@hello64.bin", _session(GDB_HANDSHAKE + [b"s", b"s", b"c"], noack_after=None)),
        ("odd@debugme64.elf", _session(GDB_HANDSHAKE + [
            b"qXfer:features:read:target.xml:fffffffffffffff0,ffffffffffffffff", b"qXfer:features:read:nope.xml:0,10",
            b"vCont;x", b"vCont;c:p2.2", b"Hg5", b"T1", b"T2", b"qRcmd,6869", b"vFile:open:", b"p999",
            b"P999=00", b"m%x,ffffffffffffffff" % _UPPER, b"mffffffffffffffff,10", b"M0,0:", b"Xffffffffffffffff,2:ab",
            b"c%x" % SCALE, b"s0", b"C0b", b"D;1"])),
    ]


#: Single commands the mutator splices in.
GDB_COMMANDS = [
    b"?", b"g", b"G" + b"00" * REGISTER_FILE_BYTES, b"G" + b"ff" * REGISTER_FILE_BYTES, b"p10", b"P10=0", b"c", b"s",
    b"vCont;c", b"vCont;s:1", b"vCont?", b"Z0,%x,1" % SCALE, b"z0,%x,1" % SCALE, b"Z1,0,1", b"Z2,103008,8",
    b"m%x,200" % _UPPER, b"mffff800000000000,8", b"M%x,2:cccc" % SCALE, b"X103000,1:}]", b"k", b"D", b"\x03",
    b"QStartNoAckMode", b"qSupported", b"qXfer:features:read:target.xml:0,1", b"Hc0", b"qfThreadInfo",
    b"P1a=ffffffffffffffff", b"P48=0000000000000000", b"P4b=0000000000000000", b"Pffffffff=00",
]

NUMBER_RE = re.compile(rb"[0-9a-f]+")
BOUNDARY_NUMBERS = [b"0", b"1", b"7fffffff", b"ffffffff", b"ffffffffffffffff", b"10000000000000000",
                    b"ffffffff80000000", b"ffff800000000000", b"800000000000", b"fff", b"1000", b"fffff"]


def _packets(data) -> list[re.Match]:
    return list(PACKET_RE.finditer(bytes(data)))


def _rewrite(data, match: re.Match, payload: bytes):
    data[match.start():match.end()] = _pkt(payload)


def m_gdb_number(rng, data, fmt):
    """A hex number in one packet's payload set to a boundary value; the checksum fixed."""
    packets = _packets(data)
    if not packets:
        return "gdb number: no packet"
    m = rng.choice(packets)
    payload = m.group(1)
    numbers = list(NUMBER_RE.finditer(payload))
    if not numbers:
        return "gdb number: none"
    n = rng.choice(numbers)
    value = rng.choice(BOUNDARY_NUMBERS + [b"%x" % rng.getrandbits(rng.choice((8, 32, 64)))])
    _rewrite(data, m, payload[:n.start()] + value + payload[n.end():])
    return f"gdb number {payload[:12]!r} -> {value.decode()}"


def m_gdb_checksum(rng, data, fmt):
    """One packet's checksum wrong (or not hex)."""
    packets = _packets(data)
    if not packets:
        return "gdb checksum: no packet"
    m = rng.choice(packets)
    bad = rng.choice((b"00", b"zz", b"%02x" % ((int(m.group(2), 16) + 1) & 0xFF), b"#"))
    data[m.start(2):m.end(2)] = bad
    return f"gdb checksum of {m.group(1)[:12]!r} -> {bad!r}"


def m_gdb_escape(rng, data, fmt):
    """Escapes (`}`), run lengths (`*`) or a stray `$` inside one packet; the checksum fixed (but `$`)."""
    packets = _packets(data)
    if not packets:
        return "gdb escape: no packet"
    m = rng.choice(packets)
    payload = bytearray(m.group(1))
    at = rng.randrange(len(payload) + 1)
    piece = rng.choice((b"}", b"}]", b"}\x03", b"*", b"*~", b"0*" + bytes([rng.randrange(29, 127)]), b"*\x20",
                        b"$", b"\x03"))
    payload[at:at] = piece
    _rewrite(data, m, bytes(payload))
    return f"gdb escape {piece!r} in {m.group(1)[:12]!r}"


def m_gdb_command(rng, data, fmt):
    """A command spliced in between packets."""
    command = rng.choice(GDB_COMMANDS)
    piece = command if command == b"\x03" else _pkt(command)
    packets = _packets(data)
    at = rng.choice([m.start() for m in packets] + [len(data)]) if packets else len(data)
    data[at:at] = piece
    return f"gdb command {command[:16]!r}"


def m_gdb_oversize(rng, data, fmt):
    """One packet's payload grown past the packet size (4 KiB) with a valid checksum."""
    packets = _packets(data)
    if not packets:
        return "gdb oversize: no packet"
    m = rng.choice(packets)
    size = rng.choice((4095, 4096, 4097, 8192, 70000))
    payload = (m.group(1) + b"0" * size)[:size]
    _rewrite(data, m, payload)
    return f"gdb oversize {m.group(1)[:12]!r} to {size}"


def m_gdb_shuffle(rng, data, fmt):
    """Two packets swapped, or one dropped or repeated."""
    packets = _packets(data)
    if len(packets) < 2:
        return "gdb shuffle: too few"
    a, b = sorted(rng.sample(packets, 2), key=lambda m: m.start())
    how = rng.choice(("swap", "drop", "repeat"))
    if how == "swap":
        data[b.start():b.end()] = a.group(0)
        data[a.start():a.end()] = b.group(0)
    elif how == "drop":
        del data[a.start():a.end()]
    else:
        data[b.end():b.end()] = b.group(0) * rng.randrange(1, 20)
    return f"gdb {how}"


class GDBPackets(FileFormat):
    """gdb remote-protocol streams (README "Debugging guests"): recorded-style sessions (connect, inspect,
    break, step, write memory and registers, watch, interrupt, detach, kill) against debugme64, loop64,
    nullread64 and hello64, mutated by packet-aware mutators (numbers set to boundary values, checksums broken,
    escapes and run lengths, spliced commands, oversized packets, reordering) as well as byte mutators; run as
    `microvm --gdb 127.0.0.1:0 guest` with `Case.driver` connecting to the port microvm listens on and
    sending the stream in seeded chunks, then lingering and closing."""
    name = "gdb"

    def corpus(self):
        return gdb_corpus()

    def mutators(self):
        return GENERIC_MUTATORS + [(8, m_gdb_number), (3, m_gdb_checksum), (3, m_gdb_escape), (6, m_gdb_command),
                                   (2, m_gdb_oversize), (3, m_gdb_shuffle)]

    def case(self, cls, seed, rng, data, description):
        guest_name = description.split(":")[0].split("@")[-1]
        guest = str(DEBUGME if guest_name.endswith(".elf") else GUESTS / guest_name)
        timeout = rng.choice((0.5, 1.0, 1.0, None))        # None: --timeout 0, a spinning guest waits for gdb
        args = ["--gdb", rng.choice(("127.0.0.1:0", ":0")), "--timeout",
                "0" if timeout is None else f"{int(timeout * 1000)}ms", guest]
        if rng.random() < 0.05:
            args.insert(0, "--trace")
        # Sent in chunks: per packet, or cut anywhere, with pauses; sometimes only a prefix (a crash of gdb).
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(0, 12)))) if len(data) > 1 else []
        pause = rng.choice((0.0, 0.0, 0.005, 0.03))
        keep = len(data) if rng.random() < 0.85 else rng.randrange(len(data) + 1)
        linger = rng.choice((0.05, 0.3, 1.0))
        driver = gdb_driver(data[:keep], cuts, pause, linger)
        deadline = 5.0 + pause * (len(cuts) + 1) + linger + (timeout or 0) * 2 + GRACE
        return Case(cls, seed, args, description=description, timeout=timeout, deadline=deadline, driver=driver,
                    verbose_stderr="--trace" in args, notices=r"^microvm: waiting for gdb on 127\.0\.0\.1:\d+$",
                    extra_statuses=GDB_STATUSES,
                    expect=Expect(first_line=(None if "--trace" in args else r"^microvm: waiting for gdb on 127\.0\.0\.1:\d+$"),
                                  forbid=r"^(cannot listen|--gdb|gdb server)",
                                  why="a --gdb run waits for gdb with one line, and its endings are the guest's, a "
                                      "failure's, gdb's kill (137) or gdb going away (129)"))


def listening_port(pid: int, stop: threading.Event, within: float = 5.0) -> int | None:
    """The TCP port process `pid` listens on (a socket of its in /proc/PID/fd, LISTEN in /proc/PID/net/tcp)."""
    end = time.monotonic() + within
    while time.monotonic() < end and not stop.is_set():
        inodes = set()
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
            with open(f"/proc/{pid}/net/tcp") as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                        return int(fields[1].split(":")[1], 16)
        except OSError:
            return None                                    # the process is gone
        time.sleep(0.01)
    return None


def gdb_driver(stream: bytes, cuts: list[int], pause: float, linger: float):
    """A `Case.driver` that plays gdb: connects to the port microvm listens on, sends `stream` cut at `cuts`
    with `pause` between pieces (reading whatever comes back), reads for `linger` seconds more, and closes."""
    def drive(pid: int, workdir: Path, stop: threading.Event):
        port = listening_port(pid, stop)
        if port is None:
            return
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            return
        sock.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)

        def drain(seconds: float) -> bool:
            """Reads replies for `seconds`; False once microvm closed the connection."""
            end = time.monotonic() + seconds
            while not stop.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    return True
                if sel.select(timeout=min(left, 0.05)):
                    try:
                        if not sock.recv(1 << 16):
                            return False
                    except BlockingIOError:
                        pass
                    except OSError:
                        return False
            return False

        try:
            edges = [0] + cuts + [len(stream)]
            for a, b in zip(edges, edges[1:]):
                piece = stream[a:b]
                while piece and not stop.is_set():
                    try:
                        sent = sock.send(piece, socket.MSG_NOSIGNAL)
                        piece = piece[sent:]
                    except BlockingIOError:
                        if not drain(0.01):
                            return
                    except OSError:
                        return
                if not drain(pause):
                    return
            drain(linger)
        finally:
            sel.close()
            sock.close()
    return drive


# --- snapshot files (docs/snapshot-format.md) -----------------------------------------------------------

PAGE = 4096
ZERO_PAGE = bytes(PAGE)
M32 = (1 << 32) - 1
SNAP_MAGIC = b"MVMSNAP\0"
SNAP_HEADER = 4096                # the header page
SNAP_FIELDS = 72                  # its fields; the rest of the page is zero
SNAP_MAX_STATE = 1 << 20
SNAP_MAX_MEMORY = 3 * GiB
#: state record tags
SNAP_TAGS = {1: "configuration", 2: "registers", 3: "special-registers", 4: "xsave", 5: "xcrs", 6: "msrs",
             7: "events", 8: "debug-registers", 9: "roots", 10: "arena", 11: "leaf-sizes", 12: "calls"}
#: header fields: name -> (offset, width)
SNAP_HEADER_FIELDS = {"magic": (0, 8), "version": (8, 4), "architecture": (12, 4), "memory size": (16, 8),
                      "image offset": (24, 8), "state offset": (32, 8), "state length": (40, 8),
                      "state checksum": (48, 8), "image checksum": (56, 8), "header checksum": (64, 8)}

_K1, _K2, _K3 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0xFF51AFD7ED558CCD


class Checksum:
    """`Checksum` of Sources/MicroVM/SnapshotFile.swift, exactly: four 64-bit lanes, each 32-byte block one
    `round` per lane (lane + word * K2, rotated left 31, times K1), a tail shorter than 32 bytes padded with
    zeros to 32 bytes *per `add` call*, the total length folded in, then the final mix."""
    __slots__ = ("lanes", "length")

    def __init__(self):
        self.lanes = (_K1, _K2, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63)
        self.length = 0

    def add(self, data) -> "Checksum":
        data = bytes(data)
        self.length = (self.length + len(data)) & M64
        if len(data) % 32:
            data += bytes(32 - len(data) % 32)
        words = struct.unpack(f"<{len(data) // 8}Q", data)
        a, b, c, d = self.lanes
        for i in range(0, len(words), 4):
            m = (a + words[i] * _K2) & M64
            a = ((m << 31 | m >> 33) & M64) * _K1 & M64
            m = (b + words[i + 1] * _K2) & M64
            b = ((m << 31 | m >> 33) & M64) * _K1 & M64
            m = (c + words[i + 2] * _K2) & M64
            c = ((m << 31 | m >> 33) & M64) * _K1 & M64
            m = (d + words[i + 3] * _K2) & M64
            d = ((m << 31 | m >> 33) & M64) * _K1 & M64
        self.lanes = (a, b, c, d)
        return self

    def add_u64(self, value: int) -> "Checksum":
        return self.add(struct.pack("<Q", value & M64))      # an 8-byte add: its own 32-byte padded block

    @property
    def value(self) -> int:
        a, b, c, d = self.lanes
        h = a ^ (b * _K1 & M64) ^ (c * _K2 & M64) ^ d ^ self.length
        h ^= h >> 33
        h = h * _K3 & M64
        return h ^ (h >> 33)


class SparseFile:
    """A file as its pieces of data (offset, bytes; sorted, not overlapping; zeros elsewhere) and its length:
    a snapshot mutant is megabytes of image of which a few pages are not zero. Written with holes."""

    def __init__(self, pieces, length: int):
        self.pieces = sorted(((o, bytes(b)) for o, b in pieces if b), key=lambda p: p[0])
        self.length = length
        self.cut(length)

    def __bool__(self):
        return True

    def cut(self, length: int):
        self.length = length
        self.pieces = [(o, b[:length - o]) for o, b in self.pieces if o < length]

    def read(self, offset: int, count: int) -> bytes:
        out = bytearray(count)
        end = offset + count
        for o, b in self.pieces:
            if o >= end:
                break
            lo, hi = max(o, offset), min(o + len(b), end)
            if lo < hi:
                out[lo - offset:hi - offset] = b[lo - o:hi - o]
        return bytes(out)

    def write(self, offset: int, data: bytes):
        """Overwrites bytes inside the file; the pieces they touch become one."""
        end = offset + len(data)
        touching = [i for i, (o, b) in enumerate(self.pieces) if o < end and o + len(b) > offset]
        lo = min([offset] + [self.pieces[i][0] for i in touching])
        hi = max([end] + [self.pieces[i][0] + len(self.pieces[i][1]) for i in touching])
        merged = bytearray(self.read(lo, hi - lo))
        merged[offset - lo:end - lo] = data
        self.pieces = [p for i, p in enumerate(self.pieces) if i not in touching] + [(lo, bytes(merged))]
        self.pieces.sort(key=lambda p: p[0])

    def u(self, offset: int, width: int = 8) -> int:
        return int.from_bytes(self.read(offset, width), "little")

    def put(self, offset: int, width: int, value: int):
        self.write(offset, (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little"))

    def write_to(self, path):
        """Writes the file, leaving 4 KiB blocks of zeros as holes."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for o, b in self.pieces:
                for at in range(0, len(b), PAGE):
                    chunk = b[at:at + PAGE]
                    if chunk.count(0) != len(chunk):
                        os.pwrite(fd, chunk, o + at)
            os.ftruncate(fd, self.length)
        finally:
            os.close(fd)


def snapshot_image_checksum(f: SparseFile, image_offset: int, memory: int) -> int:
    """The image checksum: for each maximal run of pages that are not all zero, in address order, the run's
    address (as a u64) and then its bytes. Only pages that hold a piece of `f` are looked at."""
    candidates = set()
    for o, b in f.pieces:
        lo, hi = max(o, image_offset), min(o + len(b), image_offset + memory)
        if lo < hi:
            candidates.update(range((lo - image_offset) // PAGE, (hi - 1 - image_offset) // PAGE + 1))
    pages = [k for k in sorted(candidates) if f.read(image_offset + k * PAGE, PAGE) != ZERO_PAGE]
    s = Checksum()
    i = 0
    while i < len(pages):
        j = i
        while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
            j += 1
        s.add_u64(pages[i] * PAGE)
        s.add(f.read(image_offset + pages[i] * PAGE, (j - i + 1) * PAGE))
        i = j + 1
    return s.value


def snapshot_checksums(f: SparseFile) -> dict[str, int | None]:
    """The three checksums as the loader computes them from what the header says (None where the loader never
    gets that far: sections outside the file, a state longer than 1 MiB, a memory size it refuses)."""
    out: dict[str, int | None] = {"state checksum": None, "image checksum": None}
    if f.length < SNAP_HEADER:
        return out
    memory, image_offset, state_offset, state_length = (f.u(at) for at in (16, 24, 32, 40))
    if state_offset <= f.length and state_length <= f.length - state_offset and state_length <= SNAP_MAX_STATE:
        out["state checksum"] = Checksum().add(f.read(state_offset, state_length)).value
    if 0 < memory <= SNAP_MAX_MEMORY and memory % PAGE == 0 and image_offset <= f.length \
            and memory <= f.length - image_offset:
        out["image checksum"] = snapshot_image_checksum(f, image_offset, memory)
    # the header's own checksum covers the other two: computed last, over the fields as they now are
    return out


def reseal(f: SparseFile):
    """Recomputes the checksums of `f` from its contents as they now are (as `SnapshotFileTesting.resealed`
    does), so a mutant reaches the checks behind them."""
    if f.length < SNAP_HEADER:
        return
    for name, value in snapshot_checksums(f).items():
        if value is not None:
            f.put(SNAP_HEADER_FIELDS[name][0], 8, value)
    f.put(64, 8, Checksum().add(f.read(0, 64)).value)


def snapshot_header_sound(f: SparseFile) -> bool:
    """Whether the loader gets past the header's magic, version, checksum and unused bytes."""
    return (f.length >= SNAP_HEADER and f.read(0, 8) == SNAP_MAGIC and f.u(8, 4) == 1
            and Checksum().add(f.read(0, 64)).value == f.u(64)
            and f.read(SNAP_FIELDS, SNAP_HEADER - SNAP_FIELDS).count(0) == SNAP_HEADER - SNAP_FIELDS)


@dataclasses.dataclass
class SnapRecord:
    tag: int
    payload: bytearray
    length: int | None = None        # the length field, when a mutator set it apart from the payload's
    padding: bytes | None = None     # the padding, when a mutator made it other than zeros to 8 bytes

    def encode(self) -> bytes:
        length = len(self.payload) if self.length is None else self.length
        padding = bytes((8 - len(self.payload) % 8) % 8) if self.padding is None else self.padding
        return struct.pack("<II", self.tag, length & M32) + bytes(self.payload) + padding


@dataclasses.dataclass
class Snap:
    """A snapshot file, parsed: what the structure-aware mutators edit. `serialize` lays it out again as
    microvm does (state after the header, the image at the next page; a state that grew moves the image),
    then applies the header overrides a mutator asked for."""
    header: bytearray                # the 4096-byte header page
    records: list                    # SnapRecord
    pages: dict                      # image page index -> its 4096 bytes (pages that are not all zero)
    memory: int                      # the image's size, and the header's memory size
    overrides: list = dataclasses.field(default_factory=list)   # (offset, width, "set" | "add", value)

    def copy(self) -> "Snap":
        return Snap(bytearray(self.header), [SnapRecord(r.tag, bytearray(r.payload), r.length, r.padding)
                                             for r in self.records], dict(self.pages), self.memory, [])

    def record(self, tag: int) -> SnapRecord | None:
        return next((r for r in self.records if r.tag == tag), None)

    def serialize(self) -> SparseFile:
        state = b"".join(r.encode() for r in self.records)
        image_offset = (SNAP_HEADER + len(state) + PAGE - 1) & ~(PAGE - 1)
        header = bytearray(self.header)
        for at, width, value in ((16, 8, self.memory), (24, 8, image_offset), (32, 8, SNAP_HEADER),
                                 (40, 8, len(state))):
            header[at:at + width] = value.to_bytes(width, "little")
        for at, width, how, value in self.overrides:
            old = int.from_bytes(header[at:at + width], "little")
            new = (old + value if how == "add" else value) & ((1 << (8 * width)) - 1)
            header[at:at + width] = new.to_bytes(width, "little")
        head = bytes(header) + state + bytes(image_offset - SNAP_HEADER - len(state))
        pieces = [(0, head)] + [(image_offset + k * PAGE, p) for k, p in self.pages.items()]
        return SparseFile(pieces, image_offset + self.memory)


def parse_snapshot(data: bytes) -> Snap:
    """A snapshot file as microvm writes it (raises ValueError on anything else: the corpus is checked)."""
    if len(data) < SNAP_HEADER or data[:8] != SNAP_MAGIC:
        raise ValueError("not a snapshot file")
    memory, image_offset, state_offset, state_length = struct.unpack_from("<4Q", data, 16)
    if state_offset != SNAP_HEADER or len(data) != image_offset + memory:
        raise ValueError(f"unexpected layout: state at {state_offset}, image at {image_offset}, {len(data)} bytes")
    state = data[state_offset:state_offset + state_length]
    records, at = [], 0
    while at < len(state):
        tag, length = struct.unpack_from("<II", state, at)
        payload = state[at + 8:at + 8 + length]
        end = at + 8 + length + (8 - length % 8) % 8
        if len(payload) != length or end > len(state) or state[at + 8 + length:end].count(0) != end - at - 8 - length:
            raise ValueError(f"state record {tag} at {at} is malformed")
        records.append(SnapRecord(tag, bytearray(payload)))
        at = end
    view = memoryview(data)
    pages = {k: bytes(view[image_offset + k * PAGE:image_offset + (k + 1) * PAGE]) for k in range(memory // PAGE)
             if view[image_offset + k * PAGE:image_offset + (k + 1) * PAGE] != ZERO_PAGE}
    return Snap(bytearray(data[:SNAP_HEADER]), records, pages, memory)


def check_snapshot_file(data: bytes) -> list[str]:
    """Every checksum of a file microvm saved, recomputed here, against the stored one; and the parse /
    serialize round trip. An empty list when all agree."""
    f = SparseFile([(o, data[o:o + PAGE]) for o in range(0, len(data), PAGE)
                    if memoryview(data)[o:o + PAGE] != ZERO_PAGE[:min(PAGE, len(data) - o)]], len(data))
    problems = []
    for name, value in list(snapshot_checksums(f).items()) + [("header checksum", Checksum().add(data[:64]).value)]:
        stored = f.u(SNAP_HEADER_FIELDS[name][0])
        if value != stored:
            problems.append(f"{name}: stored {stored:#018x}, computed {'none' if value is None else hex(value)}")
    try:
        again = parse_snapshot(data).serialize()
        if again.length != len(data) or any(again.read(o, len(b)) != b for o, b in f.pieces) \
                or any(f.read(o, len(b)) != b for o, b in again.pieces):
            problems.append("parse + serialize does not give the file back")
    except ValueError as e:
        problems.append(f"does not parse: {e}")
    return problems


#: Put before spaces64: builds the space it expects the host to leave at 0x3F00 (a copy of the boot PML4 at
#: 0x5000 whose entry 224 points to itself, so that 0x700000000000 is mapped there), which the CLI has no way
#: to make. spaces64 then registers a root of its own (hypercall 5) and halts in it.
SPACES_PREAMBLE = (X.mov_from_cr(RAX, CR3) + X.alu_imm("and", RAX, -0x1000) + X.mov(RSI, RAX) + X.mov_imm(RDI, 0x5000)
                   + X.mov_imm(RCX, 512) + X.CLD + X.REP_MOVSQ + X.mov_imm(RBX, 0x5000) + X.mov_imm(RAX, 0x5003)
                   + X.store(RBX, 224 * 8, RAX) + X.mov_imm(RCX, 0x3F00) + X.store(RCX, 0, RBX))


#: The corpus: (name, guest file or bytes, options), each saved with `--save-snapshot` (at the guest's
#: snapshot request, or at its end).
SNAPSHOT_SOURCES = [
    ("counter64-4M", "counter64.bin", ["--memory", "4M"]),
    ("counter64-16M-maps", "counter64.bin", ["--memory", "16M", "--map", "0x40000000=0x200000:8K:rc",
                                             "--map", "0xffff800000000000=0x300000:4K:rw"]),
    ("scribble64-4M", "scribble64.bin", ["--memory", "4M", "--page-size", "4k"]),
    ("scribble64-16M", "scribble64.bin", ["--memory", "16M", "--page-size", "4k"]),
    ("spaces64-4M", "spaces", ["--memory", "4M"]),
    ("spaces64-16M", "spaces", ["--memory", "16M"]),
    ("hello64-4M", "hello64.bin", ["--memory", "4M"]),
    ("hello64-16M", "hello64.bin", ["--memory", "16M"]),
    ("calls64-4M", "calls64.bin", ["--memory", "4M"]),
]


def build_snapshot_corpus(binary: Path, directory: Path) -> list[tuple[str, Snap]]:
    """Saves the corpus with the real CLI into `directory` and checks every checksum of every file against
    this script's own computation (a mismatch is an error: the mutants' resealed checksums would be wrong)."""
    directory.mkdir(parents=True, exist_ok=True)
    corpus = []
    for name, guest, options in SNAPSHOT_SOURCES:
        path = directory / f"{name}.snap"
        if guest == "spaces":
            guest_path = directory / "spaces-preamble64.bin"
            guest_path.write_bytes(SPACES_PREAMBLE + (GUESTS / "spaces64.bin").read_bytes())
        else:
            guest_path = GUESTS / guest
        argv = [str(binary)] + options + ["--timeout", "5s", "--save-snapshot", str(path), str(guest_path)]
        run = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if run.returncode != 0 or not path.exists():
            raise RuntimeError(f"snapshot corpus: `{_show(argv)}` ended with status {run.returncode}: "
                               f"{run.stderr.decode('utf-8', 'replace').strip()[:300]}")
        data = path.read_bytes()
        problems = check_snapshot_file(data)
        if problems:
            raise RuntimeError(f"snapshot corpus: {name}: " + "; ".join(problems))
        corpus.append((name, parse_snapshot(data)))
    return corpus


# The mutators. Structure-aware ones edit a `Snap` (rng, snap) -> note; file-level ones edit the laid-out
# `SparseFile` (rng, file, fmt) -> note.

def _get(payload, at: int, width: int) -> int | None:
    return int.from_bytes(payload[at:at + width], "little") if 0 <= at and at + width <= len(payload) else None


def _put(payload, at: int, width: int, value: int) -> bool:
    if at < 0 or at + width > len(payload):
        return False
    payload[at:at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return True


def _value(rng, old: int, ram: int, width: int = 8) -> int:
    """A new value for a field: interesting, an address, a step or a flipped bit from the old one, random."""
    kind = rng.randrange(6)
    if kind == 0:
        value = rng.choice(INTERESTING)
    elif kind == 1:
        value = pick_address(rng, ram)
    elif kind == 2:
        value = old + rng.choice((-PAGE, -8, -1, 1, 8, PAGE, 0x800))
    elif kind == 3:
        value = old ^ (1 << rng.randrange(8 * width))
    elif kind == 4:
        value = rng.getrandbits(8 * width)
    else:
        value = rng.choice((0, ram, ram - PAGE, ram + PAGE, old | 0xFFF, old * 2, M64 & ~0xFFF))
    return value & ((1 << (8 * width)) - 1)


def _edit(rng, snap: Snap, tag: int, at: int, width: int, what: str, values=None) -> str:
    """Field `at` of record `tag` := one of `values` (or `_value`)."""
    rec = snap.record(tag)
    if rec is None:
        return f"{what} (no {SNAP_TAGS.get(tag, tag)} record)"
    old = _get(rec.payload, at, width)
    if old is None:
        return f"{what} (record too short)"
    value = (rng.choice(values) if values and rng.random() < 0.75 else _value(rng, old, snap.memory, width)) \
        & ((1 << (8 * width)) - 1)
    _put(rec.payload, at, width, value)
    return f"{SNAP_TAGS[tag]} {what} {old:#x} -> {value:#x}"


def sm_header_field(rng, snap: Snap) -> str:
    name = rng.choice(list(SNAP_HEADER_FIELDS) + ["memory size", "image offset", "state length", "unused bytes"])
    if name == "unused bytes":
        at = rng.choice((SNAP_FIELDS, SNAP_FIELDS + 7, 0x800, SNAP_HEADER - 1, rng.randrange(SNAP_FIELDS, SNAP_HEADER)))
        snap.overrides.append((at, 1, "set", rng.choice((1, 0x80, 0xFF, rng.randrange(1, 256)))))
        return f"header byte {at} (unused) set"
    at, width = SNAP_HEADER_FIELDS[name]
    if name == "magic":
        value = rng.choice((b"MVMSNAP1", b"mvmsnap\0", b"\0" * 8, b"MVMSNAP\0"[:7] + b"\xff", b"\x7fELF\2\1\1\0",
                            bytes(b ^ (1 << rng.randrange(8)) if i == rng.randrange(8) else b
                                  for i, b in enumerate(SNAP_MAGIC))))
        snap.overrides.append((at, width, "set", int.from_bytes(value, "little")))
        return f"header magic := {value!r}"
    if name in ("memory size", "image offset", "state length") and rng.random() < 0.5:
        delta = rng.choice((-PAGE, -8, -1, 1, 8, PAGE, 0x800, 2 * PAGE, -2 * PAGE))
        snap.overrides.append((at, width, "add", delta))
        return f"header {name} {delta:+#x}"
    pools = {
        "version": (0, 2, 0x100, M32, 0x80000001),
        "architecture": (1, 2, 7, 0x100, M32),
        "memory size": (0, 1, 0xFFF, PAGE, 2 * MiB, 3 * GiB, 3 * GiB + PAGE, 4 * GiB, 1 << 40, 1 << 63,
                        0xFFFFFFFFFFFFF000, M64),
        "image offset": (0, 1, 0xFFF, PAGE, 2 * PAGE, 0x10000, 1 << 32, 1 << 40, 1 << 62, 1 << 63,
                         0xFFFFFFFFFFFFF000, 0xFFFFFFFFFFF00000, M64),
        "state offset": (0, 8, SNAP_FIELDS, 0xFFF, 0x1001, 2 * PAGE, 1 << 40, 0xFFFFFFFFFFFFF000, M64),
        "state length": (0, 1, 7, 8, 0x100, SNAP_MAX_STATE, SNAP_MAX_STATE + 1, 1 << 32, 0xFFFFFFFFFFFFF000, M64),
    }
    if name in pools:
        value = rng.choice(pools[name]) if rng.random() < 0.8 else rng.getrandbits(8 * width)
    else:                                       # a checksum: off by one bit, zero, random
        value = rng.choice((0, M64, rng.getrandbits(64)))
        if rng.random() < 0.5:
            snap.overrides.append((at, width, "add", 1 << rng.randrange(64)))
            return f"header {name} bit flipped"
    snap.overrides.append((at, width, "set", value))
    return f"header {name} := {value:#x}"


def sm_resize(rng, snap: Snap) -> str:
    """The memory size changed in the header, the configuration (mostly) and the image (pages cut off or
    zeros added), so the arena, roots and calls may now lie outside RAM, or RAM is larger than they think."""
    old = snap.memory
    new = rng.choice((old // 2, old - PAGE, old + PAGE, old * 2, PAGE, 2 * MiB, old - 2 * MiB, 32 * MiB))
    new = max(PAGE, new)
    snap.memory = new
    snap.pages = {k: p for k, p in snap.pages.items() if (k + 1) * PAGE <= new}
    rec = snap.record(1)
    same = rng.random() < 0.8
    if same and rec is not None:
        _put(rec.payload, 0, 8, new)
    return f"memory {old // 1024}K -> {new // 1024}K" + ("" if same else " (configuration kept)")


UNKNOWN_TAGS = (0, 13, 14, 64, 0xFF, 0x100, 0x80000001, M32)


def sm_record_frame(rng, snap: Snap) -> str:
    """A record's framing: tag, length field, payload size, padding; records dropped, duplicated, moved."""
    if not snap.records:
        return "record frame (no records)"
    i = rng.randrange(len(snap.records))
    rec = snap.records[i]
    name = SNAP_TAGS.get(rec.tag, str(rec.tag))
    how = rng.choice(("tag", "tag-dup", "length", "length", "size", "drop", "drop", "duplicate", "swap", "move",
                      "shuffle", "padding"))
    if how == "tag":
        rec.tag = rng.choice(UNKNOWN_TAGS + (rng.getrandbits(32),))
        return f"record {name} tag -> {rec.tag:#x}"
    if how == "tag-dup":
        rec.tag = rng.choice(snap.records).tag if rng.random() < 0.5 else rng.randrange(1, 13)
        return f"record {name} tag -> {rec.tag} (a duplicate?)"
    if how == "length":
        n = len(rec.payload)
        rec.length = rng.choice((n - 1, n + 1, n - 8, n + 8, 0, n + PAGE, 1 << 20, 0x7FFFFFFF, M32,
                                 rng.getrandbits(32))) & M32
        return f"record {name} length field {n} -> {rec.length}"
    if how == "size":
        n = len(rec.payload)
        cut = rng.choice((1, 4, 8, n // 2, n, rng.randrange(1, n + 1) if n else 1))
        if rng.random() < 0.5:
            del rec.payload[max(0, n - cut):]
            return f"record {name} payload cut by {cut}"
        rec.payload += bytes(cut) if rng.random() < 0.5 else rng.randbytes(cut)
        return f"record {name} payload grown by {cut}"
    if how == "drop":
        del snap.records[i]
        return f"record {name} dropped"
    if how == "duplicate":
        snap.records.insert(rng.randrange(len(snap.records) + 1),
                            SnapRecord(rec.tag, bytearray(rec.payload), rec.length, rec.padding))
        return f"record {name} duplicated"
    if how == "swap" and len(snap.records) > 1:
        j = rng.randrange(len(snap.records))
        snap.records[i], snap.records[j] = snap.records[j], snap.records[i]
        return f"records {name} and {SNAP_TAGS.get(snap.records[i].tag, '?')} swapped"
    if how == "move":
        snap.records.insert(rng.randrange(len(snap.records) + 1), snap.records.pop(i))
        return f"record {name} moved"
    if how == "shuffle":
        rng.shuffle(snap.records)
        return "records shuffled"
    n = (8 - len(rec.payload) % 8) % 8
    rec.padding = rng.choice((bytes([1]) + bytes(max(0, n - 1)), b"\xff" * n, bytes(n + 8), b"", bytes(n + 1)))
    return f"record {name} padding -> {len(rec.padding)} bytes"


def sm_record_bytes(rng, snap: Snap) -> str:
    """Interesting u8 / u32 / u64 values (or a flipped bit) at random offsets of one record's payload."""
    rec = rng.choice(snap.records) if snap.records else None
    if rec is None or not rec.payload:
        return "record bytes (none)"
    notes = []
    for _ in range(rng.choice((1, 1, 2, 4))):
        width = rng.choice((1, 4, 8))
        if len(rec.payload) < width:
            continue
        at = rng.randrange(len(rec.payload) - width + 1)
        if rng.random() < 0.6:
            at &= ~(width - 1)
        if rng.random() < 0.3:
            rec.payload[at] ^= 1 << rng.randrange(8)
            notes.append(f"flip@{at}")
        else:
            _put(rec.payload, at, width, rng.choice(INTERESTING + [pick_address(rng, snap.memory)]))
            notes.append(f"u{8 * width}@{at}")
    return f"record {SNAP_TAGS.get(rec.tag, rec.tag)} bytes " + ",".join(notes)


MAPPING_FIELDS = (("va", 0, 8), ("pa", 8, 8), ("length", 16, 8), ("flags", 24, 4))


def sm_configuration(rng, snap: Snap) -> str:
    rec = snap.record(1)
    if rec is None:
        return "configuration (none)"
    ram = snap.memory
    count = _get(rec.payload, 25, 4) or 0
    how = rng.choice(("size", "load", "entry", "policy", "count", "count", "mapping", "mapping", "add", "add",
                      "remove"))
    if how == "size":
        return _edit(rng, snap, 1, 0, 8, "memory size", (ram - PAGE, ram + PAGE, 0, ram * 2, 1 << 40))
    if how == "load":
        return _edit(rng, snap, 1, 8, 8, "load address", (0, PAGE, 0x100001, 0x80000, ram, ram - PAGE, M64))
    if how == "entry":
        return _edit(rng, snap, 1, 16, 8, "entry point", (0, 0x100000, 0xFFFFFFFF80000000, ram, M64))
    if how == "policy":
        return _edit(rng, snap, 1, 24, 1, "page-size policy", (0, 1, 2, 0xFF))
    if how == "count":
        return _edit(rng, snap, 1, 25, 4, "mapping count", (0, count + 1, count - 1, 4096, 4097, 0x10000, M32))
    if how == "mapping" and count:
        k = rng.randrange(count)
        name, at, width = rng.choice(MAPPING_FIELDS)
        values = {"va": (0, PAGE, 0x800000000000, 0xFFFF800000000000, 0x40000001, 0x7FFFFFFFF000, M64 & ~0xFFF),
                  "pa": (0, ram, ram - PAGE, 0xFEE00000, 1 << 52, 0x200001, M64 & ~0xFFF),
                  "length": (0, 1, PAGE, 0x1001, 2 * MiB, GiB, 1 << 47, M64 & ~0xFFF, M64),
                  "flags": (0, 1, 2, 3, 4, 5, 7, 8, 0xF, 0x10, M32)}[name]
        return f"mapping {k}: " + _edit(rng, snap, 1, 29 + 32 * k + at, width, name, values)
    if how == "remove" and count:
        del rec.payload[29 + 32 * (count - 1):29 + 32 * count]
        _put(rec.payload, 25, 4, count - 1)
        return "configuration: last mapping removed"
    va = rng.choice((0x40000000, 0x50000000, 0xFFFF800000001000, 0x800000000000, 0x100000, pick_address(rng, ram)))
    pa = rng.choice((0x200000, 0x400000 % ram, ram - PAGE, ram, 0xFEE00000, rng.randrange(ram) & ~0xFFF))
    length = rng.choice((PAGE, 2 * PAGE, 2 * MiB, 0, 0x1800, GiB))
    flags = rng.choice((0, 1, 3, 4, 5, 6, 8, 9, 0xF, 0x10, M32))
    rec.payload += struct.pack("<QQQI", va, pa, length & M64, flags)
    fix = rng.random() < 0.85
    if fix:
        _put(rec.payload, 25, 4, count + 1)
    return f"configuration: mapping {va:#x}={pa:#x}:{length:#x} flags {flags:#x} added" + ("" if fix else
                                                                                           " (count kept)")


SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")
SEGMENT_FIELDS = (("base", 0, 8), ("limit", 8, 4), ("selector", 12, 2), ("type", 14, 1), ("present", 15, 1),
                  ("dpl", 16, 1), ("db", 17, 1), ("s", 18, 1), ("l", 19, 1), ("g", 20, 1), ("avl", 21, 1),
                  ("unusable", 22, 1), ("padding", 23, 1))


def _flip(rng, snap: Snap, tag: int, at: int, what: str, bits) -> str:
    rec = snap.record(tag)
    old = _get(rec.payload, at, 8) if rec is not None else None
    if old is None:
        return f"{what} (no record)"
    bit = rng.choice(bits) if rng.random() < 0.85 else rng.randrange(64)
    _put(rec.payload, at, 8, old ^ (1 << bit))
    return f"{what} bit {bit} flipped ({old:#x} -> {old ^ (1 << bit):#x})"


def sm_registers(rng, snap: Snap) -> str:
    """Records 2 and 3: RIP, RSP, RFLAGS; CR0 / CR4 / EFER bits, CR3, segments, descriptor tables."""
    ram = snap.memory
    how = rng.choice(("rip", "rsp", "rflags", "gpr", "cr0", "cr0", "cr4", "cr4", "efer", "efer", "cr3", "cr3",
                      "crx", "segment", "segment", "segment", "dtable", "bitmap"))
    if how == "rip":
        return _edit(rng, snap, 2, 128, 8, "rip", (0, 0x100000, 0x100FFF, ram - 1, ram, 0x800000000000,
                                                    0xFFFFFFFF80000000, 0x3000, M64))
    if how == "rsp":
        return _edit(rng, snap, 2, 48, 8, "rsp", (0, 8, 0x1000, ram, ram + 8, 0x800000000000, M64))
    if how == "rflags":
        return _flip(rng, snap, 2, 136, "rflags", (1, 3, 8, 9, 10, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 40))
    if how == "gpr":
        k = rng.randrange(16)
        return _edit(rng, snap, 2, 8 * k, 8, f"gpr{k}")
    if how == "cr0":
        return _flip(rng, snap, 3, 224, "cr0", (0, 1, 2, 3, 4, 5, 16, 18, 29, 30, 31, 32, 63))
    if how == "cr4":
        return _flip(rng, snap, 3, 248, "cr4", (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 16, 17, 18, 20, 21,
                                                22, 23, 24, 25, 32))
    if how == "efer":
        return _flip(rng, snap, 3, 264, "efer", (0, 8, 10, 11, 12, 13, 14, 15, 1, 63))
    if how == "cr3":
        return _edit(rng, snap, 3, 240, 8, "cr3", (0, 0x5000, 0x6000, ram, ram - PAGE, ram + PAGE, 1 << 52,
                                                    0xFFFFFFFFFFFFF000, 0x2000, 0x100000))
    if how == "crx":
        name, at = rng.choice((("cr2", 232), ("cr8", 256), ("apic base", 272)))
        return _edit(rng, snap, 3, at, 8, name, (0, 15, 16, 0xFEE00900, 0xFEE00000, M64))
    if how == "segment":
        k = rng.randrange(8)
        name, at, width = rng.choice(SEGMENT_FIELDS)
        values = {"base": (0, 0xFFFFFFFF, 0x800000000000, M64), "limit": (0, 0xFFFF, 0xFFFFF, M32),
                  "selector": (0, 3, 8, 0x10, 0x18, 0x1B, 0x2B, 0xFFFF), "type": (0, 2, 3, 9, 0xB, 0xF, 0x10, 0xFF),
                  "dpl": (0, 1, 3, 4, 0xFF)}.get(name, (0, 1, 2, 0xFF))
        return f"{SEGMENTS[k]}." + _edit(rng, snap, 3, 24 * k + at, width, name, values)
    if how == "dtable":
        name, at = rng.choice((("gdt", 192), ("idt", 208)))
        if rng.random() < 0.5:
            return _edit(rng, snap, 3, at, 8, f"{name} base", (0, 0x3000, ram - 8, ram, 0x800000000000, M64))
        return _edit(rng, snap, 3, at + 8, 2, f"{name} limit", (0, 7, 0xF, 0xFFF, 0xFFFF))
    return _flip(rng, snap, 3, 280 + 8 * rng.randrange(4), "pending-interrupt bitmap", tuple(range(64)))


def sm_extended(rng, snap: Snap) -> str:
    """Records 4-8: XSAVE (MXCSR, XSTATE_BV, XCOMP_BV, reserved header bytes), XCRs, MSRs, vCPU events,
    debug registers."""
    how = rng.choice(("xsave", "xsave", "xcrs", "msrs", "msrs", "events", "events", "debug"))
    if how == "xsave":
        name, at, width, values = rng.choice((
            ("mxcsr", 24, 4, (0, 0x1F80, 0xFFFF, 0x10000, M32)),
            ("mxcsr mask", 28, 4, (0, M32)),
            ("xstate_bv", 512, 8, (0, 1, 2, 3, 7, 0xFF, 1 << 17, 1 << 18, 1 << 63, M64)),
            ("xcomp_bv", 520, 8, (1 << 63, (1 << 63) | 3, M64, 7)),
            ("reserved", 528, 8, (1, M64))))
        return _edit(rng, snap, 4, at, width, name, values)
    if how == "xcrs":
        if snap.record(5) is None and rng.random() < 0.5:
            snap.records.append(SnapRecord(5, bytearray(struct.pack("<IIIIQ", 1, 0, 0, 0, 7) + bytes(392 - 24))))
            return "xcrs record added"
        name, at, width, values = rng.choice((("count", 0, 4, (0, 1, 2, 16, 17, M32)),
                                              ("flags", 4, 4, (1, M32)),
                                              ("xcr index", 8, 4, (0, 1, 0xE, M32)),
                                              ("xcr0", 16, 8, (0, 1, 2, 3, 7, 0xE7, 0x2E7, M64, 1 << 63))))
        return _edit(rng, snap, 5, at, width, name, values)
    if how == "msrs":
        rec = snap.record(6)
        if rec is None:
            return "msrs (none)"
        count = _get(rec.payload, 0, 4) or 0
        choice = rng.randrange(4)
        if choice == 0:
            return _edit(rng, snap, 6, 0, 4, "count", (0, count - 1, count + 1, 0x10000, M32))
        if choice == 1:
            rec.payload += struct.pack("<IIQ", rng.choice((0xC0000080, 0x1B, 0x10, 0xC0000100, 0x6E0, 0x277, 0x3A,
                                                           M32, rng.getrandbits(32))), 0, rng.choice(INTERESTING))
            if rng.random() < 0.8:
                _put(rec.payload, 0, 4, count + 1)
            return "msrs: an entry added"
        if not count:
            return "msrs (empty)"
        k = rng.randrange(count)
        if choice == 2:
            return f"msr {k}: " + _edit(rng, snap, 6, 8 + 16 * k, 4, "index",
                                        (0xC0000080, 0x1B, 0x10, 0x6E0, 0xC0000102, 0, M32))
        return f"msr {k}: " + _edit(rng, snap, 6, 8 + 16 * k + 8, 8, "value")
    if how == "events":
        name, at, width, values = rng.choice((
            ("exception.injected", 0, 1, (1, 2, 0xFF)), ("exception.vector", 1, 1, (0, 6, 8, 13, 14, 18, 31, 32, 0xFF)),
            ("exception.has_error_code", 2, 1, (1,)), ("exception.pending", 3, 1, (1,)),
            ("exception.error_code", 4, 4, (0, 1, M32)), ("interrupt.injected", 8, 1, (1,)),
            ("interrupt.nr", 9, 1, (0, 32, 0xFF)), ("interrupt.shadow", 11, 1, (1, 3, 0xFF)),
            ("nmi.injected", 12, 1, (1,)), ("nmi.pending", 13, 1, (1, 0xFF)), ("nmi.masked", 14, 1, (1,)),
            ("sipi_vector", 16, 4, (0, M32)), ("flags", 20, 4, (1, 2, 4, 8, 0x10, 0x20, 0x3F, M32)),
            ("smi.smm", 24, 1, (1,)), ("smi.pending", 25, 1, (1,)), ("smi.latched_init", 27, 1, (1,)),
            ("triple_fault.pending", 28, 1, (1,)), ("reserved", 29 + rng.randrange(26), 1, (1, 0xFF)),
            ("exception_has_payload", 55, 1, (1,)), ("exception_payload", 56, 8, (0, M64))))
        return _edit(rng, snap, 7, at, width, name, values)
    name, at, values = rng.choice((("db0", 0, (0, 0x100000, M64)), ("dr6", 32, (0, 0xFFFF0FF0, M64)),
                                   ("dr7", 40, (0x400, 0x401, 0xFF, 0x30403, 0xFFFFFFFF, M64)),
                                   ("flags", 48, (1, M64)), ("reserved", 56 + 8 * rng.randrange(9), (1,))))
    return _edit(rng, snap, 8, at, 8, name, values)


def sm_roots(rng, snap: Snap) -> str:
    rec = snap.record(9)
    if rec is None:
        return "roots (none)"
    ram = snap.memory
    count = _get(rec.payload, 0, 4) or 0
    roots = [_get(rec.payload, 4 + 8 * k, 8) for k in range(count) if _get(rec.payload, 4 + 8 * k, 8) is not None]
    how = rng.choice(("count", "count", "none", "many", "root", "root", "root", "swap", "add"))
    if how == "count":
        return _edit(rng, snap, 9, 0, 4, "count", (0, 64, 65, count + 1, count - 1, M32))
    if how == "none":
        rec.payload[:] = struct.pack("<I", 0)
        return "roots: none"
    if how == "many":
        n = rng.choice((64, 65, 63, 100))
        fill = [rng.choice(roots + [rng.randrange(ram) & ~0xFFF]) for _ in range(n - len(roots))]
        rec.payload[:] = struct.pack(f"<I{n}Q", n, *(roots + fill)[:n])
        return f"roots: {n}"
    if how == "swap" and len(roots) > 1:
        roots.reverse()
        rec.payload[:] = struct.pack(f"<I{len(roots)}Q", len(roots), *roots)
        return "roots reversed"
    if how == "add":
        new = rng.choice((0x5000, 0x6000, 0x100000, rng.randrange(ram) & ~0xFFF, ram, 0x2008))
        rec.payload += struct.pack("<Q", new)
        if rng.random() < 0.85:
            _put(rec.payload, 0, 4, count + 1)
        return f"roots: {new:#x} added"
    if not count:
        return "roots (empty)"
    k = rng.randrange(count)
    return f"root {k}: " + _edit(rng, snap, 9, 4 + 8 * k, 8, "address",
                                 (0, ram, ram + PAGE, ram - PAGE, 1 << 40, M64 & ~0xFFF, (roots[k] if k < len(roots)
                                                                                          else 0) + 8, 0x100000,
                                  0x2000, 0x3000))


def sm_arena(rng, snap: Snap) -> str:
    rec = snap.record(10)
    if rec is None:
        return "arena (none)"
    ram = snap.memory
    base, end, next_, scratch = (_get(rec.payload, 8 * k, 8) or 0 for k in range(4))
    free = _get(rec.payload, 32, 4) or 0
    how = rng.choice(("base", "end", "next", "next", "scratch", "free count", "free count", "free tables"))
    if how in ("base", "end", "next", "scratch"):
        at = {"base": 0, "end": 8, "next": 16, "scratch": 24}[how]
        return _edit(rng, snap, 10, at, 8, how, (0, ram, ram + PAGE, ram - PAGE, base, end, next_, scratch,
                                                  base + PAGE, end - PAGE, M64 & ~0xFFF, next_ + 8, 1 << 40))
    if how == "free count":
        return _edit(rng, snap, 10, 32, 4, "free-table count", (free + 1, ram >> 12, (ram >> 12) + 1, 0x10000000,
                                                                 M32))
    n = rng.choice((1, 2, 8, 300))
    tables = [k * PAGE for k in snap.pages if base <= k * PAGE < next_] or [base]
    entries = [rng.choice((rng.choice(tables), rng.choice(tables), base, next_, ram, scratch, 0,
                           rng.choice(tables) + 8)) for _ in range(n)]
    rec.payload[36:] = struct.pack(f"<{len(entries)}Q", *entries)
    _put(rec.payload, 32, 4, n if rng.random() < 0.85 else n + 1)
    return f"arena: {n} free tables (live ones among them)"


def sm_leaf_sizes(rng, snap: Snap) -> str:
    how = rng.randrange(3)
    if how == 2:
        rec = snap.record(11)
        if rec is None:
            return "leaf sizes (none)"
        rec.payload[:] = rng.choice((b"", b"\x01", b"\x03\x03\x00"))
        return f"leaf sizes: {len(rec.payload)} bytes"
    return _edit(rng, snap, 11, how, 1, ("allowed", "walkable")[how], (0, 1, 2, 3, 4, 7, 8, 0xFF))


def sm_calls(rng, snap: Snap) -> str:
    """Record 12: the call area, the waiting flag, the export names; or a calls record where none was."""
    ram = snap.memory
    rec = snap.record(12)
    if rec is None:
        names = [b"add", b"upper", b"nothing"][:rng.randrange(0, 4)]
        payload = struct.pack("<QQBI", rng.choice((0x200000, 0x300000, ram - 2 * PAGE)), 0x2000, rng.randrange(2),
                              len(names)) + b"".join(bytes([len(n)]) + n for n in names)
        snap.records.append(SnapRecord(12, bytearray(payload)))
        return f"calls record added ({len(names)} names)"
    count = _get(rec.payload, 17, 4) or 0
    how = rng.choice(("area", "size", "waiting", "count", "count", "name length", "name bytes", "duplicate",
                      "add name"))
    if how == "area":
        return _edit(rng, snap, 12, 0, 8, "area", (0, 8, ram, ram - PAGE, ram - 0x1000, 0x201000, M64 & ~0xFFF))
    if how == "size":
        return _edit(rng, snap, 12, 8, 8, "size", (0, PAGE - 1, PAGE, 0x1800, 1 << 20, (1 << 20) + PAGE, ram,
                                                    M64 & ~0xFFF))
    if how == "waiting":
        return _edit(rng, snap, 12, 16, 1, "waiting", (0, 1, 2, 0xFF))
    if how == "count":
        return _edit(rng, snap, 12, 17, 4, "export count", (0, count - 1, count + 1, 256, 257, M32))
    # the names: (offset of the length byte) for each
    offsets, at = [], 21
    for _ in range(count):
        if at >= len(rec.payload):
            break
        offsets.append(at)
        at += 1 + rec.payload[at]
    if how == "add name" or not offsets:
        name = rng.choice((b"x", b"add", b"a" * 64, b"a" * 65, b"\xff", b"caf\xc3\xa9"))
        rec.payload += bytes([len(name) & 0xFF]) + name
        if rng.random() < 0.85:
            _put(rec.payload, 17, 4, count + 1)
        return f"calls: name {name[:12]!r} added"
    at = rng.choice(offsets)
    if how == "name length":
        old = rec.payload[at]
        rec.payload[at] = rng.choice((0, 1, old - 1 if old else 0, old + 1, 64, 65, 0xFF))
        return f"calls: a name's length {old} -> {rec.payload[at]}"
    if how == "name bytes" and rec.payload[at]:
        k = at + 1 + rng.randrange(rec.payload[at])
        rec.payload[k] = rng.choice((0x00, 0x80, 0xC0, 0xFF, 0xED, ord("/")))
        return f"calls: a name byte -> {rec.payload[k]:#x}"
    first = rec.payload[offsets[0]:offsets[0] + 1 + rec.payload[offsets[0]]]
    rec.payload[at:at + 1 + rec.payload[at]] = first
    return "calls: a name made a copy of the first"


def _table_pages(snap: Snap) -> list[int]:
    """Pages that hold page tables: the arena's (record 10's base up to its next table) and the roots'."""
    pages = set()
    arena = snap.record(10)
    if arena is not None and len(arena.payload) >= 24:
        base, _, next_ = struct.unpack_from("<3Q", arena.payload)
        if base < next_ <= snap.memory:
            pages.update(k for k in snap.pages if base <= k * PAGE < next_)
    roots = snap.record(9)
    if roots is not None and len(roots.payload) >= 4:
        addresses = struct.unpack_from(f"<{(len(roots.payload) - 4) // 8}Q", roots.payload, 4)
        pages.update(r // PAGE for r in addresses if r // PAGE in snap.pages)
    return sorted(pages)


def _set_page(snap: Snap, k: int, page: bytes):
    if page == ZERO_PAGE:
        snap.pages.pop(k, None)
    else:
        snap.pages[k] = bytes(page)


def sm_tables(rng, snap: Snap) -> str:
    """Page-table entries in the image: bits flipped, pointing to their own table, the root, another table,
    outside RAM, a large-page leaf anywhere; sometimes many entries of one table at once."""
    tables = _table_pages(snap)
    if not tables:
        return "tables (none)"
    ram = snap.memory
    k = rng.choice(tables)
    page = bytearray(snap.pages[k])
    used = [i for i in range(512) if _get(page, 8 * i, 8)]
    notes = []
    for _ in range(rng.choice((1, 1, 2, 3, 16))):
        i = rng.choice(used) if used and rng.random() < 0.8 else rng.randrange(512)
        old = _get(page, 8 * i, 8)
        how = rng.choice(("flip", "flip", "flip", "self", "root", "other", "outside", "random", "zero", "leaf"))
        if how == "flip":
            new = old ^ (1 << rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 21, 51, 52, 62, 63)))
        elif how == "self":
            new = k * PAGE | (old & 0xFFF) | 3
        elif how == "root":
            new = (tables[0] * PAGE) | 3
        elif how == "other":
            new = rng.choice(tables) * PAGE | rng.choice((3, 7, 0x63, 0x83))
        elif how == "outside":
            new = rng.choice((ram, ram + 0x200000, 1 << 40, 0xFFFFF000, 0xFEE00000, ADDRESS_MASK)) | 3
        elif how == "random":
            new = rng.getrandbits(64)
        elif how == "zero":
            new = 0
        else:
            new = (rng.randrange(0, 2 * ram) & ~rng.choice((0xFFF, 0x1FFFFF))) | 0x83
        _put(page, 8 * i, 8, new)
        notes.append(f"[{i}] {how}")
    _set_page(snap, k, page)
    return f"table {k * PAGE:#x}: " + ", ".join(notes[:4]) + (" ..." if len(notes) > 4 else "")


def sm_page_bytes(rng, snap: Snap) -> str:
    """Random bytes in a page that holds something (code, stack, tables, boot info), or in any page."""
    pages = snap.memory // PAGE
    k = rng.choice(list(snap.pages)) if snap.pages and rng.random() < 0.75 else rng.randrange(pages)
    page = bytearray(snap.pages.get(k, ZERO_PAGE))
    n = rng.choice((1, 2, 4, 16, 64))
    at = rng.randrange(PAGE)
    fill = rng.choice(("random", "hlt", "int3", "jmp$"))
    for j in range(n):
        page[(at + j) % PAGE] = {"random": rng.getrandbits(8), "hlt": 0xF4, "int3": 0xCC,
                                 "jmp$": (0xEB, 0xFE)[j % 2]}[fill]
    _set_page(snap, k, page)
    return f"page {k * PAGE:#x}: {n} {fill} bytes at {at}"


def sm_page_zero(rng, snap: Snap) -> str:
    """A page that held something made all zero (a hole): code, a table, the stack, the boot info."""
    if not snap.pages:
        return "zero page (none)"
    k = rng.choice(list(snap.pages))
    del snap.pages[k]
    return f"page {k * PAGE:#x} zeroed"


def sm_page_copy(rng, snap: Snap) -> str:
    if not snap.pages:
        return "copy page (none)"
    a = rng.choice(list(snap.pages))
    b = rng.choice(list(snap.pages)) if rng.random() < 0.6 else rng.randrange(snap.memory // PAGE)
    snap.pages[b] = snap.pages[a]
    return f"page {a * PAGE:#x} copied over {b * PAGE:#x}"


def fm_truncate(rng, f: SparseFile, fmt) -> str:
    image_offset = f.u(24)
    n = rng.choice((0, 71, 72, SNAP_HEADER - 1, SNAP_HEADER, SNAP_HEADER + 8, image_offset - 1, image_offset,
                    f.length - 1, f.length - PAGE, rng.randrange(f.length + 1)))
    n = max(0, min(n, f.length))
    f.cut(n)
    return f"file cut to {n} bytes"


def fm_extend(rng, f: SparseFile, fmt) -> str:
    n = rng.choice((1, 8, PAGE, 2 * MiB, rng.randrange(1, 3 * PAGE)))
    old = f.length
    f.length += n
    if rng.random() < 0.5:
        f.pieces.append((old, rng.randbytes(min(n, PAGE))))
    return f"file extended by {n}"


class _SnapshotHeads(FileFormat):
    """The bytes before the image of each corpus file, for the generic mutators (splice takes from them)."""

    def __init__(self, heads):
        self.heads = heads

    def corpus(self):
        return self.heads


def fm_generic(rng, f: SparseFile, fmt) -> str:
    """A generic byte mutator on the bytes before the image (header, state, padding); what follows moves
    with them when they grow or shrink."""
    head = f.pieces[0][1] if f.pieces and f.pieces[0][0] == 0 else b""
    data = bytearray(head)
    mutator = rng.choices([m for _, m in GENERIC_MUTATORS], [w for w, _ in GENERIC_MUTATORS])[0]
    note = mutator(rng, data, fmt.heads_format())
    delta = len(data) - len(head)
    rest = f.pieces[1:] if head else f.pieces
    f.pieces = ([(0, bytes(data))] if data else []) + [(o + delta, b) for o, b in rest]
    f.length = max(0, f.length + delta)
    return note + " (before the image)"


SNAPSHOT_MUTATORS = [
    (10, sm_header_field), (2, sm_resize), (8, sm_record_frame), (6, sm_record_bytes), (4, sm_configuration),
    (7, sm_registers), (4, sm_extended), (4, sm_roots), (4, sm_arena), (1, sm_leaf_sizes), (3, sm_calls),
    (8, sm_tables), (3, sm_page_bytes), (2, sm_page_zero), (1, sm_page_copy),
    (2, fm_truncate), (1, fm_extend), (5, fm_generic),
]
SNAPSHOT_FILE_LEVEL = (fm_truncate, fm_extend, fm_generic)
RESEAL = 0.85            # the share of mutants whose checksums are recomputed after the mutation


class SnapshotFile(FileFormat):
    """Snapshot files (docs/snapshot-format.md): the corpus is saved by the CLI itself at the start of a run
    (`microvm --save-snapshot`, from counter64, scribble64, spaces64, hello64 and calls64 with 4 or 16 MiB of
    RAM) into the fuzz workdir, and every checksum of every file is recomputed here and must match. Mutants
    are structure-aware (header fields; state records parsed, edited and laid out again, the image moving when
    the state grows; page-table entries, bytes and zeroed pages in the image; the file cut or extended) plus
    the generic byte mutators on the bytes before the image; then resealed (checksums recomputed) 85% of the
    time, and written with holes. Run as `microvm --restore snap.bin`."""
    name = "snapshot"
    binary: Path | None = None              # set by main() before the workers start
    cache: Path | None = None               # where the corpus is saved (under the fuzz workdir)
    _corpus: list | None = None
    _heads: list | None = None
    _error: Exception | None = None
    _lock = threading.Lock()

    def corpus(self):
        with SnapshotFile._lock:
            if SnapshotFile._error is not None:
                raise SnapshotFile._error
            if SnapshotFile._corpus is None:
                binary = SnapshotFile.binary or (ROOT / DEFAULT_BINARY)
                cache = SnapshotFile.cache or Path(tempfile.mkdtemp(prefix="microvm-fuzz-snapshots-"))
                try:
                    corpus = build_snapshot_corpus(binary, cache)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    SnapshotFile._error = e
                    raise
                SnapshotFile._heads = [(name, snap.serialize().pieces[0][1]) for name, snap in corpus]
                SnapshotFile._corpus = corpus
        return SnapshotFile._corpus

    def heads_format(self) -> FileFormat:
        return _SnapshotHeads(SnapshotFile._heads or [])

    def mutators(self):
        return SNAPSHOT_MUTATORS

    def mutate(self, rng, data: Snap, rounds):
        snap = data.copy()
        chosen = rng.choices([m for _, m in SNAPSHOT_MUTATORS], [w for w, _ in SNAPSHOT_MUTATORS], k=rounds)
        notes = [m(rng, snap) for m in chosen if m not in SNAPSHOT_FILE_LEVEL]
        f = snap.serialize()
        notes += [m(rng, f, self) for m in chosen if m in SNAPSHOT_FILE_LEVEL]
        if rng.random() < RESEAL:
            reseal(f)
            notes.insert(0, "resealed")
        else:
            notes.insert(0, "not resealed")
        return f, notes

    def case(self, cls, seed, rng, data: SparseFile, description):
        timeout = rng.choice((0.3, 0.5, 1.0))
        args = ["--restore", "snap.bin", "--timeout", f"{int(timeout * 1000)}ms"]
        repeat = rng.random() < 0.15
        if repeat:
            args += ["--repeat", "3"]
        extra = rng.random()
        if extra < 0.06:
            args.append("--dump-tables")
        elif extra < 0.10:
            args.append("--trace")
        expect = Expect()
        arch = rng.random()
        if arch < 0.08:
            args[0:0] = ["--arch", "i686"]
            if data.length < SNAP_HEADER or data.u(12, 4) == 0:
                expect = Expect(statuses={2}, error_line=True, why="an amd64 snapshot with --arch i686 is refused")
                if snapshot_header_sound(data):
                    expect.require = r"holds an amd64 machine, not i686$"
        elif arch < 0.12:
            args[0:0] = ["--arch", "amd64"]
        memory = data.u(16) if data.length >= 24 else 0
        ram = max(4 * MiB, min(memory, data.length, SNAP_MAX_MEMORY))
        return Case(cls, seed, args, description=description, setup=[("pieces", "snap.bin", data)],
                    timeout=timeout, deadline=timeout * (3 if repeat else 1) + GRACE, ram=ram,
                    verbose_stderr="--trace" in args or "--dump-tables" in args,
                    notices=r"^microvm: 3 runs: " if repeat else None, expect=expect)


def check_snapshot_corpus(binary: Path) -> int:
    """--self-test: saves the corpus with `binary` and recomputes every checksum of every file (the corpus
    builder refuses a mismatch); then reseals a few mutants and checks that resealing twice changes nothing."""
    if not binary.exists():
        print(f"snapshot checksums: skipped ({binary} not built)")
        return 0
    with tempfile.TemporaryDirectory(prefix="microvm-fuzz-selftest-") as directory:
        try:
            corpus = build_snapshot_corpus(binary, Path(directory))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            print(f"BAD snapshot checksums: {e}")
            return 1
    bad = 0
    fmt = SnapshotFile()
    SnapshotFile._heads = [(name, snap.serialize().pieces[0][1]) for name, snap in corpus]
    for seed in range(40):
        rng = rng_for("selftest-snapshot", seed)
        name, snap = corpus[seed % len(corpus)]
        f, _ = fmt.mutate(rng, snap, 2)
        reseal(f)
        again = (f.length, list(f.pieces))
        reseal(f)
        if (f.length, list(f.pieces)) != again:
            bad += 1
            print(f"BAD reseal of {name} mutant {seed} is not stable")
    print(f"snapshot checksums: {len(corpus)} files saved by {binary.name}, header, state and image checksums "
          f"recomputed and equal to the stored ones, parse + serialize exact; 40 mutants resealed, {bad} unstable")
    return 1 if bad else 0


def rng_for(cls: str, seed: int) -> random.Random:
    return random.Random(f"microvm-fuzz:{cls}:{seed}")


# --- random-bytes --------------------------------------------------------------------------------------

def gen_random_bytes(seed: int) -> Case:
    rng = rng_for("random-bytes", seed)
    n = rng.choice((1, 2, rng.randrange(1, 64), rng.randrange(1, 1024), rng.randrange(1, 8193)))
    data = rng.randbytes(n)
    return FlatGuest().case("random-bytes", seed, rng, data, f"{n} random bytes")


# --- instructions --------------------------------------------------------------------------------------

def _ports(rng):
    return rng.choice((0x3F8, 0x3F8, 0xF4, 0x510, 0x80, 0x3FD, 0x70, 0xCF8, rng.randrange(0x10000)))


def instruction(rng: random.Random, ram: int) -> tuple[str, bytes]:
    """One entry of the instruction dictionary (some entries are a few instructions: set-up + the one)."""
    r = lambda: rng.choice([x for x in range(16) if x != RSP])  # noqa: E731
    choice = rng.choices(list(INSTRUCTIONS), [w for w, _ in INSTRUCTIONS.values()])[0]
    return choice, INSTRUCTIONS[choice][1](rng, ram, r)


def _i_load(rng, ram, r):
    base, dst = r(), r()
    return X.mov_imm(base, pick_address(rng, ram)) + X.load(dst, base, rng.choice((0, 8, -8, 0x7F8)))


def _i_store(rng, ram, r):
    base, src = r(), r()
    value = X.mov_imm(src, rng.choice(INTERESTING)) if rng.random() < 0.5 else b""
    return value + X.mov_imm(base, pick_address(rng, ram)) + X.store(base, rng.choice((0, 8, -8)), src)


def _i_out(rng, ram, r):
    size = rng.choice((1, 2, 4))
    value = X.mov_imm32(RAX, rng.choice((0, 0x41, 0x0A, 0x2A, rng.getrandbits(32))))
    if rng.random() < 0.2:
        return value + X.OUT_IMM[size] + bytes([rng.choice((0xF4, 0x80, 0x70, rng.randrange(256)))])
    return value + X.mov_dx(_ports(rng)) + X.OUT[size]


def _i_in(rng, ram, r):
    size = rng.choice((1, 2, 4))
    if rng.random() < 0.2:
        return X.IN_IMM[size] + bytes([rng.randrange(256)])
    return X.mov_dx(_ports(rng)) + X.IN[size]


def _i_rep_outsb(rng, ram, r):
    source = rng.choice((0x100000, 0x2000, 0x200000, pick_address(rng, ram)))
    count = rng.choice((1, 5, 64, 300, rng.getrandbits(16)))
    return X.mov_imm(RSI, source) + X.mov_imm(RCX, count) + X.mov_dx(rng.choice((0x3F8, 0x3F8, 0x80))) \
        + X.CLD + X.REP_OUTSB


def _i_rep_insb(rng, ram, r):
    target = rng.choice((0x3000, 0x200000, pick_address(rng, ram)))
    count = rng.choice((1, 5, 64, rng.getrandbits(12)))
    return X.mov_imm(RDI, target) + X.mov_imm(RCX, count) + X.mov_dx(rng.choice((0x3F8, 0x3F8, 0x80))) \
        + X.CLD + X.REP_INSB


def _i_descriptor_table(rng, ram, r):
    pointer = rng.choice((0x3000, 0x3000, pick_address(rng, ram)))
    fill = b""
    if pointer == 0x3000:   # a random 10-byte descriptor (limit, base) at 0x3000
        fill = X.mov_imm(RAX, rng.getrandbits(64)) + X.mov_imm(RBX, 0x3000) + X.store(RBX, 0, RAX) \
            + X.mov_imm(RAX, rng.getrandbits(16)) + X.store(RBX, 8, RAX)
    op = X.lidt if rng.random() < 0.5 else X.lgdt
    return fill + X.mov_imm(RAX, pointer) + op(RAX)


def _i_mov_cr(rng, ram, r):
    cr = rng.choice((CR0, CR3, CR4))
    typical = {CR0: 0x80050033, CR3: ram - 0x40000, CR4: 0x620}[cr]
    value = rng.choice((typical ^ (1 << rng.randrange(64)), typical, 0, rng.getrandbits(64),
                        rng.randrange(0, ram) & ~0xFFF))
    reg = r()
    return X.mov_imm(reg, value) + X.mov_to_cr(cr, reg)


def _i_msr(rng, ram, r):
    msr = rng.choice((0xC0000080, 0x1B, 0x10, 0xC0000100, 0xC0000081, 0xC0000082, 0x174, 0x277, 0x3A,
                      rng.getrandbits(32)))
    out = X.mov_imm32(RCX, msr)
    if rng.random() < 0.5:
        return out + b"\x0f\x32"                     # rdmsr
    return out + X.mov_imm32(RAX, rng.getrandbits(32)) + X.mov_imm32(RDX, rng.getrandbits(32)) + b"\x0f\x30"


def _i_jump(rng, ram, r):
    return b"\xeb" + struct.pack("<b", rng.randint(-24, 24))


def _i_call(rng, ram, r):
    return b"\xe8" + struct.pack("<i", rng.choice((0, 0, 2, rng.randint(-40, 40))))


def _i_invlpg(rng, ram, r):
    return X.mov_imm(RAX, pick_address(rng, ram)) + X.invlpg(RAX)


def _fixed(code: bytes):
    return lambda rng, ram, r: code


INSTRUCTIONS: dict[str, tuple[int, Callable]] = {
    "mov reg,imm64": (6, lambda rng, ram, r: X.mov_imm(r(), pick_address(rng, ram))),
    "load": (6, _i_load),
    "store": (6, _i_store),
    "push": (2, lambda rng, ram, r: X.push(rng.randrange(16))),
    "pop": (2, lambda rng, ram, r: X.pop(r())),
    "jmp short": (2, _i_jump),
    "call": (1, _i_call),
    "ret": (1, _fixed(b"\xc3")),
    "out": (5, _i_out),
    "in": (2, _i_in),
    "rep outsb": (2, _i_rep_outsb),
    "rep insb": (1, _i_rep_insb),
    "hlt": (1, _fixed(X.HLT)),
    "int3": (1, _fixed(b"\xcc")),
    "ud2": (1, _fixed(b"\x0f\x0b")),
    "int n": (1, lambda rng, ram, r: b"\xcd" + bytes([rng.randrange(256)])),
    "cli": (1, _fixed(b"\xfa")),
    "sti": (1, _fixed(b"\xfb")),
    "lidt/lgdt": (2, _i_descriptor_table),
    "mov crN": (2, _i_mov_cr),
    "mov reg,cr": (1, lambda rng, ram, r: X.mov_from_cr(r(), rng.choice((CR0, CR2, CR3, CR4)))),
    "rdmsr/wrmsr": (2, _i_msr),
    "cpuid": (1, lambda rng, ram, r: X.mov_imm32(RAX, rng.choice((0, 1, 7, 0x80000001, 0x40000000)))
              + b"\x0f\xa2"),
    "rdtsc": (1, _fixed(b"\x0f\x31")),
    "invlpg": (1, _i_invlpg),
    "syscall": (1, _fixed(b"\x0f\x05")),
    "iretq": (1, _fixed(b"\x48\xcf")),
    "fld1": (1, _fixed(b"\xd9\xe8")),
    "pxor xmm0,xmm0": (1, _fixed(b"\x66\x0f\xef\xc0")),
    "addps xmm0,xmm1": (1, _fixed(b"\x0f\x58\xc1")),
    "popcnt rax,rbx": (1, _fixed(b"\xf3\x48\x0f\xb8\xc3")),
    "crc32 eax,ebx": (1, _fixed(b"\xf2\x0f\x38\xf1\xc3")),
    "div by zero": (1, _fixed(b"\x31\xc9\x48\xf7\xf1")),         # xor ecx,ecx; div rcx
    "jmp $": (1, _fixed(b"\xeb\xfe")),
}


def gen_instructions(seed: int) -> Case:
    rng = rng_for("instructions", seed)
    ram = rng.choice((16 * MiB, 16 * MiB, 32 * MiB, 64 * MiB))
    n = rng.choice((1, 2, 4, rng.randrange(1, 40)))
    names, code = [], b""
    for _ in range(n):
        name, piece = instruction(rng, ram)
        names.append(name)
        code += piece
    code += X.HLT
    timeout = rng.choice((0.3, 0.5, 1.0))
    args = ["--memory", f"{ram // MiB}M", "--timeout", f"{int(timeout * 1000)}ms"]
    if rng.random() < 0.2:
        args += ["--page-size", "4k"]
    args.append("guest.bin")
    return Case("instructions", seed, args, description="; ".join(names), files={"guest.bin": code},
                timeout=timeout, ram=ram)


# --- hypercalls ----------------------------------------------------------------------------------------

def gen_hypercalls(seed: int) -> Case:
    """N records, each written by the guest (when the guest can write there) and issued with `out dx, eax`
    to 0x510. Records before `hostile_from` are well formed (ops 1 and 3 at aligned addresses in RAM), so
    the host sees many before the first hostile one; some guests repeat one report in a loop past the
    host's bound on reports."""
    rng = rng_for("hypercalls", seed)
    ram = rng.choice((16 * MiB, 16 * MiB, 32 * MiB, 64 * MiB))
    n = rng.choice((1, 2, 5, rng.randrange(1, 40), rng.randrange(1, 300)))
    hostile_from = rng.choice((0, rng.randrange(n + 1), n))
    code = b""
    notes = []
    for k in range(n):
        hostile = k >= hostile_from
        if hostile:
            where = rng.choices(
                ("scratch", "stack", "ram", "arena", "ramtop", "misaligned", "outside", "page0", "apic", "huge"),
                (6, 2, 3, 1, 1, 2, 2, 1, 1, 1))[0]
        else:
            where = rng.choice(("scratch", "stack", "ram", "ramtop"))
        writable = True
        if where == "scratch":
            code += X.mov_imm(RDI, 0x3000 + 64 * rng.randrange(60))
        elif where == "stack":
            code += X.mov_imm(RDI, rng.randrange(0x8000, 0x7FFC0) & ~7)
        elif where == "ram":
            code += X.mov_imm(RDI, rng.randrange(0x200000, ram // 2) & ~7)
        elif where == "arena":       # boot info +24: arena base
            code += X.load_abs(RDI, 0x2000 + 24) + X.alu_imm("add", RDI, rng.randrange(0, 0x4000) & ~7)
        elif where == "ramtop":      # boot info +8: RAM size; the last bytes of RAM
            back = rng.choice((64, 72, 8, 1, 0x1000)) if hostile else 64
            code += X.load_abs(RDI, 0x2000 + 8) + X.alu_imm("add", RDI, -back)
            writable = not hostile or rng.random() < 0.5
        elif where == "misaligned":
            code += X.mov_imm(RDI, 0x3000 + rng.choice((1, 2, 4, 7, 0x3C)))
        else:
            value = {"outside": rng.choice((ram, ram + 0x1000, ram - 32, 0x7FFFFFC0, 0xC0000000)),
                     "page0": rng.choice((0, 8, 0xFC0)), "apic": 0xFEE00000,
                     "huge": rng.choice((0xFFFFFFC0, 0xFFFFFFF8, 0xFFFFFFFF))}[where]
            code += X.mov_imm(RDI, value)
            writable = False
        if hostile:
            op = rng.choices((1, 3, 2, 0, 4, rng.randrange(5, 11), 0xFFFFFFFF, 0x80000001),
                             (4, 4, 2, 1, 1, 1, 1, 1))[0]
            argc = rng.choices((rng.randrange(0, 7), 7, 8, 0xFFFFFFFF, 0x10000), (6, 1, 1, 1, 1))[0]
        else:
            op, argc = rng.choice((1, 1, 3)), rng.randrange(0, 7)
        words = [op | (argc << 32), rng.choice((0, M64))] + [
            rng.choice((rng.getrandbits(64), rng.choice(INTERESTING), pick_address(rng, ram), 14, 0x40000000))
            for _ in range(6)]
        if op == 1 and rng.random() < 0.5:
            words[2] = k                    # a probe-like index
        if writable:
            nwords = rng.choice((8, 8, 8, 1, 2)) if hostile else 8
            for i in range(nwords):
                code += X.mov_imm(RAX, words[i]) + X.store(RDI, 8 * i, RAX)
        size = rng.choices((4, 1, 2), (12, 1, 1))[0] if hostile else 4
        repeat = 1
        if op == 1 and argc <= 6 and not hostile and rng.random() < 0.05:
            repeat = rng.choice((1000, 70000))          # the host keeps at most 65,536 reports
        code += X.mov(RAX, RDI) + X.mov_dx(0x510)
        if repeat > 1:
            # mov ecx, repeat; 1: out dx, eax; dec ecx; jnz 1b
            code += X.mov_imm32(RCX, repeat) + X.OUT[4] + b"\xff\xc9" + b"\x75\xfb"
        else:
            code += X.OUT[size]
        if writable and rng.random() < 0.3:   # print the result's low byte as a digit
            code += X.load8(RAX, RDI, 8) + b"\x04\x30" + X.mov_dx(0x3F8) + X.OUT[1]  # add al, '0'
        notes.append(f"{where} op={op:#x} argc={argc:#x} out{size}" + (f" x{repeat}" if repeat > 1 else ""))
    code += X.HLT
    args = ["--memory", f"{ram // MiB}M", "--timeout", "2s"]
    if rng.random() < 0.3:
        args += ["--map", rng.choice(("0x40000000=0x200000:2M:rc", "0x40000000=0x200000:4K:rc",
                                      "0xffff800000000000=0x300000:8K:rc"))]
    args.append("guest.bin")
    return Case("hypercalls", seed, args, description=f"{n} records, hostile from {hostile_from}: "
                + ", ".join(notes[max(0, hostile_from - 2):hostile_from + 4]) + (" ..." if n > 6 else ""),
                files={"guest.bin": code}, timeout=2.0, ram=ram)


# --- vandal --------------------------------------------------------------------------------------------

ADDRESS_MASK = 0x000F_FFFF_FFFF_F000
P, RW, US, PS, NX = 1, 2, 4, 0x80, 1 << 63


def _walk(va: int, level: int) -> bytes:
    """RSI = the table at `level` (0 PML4 .. 3 PT) on the walk for `va`, from R15 (root) with R14 the
    address mask; each step reads whatever entry is there."""
    code = X.mov(RSI, R15)
    for depth in range(level):
        index = (va >> (39 - 9 * depth)) & 511
        code += X.load(RSI, RSI, 8 * index) + X.alu("and", RSI, R14)
    return code


def _index(va: int, level: int) -> int:
    return (va >> (39 - 9 * level)) & 511


def gen_vandal(seed: int) -> Case:
    rng = rng_for("vandal", seed)
    ram = rng.choices((16 * MiB, 32 * MiB, 64 * MiB, 256 * MiB, GiB), (4, 2, 2, 1, 1))[0]
    cow = []
    if rng.random() < 0.35:
        size = rng.choice((0x1000, 0x2000, 0x200000))
        cow.append((0x40000000, 0x200000, size))
    # walks follow mapped addresses (the image, RAM, the stack, the arena at the top, a mapping); the
    # entry edited on the way is the walk's own or a random one
    vas = [0x100000, 0x200000, 0x3000, 0x7F000, ram - 0x1000, ram // 2] + [va for va, _, _ in cow]
    touches = vas + [0x80_0000_0000, 0x80_0020_0000, 0xFF80_0000_0000, 0x40_0000_0000, 0x7F_FFFF_F000,
                     0xC0000000, 0xFFFF_8000_0000_0000]
    # R15 = root table, R14 = address mask
    code = X.mov_from_cr(R15, CR3) + X.alu_imm("and", R15, -0x1000) + X.mov_imm(R14, ADDRESS_MASK) + X.CLD
    notes = []
    new_page = 0x300000   # pages the guest builds its own tables in (RAM is at least 16 MiB)
    for _ in range(rng.randrange(1, 13)):
        notes.append(f"@{0x100000 + len(code):#x}")
        op = rng.choices(("set", "flip", "alias", "stripe", "touch", "flush", "cow", "newcr3"),
                         (6, 3, 4, 2, 4, 2, 2, 1))[0]
        va = rng.choice(vas)
        level = rng.randrange(4)
        index = _index(va, level) if rng.random() < 0.7 else rng.randrange(512)
        if op == "set":
            kind = rng.choice(("random", "ram", "self", "root", "other", "outside", "ps", "zero"))
            flags = P | RW | rng.choice((0, US, PS, NX, 0x60))
            code += _walk(va, level)
            if kind == "random":
                code += X.mov_imm(RAX, rng.getrandbits(64))
            elif kind == "ram":
                code += X.mov_imm(RAX, (rng.randrange(ram) & ~0xFFF) | flags)
            elif kind == "self":
                code += X.mov(RAX, RSI) + X.alu_imm("or", RAX, flags & 0xFFF)
            elif kind == "root":
                code += X.mov(RAX, R15) + X.alu_imm("or", RAX, flags & 0xFFF)
            elif kind == "other":    # another table on some walk
                code += X.push(RSI) + _walk(rng.choice(vas), rng.randrange(4)) + X.mov(RAX, RSI) \
                    + X.pop(RSI) + X.alu_imm("or", RAX, flags & 0xFFF)
            elif kind == "outside":
                code += X.mov_imm(RAX, rng.choice((ram, ram + 0x200000, 0xFEE00000, 1 << 40, 0xFFFFF000,
                                                   ADDRESS_MASK)) | flags)
            elif kind == "ps":
                code += X.load(RAX, RSI, 8 * index) + X.alu_imm("or", RAX, PS)
            else:
                code += X.mov_imm(RAX, 0)
            code += X.store(RSI, 8 * index, RAX)
            notes.append(f"set L{level}[{index}]={kind}")
        elif op == "flip":
            bit = rng.choice((NX, US, RW, P, PS, 1 << 9, 1 << 52, 1 << 51))
            code += _walk(va, level) + X.load(RAX, RSI, 8 * index) + X.mov_imm(RBX, bit) \
                + X.alu("xor", RAX, RBX) + X.store(RSI, 8 * index, RAX)
            notes.append(f"flip L{level}[{index}] {bit:#x}")
        elif op == "alias":
            # many entries of one table := one value (an existing entry, the root, the table itself)
            if rng.random() < 0.6:
                # the entries this walk does not use: the guest keeps running on an aliased address space
                level = rng.randrange(3)
                used = {0: 1, 1: max(1, ram >> 30), 2: 0}[level]
                start = used if level < 2 else min(511, (ram >> 21) + 1) if va < GiB else 0
                count = rng.choice((512 - start, 512 - start, rng.randrange(1, 8)))  # a few stay under walk caps
            else:
                count = rng.choice((511, 512, 256, 64, rng.randrange(1, 512)))
                start = rng.randrange(0, 513 - count)
            source = rng.choice(("entry0", "root", "self", "entry"))
            code += _walk(va, level)
            if source == "entry0":
                code += X.load(RAX, RSI, 0)
            elif source == "entry":
                code += X.load(RAX, RSI, 8 * index)
            elif source == "root":
                code += X.mov(RAX, R15) + X.alu_imm("or", RAX, P | RW | 0x60)
            else:
                code += X.mov(RAX, RSI) + X.alu_imm("or", RAX, P | RW | 0x60)
            code += X.mov(RDI, RSI) + X.alu_imm("add", RDI, 8 * start) + X.mov_imm(RCX, count) + X.REP_STOSQ
            notes.append(f"alias L{level}[{start}:{start + count}]={source}")
        elif op == "stripe":
            # flip a bit in every step-th entry of a table, so that no two neighbours coalesce in a dump
            level = rng.choice((3, 3, 2, 1))
            step = rng.choice((1, 2, 2, 3))
            start = rng.choice((258, 1, 0, 9, rng.randrange(512)))
            count = max(1, (512 - start) // step)
            bit = rng.choice((NX, NX, RW, US, 1 << 9))
            # rdi = &table[start]; 1: xor [rdi], rbx; add rdi, 8*step; dec rcx; jnz 1b
            code += _walk(va, level) + X.mov(RDI, RSI) + X.alu_imm("add", RDI, 8 * start) + X.mov_imm(RBX, bit) \
                + X.mov_imm(RCX, count) + b"\x48\x31\x1f" + X.alu_imm("add", RDI, 8 * step) + b"\x48\xff\xc9\x75\xf1"
            notes.append(f"stripe L{level}[{start}::{step}] ^{bit:#x}")
        elif op == "touch":
            target = rng.choice(touches) if rng.random() < 0.9 else pick_address(rng, ram)
            code += X.mov_imm(RBX, target)
            code += X.store(RBX, 0, RAX) if rng.random() < 0.4 else X.load(RAX, RBX, 0)
            notes.append(f"touch {target:#x}")
        elif op == "flush":
            if rng.random() < 0.5:
                code += X.mov_from_cr(RAX, CR3) + X.mov_to_cr(CR3, RAX)
            else:
                code += X.mov_imm(RAX, rng.choice(vas)) + X.invlpg(RAX)
            notes.append("flush")
        elif op == "cow":
            cr2 = rng.choice((0x40000000, 0x40001000, 0x40000000 + rng.randrange(0x200000), pick_address(rng, ram),
                              rng.getrandbits(64)))
            code += X.mov_imm(RDI, 0x3800) + X.mov_imm(RAX, 3 | (1 << 32)) + X.store(RDI, 0, RAX) \
                + X.mov_imm(RAX, cr2) + X.store(RDI, 16, RAX) + X.mov(RAX, RDI) + X.mov_dx(0x510) + X.OUT[4] \
                + X.mov_imm(RAX, cr2) + X.invlpg(RAX)
            notes.append(f"cow {cr2:#x}")
        else:   # newcr3: copy the root (or start from zero) into a fresh page, edit it, load it
            page = new_page
            new_page += 0x1000
            code += X.mov(RSI, R15) + X.mov_imm(RDI, page) + X.mov_imm(RCX, 512)
            if rng.random() < 0.8:
                code += X.REP_MOVSQ
            else:
                code += X.mov_imm(RAX, 0) + X.REP_STOSQ
            code += X.mov_imm(R15, page)
            for _ in range(rng.randrange(0, 3)):
                code += X.mov_imm(RAX, rng.choice((page | 0x63, rng.getrandbits(64), (rng.randrange(ram) & ~0xFFF) | 0xE3))) \
                    + X.store(R15, 8 * rng.randrange(512), RAX)
            code += X.mov_to_cr(CR3, R15)
            notes.append(f"newcr3 {page:#x}")
    code += X.HLT if rng.random() < 0.9 else X.mov_imm32(RAX, 7) + X.OUT_IMM[1] + b"\xf4"
    args = ["--memory", f"{ram // MiB}M" if ram < GiB else "1G", "--timeout", "1s"]
    dump = rng.random() < 0.6
    if dump:
        args.append("--dump-tables")
    if rng.random() < 0.3:
        args += ["--page-size", "4k"]
    for va, pa, size in cow:
        args += ["--map", f"{va:#x}={pa:#x}:{size // 1024}K:rc"]
    args.append("guest.bin")
    return Case("vandal", seed, args, description=" ".join(notes), files={"guest.bin": code}, timeout=1.0,
                ram=ram, verbose_stderr=dump)


# --- console -------------------------------------------------------------------------------------------

FLOOD_DOTS = X.mov_imm32(RAX, ord(".")) + X.mov_dx(0x3F8) + X.OUT[1] + _jmp_back(3)
FLOOD_LINES = X.mov_dx(0x3F8) + X.mov_imm32(RAX, ord("x")) + X.OUT[1] + X.OUT[1] + X.OUT[1] \
    + X.mov_imm32(RAX, 10) + X.OUT[1] + _jmp_back(16)
FLOOD_OUTS = X.mov_dx(0x3F8) + X.mov_imm(RSI, 0x100000) + X.mov_imm(RCX, 64) + X.CLD + X.REP_OUTSB \
    + _jmp_back(2 + 10 + 10 + 1 + 2)
CONSOLE_MODES = ("blocked", "full", "closed", "head10", "null")


def gen_console(seed: int) -> Case:
    rng = rng_for("console", seed)
    mode = CONSOLE_MODES[seed % len(CONSOLE_MODES)]
    guests = [("outloop64.bin (100,000 dots, then hlt)", None), ("flood of dots", FLOOD_DOTS),
              ("flood of lines", FLOOD_LINES), ("flood by rep outsb", FLOOD_OUTS)]
    name, code = guests[(seed // len(CONSOLE_MODES)) % len(guests)]
    timeout = rng.choice((1.0, 1.5, 2.0))
    files = {}
    if code is None:
        guest = str(GUESTS / "outloop64.bin")
    else:
        guest = "guest.bin"
        files[guest] = code
    args = ["--timeout", f"{int(timeout * 1000)}ms", guest]
    finite = code is None
    if mode == "null":
        statuses, line = ({0, 124} if finite else {124}), None
    elif mode == "blocked":
        statuses, line = {124, 74}, True
    else:
        statuses, line = {74}, True
    return Case("console", seed, args, description=f"{name}, stdout {mode}", files=files, stdout=mode,
                timeout=timeout, expect=Expect(statuses=statuses, error_line=line,
                                               why=f"stdout {mode} must end with {sorted(statuses)}"))


# --- signals -------------------------------------------------------------------------------------------

LOOP_WITH_EXITS = X.mov_imm32(RAX, ord("\n")) + X.mov_dx(0x3F8) + X.OUT[1] + b"\x90" * 4 + _jmp_back(7)


def gen_signals(seed: int) -> Case:
    rng = rng_for("signals", seed)
    files = {}
    which = rng.choice(("loop64", "loop64", "exits"))
    if which == "loop64":
        guest = str(GUESTS / "loop64.bin")
    else:
        guest = "guest.bin"
        files[guest] = LOOP_WITH_EXITS
    mode = rng.choices(("single", "storm", "harmless"), (5, 2, 2))[0]
    delay = rng.choice((0.0, 0.01, 0.1, rng.uniform(0, 0.8)))
    if mode == "single":
        plan = [(delay, [rng.choice(TERMINATING)])]
    elif mode == "storm":
        plan = [(delay, [rng.choice(TERMINATING + HARMLESS) for _ in range(rng.randrange(5, 200))])]
        if not any(s in TERMINATING for s in plan[0][1]):
            plan[0][1].append(signal.SIGTERM)
    else:
        plan = [(delay, [rng.choice(HARMLESS) for _ in range(rng.randrange(1, 50))]),
                (delay + rng.uniform(0.2, 0.6), [signal.SIGTERM])]
    args = ["--timeout", "0", guest]
    sent = {s for _, sigs in plan for s in sigs if s in TERMINATING}
    names = ", ".join(f"+{d:.2f}s " + ",".join(signal.Signals(s).name for s in sigs[:8])
                      + (f",... ({len(sigs)})" if len(sigs) > 8 else "") for d, sigs in plan)
    return Case("signals", seed, args, description=f"{which} guest, {mode}: {names}", files=files,
                timeout=None, signals=plan,
                expect=Expect(statuses={128 + s for s in sent}, error_line=True,
                              why="a terminating signal ends the run with 128+N and one line"))


# --- cmdline -------------------------------------------------------------------------------------------

HELLO = str(GUESTS / "hello64.bin")
REJECT = "reject"       # status 2, one error line
RUN = "run"             # the hello guest runs: status 0, no error line
ANY = "any"             # only the contract table


def _cmd(args, kind=ANY, forbid=None, require=None, files=None, setup=None, deadline=None, program="microvm",
         ram=16 * MiB, why=""):
    return dict(args=args, kind=kind, forbid=forbid, require=require, files=files or {}, setup=setup or [],
                deadline=deadline, program=program, ram=ram, why=why)


def cmdline_dictionary() -> list[dict]:
    hello = Path(HELLO).read_bytes()
    d = [
        _cmd(["--bogus", HELLO], REJECT),
        _cmd(["-x", HELLO], REJECT),
        _cmd(["--trace=no", HELLO], REJECT, why="--trace takes no value"),
        _cmd(["--trace=", HELLO], REJECT, why="--trace takes no value"),
        _cmd(["--dump-tables=0", HELLO], REJECT, why="--dump-tables takes no value"),
        _cmd(["--help=x"], REJECT, why="--help takes no value"),
        _cmd(["--memory", "16M", "--memory", "32M", HELLO]),
        _cmd(["--timeout", "1s", "--timeout", "2s", "--arch", "amd64", "--arch", "amd64", HELLO]),
        _cmd([HELLO, HELLO], REJECT),
        _cmd(["--memory"], REJECT), _cmd(["--timeout"], REJECT), _cmd(["--map"], REJECT),
        _cmd(["--arch"], REJECT), _cmd(["--load"], REJECT), _cmd(["--entry"], REJECT),
        _cmd(["--page-size"], REJECT), _cmd(["--kvm"], REJECT), _cmd(["--gdb"], REJECT),
        _cmd(["--gdb", "99999", HELLO], REJECT), _cmd(["--gdb", "host:", HELLO], REJECT),
        _cmd(["--gdb", "", HELLO], REJECT), _cmd(["--gdb", ":-1", HELLO], REJECT),
        _cmd(["--gdb", "127.0.0.1:\uff11", HELLO], REJECT, why="fullwidth digits are not a port"),
        _cmd(["--gdb", ":1234", "--gdb", ":1235", HELLO], REJECT),
        _cmd(["--gdb", ":1234", "--repeat", "2", HELLO], REJECT, require="does not go with --gdb"),
        _cmd(["--gdb", ":1234", "--save-snapshot", "x.snap", HELLO], REJECT, require="does not go with --gdb"),
        _cmd(["--gdb", "gdb.example:1234", HELLO], REJECT, require="not an IPv4 address"),
        _cmd(["--gdb", "256.0.0.1:1234", HELLO], REJECT, require="not an IPv4 address"),
        _cmd([HELLO, "--memory"], REJECT),
        _cmd(["--memory", "\u0663M", HELLO], REJECT, forbid="too large", why="non-ASCII digits are not a number"),
        _cmd(["--memory", "\u00bdG", HELLO], REJECT, forbid="too large"),
        _cmd(["--memory", "\uff11\uff16M", HELLO], REJECT, forbid="too large",
             why="fullwidth digits are not a number"),
        _cmd(["--memory", "3073M", HELLO], REJECT),
        _cmd(["--memory", "99999999999G", HELLO], REJECT),
        _cmd(["--memory", "18446744073709551616", HELLO], REJECT),
        _cmd(["--memory", "-16M", HELLO], REJECT),
        _cmd(["--memory", "0", HELLO], REJECT),
        _cmd(["--memory", "4097", HELLO], REJECT),
        _cmd(["--memory", "", HELLO], REJECT),
        _cmd(["--memory", "0x", HELLO], REJECT),
        _cmd(["--memory", "16MB", HELLO], REJECT),
        _cmd(["--memory", "16 M", HELLO], REJECT),
        _cmd(["--memory=16M", HELLO], RUN),
        _cmd(["--memory", "1_6M", HELLO]),
        _cmd(["--timeout", "-1s", HELLO], REJECT),
        _cmd(["--timeout", "nan", HELLO], REJECT),
        _cmd(["--timeout", "inf", HELLO], REJECT),
        _cmd(["--timeout", "1e400", HELLO], REJECT),
        _cmd(["--timeout", "10 s", HELLO], REJECT),
        _cmd(["--timeout", "5m", HELLO], REJECT),
        _cmd(["--timeout", "0x10s", HELLO]),   # Swift reads hex floats: 16 s is a fair reading
        _cmd(["--timeout", "\uff11s", HELLO], REJECT),
        _cmd(["--timeout", "1.5.2s", HELLO], REJECT),
        _cmd(["--timeout", "", HELLO], REJECT),
        _cmd(["--timeout", "0.0001ms", HELLO]),
        _cmd(["--map", "x", HELLO], REJECT),
        _cmd(["--map", "1=2", HELLO], REJECT),
        _cmd(["--map", "=::", HELLO], REJECT),
        _cmd(["--map", "0x40000000=0x200000:2M", HELLO], REJECT),
        _cmd(["--map", "0x40000000=0x200000:2M:rwz", HELLO], REJECT),
        _cmd(["--map", "0x40000000=0x200000:0:rw", HELLO], REJECT),
        _cmd(["--map", "0x40000001=0x200000:4K:rw", HELLO], REJECT),
        _cmd(["--map", "0xffffffffffffffff=0:4K:r", HELLO], REJECT),
        _cmd(["--map", "0x40000000=0x200000:4K:cw", HELLO], REJECT),
        _cmd(["--map", "0x40000000=0x200000:4K:rw=", HELLO], REJECT),
        _cmd(["--map", "0x40000000=0x200000:99999999999G:rw", HELLO], REJECT),
        _cmd(["--map", "0x40000000=0x200000:4K:rw", "--map", "0x40000000=0x300000:4K:r", HELLO], REJECT),
        _cmd(["--map", "0x40000000=0xffffffffff000:4K:rw", HELLO]),   # PA beyond RAM: MMIO, allowed
        _cmd(["--load", "abc", HELLO], REJECT), _cmd(["--load", "-1", HELLO], REJECT),
        _cmd(["--load", "0x1001", HELLO], REJECT), _cmd(["--load", "0", HELLO], REJECT),
        _cmd(["--load", "0xFFFFFFFFFFFFFFFF", HELLO], REJECT),
        _cmd(["--entry", "0x0", HELLO], REJECT), _cmd(["--entry", "0x200000", HELLO], REJECT),
        _cmd(["--arch", "AMD64", HELLO], REJECT), _cmd(["--arch", "x86_64", HELLO], REJECT),
        _cmd(["--page-size", "2M", HELLO], REJECT), _cmd(["--page-size", "", HELLO], REJECT),
        _cmd(["--kvm", "/dev/null", HELLO]), _cmd(["--kvm", "/nonexistent", HELLO]),
        _cmd(["--kvm", "/dev/zero", HELLO]), _cmd(["--kvm", "/tmp", HELLO]),
        # file names
        _cmd(["a\nb.bin"], REJECT, why="a name with a newline is still one error line"),
        _cmd(["x\ny.bin"], RUN, files={"x\ny.bin": hello}, why="an existing file with a newline in its name runs"),
        _cmd([b"g\xff\xfe.bin"], RUN, files={b"g\xff\xfe.bin": hello}, forbid="does not exist",
             why="an existing non-UTF-8 file name is found"),
        _cmd([b"m\xff.bin"], REJECT),
        _cmd(["fifo.bin"], ANY, setup=[("fifo", "fifo.bin", None)], deadline=FILE_DEADLINE,
             why="a FIFO with no writer must not hang"),
        _cmd(["fifo.bin"], ANY, setup=[("fifo", "fifo.bin", hello)], deadline=FILE_DEADLINE,
             why="a FIFO with a writer must not hang"),
        _cmd(["/dev/zero"], REJECT, deadline=FILE_DEADLINE, why="/dev/zero is not a guest: reject at once"),
        _cmd(["/dev/full"], REJECT, deadline=FILE_DEADLINE),
        _cmd(["/dev/null"], REJECT, deadline=FILE_DEADLINE),
        _cmd(["/dev/stdin"], REJECT, deadline=FILE_DEADLINE),
        _cmd(["."], REJECT), _cmd(["/"], REJECT), _cmd(["dir.bin"], REJECT, setup=[("dir", "dir.bin", None)]),
        _cmd(["sparse.bin"], REJECT, setup=[("sparse", "sparse.bin", 3 * GiB)], deadline=FILE_DEADLINE,
             why="a 3 GiB file does not fit in 16 MiB of RAM: reject without reading it"),
        _cmd(["--memory", "3G", "sparse.bin"], REJECT, setup=[("sparse", "sparse.bin", 3 * GiB)], ram=3 * GiB,
             deadline=FILE_DEADLINE, why="a 3 GiB image cannot fit in 3 GiB of RAM at 0x100000: reject unread"),
        _cmd(["sparse.bin"], REJECT, setup=[("sparse", "sparse.bin", 17 * MiB)], deadline=FILE_DEADLINE),
        _cmd(["empty.bin"], REJECT, files={"empty.bin": b""}),
        _cmd(["missing.bin"], REJECT),
        _cmd(["locked.bin"], ANY, files={"locked.bin": hello}, setup=[("chmod", "locked.bin", 0)]),
        _cmd(["x" * 5000 + ".bin"], REJECT),
        _cmd(["-"], ANY),
        _cmd(["--", HELLO], ANY),
        _cmd(["--trace"] * 2000 + ["--timeout", "1s", HELLO], ANY),
        _cmd(["--memory", "16M"] * 500 + [HELLO], ANY),
        _cmd(["--help", "--bogus"], ANY),
    ]
    # the leak-test executable next to microvm (skipped when it is not built): it must never crash either
    for count in ("-1", "0", "x", "1", "99999999999999999999999", ""):
        d.append(_cmd([HELLO, count], ANY, program="microvm-soak", why="microvm-soak COUNT"))
    d.append(_cmd([], ANY, program="microvm-soak"))
    d.append(_cmd(["missing.bin", "1"], ANY, program="microvm-soak"))
    return d


def _parse_duration(text) -> float | None:
    """The CLI's --timeout grammar (10s, 500ms, 2), ASCII only; None if it does not parse or is huge."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9.]+(ms|s)?", text):
        return None
    try:
        value = float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))
    except ValueError:
        return None
    return value if value < 3600 else None


def gen_cmdline(seed: int) -> Case:
    rng = rng_for("cmdline", seed)
    dictionary = cmdline_dictionary()
    entry = dictionary[seed % len(dictionary)]
    args = list(entry["args"])
    kind, files, setup = entry["kind"], dict(entry["files"]), list(entry["setup"])
    description = "dictionary entry %d" % (seed % len(dictionary))
    # A --gdb line that parses waits for a debugger (the gdb class drives those): never combined.
    if seed >= len(dictionary) and entry["program"] == "microvm" and "--gdb" not in args:
        # combinations: this entry plus pieces of others, in a random order
        pieces = [args]
        for _ in range(rng.randrange(1, 3)):
            other = rng.choice(dictionary)
            if other["program"] == "microvm" and not other["setup"] and "--gdb" not in other["args"]:
                pieces.append([a for a in other["args"] if a != HELLO])   # one guest file per command line
                files.update(other["files"])
        rng.shuffle(pieces)
        args = [a for piece in pieces for a in piece]
        kind = ANY
        description += " + combination"
    if entry["program"] == "microvm" and seed >= len(dictionary) and rng.random() < 0.5:
        args = ["--timeout", "1s"] + args
    timeout = 10.0
    for i, a in enumerate(args[:-1]):   # the last --timeout that parses wins
        if a == "--timeout":
            parsed = _parse_duration(args[i + 1])
            if parsed is not None:
                timeout = parsed if parsed > 0 else 10.0
    expect = Expect(why=entry["why"]) if kind == ANY and seed >= len(dictionary) else \
        Expect(why=entry["why"], forbid=entry["forbid"], require=entry["require"])   # combinations: table only
    if kind == REJECT:
        expect.statuses, expect.error_line = {2}, True
    elif kind == RUN:
        expect.statuses, expect.error_line = {0}, False
    verbose = any(a in ("--trace", "--dump-tables") for a in args)
    return Case("cmdline", seed, args, description=description + ": " + _show(args)[:200], program=entry["program"],
                files=files, setup=setup, timeout=timeout if timeout < 100 else 10.0,
                deadline=entry["deadline"], ram=entry["ram"], verbose_stderr=verbose, expect=expect)


# --- guest-files ---------------------------------------------------------------------------------------

class MutationClass:
    """A generator class that mutates the corpus of a file format (shared by every format)."""

    def __init__(self, name: str, fmt: FileFormat):
        self.name, self.fmt = name, fmt

    def __call__(self, seed: int) -> Case:
        rng = rng_for(self.name, seed)
        corpus = self.fmt.corpus()
        base_name, base = corpus[seed % len(corpus)] if seed < len(corpus) else rng.choice(corpus)
        rounds = rng.choice((1, 1, 2, 3, rng.randrange(1, 9)))
        data, notes = self.fmt.mutate(rng, base, rounds)
        if not data:
            data = b"\xf4"
        return self.fmt.case(self.name, seed, rng, data, f"{base_name}: " + "; ".join(notes))


# ---------------------------------------------------------------------------------------------------------
# Class registry and budgets
# ---------------------------------------------------------------------------------------------------------

CLASSES: dict[str, Callable[[int], Case]] = {
    "random-bytes": gen_random_bytes,
    "instructions": gen_instructions,
    "hypercalls": gen_hypercalls,
    "vandal": gen_vandal,
    "console": gen_console,
    "cmdline": gen_cmdline,
    "guest-files": MutationClass("guest-files", FlatGuest()),
    "elf": MutationClass("elf", ELFGuest()),
    "signals": gen_signals,
    "gdb": MutationClass("gdb", GDBPackets()),
    "snapshot": MutationClass("snapshot", SnapshotFile()),
}

#: runs per class; the seeds are 0..count-1, so a budget is a fixed, reproducible list of inputs.
#: short: about 50 s on 2 cores against a CLI that keeps the contract (the cmdline count covers its whole
#: dictionary); long: about 18 min.
BUDGETS = {
    "short": {"random-bytes": 200, "instructions": 200, "hypercalls": 60, "vandal": 150, "console": 20,
              "cmdline": 120, "guest-files": 150, "elf": 150, "signals": 16, "gdb": 60,
              "snapshot": 100},
    "long": {"random-bytes": 6000, "instructions": 6000, "hypercalls": 2000, "vandal": 3000, "console": 200,
             "cmdline": 2000, "guest-files": 4000, "elf": 4000, "signals": 300, "gdb": 1500,
             "snapshot": 3000},
}


# ---------------------------------------------------------------------------------------------------------
# Running one case
# ---------------------------------------------------------------------------------------------------------

class Capture:
    """A stream's bytes: the first KEEP_HEAD and last KEEP_TAIL, and the total count."""

    def __init__(self):
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes):
        self.total += len(data)
        room = KEEP_HEAD - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > KEEP_TAIL:
                del self.tail[:len(self.tail) - KEEP_TAIL]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        gap = "\n[... %d bytes ...]\n" % (self.total - len(self.head) - len(self.tail)) if self.truncated else ""
        return self.head.decode("utf-8", "replace") + gap + self.tail.decode("utf-8", "replace")


@dataclasses.dataclass
class Result:
    case: Case
    argv: list
    workdir: Path
    returncode: int | None = None
    wall: float = 0.0
    maxrss: int = 0
    inherited_rss: int = 0               # KiB: the fuzzer's own RSS when it spawned the run (see run_case)
    stdout: Capture = dataclasses.field(default_factory=Capture)
    stderr: Capture = dataclasses.field(default_factory=Capture)
    killed: str | None = None            # why the fuzzer killed it (hang, rss, output)
    killed_detail: str = ""
    sent: list = dataclasses.field(default_factory=list)
    category: str = ""                   # failure category, "" if OK
    reasons: list = dataclasses.field(default_factory=list)
    ending: str = ""


_live: set[int] = set()
_live_lock = threading.Lock()


def _materialize(case: Case, workdir: Path, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for name, data in case.files.items():
        with open(os.path.join(os.fsencode(workdir), os.fsencode(name)), "wb") as f:
            f.write(data)
    for kind, name, arg in case.setup:
        path = os.path.join(os.fsencode(workdir), os.fsencode(name))
        if kind == "fifo":
            os.mkfifo(path)
            if arg is not None:
                threads.append(threading.Thread(target=_fifo_writer, args=(path, arg, stop), daemon=True))
        elif kind == "sparse":
            with open(path, "wb") as f:
                f.truncate(arg)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "chmod":
            os.chmod(path, arg)
        elif kind == "pieces":            # a SparseFile: its pieces, holes for the rest
            arg.write_to(path)
    return threads


def _fifo_writer(path: bytes, data: bytes, stop: threading.Event):
    """Opens the FIFO for writing once a reader has it open (never blocks the fuzzer), writes, closes."""
    while not stop.is_set():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.01)
            continue
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        except OSError:
            pass
        finally:
            os.close(fd)
        return


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_case(case: Case, binary: Path, root: Path) -> Result:
    workdir = root / f"{case.cls}-{case.seed}"
    if workdir.exists():
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    program = binary if case.program == "microvm" else binary.with_name(case.program)
    argv = [str(program)] + list(case.args)
    result = Result(case, argv, workdir)
    stop = threading.Event()
    threads = _materialize(case, workdir, stop)

    stdout_arg = subprocess.PIPE
    extra_fds, head = [], None
    spawn = argv
    if case.stdout == "blocked":          # a pipe nobody reads, one page deep: it fills at once
        r, w = os.pipe()
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
        extra_fds = [r]
        stdout_arg = w
    elif case.stdout == "full":
        stdout_arg = open("/dev/full", "wb")
    elif case.stdout == "null":
        stdout_arg = subprocess.DEVNULL
    elif case.stdout == "closed":         # `>&-`
        spawn = ["/bin/sh", "-c", 'exec "$0" "$@" >&-'] + argv
        stdout_arg = subprocess.DEVNULL
    elif case.stdout == "head10":         # `| head -c 10`
        r, w = os.pipe()
        head = subprocess.Popen(["head", "-c", "10"], stdin=r, stdout=subprocess.DEVNULL)
        os.close(r)
        stdout_arg = w

    # A child's ru_maxrss starts at its parent's RSS: Linux carries the high-water mark of the memory a process
    # had at fork over its exec. Peaks up to the fuzzer's own size say nothing about microvm; classify() only
    # judges a peak above it (the live VmRSS check below sees microvm's own pages either way).
    result.inherited_rss = _rss_kib(os.getpid())
    start = time.monotonic()
    proc = subprocess.Popen(spawn, cwd=workdir, stdin=subprocess.DEVNULL, stdout=stdout_arg,
                            stderr=subprocess.PIPE, start_new_session=True)
    pid = proc.pid
    with _live_lock:
        _live.add(pid)
    if isinstance(stdout_arg, int) and stdout_arg > 2:
        os.close(stdout_arg)
    elif hasattr(stdout_arg, "close"):
        stdout_arg.close()
    if case.driver is not None:
        threads.append(threading.Thread(target=case.driver, args=(pid, workdir, stop), daemon=True))
    for t in threads:
        t.start()

    sel = selectors.DefaultSelector()
    streams = {proc.stderr.fileno(): result.stderr}
    if proc.stdout is not None:
        streams[proc.stdout.fileno()] = result.stdout
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)

    if case.deadline is not None:
        deadline = start + case.deadline
    elif case.timeout is not None:
        deadline = start + case.timeout + GRACE
    else:
        deadline = None
    pending = list(case.signals)          # (delay after the guest's first output, signals)
    ready_at = None
    rss_limit_kib = (case.ram + RSS_SLACK) // 1024
    status = None
    rusage = None
    last_rss = 0.0

    def kill(why: str, detail: str):
        if result.killed is None:
            result.killed, result.killed_detail = why, detail
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    while status is None:
        for key, _ in sel.select(timeout=0.01):
            try:
                data = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fd)
                continue
            streams[key.fd].add(data)
            if ready_at is None and streams[key.fd] is result.stdout:
                ready_at = time.monotonic()
        now = time.monotonic()
        if result.killed is None:
            for name, capture in (("stdout", result.stdout), ("stderr", result.stderr)):
                if capture.total > OUTPUT_LIMIT:
                    kill("output", f"{name} passed {OUTPUT_LIMIT // MiB} MiB")
            if now - last_rss > 0.03:
                last_rss = now
                rss = _rss_kib(pid)
                if rss > rss_limit_kib:
                    kill("rss", f"RSS {rss // 1024} MiB > {rss_limit_kib // 1024} MiB")
            if deadline is not None and now > deadline:
                kill("hang", f"still running {now - start:.1f} s after start")
            if pending and (ready_at is not None or now - start > 2.0):
                base = ready_at if ready_at is not None else start
                while pending and now >= base + pending[0][0]:
                    _, sigs = pending.pop(0)
                    for s in sigs:
                        try:
                            os.kill(pid, s)
                        except OSError:
                            pass
                        result.sent.append(s)
                    if any(s in TERMINATING for s in sigs):
                        limit = time.monotonic() + GRACE
                        deadline = limit if deadline is None else min(deadline, limit)
        wpid, wstatus, ru = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            status, rusage = wstatus, ru
    result.wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here: keep Popen from waiting again
    result.returncode = proc.returncode
    result.maxrss = rusage.ru_maxrss if rusage else 0
    with _live_lock:
        _live.discard(pid)
    # drain what is left in the pipes (every writer is gone, unless the process left children behind)
    drain_end = time.monotonic() + 1.0
    while sel.get_map() and time.monotonic() < drain_end:
        for key, _ in sel.select(timeout=0.05):
            try:
                data = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fd)
            elif streams[key.fd].total < OUTPUT_LIMIT + (1 << 16):
                streams[key.fd].add(data)
    sel.close()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    for fd in extra_fds:
        os.close(fd)
    if head is not None:
        try:
            head.wait(timeout=2)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
    stop.set()
    for t in threads:
        t.join(timeout=2)
    return result


# ---------------------------------------------------------------------------------------------------------
# Classifying an ending
# ---------------------------------------------------------------------------------------------------------

def _error_key(message: str) -> str:
    """`triple fault: RIP ...` -> `triple fault`; `guest file 'x' does not exist` -> `guest file does not exist`."""
    text = re.sub(r"'[^']*'", "", message)
    text = re.sub(r"\b(0x[0-9a-fA-F]+|\d+(\.\d+)?)\b", "N", text)
    text = re.sub(r"\s+", " ", text).strip()
    head = text.split(":")[0].strip()
    words = [w if len(w) <= 24 else w[:20] + "..." for w in head.split(" ")]
    return " ".join(words[:5])


def classify(r: Result) -> Result:
    case = r.case
    reasons: list[tuple[str, str]] = []
    stderr_text = r.stderr.text()
    status = r.returncode
    lines = stderr_text.split("\n")
    ends_with_newline = stderr_text.endswith("\n") or stderr_text == ""
    if ends_with_newline and lines and lines[-1] == "":
        lines = lines[:-1]
    first_line = lines[0] if lines else ""
    if case.notices:
        lines = [line for line in lines if not re.search(case.notices, line)]
    error_lines = [i for i, line in enumerate(lines) if line.startswith(ERROR_PREFIX)]
    message = lines[error_lines[-1]][len(ERROR_PREFIX):] if error_lines else None

    if r.killed:
        reasons.append((r.killed, r.killed_detail))
    elif status is not None and status < 0:
        name = signal.Signals(-status).name if -status in signal.valid_signals() else str(-status)
        reasons.append(("signal", f"died by {name} (a shell shows status {128 - status})"))
    for signature in CRASH_SIGNATURES:
        if signature in stderr_text:
            reasons.append(("crash", f"stderr contains {signature!r}"))
            break
    soak = case.program != "microvm"
    if not r.killed and status is not None and status >= 0 and not soak:
        if case.verbose_stderr and not r.stderr.truncated:
            if len(error_lines) > 1:
                reasons.append(("stderr-form", f"{len(error_lines)} error lines"))
            elif error_lines and error_lines[0] != len(lines) - 1:
                reasons.append(("stderr-form", "the error line is not the last line of stderr"))
        elif not case.verbose_stderr:
            if len(lines) > 1:
                reasons.append(("stderr-form", f"{len(lines)} lines on stderr, expected at most one error line"))
            elif lines and not error_lines:
                reasons.append(("stderr-form", f"stderr is not an error line: {lines[0][:120]!r}"))
        if error_lines and not ends_with_newline:
            reasons.append(("stderr-form", "the error line does not end with a newline"))
        if message is not None:
            if status == 0:
                reasons.append(("status", "status 0 with an error line"))
            elif status not in ERROR_STATUSES and status not in case.extra_statuses:
                reasons.append(("status", f"status {status} is not an error status of the contract"))
            elif status > 128 and (status - 128) not in r.sent and status not in case.extra_statuses:
                reasons.append(("status", f"status {status} but signal {status - 128} was never sent"))
            stopped = re.match(r"stopped by (SIG[A-Z]+)\b", message)
            if stopped and stopped.group(1) in signal.Signals.__members__ \
                    and status != 128 + signal.Signals[stopped.group(1)]:
                reasons.append(("status", f"status {status} after a line naming {stopped.group(1)}"
                                f" ({128 + signal.Signals[stopped.group(1)]})"))
            for pattern, what in DIAGNOSIS_RULES:
                if pattern.search(message):
                    reasons.append(("diagnosis", f"{what}: {message[:120]}"))
    if r.maxrss * 1024 > case.ram + RSS_SLACK and r.maxrss > r.inherited_rss + 8 * 1024 and r.killed != "rss":
        reasons.append(("rss", f"peak RSS {r.maxrss // 1024} MiB > guest RAM + {RSS_SLACK // MiB} MiB"))
    # class expectations
    e = case.expect
    if not r.killed and status is not None and status >= 0 and not soak:
        if e.statuses is not None and status not in e.statuses:
            reasons.append(("contract", f"status {status}, expected {sorted(e.statuses)}"
                            + (f" ({e.why})" if e.why else "")))
        if e.error_line is True and message is None:
            reasons.append(("contract", "expected one error line, got none" + (f" ({e.why})" if e.why else "")))
        if e.error_line is False and message is not None:
            reasons.append(("contract", "expected no error line" + (f" ({e.why})" if e.why else "")))
        if e.forbid and message and re.search(e.forbid, message):
            reasons.append(("contract", f"error line matches {e.forbid!r}" + (f" ({e.why})" if e.why else "")))
        if e.require and not (message and re.search(e.require, message)):
            reasons.append(("contract", f"error line does not match {e.require!r}"))
        if e.first_line and not re.search(e.first_line, first_line):
            reasons.append(("contract", f"the first line of stderr does not match {e.first_line!r}: {first_line[:120]!r}"))

    # the ending, for the summary
    if r.killed:
        r.ending = f"killed by fuzzer ({r.killed})"
    elif status is not None and status < 0:
        r.ending = f"signal {signal.Signals(-status).name if -status in signal.valid_signals() else -status}"
    elif message is not None:
        r.ending = f"{status} {_error_key(message)}"
    elif soak:
        r.ending = f"{status} (microvm-soak)"
    elif status == 0:
        r.ending = "0 (no error line)"
    else:
        r.ending = "guest status (port 0xF4)"
    order = list(FAILURES)
    reasons.sort(key=lambda x: order.index(x[0]))
    r.reasons = reasons
    r.category = reasons[0][0] if reasons else ""
    return r


# ---------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------

def _show(args) -> str:
    out = []
    for a in args:
        if isinstance(a, bytes):
            out.append("$'" + "".join(chr(b) if 32 <= b < 127 and b not in (39, 92) else f"\\x{b:02x}" for b in a) + "'")
        elif "\n" in a or any(ord(c) > 126 for c in a):
            out.append("$'" + a.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'")
        else:
            out.append(shlex.quote(a))
    return " ".join(out)


def repro_command(case: Case, binary_arg: str | None) -> str:
    extra = f" --binary {shlex.quote(binary_arg)}" if binary_arg else ""
    return f"scripts/fuzz.sh --class {case.cls} --seed {case.seed} --count 1{extra}"


def print_verbose(r: Result):
    c = r.case
    redirect = {"pipe": "", "blocked": " | (a pipe nobody reads)", "full": " >/dev/full", "closed": " >&-",
                "head10": " | head -c 10", "null": " >/dev/null"}[c.stdout]
    print(f"case     {c.cls} seed {c.seed}: {c.description}")
    print(f"files    {r.workdir}")
    print(f"command  cd {shlex.quote(str(r.workdir))} && {_show(r.argv)}{redirect}")
    if c.signals:
        print("signals  " + "; ".join(f"+{d:.3f}s after first output: "
                                      + ",".join(signal.Signals(s).name for s in sigs) for d, sigs in c.signals))
    print(f"ended    status {r.returncode} after {r.wall:.2f} s, peak RSS {r.maxrss // 1024} MiB,"
          f" stdout {r.stdout.total} bytes, stderr {r.stderr.total} bytes")
    out = r.stdout.head[:400].decode("utf-8", "replace")
    print("stdout   " + (repr(out) + (" ..." if r.stdout.total > 400 else "") if r.stdout.total else "(empty)"))
    err = r.stderr.text()
    if len(err) > 3000:
        err = err[:1500] + f"\n[... {r.stderr.total} bytes in all ...]\n" + err[-1500:]
    print("stderr   " + ("\n         ".join(err.rstrip("\n").split("\n")) if err else "(empty)"))
    print(f"ending   {r.ending}")
    if r.reasons:
        for cat, detail in r.reasons:
            print(f"FAIL     [{cat}] {detail}")
    else:
        print("verdict  OK")


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------

def check_classifier() -> int:
    """The contract table applied to synthetic endings: each must land in the expected category."""
    def ending(status, stderr=b"", **kw):
        case = Case("selftest", 0, [], **{k: v for k, v in kw.items() if k in Case.__dataclass_fields__})
        r = Result(case, [], Path("."), returncode=status)
        r.stderr.add(stderr)
        r.sent = kw.get("sent", [])
        r.killed = kw.get("killed")
        r.maxrss = kw.get("maxrss", 20000)
        return classify(r).category

    e = ERROR_PREFIX.encode()
    w = b"microvm: waiting for gdb on 127.0.0.1:41234\n"
    waiting = r"^microvm: waiting for gdb on 127\.0\.0\.1:\d+$"
    gdb = dict(notices=waiting, extra_statuses=GDB_STATUSES, expect=Expect(first_line=waiting))
    table = [
        (ending(0), ""), (ending(42), ""), (ending(2), ""),                       # guest-chosen statuses
        (ending(125, e + b"triple fault: RIP 0x100000\n"), ""),
        (ending(2, e + b"unknown option '--x' (see --help)\n"), ""),
        (ending(74, e + b"console output could not be written: Broken pipe\n"), ""),
        (ending(130, e + b"interrupted by SIGINT\n", sent=[signal.SIGINT]), ""),
        (ending(130, e + b"interrupted by SIGINT\n"), "status"),                 # SIGINT never sent
        (ending(0, e + b"console: write failed\n"), "status"),
        (ending(1, e + b"something\n"), "status"),
        (ending(125, e + b"a\n" + e + b"b\n"), "stderr-form"),
        (ending(2, e + b"guest file 'a\nb' does not exist\n"), "stderr-form"),
        (ending(125, b"warning: x\n"), "stderr-form"),
        (ending(125, e + b"no newline"), "stderr-form"),
        (ending(0, b"address space at boot:\n0x1000 ...\n", verbose_stderr=True), ""),
        (ending(125, b"dump\n" + e + b"triple fault: x\n", verbose_stderr=True), ""),
        (ending(125, e + b"triple fault: x\ndump\n", verbose_stderr=True), "stderr-form"),
        (ending(129, e + b"stopped by SIGINT: the guest was at RIP 0x100000 after 3 exits\n",
                sent=[signal.SIGINT, signal.SIGHUP]), "status"),
        (ending(130, e + b"stopped by SIGINT: the guest was at RIP 0x100000 after 3 exits\n",
                sent=[signal.SIGINT, signal.SIGHUP]), ""),
        (ending(-signal.SIGPIPE), "signal"), (ending(-signal.SIGTERM), "signal"),
        (ending(-9, killed="hang"), "hang"),
        (ending(131, e + b"x\n*** Program crashed: Terminated\n", sent=[signal.SIGQUIT]), "crash"),
        (ending(0, maxrss=(16 * MiB + RSS_SLACK) // 1024 + 1), "rss"),
        (ending(125, e + b"unexpected exit: unsupported exit reason 2 at RIP 0x100019\n"), "diagnosis"),
        (ending(125, e + b"KVM internal error (suberror 1) at RIP 0x100000\n"), "diagnosis"),
        (ending(125, e + b"KVM internal error (suberror 1) at RIP 0x100000: the instruction cannot be "
                b"emulated by kvm_pvm (x87/SSE?)\n"), ""),
        (ending(0, expect=Expect(statuses={2}, error_line=True)), "contract"),
        # --gdb: the waiting line is a notice, 129 / 137 are valid there (and only there) without a signal sent
        (ending(129, w + e + b"gdb disconnected before the guest ended: x\n", **gdb), ""),
        (ending(137, w + e + b"gdb killed the guest at RIP 0x100015 after 8 exits\n", **gdb), ""),
        (ending(42, w, **gdb), ""),
        (ending(129, e + b"gdb disconnected before the guest ended: x\n"), "status"),
        (ending(129, w + e + b"gdb disconnected before the guest ended: x\n"), "stderr-form"),
        (ending(125, e + b"triple fault: x\n", **gdb), "contract"),               # no waiting line
        (ending(137, w + b"warning: x\n" + e + b"gdb killed the guest\n", **gdb), "stderr-form"),
    ]
    bad = [(i, got, want) for i, (got, want) in enumerate(table) if got != want]
    for i, got, want in bad:
        print(f"BAD classifier case {i}: got {got or 'OK'!r}, expected {want or 'OK'!r}")
    print(f"classifier: {len(table)} synthetic endings, {len(bad)} misclassified")
    return 1 if bad else 0


def check_encodings(samples: int = 40) -> int:
    """Disassembles every instruction-dictionary entry and generated guests of the hand-encoded classes
    with GNU objdump (LLVM 14's llvm-objdump has no `-b binary`): each must decode to whole instructions,
    with no `(bad)`, ending exactly at the last byte."""
    objdump = shutil.which("objdump")
    if not objdump:
        print("fuzz: --self-test needs GNU objdump (binutils) to check the encodings", file=sys.stderr)
        return 2
    line = re.compile(r"\s+([0-9a-f]+):\t[0-9a-f ]+\t(.*)")

    def decode(code: bytes) -> list[tuple[int, str]]:
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(code)
            f.flush()
            out = subprocess.run([objdump, "-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel", f.name],
                                 capture_output=True, text=True, check=True).stdout
        return [(int(m.group(1), 16), m.group(2).strip()) for m in map(line.match, out.splitlines()) if m]

    failures = 0

    def check(label: str, code: bytes):
        nonlocal failures
        listing = decode(code + X.HLT)
        text = " ; ".join(t for _, t in listing)
        if "(bad)" in text or not listing or listing[-1] != (len(code), "hlt"):
            failures += 1
            print(f"BAD {label}: {code.hex()}\n    {text[:300]}")

    for name, (_, make) in INSTRUCTIONS.items():
        rng = random.Random(name)
        for _ in range(samples):
            check(f"instruction {name}", make(rng, 16 * MiB, lambda: rng.choice([x for x in range(16) if x != RSP])))
    for label, code in (("FLOOD_DOTS", FLOOD_DOTS), ("FLOOD_LINES", FLOOD_LINES), ("FLOOD_OUTS", FLOOD_OUTS),
                        ("LOOP_WITH_EXITS", LOOP_WITH_EXITS), ("SPACES_PREAMBLE", SPACES_PREAMBLE)):
        check(label, code)
    for cls in ("instructions", "hypercalls", "vandal"):
        for seed in range(samples):
            code = CLASSES[cls](seed).files["guest.bin"]
            check(f"{cls} seed {seed}", code)
    print(f"encodings: {len(INSTRUCTIONS)} dictionary entries x {samples} samples and {3 * samples} generated "
          f"guests decoded, {failures} bad")
    print("e.g. vandal seed 1:\n  " + "\n  ".join(f"{0x100000 + o:#x}  {t}" for o, t in
                                                  decode(gen_vandal(1).files["guest.bin"])[:12]))
    return 1 if failures else 0


def ensure_binary(path: Path, explicit: bool):
    if path.exists():
        return
    if explicit:
        sys.exit(f"fuzz: {path} does not exist")
    print(f"fuzz: {path} missing, building it: swift build --product microvm", file=sys.stderr)
    env = dict(os.environ)
    if os.path.isdir("/opt/swift/usr/bin"):
        env["PATH"] = "/opt/swift/usr/bin:" + env.get("PATH", "")
    subprocess.run(["swift", "build", "--product", "microvm"], cwd=ROOT, env=env, check=True)


def main(argv=None) -> int:
    # SIGPIPE stays ignored (Python's default): a gdb driver sending to a microvm that closed the connection,
    # or a FIFO writer whose reader went away, gets an OSError it handles, instead of killing the fuzzer.
    # A reader of our own output that goes away (`scripts/fuzz.sh | head`) is handled below.
    def interrupted(signum, frame):                  # SIGTERM / SIGHUP: stop like ^C, killing the runs
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    p = argparse.ArgumentParser(prog="scripts/fuzz.sh", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="classes: " + ", ".join(CLASSES) + "\n\n"
                                + "OK endings: status 0 or a guest-chosen status with no error line, or exactly one "
                                "line `microvm: error: ...` with\n"
                                + "\n".join(f"  {k:3}  {v}" for k, v in ERROR_STATUSES.items())
                                + "\n  (128+N only after the fuzzer sent signal N)\n\nfailure categories:\n"
                                + "\n".join(f"  {k:12} {v}" for k, v in FAILURES.items()))
    p.add_argument("--binary", help=f"the microvm executable (default {DEFAULT_BINARY}, built if missing)")
    p.add_argument("--budget", choices=list(BUDGETS), default="short",
                   help="runs per class: short (~50 s, CI) or long (~18 min)")
    p.add_argument("--class", dest="classes", action="append", choices=list(CLASSES),
                   help="run only this class (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--count", type=int, help="runs per class (overrides the budget)")
    p.add_argument("--time", type=float, help="stop starting new runs after this many seconds")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default 2)")
    p.add_argument("--keep", action="store_true", help="keep every generated file")
    p.add_argument("--verbose", action="store_true", help="print every run in full")
    p.add_argument("--workdir", help="where generated files go (default: a new directory under $TMPDIR)")
    p.add_argument("--self-test", action="store_true",
                   help="check the classifier on synthetic endings, disassemble the hand-encoded "
                        "instructions and generated guests with objdump, save the snapshot corpus (with "
                        "--binary, default built one) and check its checksums, then exit")
    args = p.parse_args(argv)
    if args.self_test:
        return check_classifier() | check_encodings() | check_snapshot_corpus(
            Path(args.binary or (ROOT / DEFAULT_BINARY)).absolute())

    binary = Path(args.binary or (ROOT / DEFAULT_BINARY)).absolute()
    ensure_binary(binary, args.binary is not None)
    classes = args.classes or list(CLASSES)
    single = args.count == 1 and len(classes) == 1
    verbose, keep = args.verbose or single, args.keep or single
    root = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="microvm-fuzz-"))
    root.mkdir(parents=True, exist_ok=True)
    # the snapshot class saves its corpus with this binary, once, when a worker first needs it
    SnapshotFile.binary, SnapshotFile.cache = binary, root / "snapshot-corpus"

    work = []
    for cls in classes:
        count = args.count if args.count is not None else BUDGETS[args.budget][cls]
        work += [(cls, seed) for seed in range(args.seed, args.seed + count)]
    # interleave the classes so that slow and fast runs share the two workers evenly
    by_class = {cls: [w for w in work if w[0] == cls] for cls in classes}
    order = []
    while any(by_class.values()):
        for cls in classes:
            if by_class[cls]:
                order.append(by_class[cls].pop(0))

    results: list[Result] = []
    lock = threading.Lock()
    queue = list(order)
    started = time.monotonic()
    stopped = [0]
    skipped: list[str] = []
    broken: dict[str, str] = {}           # class -> why its cases could not be generated
    interrupted_at = [0.0]

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                if args.time is not None and time.monotonic() - started > args.time:
                    stopped[0] += len(queue)
                    queue.clear()
                    return
                cls, seed = queue.pop(0)
                if cls in broken:
                    continue
            try:
                case = CLASSES[cls](seed)
            except Exception as e:        # e.g. the snapshot corpus could not be saved: a failure of the run
                with lock:
                    if cls not in broken:
                        broken[cls] = f"{type(e).__name__}: {e}"
                        print(f"FAIL {cls} seed {seed}: cannot generate the case: {broken[cls]}", flush=True)
                continue
            program = binary.with_name(case.program)
            if not program.exists():      # e.g. microvm-soak not built: `swift build --product microvm-soak`
                with lock:
                    skipped.append(f"{cls} seed {seed}: {program.name} not built")
                continue
            r = classify(run_case(case, binary, root))
            if not keep:
                shutil.rmtree(r.workdir, ignore_errors=True)
            with lock:
                if interrupted_at[0]:
                    return                  # the fuzzer killed it: not an ending of microvm's
                results.append(r)
                if verbose:
                    print_verbose(r)
                    print()
                elif r.category:
                    print(f"FAIL {cls} seed {seed}: [{r.category}] {r.reasons[0][1]}\n"
                          f"     {r.case.description[:160]}\n     reproduce: {repro_command(r.case, args.binary)}",
                          flush=True)
                # the summary needs only the ending and the reasons: let go of the generated files and the
                # captured output, so the fuzzer stays small over a long budget (see inherited_rss)
                r.case.files, r.case.setup, r.case.driver = {}, [], None
                r.stdout, r.stderr = Capture(), Capture()

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        with lock:
            interrupted_at[0] = time.monotonic()
            queue.clear()
        with _live_lock:
            for pid in list(_live):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        for t in threads:
            t.join()
        print("fuzz: interrupted", file=sys.stderr)
    wall = time.monotonic() - started

    # summary
    failures = [r for r in results if r.category]
    print(f"\nmicrovm fuzz: {len(results)} runs in {wall:.1f} s ({args.budget if args.count is None else 'count'}"
          f" budget, seeds from {args.seed}, {args.jobs} in parallel), binary {binary}")
    print(f"  the fuzzer's own peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB"
          " (a run's peak RSS counts only above the fuzzer's size when it was spawned)")
    if stopped[0]:
        print(f"  --time reached: {stopped[0]} runs not started")
    if skipped:
        print(f"  skipped {len(skipped)} run(s), e.g. {skipped[0]}")
    for cls in classes:
        rs = [r for r in results if r.case.cls == cls]
        if not rs:
            continue
        fs = [r for r in rs if r.category]
        busy = sum(r.wall for r in rs)
        print(f"\n{cls}: {len(rs)} runs, {len(fs)} failure(s), {busy:.1f} s of run time")
        endings: dict[str, int] = {}
        for r in rs:
            endings[r.ending] = endings.get(r.ending, 0) + 1
        for ending, n in sorted(endings.items(), key=lambda x: (-x[1], x[0])):
            print(f"  {n:6}  {ending}")
        if fs:
            cats: dict[str, list[Result]] = {}
            for r in fs:
                cats.setdefault(r.category, []).append(r)
            for cat, group in cats.items():
                seeds = ", ".join(str(r.case.seed) for r in group[:12]) + (" ..." if len(group) > 12 else "")
                print(f"  FAIL [{cat}] x{len(group)}: seeds {seeds}")
                shown = {}
                for r in group:
                    shown.setdefault(r.reasons[0][1][:90], r)
                for detail, r in list(shown.items())[:4]:
                    print(f"        e.g. seed {r.case.seed}: {detail}")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"\ngenerated files kept under {root}")
    for cls, why in broken.items():
        print(f"\nFAILED: class {cls} could not generate its cases: {why}")
    if broken and not failures:
        return 1
    if failures:
        firsts: dict[tuple, Result] = {}
        for r in failures:
            firsts.setdefault((r.case.cls, r.category), r)
        print(f"\nFAILED: {len(failures)} bad ending(s). Reproduce one of each kind with:")
        for (cls, cat), r in firsts.items():
            print(f"  {repro_command(r.case, args.binary):70}  # {cls}: {cat}")
        return 1
    print("\nOK: every ending is in the contract")
    return 0


if __name__ == "__main__":
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:                         # `scripts/fuzz.sh | head`: end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
