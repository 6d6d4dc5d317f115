/* THINGS image order and alignment against Python: make_io_fixtures.py built the tree of
 * things_manifest.txt (hidden names, "a" / "a-b" / "a b", café/cafe, upper and lower case,
 * digits, a symlinked folder, broken links, a folder named *.jpg, non-.jpg files) and wrote
 * sorted(Path(tree).glob(P)) (P = "*" "/" "*.jpg") to things_sorted.txt, and the first image
 * of each id to things_rows.txt. */
#include "io/npy.h"
#include "io/textmat.h"
#include "data/things.h"
#include "things_tree.h"

static char **read_lines(const char *path, size_t *n) {
    char **v;
    ml_err err;
    if (ml_idlist_read(path, &v, n, &err)) {
        printf("# %s\n", err.msg);
        return NULL;
    }
    return v;
}

static void check_python_order(const ml_imagelist *l) {
    size_t n;
    char **want = read_lines(FIXTURE("data/things_sorted.txt"), &n);
    CHECK(want != NULL);
    CHECK_MSG(l->n == n, "%zu images, Python found %zu", l->n, n);
    for (size_t i = 0; want && i < n && i < l->n; i++) {
        char got[1024];
        snprintf(got, sizeof got, "%s/%s", l->items[i].concept, l->items[i].file);
        CHECK_MSG(!strcmp(got, want[i]), "position %zu: %s, Python has %s", i, got, want[i]);
    }
    ml_strv_free(want, n);
}

static void check_python_rows(const ml_imagelist *l, const char *name) {
    size_t n_ids, n_rows;
    char **ids = read_lines(FIXTURE("data/things_ids.txt"), &n_ids);
    char **rows = read_lines(FIXTURE("data/things_rows.txt"), &n_rows);
    CHECK(ids && rows && n_ids == n_rows);
    int64_t got[64];
    ml_err err = {""};
    CHECK(n_ids <= 64);
    if (ids && n_ids <= 64) {
        CHECK_MSG(ml_things_align(l, name, ids, n_ids, "things_ids.txt", got, &err) == 0, "%s",
                  err.msg);
        for (size_t i = 0; i < n_ids && i < n_rows; i++)
            CHECK_MSG(got[i] == atoll(rows[i]), "%s: row %lld, Python says %s", ids[i],
                      (long long)got[i], rows[i]);
    }
    ml_strv_free(ids, n_ids);
    ml_strv_free(rows, n_rows);
}

static void test_scan_matches_pathlib(void) {
    char *root = things_tree_build();
    CHECK(root != NULL);
    ml_imagelist l;
    ml_err err = {""};
    CHECK_MSG(ml_things_scan_dir(&l, root, &err) == 0, "%s", err.msg);
    CHECK(l.from_dir == 1);
    check_python_order(&l);
    check_python_rows(&l, root);
    ml_imagelist_free(&l);
    /* ml_things_load picks the scanner for a folder. */
    CHECK(ml_things_load(&l, root, &err) == 0 && l.from_dir);
    check_python_order(&l);
    ml_imagelist_free(&l);
    things_tree_remove(root);
}

static void test_list_file(void) {
    ml_imagelist l;
    ml_err err = {""};
    CHECK_MSG(ml_things_load(&l, FIXTURE("data/things_list.txt"), &err) == 0, "%s", err.msg);
    CHECK(!l.from_dir);
    check_python_order(&l);
    check_python_rows(&l, "things_list.txt");
    ml_imagelist_free(&l);
}

static void test_component_order(void) {
    /* Joined strings would put "a-b/x.jpg" first ('-' < '/'); pathlib puts "a/..." first. */
    const char *text = "a-b/x.jpg\nroot/a/y.jpg\r\n  a b/x.jpg  \na/x.jpg\n";
    ml_imagelist l;
    ml_err err;
    CHECK(ml_things_parse_list(&l, "list", text, strlen(text), &err) == 0);
    const char *want[] = {"a", "a", "a b", "a-b"};
    const char *files[] = {"x.jpg", "y.jpg", "x.jpg", "x.jpg"};
    CHECK(l.n == 4);
    for (size_t i = 0; i < l.n && i < 4; i++)
        CHECK(!strcmp(l.items[i].concept, want[i]) && !strcmp(l.items[i].file, files[i]));
    ml_imagelist_free(&l);
}

static void test_list_errors(void) {
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"a/x.jpg\nx.jpg\n", "list: line 2: 'x.jpg' is not a <concept>/<file> path"},
        {"a/x.jpg\na/\n", "line 2: 'a/' is not"},
        {"a//x.jpg\n", "line 1: 'a//x.jpg' is not"},
        {"a/x.jpg\n\nb/y.jpg\n", "line 2 is blank but line 3 is not"},
        {"a/x.jpg\nimages/a/x.jpg\n", "a/x.jpg is listed twice (lines 1 and 2)"},
        {"", "no images"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ml_imagelist l;
        ml_err err = {""};
        CHECK_MSG(ml_things_parse_list(&l, "list", bad[i].text, strlen(bad[i].text), &err) == -1,
                  "case %zu", i);
        CHECK(l.items == NULL && l.n == 0);
        CHECK_STR_CONTAINS(err.msg, bad[i].msg);
    }
    ml_imagelist l;
    ml_err err;
    static const char nul[] = "a/x\0.jpg\n";
    CHECK(ml_things_parse_list(&l, "list", nul, sizeof nul - 1, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "NUL");
    CHECK(ml_things_load(&l, "/nonexistent/THINGS", &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "/nonexistent/THINGS");
}

static void test_missing_concepts(void) {
    const char *text = "a/1.jpg\nb/2.jpg\n";
    ml_imagelist l;
    ml_err err;
    CHECK(ml_things_parse_list(&l, "list", text, strlen(text), &err) == 0);
    char *one[] = {"b", "nope", "a"};
    int64_t rows[4];
    CHECK(ml_things_align(&l, "THINGS/", one, 3, "ids.txt", rows, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "ids.txt: the id 'nope' (line 2) has no image in THINGS/");
    char *two[] = {"x", "a", "y", "z"};
    CHECK(ml_things_align(&l, "THINGS/", two, 4, "ids.txt", rows, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "3 ids have no image in THINGS/, the first 'x' (line 1)");
    char *ok[] = {"b", "a"};
    CHECK(ml_things_align(&l, "THINGS/", ok, 2, "ids.txt", rows, &err) == 0);
    CHECK(rows[0] == 1 && rows[1] == 0);
    ml_imagelist_free(&l);
}

int main(void) {
    RUN(test_scan_matches_pathlib);
    RUN(test_list_file);
    RUN(test_component_order);
    RUN(test_list_errors);
    RUN(test_missing_concepts);
    return UT_DONE();
}
