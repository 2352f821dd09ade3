/*
 * A minimal epoll echo server in C, the fastest peer in the echo runs: it
 * shows how far the load generator can go, so that the Python servers'
 * numbers measure the servers and not the load generator.
 *
 *   c_echo PORT      (0: any; prints "listening on PORT")
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int server = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (bind(server, (struct sockaddr *)&address, sizeof address) || listen(server, 1024)) {
        perror("listen");
        return 1;
    }
    socklen_t length = sizeof address;
    getsockname(server, (struct sockaddr *)&address, &length);
    printf("listening on %d\n", ntohs(address.sin_port));
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = server}, events[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, server, &ev);
    static char buffer[1 << 20];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == server) {
                int client = accept(server, NULL, NULL);
                if (client < 0) continue;
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = client};
                epoll_ctl(ep, EPOLL_CTL_ADD, client, &cev);
                continue;
            }
            ssize_t got = read(fd, buffer, sizeof buffer);
            if (got <= 0) {
                close(fd);
                continue;
            }
            /* Blocking writes: simple, and fine for a benchmark peer. */
            for (ssize_t off = 0; off < got;) {
                ssize_t put = write(fd, buffer + off, (size_t)(got - off));
                if (put < 0 && errno != EAGAIN && errno != EINTR) break;
                if (put > 0) off += put;
            }
        }
    }
}
