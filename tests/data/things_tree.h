/* Builds the THINGS-like tree of tests/fixtures/data/things_manifest.txt in a temporary
 * folder (the same tree make_io_fixtures.py ran sorted(Path.glob) on): lines "d <dir>",
 * "f <file>" (empty) and "l <link> -> <target>". Shared by the data tests. */
#ifndef METALIGN_TESTS_THINGS_TREE_H
#define METALIGN_TESTS_THINGS_TREE_H

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

/* Returns a malloc'd path of the tree root ("<tmp>/THINGS"), or NULL. */
static char *things_tree_build(void) {
    char tmpl[] = "/tmp/ml_things_XXXXXX";
    if (!mkdtemp(tmpl)) return NULL;
    size_t rl = strlen(tmpl) + 8;
    char *root = malloc(rl);
    snprintf(root, rl, "%s/THINGS", tmpl);
    if (mkdir(root, 0755)) return NULL;
    FILE *f = fopen(FIXTURE("data/things_manifest.txt"), "r");
    if (!f) return NULL;
    char line[1024], path[2048];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strlen(line) < 3) continue;
        char *rest = line + 2, *arrow = strstr(rest, " -> ");
        if (arrow) *arrow = '\0';
        snprintf(path, sizeof path, "%s/%s", root, rest);
        int rc = 0;
        if (line[0] == 'd') {
            rc = mkdir(path, 0755);
        } else if (line[0] == 'f') {
            int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
            rc = fd < 0 ? -1 : close(fd);
        } else if (line[0] == 'l' && arrow) {
            rc = symlink(arrow + 4, path);
        }
        if (rc) printf("# cannot create %s\n", path);
    }
    fclose(f);
    return root;
}

static int things_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Removes the tree and its temporary parent folder, and frees root. */
static void things_tree_remove(char *root) {
    if (!root) return;
    char *slash = strrchr(root, '/');
    if (slash) *slash = '\0';
    nftw(root, things_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(root);
}

#endif
