/* The load tool's native receive path: count what viewer bots receive, off the event loop.
 *
 * Once a bot has its first keyframe (found in Python), its ICE socket is handed here: a thread
 * drains every such socket with epoll and recvmmsg and reads each SRTP packet's clear header,
 * as bot.py does in Python for one datagram at a time (~9 us each): sequence gaps (kept for
 * Python to NACK), late packets, frames, and, for video, the latency against the publisher's
 * send log. Datagrams that are not RTP (STUN, SRTCP) are queued for Python to give to aiortc.
 * The thread runs without the GIL; Python reads the counters while it writes them (plain
 * aligned integers, read for reporting only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "counter.h"

#define BURST 32
#define STREAMS 4

struct bench_counter {
    int capacity;
    int epoll;
    volatile int running;
    struct bench_socket *sockets;
    const double *sent_at;
    const uint16_t *sizes;
    const int64_t *newest;
    pthread_mutex_t lock; /* guards both queues */
    struct bench_pending *pending;
    int pending_head, pending_count;
    uint64_t pending_dropped;
    struct bench_event *events;
    int event_head, event_count;
};

static void queue_event(struct bench_counter *c, struct bench_event event) {
    pthread_mutex_lock(&c->lock);
    if (c->event_count < BENCH_EVENTS)
        c->events[(c->event_head + c->event_count++) % BENCH_EVENTS] = event;
    pthread_mutex_unlock(&c->lock);
}

struct bench_counter *bench_counter_new(int capacity, const double *sent_at,
                                        const uint16_t *sizes, const int64_t *newest) {
    struct bench_counter *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->capacity = capacity;
    c->sockets = calloc((size_t)capacity, sizeof *c->sockets);
    c->pending = calloc(BENCH_PENDING, sizeof *c->pending);
    c->events = calloc(BENCH_EVENTS, sizeof *c->events);
    c->epoll = epoll_create1(EPOLL_CLOEXEC);
    c->sent_at = sent_at;
    c->sizes = sizes;
    c->newest = newest;
    c->running = 1;
    pthread_mutex_init(&c->lock, NULL);
    if (c->sockets == NULL || c->pending == NULL || c->events == NULL || c->epoll < 0) {
        bench_counter_free(c);
        return NULL;
    }
    return c;
}

struct bench_socket *bench_socket(struct bench_counter *c, int slot) {
    return slot >= 0 && slot < c->capacity ? &c->sockets[slot] : NULL;
}

int bench_watch(struct bench_counter *c, int slot) {
    struct bench_socket *s = bench_socket(c, slot);
    if (s == NULL) return -1;
    struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
    s->active = 1;
    return epoll_ctl(c->epoll, EPOLL_CTL_ADD, s->fd, &event);
}

int bench_unwatch(struct bench_counter *c, int slot) {
    struct bench_socket *s = bench_socket(c, slot);
    if (s == NULL || !s->active) return -1;
    s->active = 0;
    return epoll_ctl(c->epoll, EPOLL_CTL_DEL, s->fd, NULL);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* Python's time.perf_counter on Linux */
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* bot.py's _align: find the publisher's run of packets whose sizes match ours. */
static void align(struct bench_counter *c, struct bench_stream *st, uint16_t seq, uint16_t size) {
    if (st->align_count && (uint16_t)(seq - st->align_seqs[st->align_count - 1]) != 1)
        st->align_count = 0;
    st->align_seqs[st->align_count] = seq;
    st->align_sizes[st->align_count++] = size;
    int64_t newest = *c->newest;
    if (st->align_count < BENCH_ALIGN || newest < 0) return;
    for (int back = BENCH_ALIGN - 1; back < BENCH_ALIGN_SEARCH; back++) {
        uint16_t start = (uint16_t)(newest - back);
        int32_t delta = (int32_t)st->align_sizes[0] - (int32_t)c->sizes[start];
        int i = 0;
        while (i < BENCH_ALIGN &&
               (int32_t)c->sizes[(uint16_t)(start + i)] + delta == (int32_t)st->align_sizes[i])
            i++;
        if (i == BENCH_ALIGN) {
            st->offset = (uint16_t)(st->align_seqs[0] - start);
            st->size_delta = delta;
            break;
        }
    }
    st->align_count = 0;
}

static void measure(struct bench_counter *c, struct bench_stream *st, uint16_t seq,
                    uint16_t size, double now) {
    if (st->offset < 0) {
        align(c, st, seq, size);
        return;
    }
    uint16_t upstream = (uint16_t)(seq - st->offset);
    if ((int32_t)c->sizes[upstream] + st->size_delta == (int32_t)size) {
        double latency = now - c->sent_at[upstream];
        if (latency >= 0.0 && latency < 2.0) {
            if (st->latency_count < BENCH_LATENCIES) st->latencies[st->latency_count++] = latency;
            return;
        }
    }
    if (++st->mismatches > 16) { /* the server re-based our sequence numbers: align again */
        st->offset = -1;
        st->mismatches = 0;
    }
}

static struct bench_stream *stream_for(struct bench_counter *c, int slot, uint32_t ssrc,
                                       uint16_t seq, uint8_t payload_type) {
    struct bench_socket *s = &c->sockets[slot];
    for (int i = 0; i < STREAMS; i++)
        if (s->streams[i].used && s->streams[i].ssrc == ssrc) return &s->streams[i];
    for (int i = 0; i < STREAMS; i++) {
        struct bench_stream *st = &s->streams[i];
        if (st->used) continue;
        memset(st, 0, offsetof(struct bench_stream, latencies));
        st->used = 1;
        st->ssrc = ssrc;
        st->first_ext = st->highest_ext = seq;
        st->highest = seq;
        st->offset = -1;
        for (int t = 0; t < s->video_type_count; t++)
            if (s->video_types[t] == payload_type) st->video = 1;
        queue_event(c, (struct bench_event){.slot = slot, .kind = BENCH_NEW_STREAM, .stream = i,
                                            .ssrc = ssrc});
        return st;
    }
    return NULL;
}

/* bot.py's _on_rtp, for one datagram already known to be RTP. */
static void count(struct bench_counter *c, int slot, const uint8_t *data, int size, double now) {
    uint16_t seq = (uint16_t)(data[2] << 8 | data[3]);
    uint32_t ssrc = (uint32_t)data[8] << 24 | (uint32_t)data[9] << 16 | (uint32_t)data[10] << 8 |
                    data[11];
    struct bench_stream *st = stream_for(c, slot, ssrc, seq, data[1] & 0x7F);
    if (st == NULL) return;
    st->packets++;
    st->octets += (uint64_t)size;
    if (data[1] & 0x80) st->frames++;
    uint16_t delta = (uint16_t)(seq - st->highest);
    if (delta == 0 && st->packets > 1) {
        st->late++; /* a duplicate */
        return;
    }
    if (delta >= 0x8000) {
        st->late++; /* a retransmission of a gap, or reordering */
        return;
    }
    if (delta > 1)
        queue_event(c, (struct bench_event){.slot = slot, .kind = BENCH_GAP, .ssrc = ssrc,
                                            .seq = (uint16_t)(seq - 1),
                                            .count = (uint16_t)(delta - 1)});
    st->highest = seq;
    st->highest_ext += delta;
    if (st->video) measure(c, st, seq, (uint16_t)size, now);
}

static void queue_pending(struct bench_counter *c, int slot, const uint8_t *data, int size,
                          const struct msghdr *header) {
    pthread_mutex_lock(&c->lock);
    if (c->pending_count == BENCH_PENDING || size > 1500) {
        c->pending_dropped++;
    } else {
        struct bench_pending *p = &c->pending[(c->pending_head + c->pending_count++) % BENCH_PENDING];
        p->slot = slot;
        p->size = size;
        memcpy(p->data, data, (size_t)size);
        p->address_len = header->msg_namelen <= sizeof p->address ? header->msg_namelen : 0;
        memcpy(p->address, header->msg_name, p->address_len);
    }
    pthread_mutex_unlock(&c->lock);
}

void bench_run(struct bench_counter *c) {
    static __thread uint8_t buffers[BURST][2048];
    static __thread uint8_t names[BURST][28];
    struct mmsghdr messages[BURST];
    struct iovec vectors[BURST];
    struct epoll_event ready[256];
    while (c->running) {
        int n = epoll_wait(c->epoll, ready, 256, 100);
        for (int i = 0; i < n; i++) {
            int slot = (int)ready[i].data.u32;
            struct bench_socket *s = &c->sockets[slot];
            for (;;) {
                for (int m = 0; m < BURST; m++) {
                    vectors[m].iov_base = buffers[m];
                    vectors[m].iov_len = sizeof buffers[m];
                    memset(&messages[m], 0, sizeof messages[m]);
                    messages[m].msg_hdr.msg_iov = &vectors[m];
                    messages[m].msg_hdr.msg_iovlen = 1;
                    messages[m].msg_hdr.msg_name = names[m];
                    messages[m].msg_hdr.msg_namelen = sizeof names[m];
                }
                int got = recvmmsg(s->fd, messages, BURST, MSG_DONTWAIT, NULL);
                if (got <= 0) break;
                double now = now_seconds();
                for (int m = 0; m < got; m++) {
                    const uint8_t *data = buffers[m];
                    int size = (int)messages[m].msg_len;
                    /* RFC 7983: 128-191 is RTP or RTCP; RTCP packet types are 192-223. */
                    if (size >= 12 && data[0] > 127 && data[0] < 192 &&
                        !(data[1] > 191 && data[1] < 224))
                        count(c, slot, data, size, now);
                    else
                        queue_pending(c, slot, data, size, &messages[m].msg_hdr);
                }
                if (got < BURST) break;
            }
        }
    }
}

void bench_stop(struct bench_counter *c) { c->running = 0; }

int bench_take_pending(struct bench_counter *c, struct bench_pending *out, int most) {
    pthread_mutex_lock(&c->lock);
    int taken = 0;
    while (taken < most && c->pending_count > 0) {
        out[taken++] = c->pending[c->pending_head];
        c->pending_head = (c->pending_head + 1) % BENCH_PENDING;
        c->pending_count--;
    }
    pthread_mutex_unlock(&c->lock);
    return taken;
}

int bench_take_events(struct bench_counter *c, struct bench_event *out, int most) {
    pthread_mutex_lock(&c->lock);
    int taken = 0;
    while (taken < most && c->event_count > 0) {
        out[taken++] = c->events[c->event_head];
        c->event_head = (c->event_head + 1) % BENCH_EVENTS;
        c->event_count--;
    }
    pthread_mutex_unlock(&c->lock);
    return taken;
}

uint64_t bench_dropped_pending(struct bench_counter *c) { return c->pending_dropped; }

void bench_counter_free(struct bench_counter *c) {
    if (c == NULL) return;
    if (c->epoll >= 0) close(c->epoll);
    pthread_mutex_destroy(&c->lock);
    free(c->pending);
    free(c->events);
    free(c->sockets);
    free(c);
}
