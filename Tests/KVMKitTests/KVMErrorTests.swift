import Glibc
import KVMKit
import Testing

@Suite("KVMError")
struct KVMErrorTests {
    @Test("a failed call names the request, the C library's text and the errno")
    func callFailedDescription() {
        let error = KVMError.callFailed(call: "KVM_SET_SREGS", errno: EINVAL)
        #expect(error.description == "KVM_SET_SREGS failed: Invalid argument (errno 22)")
        #expect(error.errno == 22)
    }

    @Test("a device that cannot be opened names the path")
    func cannotOpenDescription() {
        let error = KVMError.cannotOpen(path: "/dev/kvm", errno: ENOENT)
        #expect(error.description == "cannot open /dev/kvm: No such file or directory (errno 2)")
    }

    @Test("a wrong API version says what was found and what is needed")
    func versionDescription() {
        let error = KVMError.unsupportedAPIVersion(got: 11, need: 12)
        #expect(error.description == "unsupported KVM API version 11 (need 12)")
        #expect(error.errno == nil)
    }

    @Test("opening a missing device throws cannotOpen with ENOENT")
    func missingDevice() {
        #expect(throws: KVMError.cannotOpen(path: "/nonexistent/kvm", errno: ENOENT)) {
            _ = try KVMSystem(path: "/nonexistent/kvm")
        }
        #expect(!KVMSystem.isUsable(path: "/nonexistent/kvm"))
    }

    @Test("a device that is not KVM fails the API-version query")
    func notKVM() {
        // /dev/null opens read-write but answers every ioctl with ENOTTY.
        #expect(throws: KVMError.callFailed(call: "KVM_GET_API_VERSION", errno: ENOTTY)) {
            _ = try KVMSystem(path: "/dev/null")
        }
    }
}
