/*
 * ngx_waker.c - a wake-up line for hosts that can wait on a stream socket but cannot watch an
 * arbitrary descriptor (nginx's Lua module: its cosockets only wait on sockets they opened).
 *
 *   core.waker(listen_path, kick_path [, fd]) -> waker | nil, err
 *   core.kick(kick_path) -> true | nil, err
 *
 * A waker owns one POSIX thread, two Unix-domain sockets and a pipe. The host connects a
 * stream socket to `listen_path` (nginx: ngx.socket.tcp():connect("unix:" .. path)) and asks
 * for each wait by writing a line "<ms>\n" (a line without digits: no deadline). The thread
 * then poll()s the node's UDP descriptor `fd` (optional) and the datagram socket bound at
 * `kick_path`, and writes one byte to the host's stream: "!" when either is readable, "t" when
 * the ms have passed. It then watches nothing until the host's next line, which the host
 * writes after it has drained the node with node:poll(0) (the thread never spins). The host's
 * read never times out, so nginx logs nothing. Readiness is level-triggered, so a datagram
 * that comes between the host's drain and its next line wakes the host at once: no wake-up is
 * lost.
 * Any process may send a datagram to `kick_path` with core.kick() to wake the host (other
 * nginx workers do, and the host itself after it queued a send).
 *
 * The thread never touches Lua, never reads the node's socket (only polls it) and allocates
 * nothing: it only moves bytes between descriptors. waker:close() (and __gc) stops it with the
 * pipe, joins it, closes its descriptors and unlinks both paths; it must run before the node is
 * closed, since the thread polls the node's descriptor (a descriptor closed under it reports
 * POLLNVAL, after which the thread stops watching it). Create wakers after fork() (nginx:
 * init_worker_by_lua, never init_by_lua): threads do not survive fork.
 */
#include "binding.h"

#ifndef _WIN32

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WAKER_MT "p2pnet.Waker"

#ifndef MSG_NOSIGNAL /* BSD and macOS: the host ignores SIGPIPE or the socket has SO_NOSIGPIPE */
#define MSG_NOSIGNAL 0
#endif

typedef struct lwaker {
    pthread_t thread;
    int running;   /* the thread was started and not joined yet */
    int listen_fd; /* stream: the host connects here */
    int kick_fd;   /* datagram: core.kick() sends here */
    int udp_fd;    /* the node's socket, polled only; -1 when none */
    int stop[2];   /* pipe: close() writes to stop[1] */
    char listen_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char kick_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} lwaker;

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Fills `sa` with a Unix-domain address; -1 when the path does not fit. */
static int unix_addr(struct sockaddr_un *sa, const char *path)
{
    size_t len = strlen(path);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (len == 0 || len >= sizeof sa->sun_path) return -1;
    memcpy(sa->sun_path, path, len + 1);
    return 0;
}

static void drain_kicks(int fd)
{
    char buf[64];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The host's wait requests on its stream: "<ms>\n" arms the waker with a deadline in ms,
 * a line without digits arms it without one. Bytes may come split across reads. */
typedef struct wait_line {
    int64_t ms;
    int digits;
} wait_line;

/* Feeds received bytes; returns 1 and sets *deadline when a line ended (-1: none). */
static int feed(wait_line *l, const char *buf, ssize_t len, int64_t *deadline)
{
    int done = 0;
    ssize_t i;
    for (i = 0; i < len; i++) {
        char c = buf[i];
        if (c >= '0' && c <= '9') {
            if (l->ms < 100000000) l->ms = l->ms * 10 + (c - '0');
            l->digits = 1;
        } else if (c == '\n') {
            *deadline = l->digits ? now_ms() + l->ms : -1;
            l->ms = 0;
            l->digits = 0;
            done = 1;
        }
    }
    return done;
}

/* The thread: accept the host's stream; then, each time the host asks for a wait, tell it
 * ("!") when the node's socket or the kick socket is readable, or ("t") when its deadline
 * has passed, whichever comes first. */
static void *waker_main(void *arg)
{
    lwaker *w = (lwaker *)arg;
    int conn = -1, armed = 0, udp = w->udp_fd;
    int64_t deadline = -1;
    wait_line line = {0, 0};
    for (;;) {
        struct pollfd p[4];
        int n = 0, i_conn, i_kick = -1, i_udp = -1, timeout = -1, rc;
        const char *say = NULL;
        p[n].fd = w->stop[0];
        p[n++].events = POLLIN;
        i_conn = n;
        p[n].fd = conn >= 0 ? conn : w->listen_fd;
        p[n++].events = POLLIN;
        if (conn >= 0 && armed) {
            i_kick = n;
            p[n].fd = w->kick_fd;
            p[n++].events = POLLIN;
            if (udp >= 0) {
                i_udp = n;
                p[n].fd = udp;
                p[n++].events = POLLIN;
            }
            if (deadline >= 0) {
                int64_t left = deadline - now_ms();
                timeout = left < 0 ? 0 : (int)left;
            }
        }
        rc = poll(p, (nfds_t)n, timeout);
        if (rc < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[0].revents) break;
        if (p[i_conn].revents) {
            if (conn < 0) {
                int c = accept(w->listen_fd, NULL, NULL);
                if (c >= 0) {
                    if (set_flags(c) < 0) {
                        close(c);
                    } else {
                        conn = c;
                        armed = 0;
                        line.ms = 0;
                        line.digits = 0;
                    }
                }
                continue;
            } else {
                char buf[64];
                ssize_t r = recv(conn, buf, sizeof buf, MSG_DONTWAIT);
                if (r > 0) {
                    if (feed(&line, buf, r, &deadline)) armed = 1;
                } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                    close(conn); /* the host went away: wait for the next one */
                    conn = -1;
                    armed = 0;
                    continue;
                }
            }
        }
        if (i_udp >= 0 && (p[i_udp].revents & POLLNVAL)) udp = -1; /* closed under us */
        if (conn < 0 || !armed) continue;
        if ((i_kick >= 0 && (p[i_kick].revents & POLLIN)) ||
            (i_udp >= 0 && (p[i_udp].revents & (POLLIN | POLLERR)))) {
            drain_kicks(w->kick_fd);
            say = "!";
        } else if (deadline >= 0 && now_ms() >= deadline) {
            say = "t";
        }
        if (say == NULL) continue;
        if (send(conn, say, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) {
            armed = 0;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            close(conn);
            conn = -1;
            armed = 0;
        }
    }
    if (conn >= 0) close(conn);
    return NULL;
}

static void waker_close(lwaker *w)
{
    if (w->running) {
        ssize_t r;
        do r = write(w->stop[1], "x", 1);
        while (r < 0 && errno == EINTR);
        pthread_join(w->thread, NULL);
        w->running = 0;
    }
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        unlink(w->listen_path);
        w->listen_fd = -1;
    }
    if (w->kick_fd >= 0) {
        close(w->kick_fd);
        unlink(w->kick_path);
        w->kick_fd = -1;
    }
    if (w->stop[0] >= 0) close(w->stop[0]);
    if (w->stop[1] >= 0) close(w->stop[1]);
    w->stop[0] = w->stop[1] = -1;
}

/* Binds a new socket of `type` at `path` (a stale file there is removed first). */
static int bind_unix(int type, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    int fd;
    if (unix_addr(&sa, path) < 0) {
        snprintf(err, errlen, "path too long: %s", path);
        return -1;
    }
    fd = socket(AF_UNIX, type, 0);
    if (fd < 0 || set_flags(fd) < 0) goto fail;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) goto fail;
    if (type == SOCK_STREAM && listen(fd, 4) < 0) goto fail;
    return fd;
fail:
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
}

static int l_waker(lua_State *L)
{
    const char *lpath = lp_check_string(L, 1, "core.waker", "listen_path", NULL);
    const char *kpath = lp_check_string(L, 2, "core.waker", "kick_path", NULL);
    int fd = -1;
    char err[LP_ERR_TEXT];
    lwaker *w;
    if (!lua_isnoneornil(L, 3)) {
        int64_t v;
        if (!lp_tointeger(L, 3, 0, 1 << 30, &v))
            return lp_arg_error(L, "core.waker", "fd", "must be a descriptor");
        fd = (int)v;
    }
    w = (lwaker *)lua_newuserdata(L, sizeof *w);
    memset(w, 0, sizeof *w);
    w->listen_fd = w->kick_fd = w->stop[0] = w->stop[1] = -1;
    w->udp_fd = fd;
    snprintf(w->listen_path, sizeof w->listen_path, "%s", lpath);
    snprintf(w->kick_path, sizeof w->kick_path, "%s", kpath);
    luaL_getmetatable(L, WAKER_MT);
    lua_setmetatable(L, -2);
    w->listen_fd = bind_unix(SOCK_STREAM, lpath, err, sizeof err);
    if (w->listen_fd < 0) goto fail;
    w->kick_fd = bind_unix(SOCK_DGRAM, kpath, err, sizeof err);
    if (w->kick_fd < 0) goto fail;
    if (pipe(w->stop) < 0 || set_flags(w->stop[0]) < 0 || set_flags(w->stop[1]) < 0) {
        snprintf(err, sizeof err, "pipe: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&w->thread, NULL, waker_main, w) != 0) {
        snprintf(err, sizeof err, "cannot start the waker thread");
        goto fail;
    }
    w->running = 1;
    return 1;
fail:
    waker_close(w);
    return lp_push_fail(L, err);
}

static int l_waker_close(lua_State *L)
{
    waker_close((lwaker *)luaL_checkudata(L, 1, WAKER_MT));
    return 0;
}

static int l_waker_tostring(lua_State *L)
{
    lwaker *w = (lwaker *)luaL_checkudata(L, 1, WAKER_MT);
    lua_pushfstring(L, "p2pnet.Waker (%s)", w->running ? w->listen_path : "closed");
    return 1;
}

/* core.kick(path) -> true | nil, err: one datagram to a waker's kick socket. Never blocks. */
static int l_kick(lua_State *L)
{
    const char *path = lp_check_string(L, 1, "core.kick", "path", NULL);
    struct sockaddr_un sa;
    int fd;
    ssize_t r;
    if (unix_addr(&sa, path) < 0) return lp_arg_error(L, "core.kick", "path", "is too long");
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0) return lp_push_fail(L, strerror(errno));
    if (set_flags(fd) < 0) {
        int e = errno;
        close(fd);
        return lp_push_fail(L, strerror(e));
    }
    r = sendto(fd, "k", 1, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        /* a full queue means a wake-up is pending already: that is success */
        int e = errno;
        close(fd);
        return lp_push_fail(L, strerror(e));
    }
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
}

void lp_waker_funcs(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"waker", l_waker}, {"kick", l_kick}, {NULL, NULL}};
    if (luaL_newmetatable(L, WAKER_MT)) {
        lua_pushcfunction(L, l_waker_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_waker_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_newtable(L);
        lua_pushcfunction(L, l_waker_close);
        lua_setfield(L, -2, "close");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lp_setfuncs(L, funcs, 0);
}

#else /* _WIN32: no waker; p2pnet.ngx falls back to its timer */

void lp_waker_funcs(lua_State *L)
{
    (void)L;
}

#endif
