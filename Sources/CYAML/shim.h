// libyaml 0.2 from Debian's libyaml-dev: the YAML 1.1 parser that Yams itself wraps (as a vendored copy).
#ifndef ECHOD_CYAML_SHIM_H
#define ECHOD_CYAML_SHIM_H
#include <yaml.h>
#endif
