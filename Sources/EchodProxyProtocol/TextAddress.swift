/// Numeric IPv4 and IPv6 addresses as v1 writes them, read without libc (inet_pton's grammar, stricter on IPv4).
enum TextAddress {
    static func isDecimal(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    static func isIPv6Character(_ byte: UInt8) -> Bool {
        hexValue(byte) != nil || byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".")
    }

    /// Four decimal numbers 0-255 separated by single dots, without leading zeros (the specification forbids them so
    /// that nobody reads them as octal).
    static func ipv4(_ text: UnsafeRawBufferPointer) -> UInt32? {
        var value: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        for byte in text {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | octet
                octet = 0
                digits = 0
                dots += 1
            } else {
                guard isDecimal(byte), !(digits == 1 && octet == 0) else { return nil }
                octet = octet * 10 + UInt32(byte - UInt8(ascii: "0"))
                digits += 1
                guard octet <= 255 else { return nil }
            }
        }
        guard digits > 0, dots == 3 else { return nil }
        return value << 8 | octet
    }

    /// Up to eight groups of 1-4 hex digits separated by colons, at most one `::` standing for one or more zero groups,
    /// and optionally an IPv4 address in place of the last two groups (`::ffff:127.0.0.1`, as inet_ntop writes a mapped
    /// address and HAProxy sends it).
    static func ipv6(_ text: UnsafeRawBufferPointer) -> UInt128? {
        let count = text.count
        guard count >= 2 else { return nil }
        var head: UInt128 = 0  // the groups before `::` (all of them when there is none)
        var headGroups = 0
        var tail: UInt128 = 0  // the groups after `::`
        var tailGroups = 0
        var compressed = false
        var i = 0
        if text[0] == UInt8(ascii: ":") {
            guard text[1] == UInt8(ascii: ":") else { return nil }
            compressed = true
            i = 2
            if i == count { return 0 }
        }
        while i < count {
            let groupStart = i
            var group: UInt128 = 0
            var digits = 0
            while i < count, let digit = hexValue(text[i]) {
                guard digits < 4 else { return nil }
                group = group << 4 | UInt128(digit)
                digits += 1
                i += 1
            }
            if i < count, text[i] == UInt8(ascii: ".") {
                // The IPv4 tail: two groups' worth, and the end of the address.
                guard headGroups + tailGroups <= 6,
                    let v4 = ipv4(UnsafeRawBufferPointer(rebasing: text[groupStart..<count]))
                else { return nil }
                if compressed {
                    tail = tail << 32 | UInt128(v4)
                    tailGroups += 2
                } else {
                    head = head << 32 | UInt128(v4)
                    headGroups += 2
                }
                i = count
                break
            }
            guard digits > 0 else { return nil }
            if compressed {
                tail = tail << 16 | group
                tailGroups += 1
            } else {
                head = head << 16 | group
                headGroups += 1
            }
            guard headGroups + tailGroups <= 8 else { return nil }
            if i == count { break }
            // A colon, then a group, or a second colon (the one `::`) and then a group or the end.
            guard text[i] == UInt8(ascii: ":"), i + 1 < count else { return nil }
            i += 1
            if text[i] == UInt8(ascii: ":") {
                guard !compressed else { return nil }
                compressed = true
                i += 1
            }
        }
        let groups = headGroups + tailGroups
        if compressed {
            guard groups <= 7 else { return nil }
            return head << (16 * UInt128(8 - headGroups)) | tail
        }
        guard groups == 8 else { return nil }
        return head
    }
}
