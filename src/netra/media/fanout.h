/* The native fan-out's interface. Read by the C compiler and, as it is, by cffi's cdef. */

#define NETRA_WINDOW 16384          /* forwarder.WINDOW */
#define NETRA_MAX_PACKET 1356       /* as pylibsrtp's 1,500-byte buffer allows */
#define NETRA_STRIDE 1536           /* scratch bytes per viewer: packet plus SRTP trailer */
#define NETRA_EVENT_STARTED 1       /* began a stream: Python sends it a sender report */
#define NETRA_EVENT_BLOCKED 2       /* the send would block: Python resyncs it */
#define NETRA_EVENT_FAILED 4        /* protect or send failed */

/* libsrtp 2.x: srtp_err_status_t srtp_protect(srtp_t ctx, void *rtp_hdr, int *pkt_octet_len) */
typedef int (*netra_protect_fn)(void *ctx, void *rtp_hdr, int *pkt_octet_len);

/* One viewer of one group. The first fields are forwarder.TrackRewrite's, with its names, so
   the Python decision functions work on this struct too. */
struct netra_viewer {
    uint32_t ssrc;
    uint32_t ts_offset;
    uint16_t next_out_seq;
    uint16_t seq_offset;
    uint16_t oldest_in_seq;
    uint16_t newest_in_seq;
    uint8_t started;
    uint8_t payload_type;
    uint8_t events;             /* NETRA_EVENT_* since Python last looked */
    uint8_t copies;             /* datagrams sent of each packet (a pull: netra.config) */
    int fd;
    uint32_t addr_len;
    uint8_t addr[28];           /* a struct sockaddr_in or sockaddr_in6 */
    void *srtp;                 /* srtp_t */
    uint64_t packets;
    uint64_t octets;
    uint64_t dropped;
    uint64_t send_failures;
    uint64_t blocked;
};

void netra_set_protect(netra_protect_fn protect);
int netra_set_address(struct netra_viewer *viewer, const char *host, int port);
int netra_fan_out(struct netra_viewer **viewers, int count, const uint8_t *packet, int size,
                  uint16_t seq, uint32_t ts, int can_start, uint8_t *scratch);
