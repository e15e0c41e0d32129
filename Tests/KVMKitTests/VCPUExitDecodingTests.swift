import CKVM
import Testing

@testable import KVMKit

/// A fake `kvm_run` mapping: two pages, `kvm_run` at the start and the I/O data area at the second page,
/// where the kernel puts it.
private final class FakeRun {
    static let size = 8192
    static let dataOffset = 4096
    let base: UnsafeMutableRawPointer

    init() {
        // SAFETY: a fresh allocation, zeroed before use and freed in deinit; page alignment mirrors mmap.
        base = UnsafeMutableRawPointer.allocate(byteCount: Self.size, alignment: 4096)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: Self.size)
    }

    deinit { base.deallocate() }

    /// The buffer as the kernel struct.
    var run: UnsafeMutablePointer<kvm_run> {
        // SAFETY: the buffer is aligned and large enough for kvm_run, a trivial C struct.
        base.assumingMemoryBound(to: kvm_run.self)
    }

    func io(direction: Int32, size: UInt8, port: UInt16, count: UInt32, data: [UInt8] = []) -> VCPUExit {
        run.pointee.exit_reason = UInt32(KVM_EXIT_IO)
        run.pointee.io.direction = UInt8(direction)
        run.pointee.io.size = size
        run.pointee.io.port = port
        run.pointee.io.count = count
        run.pointee.io.data_offset = UInt64(Self.dataOffset)
        // SAFETY: the data area has room for the few bytes the tests write.
        for (index, byte) in data.enumerated() {
            base.storeBytes(of: byte, toByteOffset: Self.dataOffset + index, as: UInt8.self)
        }
        return decode()
    }

    func decode() -> VCPUExit {
        VCPUExit(decoding: UnsafeRawPointer(base), mappingSize: Self.size)
    }
}

@Suite("VCPUExit decoding from kvm_run")
struct VCPUExitDecodingTests {
    @Test("a single OUT carries the value, little-endian, at its size")
    func ioOut() {
        let fake = FakeRun()
        #expect(
            fake.io(direction: KVM_EXIT_IO_OUT, size: 1, port: 0x3F8, count: 1, data: [0x68])
                == .ioOut(port: 0x3F8, size: 1, value: 0x68))
        #expect(
            fake.io(direction: KVM_EXIT_IO_OUT, size: 2, port: 0xF4, count: 1, data: [0x34, 0x12])
                == .ioOut(port: 0xF4, size: 2, value: 0x1234))
        #expect(
            fake.io(direction: KVM_EXIT_IO_OUT, size: 4, port: 0x510, count: 1, data: [0xEF, 0xBE, 0xAD, 0xDE])
                == .ioOut(port: 0x510, size: 4, value: 0xDEAD_BEEF))
    }

    @Test("REP OUTS copies every byte")
    func ioOutString() {
        let fake = FakeRun()
        #expect(
            fake.io(direction: KVM_EXIT_IO_OUT, size: 1, port: 0x3F8, count: 3, data: [0x61, 0x62, 0x63])
                == .ioOutString(port: 0x3F8, size: 1, bytes: [0x61, 0x62, 0x63]))
        #expect(
            fake.io(direction: KVM_EXIT_IO_OUT, size: 2, port: 0x3F8, count: 2, data: [1, 2, 3, 4])
                == .ioOutString(port: 0x3F8, size: 2, bytes: [1, 2, 3, 4]))
    }

    @Test("IN and REP INS are decoded with their size and count")
    func ioIn() {
        let fake = FakeRun()
        #expect(fake.io(direction: KVM_EXIT_IO_IN, size: 1, port: 0x60, count: 1) == .ioIn(port: 0x60, size: 1))
        #expect(
            fake.io(direction: KVM_EXIT_IO_IN, size: 2, port: 0x3F8, count: 4)
                == .ioInString(port: 0x3F8, size: 2, count: 4))
    }

    @Test("an emulation failure carries the instruction bytes when KVM reports them")
    func emulationFailure() {
        let fake = FakeRun()
        fake.run.pointee.exit_reason = UInt32(KVM_EXIT_INTERNAL_ERROR)
        fake.run.pointee.internal.suberror = UInt32(KVM_INTERNAL_ERROR_EMULATION)
        fake.run.pointee.internal.ndata = 1
        #expect(fake.decode() == .emulationFailure(instructionBytes: nil))
        // flags = INSTRUCTION_BYTES, then the size byte and the bytes of `pxor %xmm0, %xmm0`.
        fake.run.pointee.internal.ndata = 3
        fake.run.pointee.internal.data.0 = UInt64(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)
        fake.run.pointee.internal.data.1 = 0xC0_EF_0F_66_04
        #expect(fake.decode() == .emulationFailure(instructionBytes: [0x66, 0x0F, 0xEF, 0xC0]))
        #expect(
            VCPUExit.emulationFailure(instructionBytes: [0x66, 0x0F, 0xEF, 0xC0]).description
                == "emulation failure, instruction bytes 66 0f ef c0")
    }

    @Test("MMIO writes carry the value, reads carry nil")
    func mmio() {
        let fake = FakeRun()
        fake.run.pointee.exit_reason = UInt32(KVM_EXIT_MMIO)
        fake.run.pointee.mmio.phys_addr = 0xFEE0_0030
        fake.run.pointee.mmio.len = 4
        fake.run.pointee.mmio.is_write = 1
        fake.run.pointee.mmio.data = (0x78, 0x56, 0x34, 0x12, 0xFF, 0xFF, 0xFF, 0xFF)
        #expect(fake.decode() == .mmio(address: 0xFEE0_0030, size: 4, writeValue: 0x1234_5678))
        fake.run.pointee.mmio.is_write = 0
        #expect(fake.decode() == .mmio(address: 0xFEE0_0030, size: 4, writeValue: nil))
    }

    @Test("payload-free and small-payload exits")
    func simpleExits() {
        let fake = FakeRun()
        func decode(_ reason: Int32) -> VCPUExit {
            fake.run.pointee.exit_reason = UInt32(reason)
            return fake.decode()
        }
        #expect(decode(KVM_EXIT_HLT) == .halt)
        #expect(decode(KVM_EXIT_SHUTDOWN) == .shutdown)
        #expect(decode(KVM_EXIT_DIRTY_RING_FULL) == .dirtyRingFull)
        #expect(decode(KVM_EXIT_INTR) == .interrupted)
        fake.run.pointee.fail_entry.hardware_entry_failure_reason = 0x21
        #expect(decode(KVM_EXIT_FAIL_ENTRY) == .failedEntry(hardwareReason: 0x21))
        fake.run.pointee.internal.suberror = 3
        #expect(decode(KVM_EXIT_INTERNAL_ERROR) == .internalError(suberror: 3))
        fake.run.pointee.system_event.type = 2
        #expect(decode(KVM_EXIT_SYSTEM_EVENT) == .systemEvent(type: 2))
        #expect(decode(KVM_EXIT_HYPERCALL) == .unsupported(reason: 3))
        #expect(decode(KVM_EXIT_X86_RDMSR) == .unsupported(reason: 29))
    }

    @Test("a debug exit carries kvm_debug_exit_arch")
    func debug() {
        let fake = FakeRun()
        fake.run.pointee.exit_reason = UInt32(KVM_EXIT_DEBUG)
        fake.run.pointee.debug.arch = kvm_debug_exit_arch(
            exception: 1, pad: 0, pc: 0x1002, dr6: 0xFFFF_4FF0, dr7: 0x400)
        #expect(fake.decode() == .debug(DebugExit(exception: 1, pc: 0x1002, dr6: 0xFFFF_4FF0, dr7: 0x400)))
    }

    @Test("descriptions are one short line for --trace")
    func descriptions() {
        #expect(VCPUExit.ioOut(port: 0x3F8, size: 1, value: 0x68).description == "io out port 0x3f8 size 1 value 0x68")
        #expect(
            VCPUExit.ioOutString(port: 0x3F8, size: 2, bytes: [1, 2, 3, 4]).description
                == "io out string port 0x3f8 size 2 count 2")
        #expect(VCPUExit.ioIn(port: 0x60, size: 1).description == "io in port 0x60 size 1")
        #expect(
            VCPUExit.mmio(address: 0xFEE0_0000, size: 4, writeValue: nil).description
                == "mmio read address 0xfee00000 size 4")
        #expect(
            VCPUExit.mmio(address: 0x1000, size: 8, writeValue: 0xAB).description
                == "mmio write address 0x1000 size 8 value 0xab")
        #expect(VCPUExit.halt.description == "hlt")
        #expect(VCPUExit.shutdown.description == "shutdown (triple fault)")
        #expect(VCPUExit.failedEntry(hardwareReason: 0x21).description == "failed entry, hardware reason 0x21")
        #expect(VCPUExit.internalError(suberror: 3).description == "internal error, suberror 3")
        #expect(VCPUExit.systemEvent(type: 2).description == "system event type 2")
        #expect(
            VCPUExit.debug(DebugExit(exception: 3, pc: 0x1004, dr6: 0xFFFF_0FF0, dr7: 0)).description
                == "debug exception 3 pc 0x1004 dr6 0xffff0ff0")
        #expect(VCPUExit.dirtyRingFull.description == "dirty ring full")
        #expect(VCPUExit.interrupted.description == "interrupted")
        #expect(VCPUExit.unsupported(reason: 29).description == "unsupported exit reason 29")
    }
}
