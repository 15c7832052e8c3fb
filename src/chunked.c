/* chunked.c: the chunked-body framer (RFC 9112 7.1). It measures a request
 * body so that the gate knows exactly where the next request head starts;
 * the relay forwards what it is told and may splice chunk data directly.
 * Trailer fields are dropped (RFC 9112 7.1.2 lets a recipient discard them):
 * the app gets "0" CRLF CRLF, and no header can hide in a trailer.
 *
 *   state        byte           next
 *   SIZE         HEXDIG         SIZE (at most 15 digits)
 *   SIZE         ";"            EXT        (needs a digit before)
 *   SIZE         SP HTAB        SIZE_WS    (BWS before ";" only, 7.1.1)
 *   SIZE_WS      SP HTAB / ";"  SIZE_WS / EXT
 *   SIZE, EXT    CR             SIZE_LF
 *   EXT          VCHAR SP HTAB  EXT
 *   SIZE_LF      LF             DATA, or TRAILER when the size was 0
 *   DATA         any            DATA until `left` is 0, then DATA_CR
 *   DATA_CR      CR             DATA_LF
 *   DATA_LF      LF             SIZE
 *   TRAILER      CR (line start) END_LF
 *   TRAILER      other          TRAILER_LINE ... CR LF -> TRAILER
 *   END_LF       LF             DONE
 *   anything else: 400 */
#include <string.h>

#include "httpgate.h"

enum { SIZE, SIZE_WS, EXT, SIZE_LF, DATA, DATA_CR, DATA_LF, TRAILER, TRAILER_LINE, TRAILER_LF, END_LF, DONE };

#define CHUNK_DIGITS_MAX 15 /* 16^15 bytes: beyond any real body */

static int hexval(unsigned char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c |= 0x20;
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

int chunked_feed(struct chunked *c, const char *buf, size_t len, size_t *fwd)
{
        size_t i = 0;

        *fwd = 0;
        while (i < len && c->state != DONE) {
                unsigned char b = (unsigned char)buf[i];
                int h;

                if (c->state == DATA) {
                        size_t n = len - i < c->left ? len - i : (size_t)c->left;
                        i += n;
                        c->left -= n;
                        if (c->left == 0)
                                c->state = DATA_CR;
                        *fwd = i;
                        continue;
                }
                i++;
                switch (c->state) {
                case SIZE:
                        if (++c->line > CHUNK_LINE_MAX)
                                return -400;
                        if ((h = hexval(b)) >= 0) {
                                if (c->line > CHUNK_DIGITS_MAX)
                                        return -400;
                                c->left = c->left * 16 + (unsigned)h;
                                c->any_digit = true;
                        } else if (c->any_digit && b == ';') {
                                c->state = EXT;
                        } else if (c->any_digit && (b == ' ' || b == '\t')) {
                                c->state = SIZE_WS;
                        } else if (c->any_digit && b == '\r') {
                                c->state = SIZE_LF;
                        } else {
                                return -400;
                        }
                        break;
                case SIZE_WS:
                        if (++c->line > CHUNK_LINE_MAX)
                                return -400;
                        if (b == ';')
                                c->state = EXT;
                        else if (b != ' ' && b != '\t')
                                return -400;
                        break;
                case EXT:
                        if (++c->line > CHUNK_LINE_MAX)
                                return -400;
                        if (b == '\r')
                                c->state = SIZE_LF;
                        else if (!(b == '\t' || (b >= 0x20 && b < 0x7f)))
                                return -400;
                        break;
                case SIZE_LF:
                        if (b != '\n' || ++c->line > CHUNK_LINE_MAX)
                                return -400; /* the limit counts CRLF, as REQUEST_LINE_MAX does */
                        c->line = 0;
                        c->any_digit = false;
                        if (c->left == 0) {
                                c->state = TRAILER;
                                *fwd = i; /* "0" CRLF goes out; a request's trailers do not */
                                continue;
                        }
                        c->state = DATA;
                        break;
                case DATA_CR:
                        if (b != '\r')
                                return -400;
                        c->state = DATA_LF;
                        break;
                case DATA_LF:
                        if (b != '\n')
                                return -400;
                        c->state = SIZE;
                        break;
                case TRAILER:
                case TRAILER_LINE:
                        if (++c->trailer > TRAILER_MAX)
                                return -400;
                        if (b == '\r')
                                c->state = c->state == TRAILER ? END_LF : TRAILER_LF;
                        else if (b == '\n' || (b < 0x20 && b != '\t') || b == 0x7f)
                                return -400;
                        else
                                c->state = TRAILER_LINE;
                        continue;
                case TRAILER_LF:
                        if (b != '\n' || ++c->trailer > TRAILER_MAX)
                                return -400;
                        c->state = TRAILER;
                        continue;
                case END_LF:
                        if (b != '\n' || ++c->trailer > TRAILER_MAX)
                                return -400;
                        c->state = DONE;
                        continue;
                }
                if (c->state < TRAILER)
                        *fwd = i;
        }
        if (c->keep_trailers)
                *fwd = i;
        return (int)i;
}

bool chunked_done(const struct chunked *c)
{
        return c->state == DONE;
}

uint64_t chunked_data_left(const struct chunked *c)
{
        return c->state == DATA ? c->left : 0;
}

void chunked_consumed_data(struct chunked *c, uint64_t n)
{
        c->left -= n;
        if (c->left == 0)
                c->state = DATA_CR;
}
