/*
 * stress_report.c - failure reporting shared by the stress programs; see
 * stress_report.h.
 */
#include "tests/stress/helpers/stress_report.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#define PRINTED_FAILURES_MAX 30

const char *stress_scenario = "?";

/* Guards failures and keeps the parts of one FAIL line together. */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static int failures;

void fail(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&fail_lock);
	if (++failures > PRINTED_FAILURES_MAX) {
		pthread_mutex_unlock(&fail_lock);
		return;
	}
	printf("FAIL: %s: ", stress_scenario);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	pthread_mutex_unlock(&fail_lock);
}

int stress_failures(void)
{
	pthread_mutex_lock(&fail_lock);
	int n = failures;
	pthread_mutex_unlock(&fail_lock);
	return n;
}
