/*
 * OpenJPEG's messages for the helpers over libopenjp2: errors gathered into `error_text` (what the
 * answer or the exit message reports), warnings and information dropped.
 */
#ifndef IIPSRV_OPJ_MESSAGES_H
#define IIPSRV_OPJ_MESSAGES_H

#include <stdio.h>
#include <string.h>

static char error_text[1024];

static void on_error(const char *message, void *data) {
  (void)data;
  size_t used = strlen(error_text);
  if (used < sizeof error_text - 1) snprintf(error_text + used, sizeof error_text - used, "%s", message);
}

static void quiet(const char *message, void *data) {
  (void)message;
  (void)data;
}

#endif
