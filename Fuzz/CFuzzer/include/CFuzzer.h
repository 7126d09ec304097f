// libFuzzer's driver entry (compiler-rt's FuzzerInterface.h): runs the fuzzing loop with the command-line flags, for
// programs that keep their own main (SwiftPM names every executable's entry point itself).
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
