/* The command reads HDF5 tables (docs/data.md): sleepstudy written as a
 * group of 1-D datasets gives the same fit as the CSV (lme4's criterion). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlmx.h"
#include "refutil.h"

Test(cli_hdf5, sleepstudy_from_hdf5_group)
{
    char dir[] = "/tmp/mlmx-h5-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char h5[256], json[256], cmd[2048];
    snprintf(h5, sizeof h5, "%s/sleep.h5", dir);
    snprintf(json, sizeof json, "%s/fit.json", dir);

    /* columns from the bundled CSV */
    FILE *fp = fopen(MLMX_SOURCE_DIR "/data/sleepstudy.csv", "r");
    cr_assert_not_null(fp);
    double y[180], x[180];
    char labs[180][16];
    const char *subj[180];
    char line[256];
    cr_assert_not_null(fgets(line, sizeof line, fp));
    int n = 0;
    while (n < 180 && fgets(line, sizeof line, fp)) {
        cr_assert_eq(sscanf(line, "%lf,%lf,%15s", &y[n], &x[n], labs[n]), 3);
        subj[n] = labs[n];
        n++;
    }
    fclose(fp);
    cr_assert_eq(n, 180);

    hid_t f = H5Fcreate(h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t g = H5Gcreate2(f, "table", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dim = 180;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t d1 = H5Dcreate2(g, "Reaction", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Dwrite(d1, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), 0);
    hid_t d2 = H5Dcreate2(g, "Days", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Dwrite(d2, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    hid_t d3 = H5Dcreate2(g, "Subject", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Dwrite(d3, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, subj), 0);
    H5Dclose(d1);
    H5Dclose(d2);
    H5Dclose(d3);
    H5Tclose(st);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);

    snprintf(cmd, sizeof cmd,
             "'%s' fit --quiet --data '%s' --group /table --formula 'Reaction ~ Days + (Days | "
             "Subject)' --json '%s'",
             MLMX_CLI_PATH, h5, json);
    int rc = system(cmd);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "mlmx failed on the HDF5 file");
    fp = fopen(json, "r");
    cr_assert_not_null(fp);
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    buf[len] = '\0';
    fclose(fp);
    const char *p = strstr(buf, "\"reml_criterion\": ");
    cr_assert_not_null(p);
    double crit = strtod(p + strlen("\"reml_criterion\": "), NULL);
    ref_file ref;
    cr_assert_eq(ref_load(MLMX_SOURCE_DIR "/data/reference/lmm/sleepstudy_reml.ref", &ref), 0);
    cr_expect(close_rel(crit, ref_num(&ref, "criterion", 0), 1e-6, 1e-300), "criterion %.10g",
              crit);
    ref_free(&ref);

    /* a missing group is a clear error, exit status 1 */
    snprintf(cmd, sizeof cmd,
             "'%s' fit --quiet --data '%s' --group /nope --formula 'Reaction ~ Days + (1|Subject)' "
             "2>'%s/err'",
             MLMX_CLI_PATH, h5, dir);
    rc = system(cmd);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
