/// "Did you mean …?" for misspelt keys, variable names and enumeration values.
enum Suggestions {
    /// The candidate nearest to `text` by edit distance, when near enough to be a plausible typo:
    /// at most 2 edits, or a third of the word for long words. Case and `-`/`_` are ignored, since
    /// `Max-Connections` is the same intent as `max_connections`.
    static func closest(to text: String, among candidates: [String]) -> String? {
        let word = normalized(text)
        let limit = max(2, word.count / 3)
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(word, normalized(candidate))
            if distance <= limit, distance < (best?.distance ?? Int.max) {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    private static func normalized(_ text: String) -> [Character] {
        Array(text.lowercased().map { $0 == "-" ? "_" : $0 })
    }

    /// Levenshtein distance with one row of memory.
    static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var diagonal = row[0]
            row[0] = i
            for j in 1...b.count {
                let above = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}
