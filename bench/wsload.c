/* wsload: a WebSocket load client for the realtime benchmarks, cheap enough per notification
 * (well under 1 us of CPU at saturation) that the gateway, not the client, sets the rate.
 *
 * N subscribers (round-robin over --ports) subscribe to one filter; one publisher sends
 * realtime:publish frames whose body carries "t": CLOCK_MONOTONIC ns at send time. Two modes:
 *   --rate R        publish every N/R s for --duration s (absolute deadlines, timerfd); record
 *                   each notification's latency; drain until 0.5 s of silence.
 *   --in-flight K   keep K publishes outstanding; --warmup s, then count --duration s; stop
 *                   publishing and count what still arrives until 0.5 s of silence.
 * Prints one JSON object on stdout; errors go to stderr with exit status 1. --marks 1: the
 * phases on stderr as they begin ("mark publishing", "mark counting", "mark done"), so that the
 * caller can read the members' CPU time over exactly what is counted.
 *
 * "elapsed": rate mode, the asked duration (or up to the last notification, if later);
 * saturation, from the start of counting to the last notification (dated once per wake-up, so
 * to within --batch-us). "lost": sent * N minus every notification received, warm-up included.
 * "cpu_us_per_notification": the client's CPU from the first publish to the end of the drain,
 * per notification received in that time.
 *
 * Where the CPU goes (loopback, 1,000 subscribers): each publish sends one small TCP segment to
 * every subscriber, so without a pause each recv reads about one frame, and ~95% of the cost is
 * the kernel's (the copy, and the ACK each recv sends, whose processing on loopback is charged
 * here too): ~3.5-4 us per notification, a third of what the gateway spends on it. --batch-us
 * lets frames pile up per socket, one recv and one ACK for many: 2.3 us at 20 ms, 1.4 at 30 ms,
 * under 1 at 50 ms; but the gateway then delivers each notification at a higher CPU cost (its
 * TCP sends meet late ACKs; measured +20-30% from 20 ms on, rate down as much), so pauses over
 * ~5 ms flatter the client at the gateway's expense. Measure the gateway with --batch-us 0.
 *
 * Only libc and Linux epoll/timerfd: gcc -O2 -o wsload wsload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define IN_BUF (64 * 1024)
#define MAX_PORTS 255 /* a latency sample keeps its port in its low 8 bits */
#define MAX_EVENTS 1024
#define DRAIN_NS 500000000LL

enum state { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_CLOSED };

typedef struct {
    int fd, port_idx, is_pub, state, answered, want_out;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
} conn_t;

/* options */
static int ports[MAX_PORTS], nports, pub_port = -1, subscribers = 1000, in_flight = 0;
static double rate = 0, duration = 5, warmup = 1.0, settle = 0.5, setup_timeout = 60;
static long batch_us = 0, connect_batch = 100, marks = 0;
static size_t max_samples = 20000000;
static const char *subscribe_json =
    "{\"controller\":\"realtime\",\"action\":\"subscribe\",\"index\":\"bench\","
    "\"collection\":\"quotes\",\"body\":{\"equals\":{\"symbol\":\"ACME\"}}}";
static const char *publish_template =
    "{\"controller\":\"realtime\",\"action\":\"publish\",\"index\":\"bench\","
    "\"collection\":\"quotes\",\"body\":{\"symbol\":\"ACME\",\"price\":12.5,\"t\":%T%}}";

/* state */
static int ep, ep_pub; /* ep_pub: the publisher alone, for batch_pause */
static conn_t *subs, pub;
static int timer_fd = -1, timer_tag; /* &timer_tag marks the timer in epoll events */
static int saturation, publishing, measuring, record_latency;
static int64_t now_cached;
static uint64_t sent, pub_answers, delivered_all, delivered_by_port[MAX_PORTS];
static int64_t last_notification;
static int opened, upgraded, subscribed;
static int64_t *samples;
static size_t nsamples, samples_cap, samples_dropped;
static int64_t rate_start, rate_period, rate_end;
static uint64_t rate_next; /* index of the next scheduled publish */
static const char *tpl_head, *tpl_tail;
static size_t tpl_head_len, tpl_tail_len;
static const unsigned char MASK[4] = {0x5a, 0x13, 0xc7, 0x2e};

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory (%zu bytes)", n);
    return q;
}

static const char *conn_name(const conn_t *c) {
    static char name[64];
    if (c->is_pub)
        snprintf(name, sizeof name, "publisher (port %d)", ports[c->port_idx]);
    else
        snprintf(name, sizeof name, "subscriber %ld (port %d)", (long)(c - subs),
                 ports[c->port_idx]);
    return name;
}

static void set_events(conn_t *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    c->want_out = want_out;
}

/* Write what is queued; whatever the socket does not take waits for EPOLLOUT. */
static void flush_out(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            die("%s: send: %s", conn_name(c), strerror(errno));
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    set_events(c, c->out_len > 0);
}

static char *out_reserve(conn_t *c, size_t n) {
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) { /* compact first */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            c->out_cap = (c->out_len + n) * 2;
            c->out = xrealloc(c->out, c->out_cap);
        }
    }
    return c->out + c->out_len;
}

/* Queue one client frame (masked, as RFC 6455 requires of clients) built from up to three
 * pieces (the publish template around its stamp), then flush. */
static void send_frame3(conn_t *c, int opcode, const char *a, size_t na, const char *b,
                        size_t nb, const char *d, size_t nd) {
    size_t len = na + nb + nd;
    unsigned char *p = (unsigned char *)out_reserve(c, len + 14);
    size_t h = 0;
    p[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        p[h++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        p[h++] = 0x80 | 126;
        p[h++] = (unsigned char)(len >> 8);
        p[h++] = (unsigned char)len;
    } else {
        p[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) p[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(p + h, MASK, 4);
    h += 4;
    size_t k = 0;
    for (size_t i = 0; i < na; i++, k++) p[h + k] = (unsigned char)a[i] ^ MASK[k & 3];
    for (size_t i = 0; i < nb; i++, k++) p[h + k] = (unsigned char)b[i] ^ MASK[k & 3];
    for (size_t i = 0; i < nd; i++, k++) p[h + k] = (unsigned char)d[i] ^ MASK[k & 3];
    c->out_len += h + len;
    flush_out(c);
}

static void send_frame(conn_t *c, int opcode, const char *data, size_t len) {
    send_frame3(c, opcode, data, len, NULL, 0, NULL, 0);
}

static void send_publish(void) {
    char stamp[24];
    int n = snprintf(stamp, sizeof stamp, "%" PRId64, now_ns()); /* T at the moment of sending */
    send_frame3(&pub, 1, tpl_head, tpl_head_len, stamp, (size_t)n, tpl_tail, tpl_tail_len);
    sent++;
}

static void open_conn(conn_t *c, int port_idx, int is_pub) {
    memset(c, 0, sizeof *c);
    c->port_idx = port_idx;
    c->is_pub = is_pub;
    c->in_cap = IN_BUF;
    c->in = xrealloc(NULL, c->in_cap);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ports[port_idx])};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        die("%s: connect: %s", conn_name(c), strerror(errno));
    c->state = ST_CONNECTING;
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    opened++;
}

static void close_fd(conn_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = ST_CLOSED;
}

static void on_connected(conn_t *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) die("%s: connect: %s", conn_name(c), strerror(err));
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: d3Nsb2FkLWJlbmNoLWtleQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     ports[c->port_idx]);
    c->state = ST_HANDSHAKE;
    memcpy(out_reserve(c, (size_t)n), req, (size_t)n);
    c->out_len += (size_t)n;
    flush_out(c);
}

static int is_status_200(const char *p, size_t len) {
    return memmem(p, len, "\"status\":200", 12) != NULL;
}

static FILE *timeline; /* --timeline FILE: "sent_ns latency_ns port" per notification */

static void record(const char *p, size_t len, int port_idx) {
    const char *t = memmem(p, len, "\"t\":", 4);
    if (!t) return;
    const char *end = p + len;
    t += 4;
    while (t < end && *t == ' ') t++;
    int64_t stamp = 0;
    int digits = 0;
    while (t < end && *t >= '0' && *t <= '9') stamp = stamp * 10 + (*t++ - '0'), digits++;
    if (!digits) return;
    int64_t latency = now_cached - stamp;
    if (latency < 0) latency = 0;
    if (timeline) fprintf(timeline, "%" PRId64 " %" PRId64 " %d\n", stamp, latency, port_idx);
    if (nsamples == samples_cap) {
        if (samples_cap >= max_samples) {
            samples_dropped++;
            return;
        }
        samples_cap = samples_cap ? samples_cap * 2 : 65536;
        if (samples_cap > max_samples) samples_cap = max_samples;
        samples = xrealloc(samples, samples_cap * sizeof *samples);
    }
    samples[nsamples++] = latency << 8 | port_idx;
}

static void on_message(conn_t *c, int opcode, char *p, size_t len) {
    if (opcode == 9) { /* ping: a pong with the same payload */
        send_frame(c, 10, p, len);
        return;
    }
    if (opcode == 10) return;
    if (opcode == 8) {
        if (c->state == ST_CLOSING) {
            close_fd(c);
            return;
        }
        int code = len >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 0;
        die("%s: the server closed the connection (code %d): %.*s", conn_name(c), code,
            len > 2 ? (int)(len - 2) : 0, p + 2);
    }
    if (!c->is_pub && len >= 8 && memcmp(p, "{\"type\":", 8) == 0) { /* a notification */
        delivered_all++;
        delivered_by_port[c->port_idx]++;
        last_notification = now_cached;
        if (record_latency) record(p, len, c->port_idx);
        return;
    }
    if (!is_status_200(p, len))
        die("%s: error answer: %.*s", conn_name(c), len > 2000 ? 2000 : (int)len, p);
    if (c->is_pub) {
        pub_answers++;
        if (saturation && publishing) send_publish();
    } else if (!c->answered) {
        c->answered = 1;
        subscribed++;
    }
}

/* Parse every complete frame in the input buffer, keep the partial tail. */
static void parse_frames(conn_t *c) {
    size_t pos = 0;
    while (c->in_len - pos >= 2 && c->fd >= 0) {
        unsigned char *f = (unsigned char *)c->in + pos;
        size_t avail = c->in_len - pos, h = 2;
        uint64_t len = f[1] & 0x7f;
        int masked = f[1] & 0x80;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)f[2] << 8 | f[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | f[2 + i];
            h = 10;
        }
        if (masked) h += 4;
        if (len > (1ULL << 40)) die("%s: absurd frame length %" PRIu64, conn_name(c), len);
        if (h + len > avail) {
            if (h + len > c->in_cap) { /* a frame bigger than the buffer: grow it */
                c->in_cap = h + len;
                c->in = xrealloc(c->in, c->in_cap);
            }
            break;
        }
        char *payload = (char *)f + h;
        if (masked) /* servers must not mask; unmask anyway */
            for (size_t i = 0; i < len; i++) payload[i] ^= f[h - 4 + (i & 3)];
        on_message(c, f[0] & 0x0f, payload, (size_t)len);
        pos += h + len;
    }
    if (c->fd < 0) return;
    if (pos) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
    }
}

static void on_handshake(conn_t *c) {
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len > 16384) die("%s: no end to the handshake answer", conn_name(c));
        return;
    }
    if (c->in_len < 12 || memcmp(c->in, "HTTP/1.1 101", 12) != 0)
        die("%s: handshake refused: %.*s", conn_name(c), (int)(end - c->in), c->in);
    size_t head = (size_t)(end - c->in) + 4;
    memmove(c->in, c->in + head, c->in_len - head);
    c->in_len -= head;
    c->state = ST_OPEN;
    upgraded++;
    if (!c->is_pub) send_frame(c, 1, subscribe_json, strlen(subscribe_json));
}

static void on_readable(conn_t *c) {
    for (;;) {
        size_t room = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            if (c->state == ST_CLOSING) { close_fd(c); return; }
            die("%s: recv: %s", conn_name(c), strerror(errno));
        }
        if (n == 0) {
            if (c->state == ST_CLOSING) { close_fd(c); return; }
            die("%s: the server closed the connection", conn_name(c));
        }
        if (record_latency) now_cached = now_ns(); /* rate mode: the time of each recv */
        c->in_len += (size_t)n;
        if (c->state == ST_HANDSHAKE) on_handshake(c);
        if (c->state == ST_OPEN || c->state == ST_CLOSING) parse_frames(c);
        if (c->fd < 0 || (size_t)n < room) return; /* drained (level-triggered: else next round) */
    }
}

static void on_timer(void) {
    uint64_t expirations;
    if (read(timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        die("timerfd read: %s", strerror(errno));
    /* publish k is due at rate_start + k * period; send every one due now (if the client fell
     * behind, the late ones go at once, each stamped with its real send time) */
    int64_t now = now_ns();
    while (publishing && rate_start + (int64_t)rate_next * rate_period <= now) {
        if (rate_start + (int64_t)rate_next * rate_period >= rate_end) {
            publishing = 0;
            break;
        }
        send_publish();
        rate_next++;
    }
}

static void dispatch(struct epoll_event *events, int n) {
    for (int i = 0; i < n; i++) {
        if (events[i].data.ptr == &timer_tag) {
            on_timer();
            continue;
        }
        conn_t *c = events[i].data.ptr;
        if (c->fd < 0) continue;
        if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            if (c->state == ST_CONNECTING) on_connected(c);
            else if (c->out_len) flush_out(c);
        }
        if (c->fd >= 0 && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
            c->state != ST_CONNECTING)
            on_readable(c);
    }
}

/* The --batch-us pause: the subscribers' frames pile up in their sockets (so that each recv
 * reads many, and the kernel sends one ACK per recv, not per frame), while the publisher (and,
 * in rate mode, the publishing timer) alone is still served at once, so the publishes in
 * flight stay K and the schedule holds. In rate mode it also spares the gateway a wake-up of
 * this process per frame it writes (nothing waits on the subscribers' epoll set meanwhile):
 * the cost of loopback, which 1,000 real clients on other machines would not put on it; each
 * latency may then be up to --batch-us longer than it was. */
static void batch_pause(void) {
    static struct epoll_event events[4];
    int64_t deadline = now_ns() + batch_us * 1000LL, now;
    while ((now = now_ns()) < deadline) {
        struct timespec left = {(deadline - now) / 1000000000, (deadline - now) % 1000000000};
        int n = epoll_pwait2(ep_pub, events, 4, &left, NULL);
        if (n < 0 && errno != EINTR) die("epoll_pwait2: %s", strerror(errno));
        if (n > 0) {
            now_cached = now_ns();
            dispatch(events, n);
        }
    }
}

/* One epoll_wait round. In saturation mode the time is taken once per wake-up (cheap: it only
 * dates the last notification); in rate mode on_readable takes it again after each recv, for
 * the latencies. */
static int poll_once(int64_t timeout_ns) {
    static struct epoll_event events[MAX_EVENTS];
    int timeout_ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
    int n = epoll_wait(ep, events, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return 0;
        die("epoll_wait: %s", strerror(errno));
    }
    now_cached = now_ns();
    dispatch(events, n);
    if (n > 0 && batch_us > 0 && measuring) batch_pause();
    return n;
}

static void run_until(int64_t deadline) {
    for (int64_t now = now_ns(); now < deadline; now = now_ns()) poll_once(deadline - now);
}

/* Read until no notification has come for 0.5 s (counted from now at the earliest). */
static void drain(void) {
    int64_t start = now_ns(), now, quiet_from;
    while ((quiet_from = last_notification > start ? last_notification : start),
           (now = now_ns()) < quiet_from + DRAIN_NS)
        poll_once(quiet_from + DRAIN_NS - now);
}

static void setup_subscribers(void) {
    int64_t deadline = now_ns() + (int64_t)(setup_timeout * 1e9);
    int next = 0;
    while (subscribed < subscribers) {
        /* at most connect_batch handshakes under way: the accept backlog is not exceeded */
        while (next < subscribers && next - upgraded < connect_batch) {
            open_conn(&subs[next], next % nports, 0);
            next++;
        }
        int64_t now = now_ns();
        if (now >= deadline)
            die("setup timed out after %gs: %d connected, %d upgraded, %d subscribed of %d",
                setup_timeout, opened, upgraded, subscribed, subscribers);
        poll_once(deadline - now < 100000000 ? deadline - now : 100000000);
    }
}

static void setup_publisher(void) {
    int64_t deadline = now_ns() + (int64_t)(setup_timeout * 1e9);
    int port_idx = 0;
    for (int i = 0; i < nports; i++)
        if (ports[i] == pub_port) port_idx = i;
    if (pub_port >= 0 && ports[port_idx] != pub_port) { /* a port not in --ports */
        port_idx = nports;
        ports[nports] = pub_port; /* not counted in nports: no subscriber uses it */
    }
    open_conn(&pub, port_idx, 1);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &pub};
    if (epoll_ctl(ep_pub, EPOLL_CTL_ADD, pub.fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    while (pub.state != ST_OPEN) {
        int64_t now = now_ns();
        if (now >= deadline) die("publisher: no handshake within %gs", setup_timeout);
        poll_once(deadline - now);
    }
}

static void close_all(void) {
    static const char bye[2] = {0x03, (char)0xe8}; /* 1000: normal closure */
    for (int i = 0; i <= subscribers; i++) {
        conn_t *c = i < subscribers ? &subs[i] : &pub;
        if (c->fd < 0 || c->state != ST_OPEN) continue;
        c->state = ST_CLOSING;
        send_frame(c, 8, bye, 2);
    }
    int64_t deadline = now_ns() + 3000000000LL, now;
    for (;;) {
        int left = 0;
        for (int i = 0; i < subscribers; i++) left += subs[i].fd >= 0;
        left += pub.fd >= 0;
        if (!left || (now = now_ns()) >= deadline) break;
        poll_once(deadline - now);
    }
    for (int i = 0; i < subscribers; i++) close_fd(&subs[i]);
    close_fd(&pub);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* nearest rank: the smallest sample with at least q of all samples at or under it */
static size_t rank(double q, size_t n) {
    size_t r = (size_t)(q * (double)n + 0.999999999);
    return r ? r - 1 : 0;
}

static void print_ms(int64_t ns) { printf("%.3f", ns / 1e6); }

static void report(double elapsed, uint64_t delivered, const uint64_t *by_port, uint64_t lost,
                   double cpu_total, double cpu_publishing, uint64_t delivered_publishing) {
    printf("{\"mode\":\"%s\",\"subscribers\":%d,\"sent\":%" PRIu64 ",\"delivered\":%" PRIu64
           ",\"delivered_by_port\":[",
           saturation ? "saturation" : "rate", subscribers, sent, delivered);
    for (int i = 0; i < nports; i++) printf("%s%" PRIu64, i ? "," : "", by_port[i]);
    printf("],\"elapsed\":%.6f,\"rate\":%.1f,\"lost\":%" PRId64 ",", elapsed,
           elapsed > 0 ? delivered / elapsed : 0.0, (int64_t)lost);
    if (saturation || !nsamples) {
        printf("\"latency_ms\":null,\"latency_p99_by_port_ms\":null,");
    } else {
        qsort(samples, nsamples, sizeof *samples, cmp_i64);
        static const double qs[] = {0.5, 0.9, 0.99, 0.999};
        static const char *names[] = {"p50", "p90", "p99", "p999"};
        printf("\"latency_ms\":{");
        for (int i = 0; i < 4; i++) {
            printf("\"%s\":", names[i]);
            print_ms(samples[rank(qs[i], nsamples)] >> 8);
            putchar(',');
        }
        printf("\"max\":");
        print_ms(samples[nsamples - 1] >> 8);
        printf("},\"latency_p99_by_port_ms\":[");
        /* samples are sorted by latency; each port's p99 is its rank-th sample in that order */
        size_t count[MAX_PORTS] = {0}, target[MAX_PORTS];
        int64_t p99[MAX_PORTS];
        for (size_t i = 0; i < nsamples; i++) count[samples[i] & 0xff]++;
        for (int p = 0; p < nports; p++) target[p] = count[p] ? rank(0.99, count[p]) + 1 : 0,
                                         count[p] = 0, p99[p] = -1;
        for (size_t i = 0; i < nsamples; i++) {
            int p = (int)(samples[i] & 0xff);
            if (++count[p] == target[p]) p99[p] = samples[i] >> 8;
        }
        for (int p = 0; p < nports; p++) {
            if (p) putchar(',');
            if (p99[p] < 0) printf("null");
            else print_ms(p99[p]);
        }
        printf("],");
    }
    printf("\"samples\":%zu,\"samples_dropped\":%zu,\"cpu_s\":%.3f,\"cpu_s_publishing\":%.3f,"
           "\"cpu_us_per_notification\":%.4f,\"publish_answers\":%" PRIu64 "}\n",
           nsamples, samples_dropped, cpu_total, cpu_publishing,
           delivered_publishing ? cpu_publishing / delivered_publishing * 1e6 : 0.0, pub_answers);
}

static void usage(int status) {
    fputs("usage: wsload --ports P1,P2,... [--subscribers N] [--publisher-port P]\n"
          "              (--rate R | --in-flight K) [--duration S] [--warmup S] [--settle S]\n"
          "              [--batch-us US] [--connect-batch N] [--timeout S] [--max-samples N]\n"
          "              [--subscribe JSON] [--publish-template JSON-with-%T%] [--marks 1]\n"
          "              [--timeline FILE]\n",
          status ? stderr : stdout);
    exit(status);
}

static double num(const char *flag, const char *v, double min) {
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || x < min) die("%s: bad value %s", flag, v);
    return x;
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) usage(0);
        if (i + 1 >= argc) die("%s needs a value", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--ports")) {
            nports = 0;
            char *copy = strdup(v), *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (nports == MAX_PORTS - 1) die("too many ports");
                double p = num(f, tok, 1);
                if (p > 65535) die("--ports: bad port %s", tok);
                ports[nports++] = (int)p;
            }
            free(copy);
        } else if (!strcmp(f, "--subscribers")) subscribers = (int)num(f, v, 1);
        else if (!strcmp(f, "--publisher-port")) pub_port = (int)num(f, v, 1);
        else if (!strcmp(f, "--rate")) rate = num(f, v, 1e-9);
        else if (!strcmp(f, "--in-flight")) in_flight = (int)num(f, v, 1);
        else if (!strcmp(f, "--duration")) duration = num(f, v, 0);
        else if (!strcmp(f, "--warmup")) warmup = num(f, v, 0);
        else if (!strcmp(f, "--settle")) settle = num(f, v, 0);
        else if (!strcmp(f, "--timeout")) setup_timeout = num(f, v, 0.001);
        else if (!strcmp(f, "--batch-us")) batch_us = (long)num(f, v, 0);
        else if (!strcmp(f, "--connect-batch")) connect_batch = (long)num(f, v, 1);
        else if (!strcmp(f, "--max-samples")) max_samples = (size_t)num(f, v, 1);
        else if (!strcmp(f, "--marks")) marks = (long)num(f, v, 0);
        else if (!strcmp(f, "--timeline")) {
            timeline = fopen(v, "w");
            if (!timeline) die("--timeline %s: %s", v, strerror(errno));
        }
        else if (!strcmp(f, "--subscribe")) subscribe_json = v;
        else if (!strcmp(f, "--publish-template")) publish_template = v;
        else die("unknown option %s (--help lists them)", f);
    }
    if (!nports) die("--ports is required");
    if ((rate > 0) == (in_flight > 0)) die("give one of --rate R or --in-flight K");
    const char *mark = strstr(publish_template, "%T%");
    if (!mark) die("--publish-template has no %%T%% placeholder");
    tpl_head = publish_template;
    tpl_head_len = (size_t)(mark - publish_template);
    tpl_tail = mark + 3;
    tpl_tail_len = strlen(tpl_tail);
}

static void mark(const char *phase) {
    if (marks) {
        fprintf(stderr, "mark %s\n", phase);
        fflush(stderr);
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    ep_pub = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || ep_pub < 0) die("epoll_create1: %s", strerror(errno));
    subs = calloc((size_t)subscribers, sizeof *subs);
    if (!subs) die("out of memory");
    pub.fd = -1;
    saturation = in_flight > 0;

    setup_subscribers();
    run_until(now_ns() + (int64_t)(settle * 1e9)); /* the other members learn of them */
    setup_publisher();

    mark("publishing");
    double cpu_start = cpu_seconds();
    measuring = 1;
    uint64_t before_all = delivered_all, before_by_port[MAX_PORTS], by_port[MAX_PORTS];
    memcpy(before_by_port, delivered_by_port, sizeof before_by_port);
    double elapsed;
    if (saturation) {
        publishing = 1;
        int64_t start = now_ns();
        for (int i = 0; i < in_flight; i++) send_publish();
        run_until(start + (int64_t)(warmup * 1e9));
        before_all = delivered_all;
        memcpy(before_by_port, delivered_by_port, sizeof before_by_port);
        mark("counting");
        int64_t counting = now_ns();
        run_until(counting + (int64_t)(duration * 1e9));
        publishing = 0; /* then count what the members still had queued: a member falling
                           behind must not look faster than it is */
        drain();
        elapsed = last_notification > counting ? (last_notification - counting) / 1e9 : 0;
    } else {
        record_latency = 1;
        rate_period = (int64_t)(subscribers / rate * 1e9);
        if (rate_period < 1000) die("--rate too high: a publish every %" PRId64 " ns",
                                    rate_period);
        timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (timer_fd < 0) die("timerfd_create: %s", strerror(errno));
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &timer_tag};
        epoll_ctl(ep, EPOLL_CTL_ADD, timer_fd, &ev);
        epoll_ctl(ep_pub, EPOLL_CTL_ADD, timer_fd, &ev); /* served during --batch-us too */
        rate_start = now_ns() + 1000000; /* absolute deadlines from 1 ms on */
        rate_end = rate_start + (int64_t)(duration * 1e9);
        struct itimerspec its = {
            .it_interval = {rate_period / 1000000000, rate_period % 1000000000},
            .it_value = {rate_start / 1000000000, rate_start % 1000000000}};
        if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
            die("timerfd_settime: %s", strerror(errno));
        publishing = 1;
        while (publishing) poll_once(-1);
        struct itimerspec off = {0};
        timerfd_settime(timer_fd, 0, &off, NULL);
        drain();
        /* the asked duration, or longer if the last notification came later (falling behind) */
        elapsed = (last_notification - rate_start) / 1e9;
        if (elapsed < duration) elapsed = duration;
    }
    mark("done");
    if (timeline) fclose(timeline);
    uint64_t delivered = delivered_all - before_all;
    for (int i = 0; i < nports; i++) by_port[i] = delivered_by_port[i] - before_by_port[i];
    /* lost counts the whole run (warm-up included): every publish sent should have reached
     * every subscriber once the queues drained */
    uint64_t lost = sent * (uint64_t)subscribers - delivered_all;
    measuring = 0;
    double cpu_publishing = cpu_seconds() - cpu_start;
    uint64_t delivered_publishing = delivered_all;
    close_all();
    report(elapsed, delivered, by_port, lost, cpu_seconds(), cpu_publishing,
           delivered_publishing);
    return 0;
}
