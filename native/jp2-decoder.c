/*
 * A persistent JPEG2000 decoder for iipsrv-ts (src/engine/jp2/helper.ts), over Debian's
 * libopenjp2: it saves the cost of starting opj_decompress for every tile.
 *
 * Usage: jp2-decoder [<address space limit in MB>]. With a limit, a decode that would need more
 * memory fails cleanly (malloc returns NULL; status 3) instead of growing the process to whatever
 * a hostile header claims: OpenJPEG sets up every code-block of a codestream tile, at every
 * resolution, before reading a byte of its data.
 *
 * Requests on standard input, one per line:
 *   <reduce> <layers> <x0> <y0> <x1> <y1> <path>\n
 * (area on the full-resolution reference grid; the path runs to the end of the line), or with
 * `@<size>` instead of the path: the file (of that many bytes) is read from the parent, so that an
 * image in an object store is fetched by the ranges the codec reads, not copied whole. Each read is
 * a 16-byte message on standard output, little-endian
 *   'J2RQ' magic, length (uint32, never past the end), offset (uint64)
 * answered on standard input by a uint32 count (1 to length; 0: the read failed, the decode fails)
 * and that many bytes. OpenJPEG skips the tile-parts outside the decode area by their lengths
 * (SOT's Psot) without reading them, and reads a tile-part it needs larger than its buffer with one
 * read, so a tile of a tiled codestream costs its main header, its own tile-parts and a 4 KB look at
 * the header of each other tile-part.
 * Answers on standard output: a 28-byte header of seven little-endian uint32
 *   'J2K3' magic, status (0 ok, 1 decode failed, 2 not supported here, 3 out of memory under the
 *   limit), width, height, channels, payload length, resident memory in kB after the decode
 * then the payload: interleaved samples of every component, or of the first three of more than 4
 * (1 byte each when the precision is at most 8 bits, else
 * 2 bytes little-endian), or the error text. Ends at end of input.
 *
 * Build: cc -O2 -o build/jp2-decoder native/jp2-decoder.c $(pkg-config --cflags --libs libopenjp2)
 */
#include <errno.h>
#include <malloc.h>
#include <openjpeg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helper-answer.h"
#include "memory-limit.h"
#include "opj-messages.h"

#define READ_MAGIC 0x5152324au /* "J2RQ" little-endian */
/* OpenJPEG's read buffer: it reads what it parses in blocks of this size, and larger reads
   (tile-parts) directly. Small, since the codec seeks from tile-part to tile-part: the default
   1 MB buffer is refilled at every seek (measured on files: 10 % less CPU per tile with 16 KB),
   and from a store each refill is bytes fetched. */
#define STREAM_BUFFER 16384
/* The buffer of a file read from the parent: what the codec reads to look at a tile-part header it
   then skips, so a tile of a file in a store costs this much for each other tile-part. */
#define REMOTE_STREAM_BUFFER 4096
/* Largest read asked of the parent at once. */
#define MAX_REMOTE_READ (64u * 1024u * 1024u)

enum { OK = 0, FAILED = 1, UNSUPPORTED = 2, OUT_OF_MEMORY = 3 };

static int write_all(const void *bytes, size_t length) {
  return fwrite(bytes, 1, length, stdout) == length ? 0 : -1;
}

/* One answer, sent once the codec has been destroyed (see helper-answer.h). */
struct reply {
  uint32_t status, width, height, channels;
  unsigned char *pixels;
  uint32_t length;
  char text[1400];
};

static int send_reply(const struct reply *reply) {
  const void *payload = reply->pixels ? (const void *)reply->pixels : (const void *)reply->text;
  uint32_t length = reply->pixels ? reply->length : (uint32_t)strlen(reply->text);
  return send_answer(reply->status, reply->width, reply->height, reply->channels, payload, length);
}

/* OpenJPEG reports a failed allocation in words of its own ("Not enough memory ...", "... memory
   error", "Size of tile data exceeds system limits") and leaves malloc's ENOMEM in errno. */
static int out_of_memory(void) {
  return errno == ENOMEM || strstr(error_text, "memory") != NULL || strstr(error_text, "exceeds system limits") != NULL;
}

static void refuse(struct reply *reply, uint32_t status, const char *why) {
  if (status == FAILED && out_of_memory()) status = OUT_OF_MEMORY;
  reply->status = status;
  snprintf(reply->text, sizeof reply->text, "%s%s%s", why, error_text[0] ? ": " : "", error_text);
  for (char *c = reply->text; *c; c++)
    if (*c == '\n') *c = ' ';
}

/* The file read from the parent: where the codec is in it, and whether a read failed (the parent's
   input cannot be trusted to be in step after a wrong answer: the helper then exits). */
struct remote {
  uint64_t size, position;
  int failed;
};
static int out_of_step = 0;

static int read_all(void *bytes, size_t length) {
  return fread(bytes, 1, length, stdin) == length ? 0 : -1;
}

static OPJ_SIZE_T remote_read(void *buffer, OPJ_SIZE_T asked, void *data) {
  struct remote *remote = data;
  if (remote->failed || remote->position >= remote->size || asked == 0) return (OPJ_SIZE_T)-1;
  uint64_t left = remote->size - remote->position;
  uint32_t length = (uint32_t)(asked < left ? (asked < MAX_REMOTE_READ ? asked : MAX_REMOTE_READ) : (left < MAX_REMOTE_READ ? left : MAX_REMOTE_READ));
  uint32_t message[4] = {READ_MAGIC, length, (uint32_t)(remote->position & 0xffffffffu), (uint32_t)(remote->position >> 32)};
  uint32_t count = 0;
  if (write_all(message, sizeof message) != 0 || fflush(stdout) != 0 || read_all(&count, sizeof count) != 0) {
    out_of_step = 1;
    remote->failed = 1;
    return (OPJ_SIZE_T)-1;
  }
  if (count == 0 || count > length) {
    if (count > length) out_of_step = 1;
    remote->failed = 1;
    return (OPJ_SIZE_T)-1;
  }
  if (read_all(buffer, count) != 0) {
    out_of_step = 1;
    remote->failed = 1;
    return (OPJ_SIZE_T)-1;
  }
  remote->position += count;
  return count;
}

/* Skips and seeks only move: as on a file, past the end too (the next read then ends). */
static OPJ_OFF_T remote_skip(OPJ_OFF_T count, void *data) {
  struct remote *remote = data;
  if (count < 0 && (uint64_t)(-count) > remote->position) return -1;
  remote->position += (uint64_t)count;
  return count;
}

static OPJ_BOOL remote_seek(OPJ_OFF_T position, void *data) {
  struct remote *remote = data;
  if (position < 0) return OPJ_FALSE;
  remote->position = (uint64_t)position;
  return OPJ_TRUE;
}

static opj_stream_t *remote_stream(struct remote *remote) {
  opj_stream_t *stream = opj_stream_create(REMOTE_STREAM_BUFFER, OPJ_TRUE);
  if (!stream) return NULL;
  opj_stream_set_user_data(stream, remote, NULL);
  opj_stream_set_user_data_length(stream, remote->size);
  opj_stream_set_read_function(stream, remote_read);
  opj_stream_set_skip_function(stream, remote_skip);
  opj_stream_set_seek_function(stream, remote_seek);
  return stream;
}

/* The first bytes of the file, through the same reads as the codec's. */
static size_t head_of(const char *path, struct remote *remote, unsigned char *magic, size_t length) {
  if (remote) {
    size_t got = 0;
    while (got < length) {
      OPJ_SIZE_T n = remote_read(magic + got, length - got, remote);
      if (n == (OPJ_SIZE_T)-1) break;
      got += n;
    }
    remote->position = 0;
    return got;
  }
  FILE *file = fopen(path, "rb");
  if (!file) return 0;
  size_t got = fread(magic, 1, length, file);
  fclose(file);
  return got;
}

static OPJ_CODEC_FORMAT format_of(const char *path, struct remote *remote) {
  unsigned char magic[12] = {0};
  size_t got = head_of(path, remote, magic, sizeof magic);
  if (got >= 4 && magic[0] == 0xff && magic[1] == 0x4f && magic[2] == 0xff && magic[3] == 0x51) return OPJ_CODEC_J2K;
  if (got >= 12 && memcmp(magic + 4, "jP  ", 4) == 0) return OPJ_CODEC_JP2;
  return OPJ_CODEC_UNKNOWN;
}

/* `remote`: the file comes from the parent (path unused), else it is read at `path`. */
static void decode(struct reply *reply, unsigned reduce, unsigned layers, unsigned x0, unsigned y0, unsigned x1, unsigned y1, const char *path, struct remote *remote) {
  error_text[0] = 0;
  errno = 0;
  OPJ_CODEC_FORMAT format = format_of(path, remote);
  if (remote && remote->failed) return refuse(reply, FAILED, "the file could not be read");
  if (format == OPJ_CODEC_UNKNOWN) return refuse(reply, FAILED, "not a JP2 file or J2K codestream");
  opj_stream_t *stream = remote ? remote_stream(remote) : opj_stream_create_file_stream(path, STREAM_BUFFER, OPJ_TRUE);
  if (!stream) return refuse(reply, FAILED, "cannot open the file");
  opj_codec_t *codec = opj_create_decompress(format);
  opj_set_error_handler(codec, on_error, NULL);
  opj_set_warning_handler(codec, quiet, NULL);
  opj_set_info_handler(codec, quiet, NULL);
  opj_dparameters_t parameters;
  opj_set_default_decoder_parameters(&parameters);
  parameters.cp_reduce = reduce;
  parameters.cp_layer = layers;
  opj_image_t *image = NULL;
  if (!opj_setup_decoder(codec, &parameters) || !opj_read_header(stream, codec, &image)) {
    refuse(reply, FAILED, "cannot read the header");
  } else if (!opj_set_decode_area(codec, image, (OPJ_INT32)x0, (OPJ_INT32)y0, (OPJ_INT32)x1, (OPJ_INT32)y1)) {
    refuse(reply, FAILED, "cannot set the decode area");
  } else if (!opj_decode(codec, stream, image) || !opj_end_decompress(codec, stream)) {
    refuse(reply, FAILED, "cannot decode");
  } else if (image->numcomps == 0) {
    refuse(reply, UNSUPPORTED, "no components");
  } else if (image->color_space == OPJ_CLRSPC_SYCC || image->color_space == OPJ_CLRSPC_EYCC || image->color_space == OPJ_CLRSPC_CMYK) {
    refuse(reply, UNSUPPORTED, "colour space needs a conversion done by opj_decompress");
  } else {
    const opj_image_comp_t *first = &image->comps[0];
    /* Of more than 4 components the first three are sent, as RGB (iipsrv master's output of them). */
    uint32_t width = first->w, height = first->h, channels = image->numcomps > 4 ? 3 : image->numcomps;
    int wide = first->prec > 8;
    int same = 1;
    for (uint32_t c = 1; c < channels; c++)
      if (image->comps[c].w != width || image->comps[c].h != height || image->comps[c].prec != first->prec) same = 0;
    if (!same || first->prec > 16 || !first->data) {
      refuse(reply, UNSUPPORTED, "subsampled or mixed components");
    } else {
      size_t count = (size_t)width * height * channels;
      size_t length = count * (wide ? 2 : 1);
      unsigned char *out = malloc(length ? length : 1);
      if (!out) {
        refuse(reply, OUT_OF_MEMORY, "out of memory for the decoded pixels");
      } else {
        int32_t max = (int32_t)((1u << first->prec) - 1);
        for (uint32_t c = 0; c < channels; c++) {
          const opj_image_comp_t *comp = &image->comps[c];
          int32_t offset = comp->sgnd ? (int32_t)(1u << (comp->prec - 1)) : 0;
          for (size_t p = 0, n = (size_t)width * height; p < n; p++) {
            int32_t v = comp->data[p] + offset;
            if (v < 0) v = 0;
            if (v > max) v = max;
            size_t i = p * channels + c;
            if (wide) {
              out[2 * i] = (unsigned char)(v & 0xff);
              out[2 * i + 1] = (unsigned char)(v >> 8);
            } else
              out[i] = (unsigned char)v;
          }
        }
        *reply = (struct reply){OK, width, height, channels, out, (uint32_t)length, ""};
      }
    }
  }
  if (image) opj_image_destroy(image);
  opj_destroy_codec(codec);
  opj_stream_destroy(stream);
}

int main(int argc, char **argv) {
  if (apply_memory_limit("jp2-decoder", argc, argv) != 0) return 2;
  char line[8192];
  while (fgets(line, sizeof line, stdin)) {
    unsigned reduce, layers, x0, y0, x1, y1;
    int consumed = 0;
    size_t length = strlen(line);
    if (length > 0 && line[length - 1] == '\n') line[--length] = 0;
    error_text[0] = 0;
    errno = 0;
    struct reply reply = {0};
    if (sscanf(line, "%u %u %u %u %u %u %n", &reduce, &layers, &x0, &y0, &x1, &y1, &consumed) < 6 || consumed <= 0 || line[consumed] == 0)
      refuse(&reply, FAILED, "malformed request");
    else if (line[consumed] == '@') {
      char *end;
      struct remote remote = {strtoull(line + consumed + 1, &end, 10), 0, 0};
      if (*end != 0 || end == line + consumed + 1 || remote.size == 0)
        refuse(&reply, FAILED, "malformed request");
      else
        decode(&reply, reduce, layers, x0, y0, x1, y1, NULL, &remote);
      /* A read that failed is the parent's news: its own error is what the decode reports. */
      if (remote.failed && reply.status == FAILED) snprintf(reply.text, sizeof reply.text, "the file could not be read");
    } else
      decode(&reply, reduce, layers, x0, y0, x1, y1, line + consumed, NULL);
    int sent = send_reply(&reply);
    free(reply.pixels);
    if (sent != 0 || out_of_step) return 1;
  }
  return 0;
}
