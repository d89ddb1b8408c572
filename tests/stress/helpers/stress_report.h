/*
 * stress_report.h - failure reporting shared by the stress programs in
 * tests/stress: each violation is printed as "FAIL: <scenario>: <message>"
 * and counted, so that main can tell which scenarios passed.
 *
 * Thread-safe: workers of a scenario may report at the same time.
 */
#ifndef CAT_TESTS_STRESS_REPORT_H
#define CAT_TESTS_STRESS_REPORT_H

/* The scenario named in FAIL lines ("?" before the first). Set by main
 * between scenarios, while no worker thread runs. */
extern const char *stress_scenario;

/* Reports one violation: counts it and prints "FAIL: <scenario>: <message>"
 * on stdout, flushed. Only the first 30 of a run are printed: one bug tends
 * to cascade, and that is enough to see the pattern. */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Violations reported so far in this run (printed or not). */
int stress_failures(void);

#endif
