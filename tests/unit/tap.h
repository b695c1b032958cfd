/* tap.h - a tiny TAP producer for the C unit tests (header only).
 *   ok(cond, "what %d", x);  skip("why");  return tap_done(); */
#ifndef VT_TAP_H
#define VT_TAP_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_count, tap_failed;

static void tap_line(int pass, const char *file, int line, const char *fmt, va_list ap)
{
    printf("%s %d - ", pass ? "ok" : "not ok", ++tap_count);
    vprintf(fmt, ap);
    printf("\n");
    if (!pass) {
        printf("#   failed at %s:%d\n", file, line);
        tap_failed++;
    }
    fflush(stdout);
}

static int tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_line(pass, file, line, fmt, ap);
    va_end(ap);
    return pass;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

__attribute__((unused)) static void skip(const char *what, const char *why)
{
    printf("ok %d - %s # skip %s\n", ++tap_count, what, why);
}

static int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

/* ../shared beside the project, or NULL (tests then skip). */
__attribute__((unused)) static const char *tap_shared(void)
{
    const char *s = getenv("VT_SHARED");
    return s && *s ? s : NULL;
}
#endif
