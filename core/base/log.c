#include "core/base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static _Atomic(cat_log_sink) log_sink;
static atomic_int log_min = CAT_LOG_INFO;

void cat_log_set_sink(cat_log_sink sink, enum cat_log_level min_level)
{
	atomic_store(&log_sink, sink);
	atomic_store(&log_min, (int)min_level);
}

void cat_log(enum cat_log_level level, const char *fmt, ...)
{
	if ((int)level < atomic_load(&log_min))
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cat_log_sink sink = atomic_load(&log_sink);
	if (sink)
		sink(level, msg);
	else
		fprintf(stderr, "catamaran: %s\n", msg);
}
