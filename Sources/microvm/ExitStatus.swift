import MicroVM

// The command line's exit statuses (README, "Exit status and errors"): the library reports what happened,
// this file decides what the process says about it.

extension RunOutcome {
    /// 0 after `hlt`; the guest's own status after a write to the exit port.
    var exitStatus: Int32 {
        switch self {
        case .halted, .snapshotRequested, .ready, .returned, .debugStop: 0
        case .exited(let status): Int32(status)
        }
    }
}

extension MachineError {
    /// 3 when the host's KVM is missing, unusable or cannot run the mode; 2 for a configuration mistake.
    var exitStatus: Int32 {
        switch self {
        case .kvmUnavailable, .kvmFailed, .pagingModeUnsupported: 3
        default: 2
        }
    }
}

extension SnapshotError {
    /// 3 when KVM fails or the host cannot take the snapshot; 2 for a bad snapshot file, or a state in it
    /// that KVM refuses.
    var exitStatus: Int32 {
        switch self {
        case .invalidFile, .stateRefused: 2
        case .machineFailed(let error): error.exitStatus
        default: 3
        }
    }
}

extension RunError {
    /// 125 the guest failed, 124 timeout, 74 console output lost, 3 KVM failed, 130 interrupted.
    var exitStatus: Int32 {
        switch self {
        case .fault, .deviceFailed, .needsReset, .dirtyTrackingLost: 125
        case .timeout: 124
        case .consoleFailed: 74
        case .kvmFailed: 3
        case .interrupted: 130
        }
    }
}
