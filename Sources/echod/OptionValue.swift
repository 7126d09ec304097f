import ArgumentParser
import EchodText

/// Parses one option's value; a refusal names the option and the value and gives the grammar's reason:
/// `invalid --timeout "1k": unknown duration unit "k"; use ms, s, m or h (also us, ns)`.
func optionValue<T>(_ option: String, _ text: String, _ parse: (String) throws(InvalidValue) -> T) throws(ValidationError) -> T {
    do throws(InvalidValue) {
        return try parse(text)
    } catch {
        throw ValidationError("invalid \(option) \(quoted(text)): \(error.reason)")
    }
}
