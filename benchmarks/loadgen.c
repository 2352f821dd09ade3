/*
 * sockproto's load generator: one thread, epoll, written in C so that it is
 * not the bottleneck when it drives Python servers (run.py shows it drives a
 * C echo server much faster than any server measured).
 *
 *   loadgen echo HOST PORT CONNS SIZE INFLIGHT SECONDS
 *       CONNS connections, each keeping INFLIGHT messages of SIZE bytes in
 *       flight; every 8th message echoed is compared byte for byte with what
 *       was sent, the rest are counted and dropped unread (MSG_TRUNC).
 *   loadgen chat HOST PORT CLIENTS RATE SECONDS HELLO [SETTLE]
 *       CLIENTS chat clients; RATE lines a second offered in all, round
 *       robin, each "m SENDER SEQ STAMP" (fixed-width hexadecimal, 23
 *       bytes with its newline); every delivery is counted and timed, and
 *       found at the end of the line the server sends (or in its JSON's
 *       "text"), whatever comes before.  HELLO is "none" (the
 *       server greets each client), "silent" (it does not), "name" (it
 *       asks for a name first), "ws" (a WebSocket at /ws, as the chat's
 *       web page speaks it: JSON messages, the client's frames masked, as
 *       a browser's are), or "irc" (NICK, USER, JOIN #lobby; lines are
 *       PRIVMSG #lobby).  SETTLE: seconds to wait, reading, between the
 *       last client's greeting and the first line (default 0).
 *   loadgen idle HOST PORT CLIENTS HELLO
 *       CLIENTS idle clients; prints {"ready": N} once each got a line,
 *       waits for a line on standard input, then times one line's
 *       delivery to all of them.
 *
 * Results are one JSON object on standard output.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 1024
#define LINE_MAX_BYTES 65536

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void raise_fd_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

static int connect_to(const char *host, int port) {
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) die("inet_pton");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    for (int attempt = 0;; attempt++) {
        if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0) break;
        if (errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR) die("connect");
        if (attempt > 100) die("connect");
        usleep(10000);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* CPU time this process used, in seconds: how busy the load generator was. */
static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_stime.tv_sec +
           ((double)usage.ru_utime.tv_usec + (double)usage.ru_stime.tv_usec) / 1e6;
}

/* The numbers in a chat line are fixed-width hexadecimal, so that reading
   them back costs no scanning: at tens of millions of deliveries a second,
   parsing variable-width decimals was half of the load generator's time.
   The stamp is in microseconds since the load generator started (8 digits:
   71 minutes). */
#define SENDER_HEX 4 /* chat_line reads exactly these widths */
#define SEQ_HEX 6
#define STAMP_HEX 8
#define STAMP_LINE_BYTES (2 + SENDER_HEX + 1 + SEQ_HEX + 1 + STAMP_HEX) /* "m S Q T" */

static uint64_t epoch_us; /* stamps count from here */

static void put_hex(char *p, uint64_t value, int digits) {
    for (int i = digits - 1; i >= 0; i--, value >>= 4) p[i] = "0123456789abcdef"[value & 15];
}

/* Whether each of the 8 bytes of C{v} is one of 0-9 a-f, with no
   branches: a byte's top bit marks it in range after an add. */
static inline int all_hex(uint64_t v) {
    const uint64_t ones = 0x0101010101010101u, top = 0x8080808080808080u;
    uint64_t digit = (v + 0x50 * ones) & ~(v + 0x46 * ones);
    uint64_t letter = (v + 0x1f * ones) & ~(v + 0x19 * ones);
    return !(v & top) && ((digit | letter) & top) == top;
}

/* The value of 8 hexadecimal digits loaded from memory into C{v} (the
   first, the most significant, in the low byte), in a few shifts and masks;
   *ok is cleared if one is not a digit. */
static inline uint64_t hex8(uint64_t v, int *ok) {
    *ok &= all_hex(v);
    v = (v & 0x0f0f0f0f0f0f0f0fu) + 9 * ((v >> 6) & 0x0101010101010101u);
    v = ((v << 4) & 0x00f000f000f000f0u) | ((v >> 8) & 0x000f000f000f000fu);
    v = ((v << 8) & 0x0000ff000000ff00u) | ((v >> 16) & 0x000000ff000000ffu);
    return ((v << 16) & 0xffff0000u) | ((v >> 32) & 0xffffu);
}

/* The 8 bytes at C{p} as one word (p[0] the low byte on x86 and arm64). */
static uint64_t load8(const char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Latency samples. */
typedef struct {
    uint64_t *values;
    size_t count, capacity;
} samples_t;

static void add_sample(samples_t *s, uint64_t value) {
    if (s->count == s->capacity) {
        s->capacity = s->capacity ? s->capacity * 2 : 1 << 16;
        s->values = realloc(s->values, s->capacity * sizeof *s->values);
        if (!s->values) die("realloc");
    }
    s->values[s->count++] = value;
}

static uint64_t percentile(samples_t *s, double p) {
    if (!s->count) return 0;
    qsort(s->values, s->count, sizeof *s->values, compare_u64);
    size_t index = (size_t)(p * (double)(s->count - 1));
    return s->values[index];
}

/* Chat latencies, in 10 us buckets up to 10 s (the last bucket: more):
   millions of deliveries a second, counted without a sort or a copy. */
#define HISTOGRAM_BUCKETS 1000001
static uint32_t *histogram;
static uint64_t histogram_count;

static void add_latency(uint64_t us) {
    uint64_t bucket = us / 10;
    histogram[bucket < HISTOGRAM_BUCKETS - 1 ? bucket : HISTOGRAM_BUCKETS - 1]++;
    histogram_count++;
}

static double latency_ms(double p) {
    if (!histogram_count) return 0;
    uint64_t rank = (uint64_t)(p * (double)(histogram_count - 1)), seen = 0;
    for (size_t b = 0; b < HISTOGRAM_BUCKETS; b++) {
        seen += histogram[b];
        if (seen > rank) return (double)b / 100.0;
    }
    return 1e4;
}

/* ---------------------------------------------------------------- echo */

typedef struct {
    int fd;
    uint64_t sent_msgs, recv_msgs;
    size_t send_off, recv_off;
    uint64_t *sent_at;
    int want_write, waiting_out;
} echo_conn_t;

static const unsigned char *pattern;

/* One message in VERIFY_EVERY is compared byte for byte with what was sent;
   the others are counted and dropped in the kernel (MSG_TRUNC, which TCP
   takes to mean "discard"): copying every echoed byte out was more than
   half of the load generator's time in bulk runs, which made it, not the
   servers, the limit. */
#define VERIFY_EVERY 8

static const unsigned char *message_bytes(uint64_t k) { return pattern + (k & 0xff); }

static int run_echo(const char *host, int port, int conns, size_t size, int inflight,
                    double seconds) {
    unsigned char *base = malloc(size + 256);
    for (size_t i = 0; i < size + 256; i++) base[i] = (unsigned char)(i * 7 + 3);
    pattern = base;
    int ep = epoll_create1(0);
    echo_conn_t *c = calloc((size_t)conns, sizeof *c);
    for (int i = 0; i < conns; i++) {
        c[i].fd = connect_to(host, port);
        c[i].sent_at = calloc((size_t)inflight, sizeof(uint64_t));
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
        c[i].want_write = 1;
    }
    samples_t latency = {0};
    unsigned char *buffer = malloc(1 << 20);
    uint64_t start = now_us(), stop_sending = start + (uint64_t)(seconds * 1e6);
    uint64_t errors = 0, last_receive = start;
    int sending = 1;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        uint64_t now = now_us();
        if (sending && now >= stop_sending) sending = 0;
        int outstanding = 0;
        for (int i = 0; i < conns; i++) outstanding |= c[i].recv_msgs < c[i].sent_msgs;
        if (!sending && !outstanding) break;
        if (!sending && now > stop_sending + 5000000) break;
        int n = epoll_wait(ep, events, MAX_EVENTS, 10);
        for (int e = 0; e < n; e++) {
            echo_conn_t *k = &c[events[e].data.u32];
            if (events[e].events & EPOLLIN) {
                /* A checked message is read on its own and compared; up to
                   the next one, bytes are counted and dropped unread. */
                uint64_t left = VERIFY_EVERY - k->recv_msgs % VERIFY_EVERY;
                int check = left == VERIFY_EVERY;
                size_t want = check ? size - k->recv_off : left * size - k->recv_off;
                if (want > 1 << 20) want = 1 << 20;
                ssize_t got = recv(k->fd, buffer, want, check ? 0 : MSG_TRUNC);
                if (got == 0) die("server closed");
                if (got < 0 && errno != EAGAIN) die("read");
                size_t pos = 0;
                while (got > 0 && pos < (size_t)got) {
                    size_t take = size - k->recv_off;
                    if (take > (size_t)got - pos) take = (size_t)got - pos;
                    if (check &&
                        memcmp(buffer + pos, message_bytes(k->recv_msgs) + k->recv_off, take))
                        errors++;
                    pos += take;
                    k->recv_off += take;
                    if (k->recv_off == size) {
                        uint64_t t = now_us();
                        add_sample(&latency, t - k->sent_at[k->recv_msgs % (uint64_t)inflight]);
                        k->recv_msgs++;
                        k->recv_off = 0;
                        last_receive = t;
                        k->want_write = 1;
                    }
                }
            }
            if (events[e].events & EPOLLOUT) {
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = events[e].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, k->fd, &ev);
                k->waiting_out = 0;
                k->want_write = 1;
            }
        }
        for (int i = 0; i < conns; i++) {
            echo_conn_t *k = &c[i];
            while (k->want_write) {
                if (k->send_off == 0) {
                    if (!sending || k->sent_msgs - k->recv_msgs >= (uint64_t)inflight) {
                        k->want_write = 0;
                        break;
                    }
                    k->sent_at[k->sent_msgs % (uint64_t)inflight] = now_us();
                }
                ssize_t put = write(k->fd, message_bytes(k->sent_msgs) + k->send_off,
                                    size - k->send_off);
                if (put < 0) {
                    if (errno != EAGAIN) die("write");
                    if (!k->waiting_out) {
                        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                                 .data.u32 = (uint32_t)i};
                        epoll_ctl(ep, EPOLL_CTL_MOD, k->fd, &ev);
                        k->waiting_out = 1;
                    }
                    k->want_write = 0;
                    break;
                }
                k->send_off += (size_t)put;
                if (k->send_off == size) {
                    k->send_off = 0;
                    k->sent_msgs++;
                }
            }
        }
    }
    uint64_t messages = 0, unanswered = 0;
    for (int i = 0; i < conns; i++) {
        messages += c[i].recv_msgs;
        unanswered += c[i].sent_msgs - c[i].recv_msgs;
    }
    double elapsed = (double)(last_receive - start) / 1e6;
    printf("{\"loadgen_cpu\": %.2f, ", cpu_seconds() / ((double)(now_us() - start) / 1e6));
    printf("\"messages\": %llu, \"bytes\": %llu, \"seconds\": %.3f, "
           "\"round_trips_per_second\": %.1f, \"mb_per_second\": %.2f, "
           "\"p50_us\": %llu, \"p99_us\": %llu, \"errors\": %llu, \"unanswered\": %llu}\n",
           (unsigned long long)messages, (unsigned long long)(messages * size), elapsed,
           messages / elapsed, (double)(messages * size) / elapsed / 1e6,
           (unsigned long long)percentile(&latency, 0.50),
           (unsigned long long)percentile(&latency, 0.99), (unsigned long long)errors,
           (unsigned long long)unanswered);
    return errors || unanswered ? 1 : 0;
}

/* ---------------------------------------------------------------- chat */

typedef struct {
    int fd;
    char in[LINE_MAX_BYTES];
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
    uint64_t lines_in, deliveries;
    int upgraded; /* WebSocket mode: the server answered 101 */
    int writing;  /* registered for EPOLLOUT */
} chat_client_t;

static int websocket; /* HELLO "ws" */
static int irc;       /* HELLO "irc" */

static chat_client_t *clients;
static int client_count;
static uint64_t total_deliveries, last_delivery;
static uint64_t chat_start = UINT64_MAX; /* lines stamped before: history */

static void queue_text(chat_client_t *k, const char *text, size_t len) {
    if (k->out_len + len > k->out_cap) {
        k->out_cap = (k->out_len + len) * 2;
        k->out = realloc(k->out, k->out_cap);
        if (!k->out) die("realloc");
    }
    memcpy(k->out + k->out_len, text, len);
    k->out_len += len;
}

/* A line to send: as it is, or as a masked WebSocket text frame of JSON. */
static void queue_line(chat_client_t *k, const char *text, size_t len) {
    if (irc) {
        queue_text(k, "PRIVMSG #lobby :", 16);
        queue_text(k, text, len);
        return;
    }
    if (!websocket) {
        queue_text(k, text, len);
        return;
    }
    char json[160];
    int size = snprintf(json, sizeof json, "{\"type\":\"line\",\"text\":\"%.*s\"}",
                        (int)(len && text[len - 1] == '\n' ? len - 1 : len), text);
    unsigned char frame[8 + sizeof json];
    const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    frame[0] = 0x81;
    frame[1] = (unsigned char)(0x80 | size); /* size < 126 */
    memcpy(frame + 2, mask, 4);
    for (int i = 0; i < size; i++) frame[6 + i] = (unsigned char)json[i] ^ mask[i % 4];
    queue_text(k, (const char *)frame, (size_t)size + 6);
}

/* Queue the line "m SENDER SEQ STAMP" from client C{sender}. */
static void send_stamped(chat_client_t *k, int sender, uint64_t seq, uint64_t stamp) {
    char line[STAMP_LINE_BYTES + 1] = "m ";
    put_hex(line + 2, (uint64_t)sender, SENDER_HEX);
    line[2 + SENDER_HEX] = ' ';
    put_hex(line + 3 + SENDER_HEX, seq, SEQ_HEX);
    line[3 + SENDER_HEX + SEQ_HEX] = ' ';
    put_hex(line + 4 + SENDER_HEX + SEQ_HEX, stamp - epoch_us, STAMP_HEX);
    line[STAMP_LINE_BYTES] = '\n';
    queue_line(k, line, sizeof line);
}

static void flush_client(int ep, chat_client_t *k, int index) {
    while (k->out_len) {
        ssize_t put = write(k->fd, k->out, k->out_len);
        if (put < 0) {
            if (errno == EAGAIN) break;
            die("write");
        }
        memmove(k->out, k->out + put, k->out_len - (size_t)put);
        k->out_len -= (size_t)put;
    }
    int writing = k->out_len > 0;
    if (writing == k->writing) return; /* no epoll_ctl for each line */
    k->writing = writing;
    struct epoll_event ev = {.events = EPOLLIN | (writing ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)index};
    epoll_ctl(ep, EPOLL_CTL_MOD, k->fd, &ev);
}

/* Where the text "m ..." starts after C{before} (its first character)
   in a line, or NULL. */
static const char *after(const char *line, size_t len, const char *before, size_t n) {
    const char *end = line + len;
    for (const char *p = line; (p = memchr(p, before[0], (size_t)(end - p))); p++)
        if ((size_t)(end - p) >= n && !memcmp(p, before, n)) return p + n;
    return NULL;
}

/* Where a line's "m S Q T" starts, or NULL: at its end for plain lines
   ("<nick> m ...", "m ...", "PRIVMSG #lobby :m ...\r"), after "text" in
   JSON. */
static const char *stamped(const char *line, size_t len) {
    if (websocket) {
        const char *text = after(line, len, "\"text\": \"m ", 11);
        if (!text || (size_t)(line + len - text) < STAMP_LINE_BYTES - 2) return NULL;
        return text - 2;
    }
    if (len && line[len - 1] == '\r') len--;
    if (len < STAMP_LINE_BYTES) return NULL;
    const char *m = line + len - STAMP_LINE_BYTES;
    if (m > line && m[-1] != ' ' && m[-1] != ':') return NULL;
    return m;
}

/* A line "... m SENDER SEQ TIMESTAMP", received at C{t}: count it unless
   it is our own. */
static void chat_line(int index, const char *line, size_t len, uint64_t t) {
    chat_client_t *k = &clients[index];
    k->lines_in++;
    const char *m = stamped(line, len);
    if (!m || m[0] != 'm' || m[1] != ' ' || m[2 + SENDER_HEX] != ' ' ||
        m[3 + SENDER_HEX + SEQ_HEX] != ' ')
        return;
    int ok = 1;
    /* 4 digits of sender: the 8 bytes from there, the last 4 shifted out
       and "0000" shifted in before them. */
    uint64_t sender = hex8(load8(m + 2) << 32 | 0x30303030u, &ok);
    uint64_t sent_at = epoch_us + hex8(load8(m + 4 + SENDER_HEX + SEQ_HEX), &ok);
    if (!ok || (int)sender == index || sent_at < chat_start) return;
    k->deliveries++;
    total_deliveries++;
    last_delivery = t;
    add_latency(t > sent_at ? t - sent_at : 0);
}

/* The server's answer to the upgrade, then its frames (never masked):
   each complete text frame is a "line".  Returns where the unread part
   starts. */
static char *read_frames(int index, char *start, char *end, uint64_t t) {
    chat_client_t *k = &clients[index];
    if (!k->upgraded) {
        char *blank = memmem(start, (size_t)(end - start), "\r\n\r\n", 4);
        if (!blank) return start;
        if (memcmp(start, "HTTP/1.1 101", 12)) {
            fprintf(stderr, "loadgen: the server refused the WebSocket: %.40s\n", start);
            exit(2);
        }
        k->upgraded = 1;
        start = blank + 4;
    }
    for (;;) {
        size_t have = (size_t)(end - start), header = 2, size;
        if (have < 2) return start;
        const unsigned char *b = (const unsigned char *)start;
        size = b[1] & 0x7f;
        if (size == 126) {
            header = 4;
            if (have < header) return start;
            size = (size_t)b[2] << 8 | b[3];
        } else if (size == 127) {
            header = 10;
            if (have < header) return start;
            size = 0;
            for (int i = 2; i < 10; i++) size = size << 8 | b[i];
        }
        if (have < header + size) return start;
        if ((b[0] & 0x0f) == 1) chat_line(index, start + header, size, t);
        start += header + size;
    }
}

static void read_client(int index) {
    chat_client_t *k = &clients[index];
    for (;;) {
        size_t room = sizeof k->in - k->in_len;
        ssize_t got = read(k->fd, k->in + k->in_len, room);
        if (got == 0) die("server closed a chat client");
        if (got < 0) {
            if (errno == EAGAIN) return;
            die("read");
        }
        k->in_len += (size_t)got;
        uint64_t t = now_us(); /* every line of one read arrived together */
        char *start = k->in, *end = k->in + k->in_len, *nl;
        if (websocket) {
            start = read_frames(index, start, end, t);
        } else {
            while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
                chat_line(index, start, (size_t)(nl - start), t);
                start = nl + 1;
            }
        }
        k->in_len = (size_t)(end - start);
        memmove(k->in, start, k->in_len);
        if (k->in_len == sizeof k->in) k->in_len = 0; /* absurd line: drop */
        /* A short read emptied the socket: epoll (level-triggered) says
           when there is more, without a read() that fails with EAGAIN. */
        if ((size_t)got < room) return;
    }
}

static int pump(int ep, int timeout_ms) {
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(ep, events, MAX_EVENTS, timeout_ms);
    for (int e = 0; e < n; e++) {
        int index = (int)events[e].data.u32;
        if (events[e].events & EPOLLIN) read_client(index);
        if (events[e].events & EPOLLOUT) flush_client(ep, &clients[index], index);
    }
    return n;
}

static int connect_clients(const char *host, int port, int count, const char *hello) {
    int ep = epoll_create1(0);
    websocket = !strcmp(hello, "ws");
    irc = !strcmp(hello, "irc");
    client_count = count;
    clients = calloc((size_t)count, sizeof *clients);
    histogram = calloc(HISTOGRAM_BUCKETS, sizeof *histogram);
    if (!clients || !histogram) die("calloc");
    for (int i = 0; i < count; i++) {
        clients[i].fd = connect_to(host, port);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, clients[i].fd, &ev);
        if (websocket) {
            char request[256];
            int len = snprintf(request, sizeof request,
                               "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                               host, port);
            queue_text(&clients[i], request, (size_t)len);
            flush_client(ep, &clients[i], i);
        }
        if (irc) {
            char hello_irc[96];
            int len = snprintf(hello_irc, sizeof hello_irc,
                               "NICK c%d\r\nUSER c 0 * :c\r\nJOIN #lobby\r\n", i);
            queue_text(&clients[i], hello_irc, (size_t)len);
            flush_client(ep, &clients[i], i);
        }
        if (!strcmp(hello, "name")) {
            char name[32];
            int len = snprintf(name, sizeof name, "c%d\n", i);
            queue_text(&clients[i], name, (size_t)len);
            flush_client(ep, &clients[i], i);
        }
        if (i % 100 == 99) pump(ep, 0);
    }
    /* Wait until everyone got a first line (a welcome), then for quiet. */
    uint64_t deadline = now_us() + 60000000;
    for (; strcmp(hello, "silent");) {
        int waiting = 0;
        for (int i = 0; i < count; i++) waiting += clients[i].lines_in == 0;
        if (!waiting) break;
        if (now_us() > deadline) {
            fprintf(stderr, "loadgen: %d clients got no line\n", waiting);
            exit(2);
        }
        pump(ep, 10);
    }
    while (pump(ep, 300) > 0) {
    }
    return ep;
}

static int run_chat(const char *host, int port, int count, double rate, double seconds,
                    const char *hello, double settle) {
    int ep = connect_clients(host, port, count, hello);
    /* Let the server finish greeting everyone (joins, notices) first. */
    uint64_t settled = now_us() + (uint64_t)(settle * 1e6);
    while (now_us() < settled) pump(ep, 10);
    double cpu_start = cpu_seconds();
    printf("measuring\n"); /* the caller may look at the server from here */
    fflush(stdout);
    uint64_t start = now_us(), stop = start + (uint64_t)(seconds * 1e6);
    chat_start = start; /* a room's history, from an earlier run, is not counted */
    uint64_t sent = 0;
    int next = 0;
    for (;;) {
        uint64_t now = now_us();
        if (now >= stop) break;
        uint64_t due = (uint64_t)((double)(now - start) / 1e6 * rate);
        while (sent < due) {
            send_stamped(&clients[next], next, sent, now_us());
            flush_client(ep, &clients[next], next);
            next = (next + 1) % count;
            sent++;
        }
        pump(ep, 1);
    }
    uint64_t expected = sent * (uint64_t)(count - 1);
    uint64_t drain_until = now_us() + 10000000;
    while (total_deliveries < expected && now_us() < drain_until) pump(ep, 10);
    double elapsed = (double)((last_delivery > stop ? last_delivery : stop) - start) / 1e6;
    printf("{\"loadgen_cpu\": %.2f, ", (cpu_seconds() - cpu_start) / elapsed);
    printf("\"clients\": %d, \"offered_lines_per_second\": %.0f, \"lines_sent\": %llu, "
           "\"deliveries\": %llu, \"expected\": %llu, \"complete\": %s, "
           "\"seconds\": %.3f, \"deliveries_per_second\": %.1f, "
           "\"p50_ms\": %.2f, \"p99_ms\": %.2f}\n",
           count, rate, (unsigned long long)sent, (unsigned long long)total_deliveries,
           (unsigned long long)expected, total_deliveries == expected ? "true" : "false",
           elapsed, (double)total_deliveries / elapsed,
           latency_ms(0.50), latency_ms(0.99));
    return 0;
}

static int run_idle(const char *host, int port, int count, const char *hello) {
    int ep = connect_clients(host, port, count, hello);
    printf("{\"ready\": %d}\n", count);
    fflush(stdout);
    char go[16];
    if (!fgets(go, sizeof go, stdin)) return 2;
    uint64_t start = now_us();
    chat_start = start;
    send_stamped(&clients[0], 0, 0, start);
    flush_client(ep, &clients[0], 0);
    uint64_t deadline = start + 60000000;
    while (total_deliveries < (uint64_t)(count - 1) && now_us() < deadline) pump(ep, 10);
    printf("{\"clients\": %d, \"deliveries\": %llu, \"fanout_ms\": %.2f}\n", count,
           (unsigned long long)total_deliveries, (double)(last_delivery - start) / 1000.0);
    return total_deliveries == (uint64_t)(count - 1) ? 0 : 1;
}

int main(int argc, char **argv) {
    raise_fd_limit();
    epoch_us = now_us();
    if (argc == 8 && !strcmp(argv[1], "echo"))
        return run_echo(argv[2], atoi(argv[3]), atoi(argv[4]), (size_t)atol(argv[5]),
                        atoi(argv[6]), atof(argv[7]));
    if ((argc == 8 || argc == 9) && !strcmp(argv[1], "chat"))
        return run_chat(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atof(argv[6]),
                        argv[7], argc == 9 ? atof(argv[8]) : 0.0);
    if (argc == 6 && !strcmp(argv[1], "idle"))
        return run_idle(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5]);
    fprintf(stderr, "usage: see the comment at the top of loadgen.c\n");
    return 2;
}
