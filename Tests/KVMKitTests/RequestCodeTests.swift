import CKVM
import Testing

@testable import KVMKit

/// The shim's request codes are computed by the C compiler from <linux/kvm.h>; these pin them to the
/// kernel ABI (`_IOC(dir, 0xAE, nr, size)`), so a header or import mistake cannot go unnoticed.
@Suite("Request codes match the kernel ABI")
struct RequestCodeTests {
    @Test("system requests")
    func systemRequests() {
        #expect(CKVM_GET_API_VERSION == 0xAE00)
        #expect(CKVM_CREATE_VM == 0xAE01)
        #expect(CKVM_CHECK_EXTENSION == 0xAE03)
        #expect(CKVM_GET_VCPU_MMAP_SIZE == 0xAE04)
        #expect(CKVM_GET_SUPPORTED_CPUID == 0xC008_AE05)  // _IOWR, sizeof(kvm_cpuid2) = 8
    }

    @Test("VM requests")
    func vmRequests() {
        #expect(CKVM_SET_USER_MEMORY_REGION == 0x4020_AE46)  // _IOW, 32 bytes
        #expect(CKVM_CREATE_VCPU == 0xAE41)
        #expect(CKVM_SET_TSS_ADDR == 0xAE47)
    }

    @Test("vCPU requests")
    func vcpuRequests() {
        #expect(CKVM_RUN == 0xAE80)
        #expect(CKVM_GET_REGS == 0x8090_AE81)  // _IOR, sizeof(kvm_regs) = 144
        #expect(CKVM_SET_REGS == 0x4090_AE82)
        #expect(CKVM_GET_SREGS == 0x8138_AE83)  // _IOR, sizeof(kvm_sregs) = 312
        #expect(CKVM_SET_SREGS == 0x4138_AE84)
        #expect(CKVM_TRANSLATE == 0xC018_AE85)  // _IOWR, 24 bytes
        #expect(CKVM_SET_SIGNAL_MASK == 0x4004_AE8B)
        #expect(CKVM_SET_CPUID2 == 0x4008_AE90)
    }

    @Test("flags and structure sizes the codes encode")
    func flagsAndSizes() {
        #expect(CKVM_MEM_READONLY == 0x2)
        #expect(MemoryLayout<kvm_regs>.size == 144)
        #expect(MemoryLayout<kvm_sregs>.size == 312)
        #expect(MemoryLayout<kvm_translation>.size == 24)
        #expect(MemoryLayout<kvm_userspace_memory_region>.size == 32)
        #expect(MemoryLayout<kvm_cpuid2>.size == 8)
        #expect(MemoryLayout<kvm_cpuid_entry2>.stride == 40)
    }

    @Test("the request table names each request as the kernel does")
    func requestNames() {
        #expect(KVMRequest.run.code == CKVM_RUN)
        #expect(KVMRequest.run.name == "KVM_RUN")
        #expect(KVMRequest.setSpecialRegisters.name == "KVM_SET_SREGS")
        #expect(KVMRequest.createVM.name == "KVM_CREATE_VM")
    }

    @Test("capability numbers")
    func capabilities() {
        #expect(KVMCapability.userMemory.rawValue == 3)
        #expect(KVMCapability.nrMemslots.rawValue == 10)
        #expect(KVMCapability.setGuestDebug.rawValue == 23)
        #expect(KVMCapability.readonlyMem.rawValue == 81)
        #expect(KVMCapability.immediateExit.rawValue == 136)
    }
}
