// libFuzzer target: the handover state codec (Fuzz/README.md). The input is the bytes of an `echod-state` memfd, read
// by `HandoverState.decode` with two pending bounds: the largest `limits.max_pending_bytes` (1 GiB) and 64 bytes.
// Properties: decode returns or throws for any input; what it accepts holds no inode twice and no prefix or pending
// over its bound, and is exactly as long as the input says; a smaller bound never accepts what a larger one refuses;
// and `encode` of what was decoded gives the input back byte for byte, which decodes to the same snapshots.
import EchodEcho
import FuzzSupport

@main
enum FuzzHandoverState: FuzzTarget {
    static func fuzz(_ input: UnsafeRawBufferPointer) {
        let large = decoded(input, maxPending: 1 << 30)
        let small = decoded(input, maxPending: 64)
        if let small { check(small == large, "the 64-byte bound accepts what the 1 GiB bound decodes differently") }
        guard let snapshots = large else { return }
        check(Set(snapshots.map(\.inode)).count == snapshots.count, "an inode twice in \(snapshots.count) snapshots")
        check(snapshots.allSatisfy { $0.prefix.count <= HandoverState.maxPrefix }, "a prefix over \(HandoverState.maxPrefix)")
        let size = snapshots.reduce(HandoverState.headerSize) { $0 + HandoverState.minimumRecordSize + $1.prefix.count + $1.pending.count }
        check(size == input.count, "\(snapshots.count) snapshots of \(size) bytes from \(input.count)")
        // The format has one encoding per list: any input that decodes is what encode writes for it.
        let again = HandoverState.encode(snapshots)
        check(again.elementsEqual(input), "encode(decode(x)) is not x")
        again.withUnsafeBytes { bytes in
            check(decoded(bytes, maxPending: 1 << 30) == snapshots, "encode(decode(x)) decodes differently")
        }
    }

    /// The snapshots, or nil for an input decode refuses (each refusal names an offset within the input).
    static func decoded(_ input: UnsafeRawBufferPointer, maxPending: Int) -> [ConnectionSnapshot]? {
        do throws(HandoverStateError) {
            let snapshots = try HandoverState.decode(input, maxPending: maxPending)
            check(snapshots.allSatisfy { $0.pending.count <= maxPending }, "pending over \(maxPending)")
            return snapshots
        } catch {
            check(error.offset >= 0 && error.offset <= input.count, "\(error) outside \(input.count) bytes")
            return nil
        }
    }
}
