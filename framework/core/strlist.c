/* strlist.c - comma-separated lists of names: membership. */
#include "strlist.h"

#include <string.h>
#include <strings.h>

bool daebus__strlist_has(const char *list, const char *item, size_t item_len, bool nocase)
{
    if (!list || !item || !item_len)
        return false;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) != item_len)
            continue;
        if (nocase ? strncasecmp(start, item, item_len) == 0 : memcmp(start, item, item_len) == 0)
            return true;
    }
    return false;
}
