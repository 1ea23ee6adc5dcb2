#include "h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qh_h5_quiet(void)
{
    /* libhdf5 1.10 crashes in its exit handler on a file whose H5Fclose failed (a full disk):
     * it must not install that handler. Every file we open is closed by our code, and the call
     * is a harmless error once the library is up (this runs before each first HDF5 use). */
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

herr_t qh_h5_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank, const hsize_t *dims,
                   const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    if (sp < 0) return -1;
    hid_t ds = H5Dcreate2(loc, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0 && H5Dclose(ds) < 0) e = -1;
    H5Sclose(sp);
    return e;
}

int qh_h5_dims(hid_t loc, const char *name, hsize_t *dims, int max_rank)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return -1;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t sp = H5Dget_space(ds);
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank < 0 || rank > max_rank || H5Sget_simple_extent_dims(sp, dims, NULL) != rank) rank = -1;
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return rank;
}

int qh_h5_fully_stored(hid_t loc, const char *name)
{
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return 0;
    hid_t sp = H5Dget_space(ds), ft = H5Dget_type(ds), dcpl = H5Dget_create_plist(ds);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    size_t es = ft >= 0 ? H5Tget_size(ft) : 0;
    int filtered = dcpl >= 0 && H5Pget_nfilters(dcpl) > 0;
    /* n * es without overflow: a product past the storage size is "not stored" either way */
    hsize_t stored = H5Dget_storage_size(ds);
    int ok = n >= 0 && es > 0 && (filtered || (hsize_t)n <= stored / es);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return ok;
}

herr_t qh_h5_read(hid_t loc, const char *name, hid_t mem_type, void *data)
{
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    herr_t e = H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(ds);
    return e;
}

herr_t qh_h5_read_rows(hid_t loc, const char *name, hid_t mem_type, hsize_t row0, hsize_t rows, void *data)
{
    hsize_t dims[2];
    int rank = qh_h5_dims(loc, name, dims, 2);
    if (rank < 1 || row0 + rows > dims[0]) return -1;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t fs = H5Dget_space(ds);
    hsize_t start[2] = {row0, 0}, count[2] = {rows, rank == 2 ? dims[1] : 1};
    herr_t e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    if (e >= 0) e = H5Dread(ds, mem_type, ms, fs, H5P_DEFAULT, data);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(ds);
    return e;
}

static hid_t vlen_utf8(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static herr_t set_attr(hid_t loc, const char *name, const char *const *values, int n, int scalar)
{
    if (H5Aexists(loc, name) > 0) H5Adelete(loc, name);
    hid_t t = vlen_utf8();
    hsize_t dim = (hsize_t)n;
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, values);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return e;
}

herr_t qh_h5_set_str(hid_t loc, const char *name, const char *value) { return set_attr(loc, name, &value, 1, 1); }

herr_t qh_h5_set_strs(hid_t loc, const char *name, const char *const *values, int n)
{
    return set_attr(loc, name, values, n, 0);
}

/* A memory type matching the attribute's own charset: HDF5 will not convert ASCII <-> UTF-8.
 * Returns -1 for attributes that are not variable-length strings. */
static hid_t string_type_for(hid_t attr)
{
    hid_t ft = H5Aget_type(attr);
    if (ft < 0) return -1;
    hid_t t = -1;
    if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0) {
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5Tget_cset(ft));
    }
    H5Tclose(ft);
    return t;
}

int qh_h5_get_str(hid_t loc, const char *name, char *dst, size_t size)
{
    dst[0] = '\0';
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? string_type_for(a) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    int rc = -1;
    char *s = NULL;
    if (t >= 0 && sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, t, &s) >= 0 && s) {
        snprintf(dst, size, "%s", s);
        H5free_memory(s);
        rc = 0;
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

int qh_h5_get_strs(hid_t loc, const char *name, int n, char *dst, size_t size)
{
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? string_type_for(a) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    int rc = -1;
    if (t >= 0 && sp >= 0 && H5Sget_simple_extent_npoints(sp) == n) {
        char **v = calloc((size_t)n, sizeof(char *));
        if (v && H5Aread(a, t, v) >= 0) {
            for (int i = 0; i < n; i++) snprintf(dst + (size_t)i * size, size, "%s", v[i] ? v[i] : "");
            H5Dvlen_reclaim(t, sp, H5P_DEFAULT, v);
            rc = 0;
        }
        free(v);
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}
