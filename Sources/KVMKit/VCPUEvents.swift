internal import CKVM

/// The vCPU's pending and in-flight events: an exception, an interrupt, an NMI, SMI state, the interrupt
/// shadow. What `KVM_GET_VCPU_EVENTS` reports and `KVM_SET_VCPU_EVENTS` restores; a snapshot needs it to
/// resume a vCPU stopped between an event's delivery steps.
///
/// The kernel type is `struct kvm_vcpu_events`. Byte encoding (64 bytes, its layout): exception at 0
/// (injected, nr, has_error_code, pending: u8; error_code: u32 at 4), interrupt at 8 (injected, nr, soft,
/// shadow: u8), nmi at 12 (injected, pending, masked, pad: u8), sipi_vector u32 at 16, flags u32 at 20,
/// smi at 24 (smm, pending, smm_inside_nmi, latched_init: u8), triple_fault.pending u8 at 28, reserved
/// up to 55, exception_has_payload u8 at 55, exception_payload u64 at 56.
public struct VCPUEvents: Hashable, Sendable, KVMByteEncodable {
    /// An exception being delivered or pending.
    public struct Exception: Hashable, Sendable {
        /// The exception is being delivered (its injection was interrupted by the exit).
        public var injected = false
        /// The vector (0-31).
        public var vector: UInt8 = 0
        /// `errorCode` is meaningful.
        public var hasErrorCode = false
        /// The exception is pending: recognised but not yet delivered (needs `KVM_CAP_EXCEPTION_PAYLOAD`).
        public var pending = false
        /// The error code pushed with it.
        public var errorCode: UInt32 = 0
        /// Makes an exception record; all fields zero by default.
        public init(
            injected: Bool = false, vector: UInt8 = 0, hasErrorCode: Bool = false, pending: Bool = false,
            errorCode: UInt32 = 0
        ) {
            self.injected = injected
            self.vector = vector
            self.hasErrorCode = hasErrorCode
            self.pending = pending
            self.errorCode = errorCode
        }
    }

    /// An external interrupt being delivered, and the interrupt shadow.
    public struct Interrupt: Hashable, Sendable {
        /// The interrupt is being delivered.
        public var injected = false
        /// The vector.
        public var vector: UInt8 = 0
        /// A software interrupt (`INT n`).
        public var soft = false
        /// The interrupt shadow: 1 after `MOV SS` / `POP SS`, 2 after `STI` (`KVM_X86_SHADOW_INT_*`).
        public var shadow: UInt8 = 0
        /// Makes an interrupt record; all fields zero by default.
        public init(injected: Bool = false, vector: UInt8 = 0, soft: Bool = false, shadow: UInt8 = 0) {
            self.injected = injected
            self.vector = vector
            self.soft = soft
            self.shadow = shadow
        }
    }

    /// Non-maskable interrupt state.
    public struct NMI: Hashable, Sendable {
        /// An NMI is being delivered.
        public var injected = false
        /// An NMI is pending.
        public var pending = false
        /// NMIs are blocked (an NMI handler is running).
        public var masked = false
        /// Makes an NMI record; all fields false by default.
        public init(injected: Bool = false, pending: Bool = false, masked: Bool = false) {
            self.injected = injected
            self.pending = pending
            self.masked = masked
        }
    }

    /// System-management-mode state.
    public struct SMI: Hashable, Sendable {
        /// The vCPU is in SMM.
        public var smm = false
        /// An SMI is pending.
        public var pending = false
        /// SMM was entered from inside an NMI handler.
        public var smmInsideNMI = false
        /// An INIT was latched while in SMM.
        public var latchedInit = false
        /// Makes an SMI record; all fields false by default.
        public init(smm: Bool = false, pending: Bool = false, smmInsideNMI: Bool = false, latchedInit: Bool = false) {
            self.smm = smm
            self.pending = pending
            self.smmInsideNMI = smmInsideNMI
            self.latchedInit = latchedInit
        }
    }

    /// Which optional groups `KVM_SET_VCPU_EVENTS` should apply (`KVM_VCPUEVENT_VALID_*`).
    public struct Valid: OptionSet, Hashable, Sendable {
        /// The `KVM_VCPUEVENT_VALID_*` bits.
        public var rawValue: UInt32
        /// Makes a set from its bits.
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `nmi.pending` (`KVM_VCPUEVENT_VALID_NMI_PENDING`).
        public static let nmiPending = Self(rawValue: 1 << 0)
        /// `sipiVector` (`KVM_VCPUEVENT_VALID_SIPI_VECTOR`).
        public static let sipiVector = Self(rawValue: 1 << 1)
        /// `interrupt.shadow` (`KVM_VCPUEVENT_VALID_SHADOW`).
        public static let shadow = Self(rawValue: 1 << 2)
        /// `smi` (`KVM_VCPUEVENT_VALID_SMM`).
        public static let smm = Self(rawValue: 1 << 3)
        /// The exception payload fields (`KVM_VCPUEVENT_VALID_PAYLOAD`).
        public static let payload = Self(rawValue: 1 << 4)
        /// `tripleFaultPending` (`KVM_VCPUEVENT_VALID_TRIPLE_FAULT`).
        public static let tripleFault = Self(rawValue: 1 << 5)
    }

    /// The exception being delivered or pending.
    public var exception = Exception()
    /// The interrupt being delivered, and the interrupt shadow.
    public var interrupt = Interrupt()
    /// NMI state.
    public var nmi = NMI()
    /// The start-up IPI vector (for application processors waiting for SIPI).
    public var sipiVector: UInt32 = 0
    /// Which optional groups are valid (`kvm_vcpu_events.flags`).
    public var valid: Valid = []
    /// SMM state.
    public var smi = SMI()
    /// A triple fault is pending (needs `KVM_CAP_X86_TRIPLE_FAULT_EVENT`).
    public var tripleFaultPending = false
    /// `exceptionPayload` is meaningful (CR2 for #PF, DR6 bits for #DB).
    public var exceptionHasPayload = false
    /// The exception's payload.
    public var exceptionPayload: UInt64 = 0

    /// No events.
    public init() {}

    /// The size of the encoding: `sizeof(struct kvm_vcpu_events)`.
    public static let byteCount = 64

    /// Decodes the 64-byte encoding (`struct kvm_vcpu_events`), or returns `nil` for a buffer of another length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self = decodeBytes(bytes) { Self(reading: &$0) }
    }

    /// The 64-byte encoding, laid out as `struct kvm_vcpu_events`.
    public var bytes: [UInt8] { encodeBytes(count: Self.byteCount) { write(to: &$0) } }

    init(reading r: inout ByteReader) {
        exception = Exception(
            injected: r.readBool(), vector: r.read(), hasErrorCode: r.readBool(), pending: r.readBool(),
            errorCode: r.read())
        interrupt = Interrupt(injected: r.readBool(), vector: r.read(), soft: r.readBool(), shadow: r.read())
        nmi = NMI(injected: r.readBool(), pending: r.readBool(), masked: r.readBool())
        r.skip(1)
        sipiVector = r.read()
        valid = Valid(rawValue: r.read())
        smi = SMI(smm: r.readBool(), pending: r.readBool(), smmInsideNMI: r.readBool(), latchedInit: r.readBool())
        tripleFaultPending = r.readBool()
        r.skip(26)
        exceptionHasPayload = r.readBool()
        exceptionPayload = r.read()
    }

    func write(to w: inout ByteWriter) {
        w.write(exception.injected); w.write(exception.vector); w.write(exception.hasErrorCode)
        w.write(exception.pending); w.write(exception.errorCode)
        w.write(interrupt.injected); w.write(interrupt.vector); w.write(interrupt.soft); w.write(interrupt.shadow)
        w.write(nmi.injected); w.write(nmi.pending); w.write(nmi.masked); w.skip(1)
        w.write(sipiVector)
        w.write(valid.rawValue)
        w.write(smi.smm); w.write(smi.pending); w.write(smi.smmInsideNMI); w.write(smi.latchedInit)
        w.write(tripleFaultPending)
        w.skip(26)
        w.write(exceptionHasPayload)
        w.write(exceptionPayload)
    }

    init(_ kernel: kvm_vcpu_events) {
        self = decodeKernel(kernel) { Self(reading: &$0) }
    }

    var kernelValue: kvm_vcpu_events {
        var kernel = kvm_vcpu_events()
        encodeKernel(&kernel) { write(to: &$0) }
        return kernel
    }
}
