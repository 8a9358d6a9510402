/*
 * The JPEG2000 encoder of iipsrv-ts (src/engine/output/jp2.ts), over Debian's libopenjp2: one
 * process per image, so that a crash or a hang in the codec costs a child, never the server.
 *
 *   jp2-encoder <width> <height> <channels>
 *
 * Standard input: the pixels, 8-bit samples interleaved, row after row (channels 1 grey, 2
 * grey+alpha, 3 RGB, 4 RGBA). Standard output: a JP2 file, lossless (reversible 5/3 wavelet, one
 * quality layer), stating sRGB or greyscale. Exit status 0, or 1 with the reason on standard error.
 * An ICC profile is spliced in by the server: OpenJPEG 2.5.0 asserts when asked to write one.
 *
 * The image is handed to the codec a row of 1024x1024 tiles at a time (opj_write_tile), so that the
 * encoder holds one strip of samples, not the whole image as 32-bit integers (opj_compress needs
 * 500 MB for 5000x5000 RGB). The codestream is built in memory: the JP2 writer seeks back to fill
 * in box lengths, which a pipe cannot do.
 *
 * Build: cc -O2 -o build/jp2-encoder native/jp2-encoder.c $(pkg-config --cflags --libs libopenjp2)
 */
#include <openjpeg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opj-messages.h"

#define TILE 1024u
#define MAX_RESOLUTIONS 6u


static int fail(const char *why) {
  fprintf(stderr, "%s%s%s\n", why, error_text[0] ? ": " : "", error_text);
  return 1;
}

/* The output, growing as the codec writes; `position` may move back (seek) and forward (skip). */
struct output {
  unsigned char *data;
  size_t length, capacity, position;
};

static int reserve(struct output *out, size_t end) {
  if (end <= out->capacity) return 0;
  size_t capacity = out->capacity ? out->capacity : 1u << 20;
  while (capacity < end) capacity *= 2;
  unsigned char *grown = realloc(out->data, capacity);
  if (!grown) return -1;
  memset(grown + out->capacity, 0, capacity - out->capacity);
  out->data = grown;
  out->capacity = capacity;
  return 0;
}

static OPJ_SIZE_T write_bytes(void *bytes, OPJ_SIZE_T count, void *user) {
  struct output *out = user;
  if (reserve(out, out->position + count) != 0) return (OPJ_SIZE_T)-1;
  memcpy(out->data + out->position, bytes, count);
  out->position += count;
  if (out->position > out->length) out->length = out->position;
  return count;
}

static OPJ_OFF_T skip_bytes(OPJ_OFF_T count, void *user) {
  struct output *out = user;
  if (count < 0 && (size_t)-count > out->position) return -1;
  size_t end = out->position + (size_t)count;
  if (reserve(out, end) != 0) return -1;
  out->position = end;
  if (end > out->length) out->length = end;
  return count;
}

static OPJ_BOOL seek_to(OPJ_OFF_T position, void *user) {
  struct output *out = user;
  if (position < 0 || reserve(out, (size_t)position) != 0) return OPJ_FALSE;
  out->position = (size_t)position;
  if (out->position > out->length) out->length = out->position;
  return OPJ_TRUE;
}

static int read_exactly(void *bytes, size_t count) {
  return fread(bytes, 1, count, stdin) == count ? 0 : -1;
}

/* Resolution levels: at most six, and no more than the smaller side (of a tile) can halve into. */
static unsigned resolutions(uint32_t width, uint32_t height) {
  uint32_t side = width < height ? width : height;
  if (side > TILE) side = TILE;
  unsigned levels = 1;
  while (levels < MAX_RESOLUTIONS && (side >> levels) > 0) levels++;
  return levels;
}

static int encode(uint32_t width, uint32_t height, uint32_t channels) {
  opj_image_cmptparm_t components[4];
  memset(components, 0, sizeof components);
  for (uint32_t c = 0; c < channels; c++) {
    components[c].dx = components[c].dy = 1;
    components[c].w = width;
    components[c].h = height;
    components[c].prec = 8;
    components[c].sgnd = 0;
  }
  OPJ_COLOR_SPACE space = channels >= 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY;
  opj_image_t *image = opj_image_tile_create(channels, components, space);
  if (!image) return fail("cannot create the image");
  image->x0 = image->y0 = 0;
  image->x1 = width;
  image->y1 = height;
  /* The JP2 writer states an alpha band in a channel definition box. */
  if (channels == 2 || channels == 4) image->comps[channels - 1].alpha = 1;

  opj_cparameters_t parameters;
  opj_set_default_encoder_parameters(&parameters);
  parameters.tcp_numlayers = 1;
  parameters.tcp_rates[0] = 0; /* no rate: every bit kept */
  parameters.cp_disto_alloc = 1;
  parameters.irreversible = 0;
  parameters.tcp_mct = channels >= 3 ? 1 : 0;
  parameters.numresolution = (int)resolutions(width, height);
  parameters.tile_size_on = OPJ_TRUE;
  parameters.cp_tdx = parameters.cp_tdy = TILE;
  parameters.cp_tx0 = parameters.cp_ty0 = 0;

  opj_codec_t *codec = opj_create_compress(OPJ_CODEC_JP2);
  opj_set_error_handler(codec, on_error, NULL);
  opj_set_warning_handler(codec, quiet, NULL);
  opj_set_info_handler(codec, quiet, NULL);
  struct output out = {0};
  opj_stream_t *stream = opj_stream_create(1u << 20, OPJ_FALSE);
  opj_stream_set_user_data(stream, &out, NULL);
  opj_stream_set_write_function(stream, write_bytes);
  opj_stream_set_skip_function(stream, skip_bytes);
  opj_stream_set_seek_function(stream, seek_to);

  int status = 0;
  size_t row_bytes = (size_t)width * channels;
  unsigned char *strip = malloc(row_bytes * TILE);
  unsigned char *tile = malloc((size_t)TILE * TILE * channels);
  if (!strip || !tile) {
    status = fail("out of memory");
  } else if (!opj_setup_encoder(codec, &parameters, image) || !opj_start_compress(codec, image, stream)) {
    status = fail("cannot start the encoder");
  } else {
    uint32_t across = (width + TILE - 1) / TILE, down = (height + TILE - 1) / TILE;
    for (uint32_t ty = 0; ty < down && status == 0; ty++) {
      uint32_t rows = ty + 1 < down ? TILE : height - ty * TILE;
      if (read_exactly(strip, row_bytes * rows) != 0) {
        status = fail("the pixels ended early");
        break;
      }
      for (uint32_t tx = 0; tx < across; tx++) {
        uint32_t x0 = tx * TILE, columns = tx + 1 < across ? TILE : width - x0;
        /* The codec takes each band whole, one after the other. */
        unsigned char *to = tile;
        for (uint32_t c = 0; c < channels; c++)
          for (uint32_t y = 0; y < rows; y++) {
            const unsigned char *from = strip + y * row_bytes + (size_t)x0 * channels + c;
            for (uint32_t x = 0; x < columns; x++, from += channels) *to++ = *from;
          }
        if (!opj_write_tile(codec, ty * across + tx, tile, (OPJ_UINT32)(to - tile), stream)) {
          status = fail("cannot encode a tile");
          break;
        }
      }
    }
    if (status == 0 && !opj_end_compress(codec, stream)) status = fail("cannot finish the codestream");
  }
  opj_stream_destroy(stream);
  opj_destroy_codec(codec);
  opj_image_destroy(image);
  free(strip);
  free(tile);
  if (status == 0 && (fwrite(out.data, 1, out.length, stdout) != out.length || fflush(stdout) != 0)) status = fail("cannot write the output");
  free(out.data);
  return status;
}

static int parse(const char *text, uint32_t *value, uint32_t min, uint32_t max) {
  char *end;
  unsigned long parsed = strtoul(text, &end, 10);
  if (*text == 0 || *end != 0 || parsed < min || parsed > max) return -1;
  *value = (uint32_t)parsed;
  return 0;
}

int main(int argc, char **argv) {
  uint32_t width, height, channels;
  if (argc != 4 || parse(argv[1], &width, 1, 1u << 30) != 0 || parse(argv[2], &height, 1, 1u << 30) != 0 ||
      parse(argv[3], &channels, 1, 4) != 0) {
    fprintf(stderr, "usage: jp2-encoder <width> <height> <channels 1-4>\n");
    return 2;
  }
  return encode(width, height, channels);
}
