// pagewalk64 (amd64) and pagewalk32 (i686): the guest walks its own page tables from CR3 and prints them
// exactly as the host's `microvm --dump-tables` / `Machine.dumpTables()` / `AddressSpace.dump()` does.
//
// What it does: visits every present leaf of the tables in CR3 (Runtime/PageTables.swift: 4 KiB, 2 MiB and
// 1 GiB leaves; R/W and U/S ANDed down the levels, NX ORed; bit 9 marks copy-on-write), merges neighbours whose
// virtual and physical ranges are contiguous and whose permissions and leaf size agree, and prints one line per
// run, then halts. It changes nothing first, so what it prints is the address space at boot:
//
//     0x0000000000100000-0x0000000000100fff -> 0x0000000000100000-0x0000000000100fff      4 KiB  rwx-   4 KiB
//
// (i686: 8-digit addresses, 4 KiB and 4 MiB leaves) virtual range, physical range, size (right-aligned in 10 columns: `N unit` or `N.t unit` when a tenth is
// exact, else the next smaller unit), permissions (`r`, `w`/`-`, `x`/`-`, `u`/`-`, then `c` for copy-on-write,
// padded to 5), leaf size.
//
// What the host must see: console output equal, byte for byte, to `Machine.dumpTables()` at boot (no header
// line: the tables are the host's), then HLT, status 0. Any `--map` and `--page-size` work. pagewalk32 runs
// under the QEMU oracle (console mode: the runtime ends QEMU through port 0xF4, status 1).
//
// Relies on: the runtime in Runtime/; RAM identity-mapped over the page-table arena (docs/layout.md).

/// A run of leaves printed as one line.
struct Run {
    var virtualAddress: UInt64
    var physicalAddress: UInt64
    var length: UInt64
    var leafSize: UInt64
    /// w, x, u and c as bits 0-3: what must agree for leaves to merge (the host compares kind, U/S, size).
    var permissions: UInt8

    init(_ leaf: PageLeaf) {
        virtualAddress = leaf.virtualAddress
        physicalAddress = leaf.physicalAddress
        length = leaf.size
        leafSize = leaf.size
        permissions =
            (leaf.isWritable ? 1 : 0) | (leaf.isExecutable ? 2 : 0) | (leaf.isUserAccessible ? 4 : 0)
            | (leaf.isCopyOnWrite ? 8 : 0)
    }

    /// Whether `next` continues this run.
    func isContinued(by next: Run) -> Bool {
        virtualAddress &+ length == next.virtualAddress && physicalAddress &+ length == next.physicalAddress
            && permissions == next.permissions && leafSize == next.leafSize
    }
}

func guestMain(_ boot: BootInfo) {
    var pending: Run? = nil
    PageTables.forEachLeaf { leaf in
        let next = Run(leaf)
        if var run = pending, run.isContinued(by: next) {
            run.length &+= next.length
            pending = run
        } else {
            if let run = pending { printLine(run) }
            pending = next
        }
    }
    if let run = pending { printLine(run) }
}

func printLine(_ run: Run) {
    Console.write(address: run.virtualAddress)
    Console.write("-")
    Console.write(address: run.virtualAddress &+ run.length &- 1)
    Console.write(" -> ")
    Console.write(address: run.physicalAddress)
    Console.write("-")
    Console.write(address: run.physicalAddress &+ run.length &- 1)
    Console.write(" ")
    let size = ByteSize(run.length)
    Console.write(UInt8(ascii: " "), count: 10 - size.width)
    size.write()
    Console.write("  r")
    Console.write(run.permissions & 1 != 0 ? UInt8(ascii: "w") : UInt8(ascii: "-"))
    Console.write(run.permissions & 2 != 0 ? UInt8(ascii: "x") : UInt8(ascii: "-"))
    Console.write(run.permissions & 4 != 0 ? UInt8(ascii: "u") : UInt8(ascii: "-"))
    Console.write(run.permissions & 8 != 0 ? UInt8(ascii: "c") : UInt8(ascii: " "))
    Console.write("  ")
    ByteSize(run.leafSize).write()
    Console.write("\n")
}

/// A byte count as the host's dump spells it: the largest of GiB, MiB, KiB in which it is a whole number or
/// has one exact decimal (`1020 KiB`, `1.5 MiB`), else bytes.
struct ByteSize {
    var whole: UInt64
    /// The decimal, or -1 for none.
    var tenths: Int
    /// 30 GiB, 20 MiB, 10 KiB, 0 bytes.
    var shift: UInt64

    init(_ value: UInt64) {
        var shift: UInt64 = 30
        while shift > 0 {
            let unit: UInt64 = 1 << shift
            if value >= unit {
                let rest = value & (unit &- 1)
                let scaled = rest &* 10
                if rest == 0 || scaled & (unit &- 1) == 0 {
                    self.whole = value >> shift
                    self.tenths = rest == 0 ? -1 : Int(truncatingIfNeeded: scaled >> shift)
                    self.shift = shift
                    return
                }
            }
            shift -= 10
        }
        whole = value
        tenths = -1
        self.shift = 0
    }

    /// Characters `write()` prints.
    var width: Int { Console.decimalWidth(whole) + (tenths >= 0 ? 2 : 0) + (shift == 0 ? 6 : 4) }

    func write() {
        Console.write(decimal: whole)
        if tenths >= 0 {
            Console.write(".")
            Console.write(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: tenths))
        }
        switch shift {
        case 30: Console.write(" GiB")
        case 20: Console.write(" MiB")
        case 10: Console.write(" KiB")
        default: Console.write(" bytes")
        }
    }
}
