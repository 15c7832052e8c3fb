/* tls-static.c: what httpgate-tls needs to be one static musl program
 * built from Debian's GnuTLS archives (Makefile, TLS_LINK=musl).
 *
 * Why: every HTTPS connection is a new process, and glibc's start alone
 * costs it more CPU than the handshake where CPUID traps to the hypervisor
 * (glibc asks it some 70 times for cache sizes and features; musl never
 * does), and a shared link adds the dynamic loader's work for each library.
 *
 * Two kinds of code here. The archives were compiled against glibc's
 * headers with _FORTIFY_SOURCE, and call its checked entry points: those
 * are given, with the check. And GnuTLS refers to p11-kit (PKCS#11 tokens)
 * and libunistring (Unicode normalization, for IDNA host names and
 * passwords), which Debian ships only as shared libraries: a server whose
 * key and certificate are PEM files reaches none of that code (tls.c opens
 * only files, and names in certificates are ASCII), so those functions are
 * absent. Should one ever be reached, the instance says which in the
 * journal and exits with EXIT_SOFTWARE, instead of running without it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <syslog.h>
#include <unistd.h>

#include "httpgate.h"

static _Noreturn void not_built_in(const char *what)
{
        log_msg(LOG_ERR, "httpgate-tls reached %s, which this static build leaves out (build with TLS_LINK=shared "
                "to have it)", what);
        _exit(EXIT_SOFTWARE);
}

#define ABSENT(name)              \
        void name(void);          \
        void name(void)           \
        {                         \
                not_built_in(#name); \
        }
/* Data that only the absent functions read: a name, and room. */
#define ABSENT_DATA(name) const unsigned char name[64];

/* p11-kit */
ABSENT(p11_kit_config_option) ABSENT(p11_kit_message) ABSENT(p11_kit_module_finalize)
ABSENT(p11_kit_module_get_flags) ABSENT(p11_kit_module_get_name) ABSENT(p11_kit_module_load)
ABSENT(p11_kit_module_release) ABSENT(p11_kit_modules_load) ABSENT(p11_kit_pin_file_callback)
ABSENT(p11_kit_pin_get_length) ABSENT(p11_kit_pin_get_value) ABSENT(p11_kit_pin_new_for_string)
ABSENT(p11_kit_pin_register_callback) ABSENT(p11_kit_pin_request) ABSENT(p11_kit_pin_unref)
ABSENT(p11_kit_pin_unregister_callback) ABSENT(p11_kit_space_strdup) ABSENT(p11_kit_space_strlen)
ABSENT(p11_kit_strerror) ABSENT(p11_kit_uri_format) ABSENT(p11_kit_uri_free) ABSENT(p11_kit_uri_get_attribute)
ABSENT(p11_kit_uri_get_attributes) ABSENT(p11_kit_uri_get_module_info) ABSENT(p11_kit_uri_get_pin_source)
ABSENT(p11_kit_uri_get_pin_value) ABSENT(p11_kit_uri_get_token_info) ABSENT(p11_kit_uri_match_module_info)
ABSENT(p11_kit_uri_match_token_info) ABSENT(p11_kit_uri_new) ABSENT(p11_kit_uri_parse)
ABSENT(p11_kit_uri_set_attribute)

/* libunistring */
ABSENT(u16_normalize) ABSENT(u16_to_u8) ABSENT(u32_cmp) ABSENT(u32_cpy) ABSENT(u32_cpy_alloc) ABSENT(u32_normalize)
ABSENT(u32_strlen) ABSENT(u32_to_u8) ABSENT(u8_check) ABSENT(u8_strconv_from_encoding)
ABSENT(u8_strconv_to_encoding) ABSENT(u8_strlen) ABSENT(u8_to_u16) ABSENT(u8_to_u32) ABSENT(uc_bidi_category)
ABSENT(uc_combining_class) ABSENT(uc_general_category_and_not) ABSENT(uc_general_category_or)
ABSENT(uc_is_general_category) ABSENT(uc_is_property_default_ignorable_code_point)
ABSENT(uc_is_property_join_control) ABSENT(uc_is_property_not_a_character) ABSENT(uc_joining_type) ABSENT(uc_script)
ABSENT_DATA(uninorm_nfc) ABSENT_DATA(uninorm_nfkc)
ABSENT_DATA(UC_CATEGORY_Cc) ABSENT_DATA(UC_CATEGORY_Ll) ABSENT_DATA(UC_CATEGORY_Lm) ABSENT_DATA(UC_CATEGORY_Lo)
ABSENT_DATA(UC_CATEGORY_Lt) ABSENT_DATA(UC_CATEGORY_Lu) ABSENT_DATA(UC_CATEGORY_M) ABSENT_DATA(UC_CATEGORY_Mc)
ABSENT_DATA(UC_CATEGORY_Me) ABSENT_DATA(UC_CATEGORY_Mn) ABSENT_DATA(UC_CATEGORY_Nd) ABSENT_DATA(UC_CATEGORY_Nl)
ABSENT_DATA(UC_CATEGORY_No) ABSENT_DATA(UC_CATEGORY_Pc) ABSENT_DATA(UC_CATEGORY_Pd) ABSENT_DATA(UC_CATEGORY_Pe)
ABSENT_DATA(UC_CATEGORY_Pf) ABSENT_DATA(UC_CATEGORY_Pi) ABSENT_DATA(UC_CATEGORY_Po) ABSENT_DATA(UC_CATEGORY_Ps)
ABSENT_DATA(UC_CATEGORY_Sc) ABSENT_DATA(UC_CATEGORY_Sk) ABSENT_DATA(UC_CATEGORY_Sm) ABSENT_DATA(UC_CATEGORY_So)
ABSENT_DATA(UC_CATEGORY_Zs)

/* glibc's checked entry points (_FORTIFY_SOURCE): dl is the room the
 * compiler knew the destination has. */
void *__memcpy_chk(void *d, const void *s, size_t n, size_t dl);
void *__memset_chk(void *d, int c, size_t n, size_t dl);
void __explicit_bzero_chk(void *d, size_t n, size_t dl);
char *__strcpy_chk(char *d, const char *s, size_t dl);
char *__stpcpy_chk(char *d, const char *s, size_t dl);
int __sprintf_chk(char *d, int flag, size_t dl, const char *fmt, ...);
int __snprintf_chk(char *d, size_t n, int flag, size_t dl, const char *fmt, ...);
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...);
int __vasprintf_chk(char **s, int flag, const char *fmt, va_list ap);
int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void), void *dso);

static void check(size_t n, size_t dl)
{
        if (n > dl)
                not_built_in("a buffer overflow (a _FORTIFY_SOURCE check failed)");
}

void *__memcpy_chk(void *d, const void *s, size_t n, size_t dl)
{
        check(n, dl);
        return memcpy(d, s, n);
}

void *__memset_chk(void *d, int c, size_t n, size_t dl)
{
        check(n, dl);
        return memset(d, c, n);
}

void __explicit_bzero_chk(void *d, size_t n, size_t dl)
{
        check(n, dl);
        explicit_bzero(d, n);
}

char *__strcpy_chk(char *d, const char *s, size_t dl)
{
        check(strlen(s) + 1, dl);
        return strcpy(d, s);
}

char *__stpcpy_chk(char *d, const char *s, size_t dl)
{
        check(strlen(s) + 1, dl);
        return stpcpy(d, s);
}

int __sprintf_chk(char *d, int flag, size_t dl, const char *fmt, ...)
{
        va_list ap;
        int n;

        (void)flag;
        va_start(ap, fmt);
        n = vsnprintf(d, dl, fmt, ap);
        va_end(ap);
        if (n >= 0)
                check((size_t)n + 1, dl);
        return n;
}

int __snprintf_chk(char *d, size_t n, int flag, size_t dl, const char *fmt, ...)
{
        va_list ap;
        int r;

        (void)flag;
        check(n, dl);
        va_start(ap, fmt);
        r = vsnprintf(d, n, fmt, ap);
        va_end(ap);
        return r;
}

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
        va_list ap;
        int r;

        (void)flag;
        va_start(ap, fmt);
        r = vfprintf(f, fmt, ap);
        va_end(ap);
        return r;
}

int __vasprintf_chk(char **s, int flag, const char *fmt, va_list ap)
{
        (void)flag;
        return vasprintf(s, fmt, ap);
}

int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void), void *dso)
{
        (void)dso;
        return pthread_atfork(prepare, parent, child);
}
