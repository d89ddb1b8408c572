#include "core/base/error.h"

#include <stdarg.h>
#include <stdio.h>

int cat_error_set(struct cat_error *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = code;
	return code;
}

void cat_error_clear(struct cat_error *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
