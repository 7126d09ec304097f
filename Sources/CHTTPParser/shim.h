// nodejs/http-parser 2.9 from Debian's libhttp-parser-dev (it ships no pkg-config file).
#ifndef ECHOD_CHTTPPARSER_SHIM_H
#define ECHOD_CHTTPPARSER_SHIM_H
#include <http_parser.h>
#endif
