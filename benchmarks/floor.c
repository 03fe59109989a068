/* The native half of benchmarks/hot_path_floor.py.
 *
 *   floor drain N        open N UDP sockets on 127.0.0.1, print their ports on one line, then
 *                        drain them all (epoll + recvmmsg) until stdin closes; print the count.
 *   floor send K SIZE PORT...
 *                        send K rounds of one SIZE-byte datagram to every PORT from one socket
 *                        per port (the kernel's own cost: no Python, no SRTP); print the CPU
 *                        microseconds per datagram (user + system, this process).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BURST 64

static int drain(int count) {
    int epoll = epoll_create1(0);
    int *fds = calloc((size_t)count, sizeof *fds);
    for (int i = 0; i < count; i++) {
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t length = sizeof address;
        int size = 4 << 20;
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
        bind(fds[i], (struct sockaddr *)&address, sizeof address);
        getsockname(fds[i], (struct sockaddr *)&address, &length);
        printf("%s%d", i ? " " : "", ntohs(address.sin_port));
        struct epoll_event event = {.events = EPOLLIN, .data.fd = fds[i]};
        epoll_ctl(epoll, EPOLL_CTL_ADD, fds[i], &event);
    }
    printf("\n");
    fflush(stdout);
    struct epoll_event stdin_event = {.events = EPOLLIN | EPOLLHUP, .data.fd = 0};
    epoll_ctl(epoll, EPOLL_CTL_ADD, 0, &stdin_event);
    static char buffers[BURST][2048];
    struct mmsghdr messages[BURST];
    struct iovec vectors[BURST];
    for (int i = 0; i < BURST; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = sizeof buffers[i];
        memset(&messages[i], 0, sizeof messages[i]);
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long received = 0;
    struct epoll_event ready[256];
    for (;;) {
        int n = epoll_wait(epoll, ready, 256, 1000);
        for (int i = 0; i < n; i++) {
            if (ready[i].data.fd == 0) {
                printf("%llu\n", received);
                return 0;
            }
            int got;
            while ((got = recvmmsg(ready[i].data.fd, messages, BURST, MSG_DONTWAIT, NULL)) > 0)
                received += (unsigned long long)got;
        }
    }
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

static int send_rounds(int rounds, int size, int count, char **ports) {
    int *fds = calloc((size_t)count, sizeof *fds);
    struct sockaddr_in *to = calloc((size_t)count, sizeof *to);
    char packet[2048];
    memset(packet, 0xAB, sizeof packet);
    for (int i = 0; i < count; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        to[i].sin_family = AF_INET;
        to[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        to[i].sin_port = htons((uint16_t)atoi(ports[i]));
    }
    unsigned long long failed = 0;
    double start = cpu_seconds();
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < count; i++)
            if (sendto(fds[i], packet, (size_t)size, 0, (struct sockaddr *)&to[i], sizeof to[i]) < 0)
                failed++;
    double spent = cpu_seconds() - start;
    printf("%.4f %llu\n", spent / ((double)rounds * count) * 1e6, failed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "drain") == 0) return drain(atoi(argv[2]));
    if (argc > 4 && strcmp(argv[1], "send") == 0)
        return send_rounds(atoi(argv[2]), atoi(argv[3]), argc - 4, argv + 4);
    fprintf(stderr, "usage: floor drain N | floor send ROUNDS SIZE PORT...\n");
    return 2;
}
