import EchodSystem
import Glibc
import Testing

/// The password and group database lookups a privilege drop starts with (the drop itself is tested in a child
/// process by EchodDaemonTests' PrivilegeDropTests).
@Suite("User lookup")
struct CredentialsTests {
    @Test func rootIsUidZeroInGroupZero() throws {
        let root = try #require(try Syscall.lookUpUser("root"))
        #expect(root.name == "root" && root.uid == 0 && root.gid == 0)
        #expect(root.groups.first == 0, "getgrouplist puts the primary group first: \(root.groups)")
    }

    /// Every Debian system has `nobody` (65534) in `nogroup` (65534); what the e2e tests switch to.
    @Test func nobodyHasItsOwnIDsAndItsPrimaryGroup() throws {
        let nobody = try #require(try Syscall.lookUpUser("nobody"))
        #expect(nobody.uid == 65534 && nobody.gid == 65534)
        #expect(nobody.groups.contains(nobody.gid))
    }

    @Test(arguments: ["echod-no-such-user", "Root", "root ", ""])
    func unknownUserIsNil(name: String) throws {
        #expect(try Syscall.lookUpUser(name) == nil)
    }

    @Test func idsOfThisProcess() {
        let ids = Syscall.userIDs()
        #expect(ids.real == getuid() && ids.effective == geteuid() && ids.group == getgid() && ids.effectiveGroup == getegid())
    }
}
