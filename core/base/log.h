/*
 * log.h - the one way a library reports something to the operator.
 *
 * Messages go to stderr with a "catamaran: " prefix unless a sink is set
 * (the daemon sets syslog; tests set a quiet sink). Thread-safe: one
 * message is written with one call to the sink.
 */
#ifndef CAT_BASE_LOG_H
#define CAT_BASE_LOG_H

enum cat_log_level { CAT_LOG_DEBUG, CAT_LOG_INFO, CAT_LOG_WARN, CAT_LOG_ERROR };

typedef void (*cat_log_sink)(enum cat_log_level level, const char *msg);

void cat_log(enum cat_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Replace the sink (NULL restores stderr). Messages below min_level are dropped. */
void cat_log_set_sink(cat_log_sink sink, enum cat_log_level min_level);

#endif
