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
        #expect(CKVM_GET_MSR_INDEX_LIST == 0xC004_AE02)  // _IOWR, sizeof(kvm_msr_list) = 4
    }

    @Test("VM requests")
    func vmRequests() {
        #expect(CKVM_SET_USER_MEMORY_REGION == 0x4020_AE46)  // _IOW, 32 bytes
        #expect(CKVM_CREATE_VCPU == 0xAE41)
        #expect(CKVM_SET_TSS_ADDR == 0xAE47)
        #expect(CKVM_ENABLE_CAP == 0x4068_AEA3)  // _IOW, sizeof(kvm_enable_cap) = 104
        #expect(CKVM_GET_DIRTY_LOG == 0x4010_AE42)  // _IOW, 16 bytes
        #expect(CKVM_CLEAR_DIRTY_LOG == 0xC018_AEC0)  // _IOWR, 24 bytes
        #expect(CKVM_RESET_DIRTY_RINGS == 0xAEC7)
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
        #expect(CKVM_GET_XSAVE == 0x9000_AEA4)  // _IOR, sizeof(kvm_xsave) = 4096
        #expect(CKVM_GET_XSAVE2 == 0x9000_AECF)
        #expect(CKVM_SET_XSAVE == 0x5000_AEA5)
        #expect(CKVM_GET_XCRS == 0x8188_AEA6)  // _IOR, sizeof(kvm_xcrs) = 392
        #expect(CKVM_SET_XCRS == 0x4188_AEA7)
        #expect(CKVM_GET_MSRS == 0xC008_AE88)  // _IOWR, sizeof(kvm_msrs) = 8
        #expect(CKVM_SET_MSRS == 0x4008_AE89)
        #expect(CKVM_GET_VCPU_EVENTS == 0x8040_AE9F)  // _IOR, sizeof(kvm_vcpu_events) = 64
        #expect(CKVM_SET_VCPU_EVENTS == 0x4040_AEA0)
        #expect(CKVM_GET_FPU == 0x81A0_AE8C)  // _IOR, sizeof(kvm_fpu) = 416
        #expect(CKVM_SET_FPU == 0x41A0_AE8D)
        #expect(CKVM_GET_DEBUGREGS == 0x8080_AEA1)  // _IOR, sizeof(kvm_debugregs) = 128
        #expect(CKVM_SET_DEBUGREGS == 0x4080_AEA2)
        #expect(CKVM_SET_GUEST_DEBUG == 0x4048_AE9B)  // _IOW, sizeof(kvm_guest_debug) = 72
    }

    @Test("flags and structure sizes the codes encode")
    func flagsAndSizes() {
        #expect(CKVM_MEM_READONLY == 0x2)
        #expect(CKVM_MEM_LOG_DIRTY_PAGES == 0x1)
        #expect(CKVM_DIRTY_GFN_F_DIRTY == 0x1 && CKVM_DIRTY_GFN_F_RESET == 0x2)
        #expect(CKVM_DIRTY_LOG_PAGE_OFFSET == 64)
        #expect(MemoryLayout<kvm_dirty_gfn>.stride == 16)
        #expect(MemoryLayout<kvm_run>.offset(of: \kvm_run.s) == 0x130)
        #expect(MemoryLayout<kvm_sync_regs>.size == 144 + 312 + 64)
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
        #expect(KVMRequest.getXSave2.name == "KVM_GET_XSAVE2")
        #expect(KVMRequest.resetDirtyRings.code == CKVM_RESET_DIRTY_RINGS)
        #expect(KVMRequest.setGuestDebug.name == "KVM_SET_GUEST_DEBUG")
    }

    @Test("capability numbers")
    func capabilities() {
        #expect(KVMCapability.userMemory.rawValue == 3)
        #expect(KVMCapability.nrMemslots.rawValue == 10)
        #expect(KVMCapability.setGuestDebug.rawValue == 23)
        #expect(KVMCapability.readonlyMem.rawValue == 81)
        #expect(KVMCapability.immediateExit.rawValue == 136)
        #expect(KVMCapability.vcpuEvents.rawValue == 41)
        #expect(KVMCapability.debugRegs.rawValue == 50)
        #expect(KVMCapability.enableCap.rawValue == 54)
        #expect(KVMCapability.xsave.rawValue == 55)
        #expect(KVMCapability.xcrs.rawValue == 56)
        #expect(KVMCapability.syncRegs.rawValue == 74)
        #expect(KVMCapability.enableCapVM.rawValue == 98)
        #expect(KVMCapability.manualDirtyLogProtect2.rawValue == 168)
        #expect(KVMCapability.dirtyLogRing.rawValue == 192)
        #expect(KVMCapability.xsave2.rawValue == 208)
        #expect(KVMCapability.dirtyLogRingAcqRel.rawValue == 223)
    }
}
