import GDBRemote
import Glibc
import KVMKit
import MicroVM
import MicroVMDebug

// `--gdb`: the machine is served to one gdb before its first instruction (README "Debugging guests").

/// Listens on `endpoint`, says where on standard error, serves one gdb, and ends the command as the session
/// ended: with the guest's own status when it exited, with the usual line when it failed, with one line and
/// 137 when gdb killed it, 129 when gdb went away first. Returns only when gdb detached: the guest, out of
/// debug mode with every breakpoint removed, then runs on as without a debugger.
///
/// - Parameter beforeExit: what the command prints at its end before it exits from here (`--dump-tables`).
func serveDebugger(_ machine: Machine, at endpoint: GDBEndpoint, beforeExit: () -> Void) {
    let server: GDBServer
    do throws(GDBServerError) {
        server = try GDBServer(endpoint: endpoint)
    } catch {
        fail(error.description, status: 2)
    }
    let target: MachineDebugTarget
    do throws(KVMError) {
        target = try MachineDebugTarget(machine: machine)
    } catch {
        fail("cannot debug the guest: \(error)", status: 3)
    }
    TerminationSignals.debugging()
    writeStandardError("microvm: waiting for gdb on \(server.endpoint)\n")
    let end: GDBSessionEnd
    do throws(GDBServerError) {
        end = try server.serve(target)
    } catch {
        fail(error.description, status: 2)
    }
    if target.end != nil || end != .detached { beforeExit() }
    // gdb has been told how the guest ended (W, X, or a signal stop before it left): now the usual line.
    switch target.end {
    case .success(let outcome)?:
        TerminationSignals.finishing()
        exit(outcome.exitStatus)
    case .failure(let error)?:
        fail(error.description, status: error.exitStatus)
    case nil:
        // Detached from a guest that has not ended: it runs on as without a debugger.
        if case .detached = end { return }
    }
    let place =
        "at RIP \(hex(machine.currentRegisters.rip)) after \(machine.exitCount) exit\(machine.exitCount == 1 ? "" : "s")"
    switch end {
    case .killed:
        fail("gdb killed the guest \(place)", status: 137)
    case .transportFailed(let error):
        fail("the connection to gdb failed (\(error)) before the guest ended: it was stopped \(place)", status: 129)
    default:
        fail("gdb disconnected before the guest ended: it was stopped \(place)", status: 129)
    }
}
