/*
 * A persistent HTJ2K (JPEG2000 Part 15) decoder for iipsrv-ts (src/engine/jp2/decoder.ts), over
 * Debian's libopenjph: OpenJPEG decodes HT code-blocks only a whole codestream tile at a time (see
 * decoder.ts), and OpenJPH decodes them several times faster.
 *
 * The same protocol as jp2-decoder.c, so that helper.ts drives both:
 * usage: jph-decoder [<address space limit in MB>]; a decode that would need more fails cleanly
 * (std::bad_alloc; status 3) instead of growing the process to whatever a hostile header claims.
 * Requests on standard input, one per line:
 *   <reduce> <layers> <x0> <y0> <x1> <y1> <path>\n
 * (area on the full-resolution reference grid; all quality layers are decoded: OpenJPH has no
 * layer limit). Answers: a 28-byte header of seven little-endian uint32
 *   'J2K3' magic, status (0 ok, 1 decode failed, 2 not supported here, 3 out of memory under the
 *   limit), width, height, channels, payload length, resident memory in kB after the decode
 * then interleaved samples (1 byte each when the precision is at most 8 bits, else 2 bytes
 * little-endian), or the error text.
 *
 * Reads a raw codestream, or the jp2c box of a JP2 / JPH file. OpenJPH decodes whole lines from
 * the top of the (reduced) image: the lines above the area are decoded and dropped, and decoding
 * stops after its last line.
 *
 * Build: c++ -O2 -o build/jph-decoder native/jph-decoder.cpp $(pkg-config --cflags --libs openjph)
 */
#include <openjph/ojph_arch.h>
#include <openjph/ojph_codestream.h>
#include <openjph/ojph_file.h>
#include <openjph/ojph_mem.h>
#include <openjph/ojph_message.h>
#include <openjph/ojph_params.h>

#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "helper-answer.h"
#include "memory-limit.h"

namespace {

enum { OK = 0, FAILED = 1, UNSUPPORTED = 2, OUT_OF_MEMORY = 3 };

/* OpenJPH prints its errors to a stream and then throws (its configure_error() copies the handler
   by value, so a handler of one's own is never called): the stream is this buffer, read into the
   answer's text. */
char messages[1024];
FILE *message_sink = nullptr;

std::string error_text() {
  if (!message_sink) return "";
  fflush(message_sink);
  messages[sizeof messages - 1] = 0;
  std::string text(messages);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

void clear_messages() {
  if (!message_sink) return;
  fflush(message_sink);
  memset(messages, 0, sizeof messages);
  rewind(message_sink);
}

/* The codestream's bytes within a file: all of a raw codestream, or a jp2c box's contents. */
class Window : public ojph::infile_base {
public:
  Window(FILE *file, int64_t start, int64_t length) : file(file), start(start), length(length) { fseeko(file, start, SEEK_SET); }
  size_t read(void *ptr, size_t size) override {
    int64_t left = length - tell();
    if (left <= 0) return 0;
    if ((int64_t)size > left) size = (size_t)left;
    return fread(ptr, 1, size, file);
  }
  int seek(ojph::si64 offset, enum infile_base::seek origin) override {
    int64_t target = origin == OJPH_SEEK_SET ? offset : origin == OJPH_SEEK_CUR ? tell() + offset : length + offset;
    if (target < 0 || target > length) return -1;
    return fseeko(file, start + target, SEEK_SET);
  }
  ojph::si64 tell() override { return ftello(file) - start; }
  bool eof() override { return tell() >= length || feof(file) != 0; }

private:
  FILE *file;
  int64_t start, length;
};

uint32_t be32(const unsigned char *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

/* Where the codestream is: 0 on success (start and length set), else the reason. */
const char *find_codestream(FILE *file, int64_t *start, int64_t *length) {
  unsigned char head[16];
  if (fseeko(file, 0, SEEK_END) != 0) return "cannot seek";
  int64_t size = ftello(file);
  if (fseeko(file, 0, SEEK_SET) != 0 || fread(head, 1, 12, file) != 12) return "too short";
  if (head[0] == 0xff && head[1] == 0x4f && head[2] == 0xff && head[3] == 0x51) {
    *start = 0;
    *length = size;
    return nullptr;
  }
  if (memcmp(head + 4, "jP  ", 4) != 0) return "neither a JP2/JPH file nor a codestream";
  for (int64_t position = 0; position + 8 <= size;) {
    if (fseeko(file, position, SEEK_SET) != 0 || fread(head, 1, 16, file) < 8) return "cannot read a box";
    uint64_t box = be32(head);
    int64_t header = 8;
    if (box == 1) {
      box = (uint64_t)be32(head + 8) << 32 | be32(head + 12);
      header = 16;
    } else if (box == 0)
      box = (uint64_t)(size - position);
    if (box < (uint64_t)header || box > (uint64_t)(size - position)) return "a box runs past the end of the file";
    if (memcmp(head + 4, "jp2c", 4) == 0) {
      *start = position + header;
      *length = (int64_t)box - header;
      return nullptr;
    }
    position += (int64_t)box;
  }
  return "no codestream (jp2c box)";
}

/* OpenJPH's words for an allocation that failed. */
bool about_memory(const std::string &text) { return text.find("alloc") != std::string::npos || text.find("memory") != std::string::npos; }

struct Reply {
  uint32_t status = OK, width = 0, height = 0, channels = 0;
  std::vector<unsigned char> pixels;
  std::string text;
};

void refuse(Reply &reply, uint32_t status, const std::string &why) {
  reply.status = status;
  reply.pixels.clear();
  std::string said = error_text();
  reply.text = why + (said.empty() ? "" : ": " + said);
  for (char &c : reply.text)
    if (c == '\n') c = ' ';
}

int send_reply(const Reply &reply) {
  bool ok = reply.status == OK;
  const void *payload = ok ? (const void *)reply.pixels.data() : (const void *)reply.text.data();
  uint32_t length = ok ? (uint32_t)reply.pixels.size() : (uint32_t)reply.text.size();
  return send_answer(reply.status, reply.width, reply.height, reply.channels, payload, length);
}

/*
 * OpenJPH 0.9 loops without end on some damaged codestreams (tile-parts of tiles the SIZ does
 * not have, for one). Each decode gets a budget of CPU time, far above what the lines it decodes
 * cost (about 13 ns a sample measured, plus the codestream's packet headers): past it the helper
 * says so on its error output and exits, which fails that request alone (helper.ts).
 */
const char GAVE_UP[] = "jph-decoder: gave up: the decode took more CPU time than its size allows (damaged data)\n";

void on_budget_spent(int) {
  ssize_t ignored = write(2, GAVE_UP, sizeof GAVE_UP - 1);
  (void)ignored;
  _exit(4);
}

void set_budget(double milliseconds) {
  struct itimerval timer = {};
  if (milliseconds > 0) {
    timer.it_value.tv_sec = (time_t)(milliseconds / 1000);
    timer.it_value.tv_usec = (suseconds_t)((milliseconds - 1000.0 * (double)timer.it_value.tv_sec) * 1000);
    if (timer.it_value.tv_sec == 0 && timer.it_value.tv_usec == 0) timer.it_value.tv_usec = 1;
  }
  setitimer(ITIMER_PROF, &timer, nullptr);
}

uint32_t ceil_shift(uint32_t value, unsigned shift) { return (uint32_t)(((uint64_t)value + (1ull << shift) - 1) >> shift); }

void decode(Reply &reply, FILE *file, unsigned reduce, uint32_t x0, uint32_t y0, uint32_t x1, uint32_t y1) {
  int64_t start = 0, length = 0;
  if (const char *why = find_codestream(file, &start, &length)) return refuse(reply, FAILED, why);
  Window window(file, start, length);
  ojph::codestream codestream;
  codestream.set_planar(false);
  codestream.read_headers(&window);
  ojph::param_siz siz = codestream.access_siz();
  ojph::param_cod cod = codestream.access_cod();
  uint32_t channels = siz.get_num_components();
  if (channels == 0 || channels > 4) return refuse(reply, UNSUPPORTED, "unsupported number of components");
  uint32_t precision = siz.get_bit_depth(0);
  for (uint32_t c = 0; c < channels; c++) {
    ojph::point sampling = siz.get_downsampling(c);
    if (sampling.x != 1 || sampling.y != 1 || siz.get_bit_depth(c) != precision || siz.is_signed(c) != siz.is_signed(0))
      return refuse(reply, UNSUPPORTED, "subsampled or mixed components");
  }
  if (precision > 16) return refuse(reply, UNSUPPORTED, "samples wider than 16 bits");
  if (reduce > cod.get_num_decompositions()) return refuse(reply, FAILED, "fewer resolutions than asked for");
  ojph::point origin = siz.get_image_offset();
  ojph::point extent = siz.get_image_extent();
  if (x0 < origin.x || y0 < origin.y || x1 > extent.x || y1 > extent.y || x0 >= x1 || y0 >= y1) return refuse(reply, FAILED, "the area is outside the image");
  /* The area in the reduced image's own coordinates (its first line is line 0). */
  uint32_t left = ceil_shift(x0, reduce) - ceil_shift(origin.x, reduce), right = ceil_shift(x1, reduce) - ceil_shift(origin.x, reduce);
  uint32_t top = ceil_shift(y0, reduce) - ceil_shift(origin.y, reduce), bottom = ceil_shift(y1, reduce) - ceil_shift(origin.y, reduce);
  codestream.restrict_input_resolution(reduce, reduce);
  /* 0.2 s, 50 ns a byte of codestream and 50 ns a sample of the lines down to the area's last. */
  uint64_t samples = (uint64_t)ceil_shift(extent.x - origin.x, reduce) * bottom * channels;
  set_budget(200.0 + (double)length * 50e-6 + (double)samples * 50e-6);
  codestream.create();
  uint32_t lineWidth = siz.get_recon_width(0), lines = siz.get_recon_height(0);
  if (right > lineWidth || bottom > lines || left >= right || top >= bottom) return refuse(reply, FAILED, "the area is outside the decoded image");
  uint32_t width = right - left, height = bottom - top;
  bool wide = precision > 8;
  reply.pixels.resize((size_t)width * height * channels * (wide ? 2 : 1));
  int32_t max = (int32_t)((1u << precision) - 1);
  int32_t offset = siz.is_signed(0) ? (int32_t)(1u << (precision - 1)) : 0;
  for (uint32_t y = 0; y < bottom; y++) {
    for (uint32_t c = 0; c < channels; c++) {
      ojph::ui32 component = 0;
      ojph::line_buf *line = codestream.pull(component);
      if (!line || component >= channels) return refuse(reply, FAILED, "the decoder gave fewer lines than the image has");
      if (y < top) continue;
      const int32_t *source = line->i32 + left;
      size_t row = (size_t)(y - top) * width * channels;
      for (uint32_t x = 0; x < width; x++) {
        int32_t v = source[x] + offset;
        v = v < 0 ? 0 : v > max ? max : v;
        size_t i = row + (size_t)x * channels + component;
        if (wide) {
          reply.pixels[2 * i] = (unsigned char)(v & 0xff);
          reply.pixels[2 * i + 1] = (unsigned char)(v >> 8);
        } else
          reply.pixels[i] = (unsigned char)v;
      }
    }
  }
  reply.status = OK;
  reply.width = width;
  reply.height = height;
  reply.channels = channels;
}

} // namespace

int main(int argc, char **argv) {
  if (apply_memory_limit("jph-decoder", argc, argv) != 0) return 2;
  signal(SIGPROF, on_budget_spent);
  message_sink = fmemopen(messages, sizeof messages - 1, "w");
  if (message_sink) ojph::set_error_stream(message_sink);
  FILE *nowhere = fopen("/dev/null", "w");
  if (nowhere) {
    ojph::set_warning_stream(nowhere);
    ojph::set_info_stream(nowhere);
  }
  char line[8192];
  while (fgets(line, sizeof line, stdin)) {
    unsigned reduce, layers, x0, y0, x1, y1;
    int consumed = 0;
    size_t size = strlen(line);
    if (size > 0 && line[size - 1] == '\n') line[--size] = 0;
    clear_messages();
    Reply reply;
    if (sscanf(line, "%u %u %u %u %u %u %n", &reduce, &layers, &x0, &y0, &x1, &y1, &consumed) < 6 || consumed <= 0 || line[consumed] == 0) {
      refuse(reply, FAILED, "malformed request");
    } else {
      FILE *file = fopen(line + consumed, "rb");
      if (!file) {
        refuse(reply, FAILED, "cannot open the file");
      } else {
        try {
          decode(reply, file, reduce, x0, y0, x1, y1);
          set_budget(0);
        } catch (const std::bad_alloc &) {
          refuse(reply, OUT_OF_MEMORY, "out of memory");
        } catch (const std::exception &) {
          refuse(reply, about_memory(error_text()) ? OUT_OF_MEMORY : FAILED, "cannot decode");
        } catch (const char *what) {
          /* OpenJPH throws plain strings too ("precinct truncated early", "malloc failed"). */
          refuse(reply, about_memory(what) ? OUT_OF_MEMORY : FAILED, std::string("cannot decode: ") + what);
        } catch (...) {
          refuse(reply, FAILED, "cannot decode");
        }
        set_budget(0);
        fclose(file);
      }
    }
    int sent = send_reply(reply);
    if (sent != 0) return 1;
  }
  return 0;
}
