// Intentionally empty: everything lives in the header as static inline functions. SwiftPM needs one source file.
#include "CEchodLinux.h"
