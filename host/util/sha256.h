/* SHA-256 of a file, as 64 lowercase hex digits. */
#ifndef MLMX_UTIL_SHA256_H
#define MLMX_UTIL_SHA256_H

/* The digest of the file at path, malloc'd (free it), or NULL when the
 * file cannot be read or memory runs out. */
char *mlmx_file_sha256(const char *path);

#endif
