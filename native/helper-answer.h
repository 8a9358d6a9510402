/*
 * The decoder helpers' answer on standard output, as src/engine/jp2/helper.ts reads it: seven
 * little-endian uint32 (the magic "J2K3", status, width, height, channels, payload length, the
 * helper's resident kB), then the payload (the pixels, or the reason of a refusal). Sent once the
 * codec is gone, so that the resident size reported is what the helper keeps, not what the decode
 * needed; the server replaces a helper that a large decode left big. Shared by the C and C++
 * helpers.
 */
#ifndef IIPSRV_HELPER_ANSWER_H
#define IIPSRV_HELPER_ANSWER_H

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#define HELPER_ANSWER_MAGIC 0x334b324au /* "J2K3" little-endian */

/* Above this, what the codec freed is handed back to the system before answering: glibc keeps
   freed small blocks (the codecs' code-block bookkeeping) in the heap otherwise. */
#define TRIM_ABOVE_KB (64u * 1024u)

/* Resident memory in kB (0 if unknown). */
static uint32_t resident_kb(void) {
  FILE *statm = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (!statm) return 0;
  int got = fscanf(statm, "%lu %lu", &size, &resident);
  fclose(statm);
  return got == 2 ? (uint32_t)(resident * (unsigned long)sysconf(_SC_PAGESIZE) / 1024) : 0;
}

/* 0 once the whole answer is written and flushed, -1 when standard output failed. */
static int send_answer(uint32_t status, uint32_t width, uint32_t height, uint32_t channels, const void *payload, uint32_t length) {
  uint32_t resident = resident_kb();
  if (resident > TRIM_ABOVE_KB) {
    malloc_trim(0);
    resident = resident_kb();
  }
  uint32_t header[7] = {HELPER_ANSWER_MAGIC, status, width, height, channels, length, resident};
  if (fwrite(header, 1, sizeof header, stdout) != sizeof header) return -1;
  if (length > 0 && fwrite(payload, 1, length, stdout) != length) return -1;
  return fflush(stdout) == 0 ? 0 : -1;
}

#endif
