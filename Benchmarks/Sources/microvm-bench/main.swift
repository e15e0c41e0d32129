import CBaseline
@preconcurrency import Glibc

/// microvm-bench: the in-process benchmark groups of microvm (issue 5), each next to its C baseline.
let usage = """
    usage: microvm-bench [GROUP...] [--quick] [--runs N] [--guests DIR]
           microvm-bench spawn [--quick] [--runs N] [--warmup N] [--raw] [--case NAME --impl IMPL] -- COMMAND [ARG...]

    groups: setup      page-table setup, 4 KiB..4 GiB, amd64/i686, 4 KiB vs large leaves, pre-faulted vs fresh
            translate  forEachLeaf over the same ranges vs a C walk
            spaces     walkSpaces over 3 spaces sharing a kernel upper half vs a C walk of the same leaves
            boot       in-process create -> HLT -> teardown of hello64 vs the C host (i686: n/a on kvm_pvm)
            exits      outloop64: 100,000 OUT exits, cost per exit vs the C host
            rate       machines created + run + destroyed per second, 1 and 2 threads
            memory     resident bytes per idle 16 MiB machine
            reset      reset + run to HLT, 1/16/256 dirty pages, 16 MiB/256 MiB/1 GiB, vs the C reference
            reset-rate reset cycles per second, 1 and 2 threads
            restore    a 64 MiB snapshot file restored into a new machine vs booting fresh
            snapshot   capturing a 64 MiB machine
            restored-memory  resident bytes per machine: 100 restored from one snapshot vs 100 fresh
            calls      a call into the guest (host->guest) and a host function inside one (guest->host) vs C
            call-rate  calls per second, 1 and 2 threads
            first-byte boot to the first console byte: swifthello64 (Embedded Swift) vs hello64 (assembly)
            all        every group above (the default)
    spawn: whole-process timing without hyperfine: fork/exec COMMAND (stdout to /dev/null) and wait, repeatedly;
           --raw prints each time (ns) on its own line instead of the summary line.

    Output: TSV lines  group case impl param unit median min max runs note  (times in ns).
    --guests DIR  where hello64.bin, hello32.bin, outloop64.bin are (default: Guests, then ../Guests)
    --size SIZE   setup / translate: only this size (e.g. 1G, 4K); --only TEXT: only cases containing TEXT
                  (handy under valgrind --tool=callgrind)
    """

var groups: [String] = []
var guests: String? = nil
var spawnCase: String? = nil
var spawnImpl = "swift"
var spawnCommand: [String] = []
var arguments = Array(CommandLine.arguments.dropFirst())
var index = 0
while index < arguments.count {
    let argument = arguments[index]
    func value() -> String {
        index += 1
        guard index < arguments.count else { Harness.fail("\(argument) needs a value") }
        return arguments[index]
    }
    switch argument {
    case "--quick": Harness.quick = true
    case "--runs":
        guard let n = Int(value()), n > 0 else { Harness.fail("--runs needs a positive number") }
        Harness.runsOverride = n
    case "--guests": guests = value()
    case "--size":
        let text = value()
        guard let size = parseSize(text) else { Harness.fail("--size: bad size \(text)") }
        Harness.onlySize = size
    case "--only": Harness.onlyCase = value()
    case "--case": spawnCase = value()
    case "--impl": spawnImpl = value()
    case "--warmup":
        guard let n = Int(value()), n >= 0 else { Harness.fail("--warmup needs a number") }
        Spawn.warmupOverride = n
    case "--raw": Spawn.raw = true
    case "--":
        spawnCommand = Array(arguments[(index + 1)...])
        index = arguments.count
    case "-h", "--help":
        print(usage)
        exit(0)
    default:
        if argument.hasPrefix("-") { Harness.fail("unknown option \(argument)\n\(usage)") }
        groups.append(argument)
    }
    index += 1
}
if groups.isEmpty || groups == ["all"] {
    groups = [
        "setup", "translate", "spaces", "boot", "exits", "rate", "memory", "reset", "reset-rate", "restore",
        "snapshot", "restored-memory", "calls", "call-rate", "first-byte",
    ]
}

/// Where the guests are (looked up only by the groups that boot one).
@MainActor func guestDirectory() -> String {
    if let guests { return guests }
    for candidate in ["Guests", "../Guests"] where access(candidate + "/hello64.bin", R_OK) == 0 { return candidate }
    Harness.fail("cannot find the guests (pass --guests DIR)")
}

for group in groups {
    switch group {
    case "setup": PageTableBench.run(setup: true, translate: false)
    case "translate": PageTableBench.run(setup: false, translate: true)
    case "spaces": PageTableBench.run(setup: false, translate: false, spaces: true)
    case "pagetable": PageTableBench.run(setup: true, translate: true, spaces: true)
    case "boot": MachineBench.boot(guests: guestDirectory())
    case "exits": MachineBench.exits(guests: guestDirectory())
    case "rate": MachineBench.rate(guests: guestDirectory())
    case "memory": MachineBench.memory(guests: guestDirectory())
    case "reset": ResetBench.reset(guests: guestDirectory())
    case "reset-rate": ResetBench.rate(guests: guestDirectory())
    case "restore": ResetBench.restore(guests: guestDirectory())
    case "snapshot": ResetBench.snapshot(guests: guestDirectory())
    case "restored-memory": ResetBench.restoredMemory(guests: guestDirectory())
    case "calls": CallBench.calls(guests: guestDirectory())
    case "call-rate": CallBench.rate(guests: guestDirectory())
    case "first-byte": MachineBench.firstByte(guests: guestDirectory())
    case "spawn":
        guard !spawnCommand.isEmpty else { Harness.fail("spawn needs -- COMMAND") }
        Spawn.run(case: spawnCase ?? "process", impl: spawnImpl, command: spawnCommand)
    default: Harness.fail("unknown group \(group)\n\(usage)")
    }
}

/// `4096`, `4K`, `2M`, `1G`.
func parseSize(_ text: String) -> UInt64? {
    guard let last = text.last else { return nil }
    let shift: UInt64 =
        switch last {
        case "K", "k": 10
        case "M", "m": 20
        case "G", "g": 30
        default: 0
        }
    guard let number = UInt64(shift == 0 ? text : String(text.dropLast())) else { return nil }
    return number << shift
}
