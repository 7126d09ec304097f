/// The effective value of every key, built key by key from the layers.
struct Resolution {
    var settings = EchodSettings.defaults
    var origins: [String: ConfigOrigin] = [:]
    var problems: [ConfigProblem] = []
    /// The layer each effective value came from, to attribute cross-key problems.
    private var winners: [String: Candidate] = [:]
    private var failed: Set<String> = []

    /// Validates what every layer gives `key` and keeps the highest layer's value. Lower layers are parsed
    /// too, into a scratch copy, only so that their problems are reported.
    mutating func resolve(_ key: SettingKey, from layers: [Layer]) {
        origins[key.name] = .defaultValue
        var decided = false
        for layer in layers {
            let isWinner = !decided
            let candidate: Candidate
            do throws(ConfigProblem) {
                guard let found = try layer.lookup(key) else { continue }
                candidate = found
            } catch {
                problems.append(error)
                if isWinner { failed.insert(key.name) }
                decided = true
                continue
            }
            decided = true
            var target = settings
            let found = key.apply(candidate.raw, &target)
            problems += found.map { problem($0, key, candidate) }
            guard isWinner else { continue }
            if !found.isEmpty { failed.insert(key.name) }
            settings = target
            origins[key.name] = candidate.origin
            winners[key.name] = candidate
        }
    }

    /// Checks between keys, skipped when an effective value failed (the default then stands in for it).
    func crossKeyProblems() -> [ConfigProblem] {
        guard !failed.contains("listen"), !failed.contains("admin.listen"),
            let reason = Validation.adminConflict(settings)
        else { return [] }
        let winner = winners["admin.listen"]
        return [
            ConfigProblem(
                source: winner?.source ?? "embedded defaults", key: "admin.listen",
                value: settings.adminListen?.description, reason: reason, line: winner?.line)
        ]
    }

    private func problem(_ found: ValueProblem, _ key: SettingKey, _ candidate: Candidate) -> ConfigProblem {
        let itemLine = found.index.flatMap { $0 < candidate.itemLines.count ? candidate.itemLines[$0] : nil }
        return ConfigProblem(
            source: candidate.source,
            key: key.name + (found.index.map { "[\($0)]" } ?? "") + (found.field.map { ".\($0)" } ?? ""),
            value: found.value,
            reason: found.reason,
            line: found.line ?? itemLine ?? candidate.line)
    }
}
