/* export.h - which symbols libstreamlr exports.
 *
 * The library is compiled with -fvisibility=hidden, so nothing is exported
 * unless it is declared between SLR_BEGIN_DECLS and SLR_END_DECLS: every
 * public header (include/streamlr/) wraps its declarations in them, and the
 * engine's own headers do not.  So the exported set is exactly what the
 * public headers declare; tests/api.test checks it against tests/api.txt
 * (regenerate with tools/api-symbols after adding to the API).  SLR_API
 * marks a single declaration where a header cannot use the pair. */
#ifndef STREAMLR_EXPORT_H
#define STREAMLR_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define SLR_API __attribute__((visibility("default")))
#define SLR_VISIBILITY_PUSH _Pragma("GCC visibility push(default)")
#define SLR_VISIBILITY_POP _Pragma("GCC visibility pop")
#else
#define SLR_API
#define SLR_VISIBILITY_PUSH
#define SLR_VISIBILITY_POP
#endif

#ifdef __cplusplus
#define SLR_BEGIN_DECLS extern "C" { SLR_VISIBILITY_PUSH
#define SLR_END_DECLS SLR_VISIBILITY_POP }
#else
#define SLR_BEGIN_DECLS SLR_VISIBILITY_PUSH
#define SLR_END_DECLS SLR_VISIBILITY_POP
#endif

#endif
