#include "nrb/version.h"

extern "C" NRB_API const char* nrb_version_string(void) { return "0.1.0"; }
