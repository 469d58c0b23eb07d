/* NRB_API marks the symbols of libnrb's C ABI. Everything else is hidden (-fvisibility=hidden).
 *  - NRB_BUILDING_LIBRARY: defined while compiling libnrb's own sources (set by CMake).
 *  - NRB_STATIC: defined for code linking the objects directly (nrb_core: pybind module, tests, fuzzers). */
#ifndef NRB_EXPORT_H
#define NRB_EXPORT_H

#if defined(_WIN32) || defined(__CYGWIN__)
#  if defined(NRB_BUILDING_LIBRARY)
#    define NRB_API __declspec(dllexport)
#  elif defined(NRB_STATIC)
#    define NRB_API
#  else
#    define NRB_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define NRB_API __attribute__((visibility("default")))
#else
#  define NRB_API
#endif

#endif /* NRB_EXPORT_H */
