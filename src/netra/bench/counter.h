/* The load tool's native receive path. Read by the C compiler and, as it is, by cffi. */

#define BENCH_ALIGN 32              /* consecutive video packets that locate a bot in the log */
#define BENCH_ALIGN_SEARCH 4000     /* how far back in the send log to look */
#define BENCH_EVENTS 4096           /* gaps and new streams awaiting Python */
#define BENCH_LATENCIES 2048        /* latency samples kept per stream and window */
#define BENCH_PENDING 1024          /* datagrams for aiortc (STUN, RTCP) awaiting Python */

struct bench_stream {
    uint32_t ssrc;
    uint8_t used;
    uint8_t video;
    uint16_t highest;
    int64_t first_ext;
    int64_t highest_ext;
    uint64_t packets;
    uint64_t octets;
    uint64_t frames;
    uint64_t late;
    int32_t offset;             /* our seq minus the publisher's, or -1 until aligned */
    int32_t size_delta;
    uint32_t mismatches;
    uint32_t align_count;
    uint16_t align_seqs[32];
    uint16_t align_sizes[32];
    uint32_t latency_count;
    double latencies[2048];
};

struct bench_socket {
    int fd;
    int active;
    uint8_t video_types[8];     /* payload types that are video */
    int video_type_count;
    struct bench_stream streams[4];
};

struct bench_pending {
    int slot;
    int size;
    uint8_t address[28];
    uint32_t address_len;
    uint8_t data[1500];
};

#define BENCH_GAP 0                 /* `count` packets up to `seq` are missing: NACK them */
#define BENCH_NEW_STREAM 1          /* a new SSRC in slot `stream` */

struct bench_event {
    int slot;
    int kind;
    int stream;
    uint16_t seq;
    uint16_t count;
    uint32_t ssrc;
};

struct bench_counter;

struct bench_counter *bench_counter_new(int capacity, const double *sent_at,
                                        const uint16_t *sizes, const int64_t *newest);
struct bench_socket *bench_socket(struct bench_counter *counter, int slot);
int bench_watch(struct bench_counter *counter, int slot);
int bench_unwatch(struct bench_counter *counter, int slot);
void bench_run(struct bench_counter *counter);      /* the receive thread's body */
void bench_stop(struct bench_counter *counter);
int bench_take_pending(struct bench_counter *counter, struct bench_pending *out, int most);
int bench_take_events(struct bench_counter *counter, struct bench_event *out, int most);
uint64_t bench_dropped_pending(struct bench_counter *counter);
void bench_counter_free(struct bench_counter *counter);
