/* json_min.h - a very small JSON reader for test data: objects, arrays and strings (with the
 * simple escapes), plus numbers/true/false/null kept as raw text. Not a general parser: it is
 * meant for trusted fixture files such as the Noise test vectors. Header-only, for tests. */
#ifndef P2P_JSON_MIN_H
#define P2P_JSON_MIN_H
#include <stdlib.h>
#include <string.h>

enum { JM_STRING = 1, JM_ARRAY, JM_OBJECT, JM_ATOM };

typedef struct jm_node {
    int type;
    char *key;             /* member name when inside an object, else NULL */
    char *str;             /* JM_STRING / JM_ATOM text (NUL-terminated, malloc'd) */
    size_t len;            /* string length */
    struct jm_node *child; /* first element / member */
    struct jm_node *next;  /* next sibling */
} jm_node;

typedef struct jm_cursor {
    const char *p, *end;
} jm_cursor;

static void jm_free(jm_node *n)
{
    while (n) {
        jm_node *next = n->next;
        jm_free(n->child);
        free(n->key);
        free(n->str);
        free(n);
        n = next;
    }
}

static void jm_ws(jm_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

/* Reads a string at c->p (which must be '"'). Returns malloc'd text or NULL. */
static char *jm_string(jm_cursor *c, size_t *outlen)
{
    char *s;
    size_t n = 0;

    if (c->p >= c->end || *c->p != '"') return NULL;
    c->p++;
    s = malloc((size_t)(c->end - c->p) + 1);
    if (!s) return NULL;
    while (c->p < c->end && *c->p != '"') {
        char ch = *c->p++;
        if (ch == '\\') {
            if (c->p >= c->end) break;
            ch = *c->p++;
            switch (ch) {
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            case 'r': ch = '\r'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case '"':
            case '\\':
            case '/': break;
            default: free(s); return NULL; /* \u is not needed for fixtures */
            }
        }
        s[n++] = ch;
    }
    if (c->p >= c->end) {
        free(s);
        return NULL;
    }
    c->p++; /* closing quote */
    s[n] = '\0';
    if (outlen) *outlen = n;
    return s;
}

static jm_node *jm_value(jm_cursor *c, int depth)
{
    jm_node *n;

    jm_ws(c);
    if (c->p >= c->end || depth > 32) return NULL;
    n = calloc(1, sizeof *n);
    if (!n) return NULL;
    if (*c->p == '"') {
        n->type = JM_STRING;
        if (!(n->str = jm_string(c, &n->len))) goto fail;
    } else if (*c->p == '[' || *c->p == '{') {
        int obj = *c->p == '{';
        char close = obj ? '}' : ']';
        jm_node **tail = &n->child;

        n->type = obj ? JM_OBJECT : JM_ARRAY;
        c->p++;
        jm_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return n;
        }
        for (;;) {
            char *key = NULL;
            jm_node *v;

            jm_ws(c);
            if (obj) {
                if (!(key = jm_string(c, NULL))) goto fail;
                jm_ws(c);
                if (c->p >= c->end || *c->p != ':') {
                    free(key);
                    goto fail;
                }
                c->p++;
            }
            v = jm_value(c, depth + 1);
            if (!v) {
                free(key);
                goto fail;
            }
            v->key = key;
            *tail = v;
            tail = &v->next;
            jm_ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            if (c->p < c->end && *c->p == close) {
                c->p++;
                break;
            }
            goto fail;
        }
    } else {
        const char *start = c->p;
        size_t len;

        while (c->p < c->end && strchr(",]} \n\r\t", *c->p) == NULL) c->p++;
        len = (size_t)(c->p - start);
        if (len == 0) goto fail;
        n->type = JM_ATOM;
        if (!(n->str = malloc(len + 1))) goto fail;
        memcpy(n->str, start, len);
        n->str[len] = '\0';
        n->len = len;
    }
    return n;
fail:
    jm_free(n);
    return NULL;
}

/* Parses a whole document. Returns the root (free with jm_free) or NULL on a syntax error. */
static jm_node *jm_parse(const char *text, size_t len)
{
    jm_cursor c = {text, text + len};
    jm_node *root = jm_value(&c, 0);

    jm_ws(&c);
    if (root && c.p != c.end) {
        jm_free(root);
        return NULL;
    }
    return root;
}

/* The member named key of an object, or NULL. */
static jm_node *jm_get(const jm_node *obj, const char *key)
{
    jm_node *n;

    if (!obj || obj->type != JM_OBJECT) return NULL;
    for (n = obj->child; n; n = n->next)
        if (n->key && strcmp(n->key, key) == 0) return n;
    return NULL;
}

/* Number of elements of an array or members of an object. */
static size_t jm_count(const jm_node *n)
{
    size_t k = 0;
    const jm_node *c;

    if (!n) return 0;
    for (c = n->child; c; c = c->next) k++;
    return k;
}
#endif
