/// The result of translating one guest-virtual address (`struct kvm_translation`).
public struct Translation: Hashable, Sendable {
    /// The guest-physical address, meaningful when ``valid``.
    public var physicalAddress: UInt64
    /// Whether the address is mapped.
    public var valid: Bool
    /// Whether the mapping allows writes.
    public var writeable: Bool
    /// Whether the mapping is accessible from user mode (CPL 3).
    public var usermode: Bool

    /// Makes a translation from its fields.
    public init(physicalAddress: UInt64, valid: Bool, writeable: Bool, usermode: Bool) {
        self.physicalAddress = physicalAddress
        self.valid = valid
        self.writeable = writeable
        self.usermode = usermode
    }
}
