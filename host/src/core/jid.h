/* jid.h -- job ids as Sidekiq writes them: 24 lowercase hex characters (96
 * random bits). Thread-safe: each thread draws from its own generator,
 * seeded from getrandom(2). */
#ifndef WH_JID_H
#define WH_JID_H

#include "workerhost.h"

void wh_jid_new(char out[WH_JID_SIZE]);

#endif
