@preconcurrency import Glibc

/// Whole-process timing without hyperfine: posix_spawn the command (stdout and stderr to /dev/null),
/// wait for it, repeat; the time is spawn -> reaped, like hyperfine's `--shell=none`.
enum Spawn {
    /// Warm-up runs (not timed); `--warmup`.
    nonisolated(unsafe) static var warmupOverride: Int? = nil
    /// Print every time (ns, one a line) instead of the summary line; `--raw`.
    nonisolated(unsafe) static var raw = false

    static func run(case name: String, impl: String, command: [String]) {
        let runs = Harness.runs(200, quick: 20)
        let warmup = warmupOverride ?? (Harness.quick ? 3 : 10)
        var times: [Double] = []
        for i in 0..<(warmup + runs) {
            let start = Harness.now()
            let status = spawnAndWait(command)
            let end = Harness.now()
            guard status == 0 else { Harness.fail("\(command.joined(separator: " ")) exited with \(status)") }
            if i >= warmup { times.append(Double(end - start)) }
        }
        if raw {
            for time in times { print(Int64(time)) }
            return
        }
        Harness.emit(
            group: "process", case: name, impl: impl, unit: "ns", Harness.summarize(times),
            note: "posix_spawn loop")
    }

    static func spawnAndWait(_ command: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid = pid_t()
        let rc = posix_spawnp(&pid, command[0], &actions, nil, &argv, environ)
        guard rc == 0 else { Harness.fail("cannot start \(command[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { Harness.fail("waitpid failed") }
        }
        // WIFEXITED / WEXITSTATUS by hand (macros do not import).
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}
