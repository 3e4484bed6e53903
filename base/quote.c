/* quote.c — makes untrusted text safe to put into a one-line error message. */
#include "mv.h"

#include <string.h>

const char *mv_quote(const char *s, char *buf, size_t len)
{
    if (!buf || len == 0)
        return "";
    if (!s) {
        snprintf(buf, len, "(null)");
        return buf;
    }
    size_t keep = len - 1;
    if (keep > MV_QUOTE_MAX)
        keep = MV_QUOTE_MAX;
    size_t n = strlen(s);
    bool cut = n > keep;
    if (cut)
        keep = keep >= 3 ? keep - 3 : 0;
    size_t i = 0;
    for (; i < keep && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* '"' too: the caller wraps the text in quotes. */
        buf[i] = (char)((c < 0x20 || c >= 0x7f || c == '"') ? '?' : c);
    }
    if (cut)
        for (int k = 0; k < 3 && i + 1 < len; k++)
            buf[i++] = '.';
    buf[i] = '\0';
    return buf;
}
