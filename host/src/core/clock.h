/* clock.h -- time sources. Code that schedules or times out asks a wh_clock,
 * so tests can inject a fake one instead of sleeping. */
#ifndef WH_CLOCK_H
#define WH_CLOCK_H

double wh_clock_wall(void);      /* epoch seconds with sub-microsecond resolution */
double wh_clock_monotonic(void); /* seconds since an arbitrary point; never goes back */

#endif
