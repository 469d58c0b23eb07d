/* Library version (C ABI). */
#ifndef NRB_VERSION_H
#define NRB_VERSION_H

#include "nrb/nrb_export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the library version, e.g. "0.1.0". The string is static; never free it. */
NRB_API const char* nrb_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* NRB_VERSION_H */
