/*
 * The decoder helpers' one argument: an address-space cap in MB (0 or absent: none), set before
 * any decoding so that a hostile file makes the codec fail cleanly instead of growing without
 * bound. Shared by the C and C++ helpers.
 */
#ifndef IIPSRV_MEMORY_LIMIT_H
#define IIPSRV_MEMORY_LIMIT_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

/* 0 when the cap is set (or none was asked for); 2, the exit status, after saying why not. */
static int apply_memory_limit(const char *program, int argc, char **argv) {
  if (argc <= 1) return 0;
  char *end;
  unsigned long long megabytes = strtoull(argv[1], &end, 10);
  if (*end != 0) {
    fprintf(stderr, "%s: the memory limit must be a number of MB, not %s\n", program, argv[1]);
    return 2;
  }
  if (megabytes == 0) return 0;
  struct rlimit limit = {(rlim_t)megabytes << 20, (rlim_t)megabytes << 20};
  if (setrlimit(RLIMIT_AS, &limit) != 0) {
    fprintf(stderr, "%s: setrlimit: ", program);
    perror(NULL);
    return 2;
  }
  return 0;
}

#endif
