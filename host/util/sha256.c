/* SHA-256 of a file (nettle), recorded in result files beside the data
 * file's name. */
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/sha256.h"

char *mlmx_file_sha256(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    struct sha256_ctx c;
    sha256_init(&c);
    unsigned char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, fp)) > 0)
        sha256_update(&c, k, buf);
    fclose(fp);
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_digest(&c, sizeof d, d);
    char *hex = malloc(2 * SHA256_DIGEST_SIZE + 1);
    if (hex)
        for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
            snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return hex;
}
