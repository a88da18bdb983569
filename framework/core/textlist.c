/* textlist.c - comma-separated lists (see textlist.h). */
#include "textlist.h"

#include <string.h>
#include <strings.h>

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

bool daebus__list_next(const char **p, const char **item, size_t *len)
{
    const char *s = *p;
    while (is_blank(*s) || *s == ',')
        s++;
    if (!*s) {
        *p = s;
        return false;
    }
    const char *e = s;
    while (*e && *e != ',')
        e++;
    *p = e;
    while (e > s && is_blank(e[-1]))
        e--;
    *item = s;
    *len = (size_t)(e - s);
    return true;
}

bool daebus__list_has(const char *list, const char *item, size_t len, bool ignore_case)
{
    if (!list || !item || !len)
        return false;
    const char *it;
    size_t n;
    while (daebus__list_next(&list, &it, &n))
        if (n == len && (ignore_case ? strncasecmp(it, item, len) : memcmp(it, item, len)) == 0)
            return true;
    return false;
}

int daebus__hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
