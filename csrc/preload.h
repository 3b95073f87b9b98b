/* preload.h: the Lua layer as csrc/embed.lua compiles it in, for csrc/preload.c (make static). */
#ifndef FACESWAP_PRELOAD_H
#define FACESWAP_PRELOAD_H

#include <stddef.h>

typedef struct {
  const char *module;   /* "faceswap", "faceswap.task", ... */
  const char *chunk;    /* "@lua/faceswap/task.lua": where error messages say it comes from */
  const char *source;
  size_t len;
} faceswap_lua_file;

extern const faceswap_lua_file faceswap_lua_files[]; /* ends with a NULL module */

#endif
