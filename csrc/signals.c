/* signals.c: Ctrl-C for a long command. core.catch_signals() makes SIGINT and SIGTERM set a
 * flag instead of ending the process; transport:poll returns early once it is set, and
 * client:step() too, so a loop that steps sees core.interrupted() and winds down in order
 * (the command line's batch lists what it submitted). A second signal ends the process as
 * the first would have. */
#include <signal.h>
#include <string.h>
#include "core.h"

volatile sig_atomic_t faceswap_signal = 0;

static void on_signal(int signo) {
  if (faceswap_signal) { /* the second one: the default action, at once */
    signal(signo, SIG_DFL);
    raise(signo);
    return;
  }
  faceswap_signal = signo;
}

static struct sigaction saved_int, saved_term;
static int catching = 0;

/* core.catch_signals(on): on installs the handlers (without SA_RESTART, so a wait is cut
 * short) and clears the flag; false puts back the handlers there were before, and clears it. */
int core_catch_signals(lua_State *L) {
  struct sigaction sa;
  if (!lua_toboolean(L, 1)) {
    if (catching) {
      sigaction(SIGINT, &saved_int, NULL);
      sigaction(SIGTERM, &saved_term, NULL);
      catching = 0;
    }
    faceswap_signal = 0; /* else every later step would return at once */
    return 0;
  }
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  faceswap_signal = 0;
  if (!catching && (sigaction(SIGINT, &sa, &saved_int) != 0 ||
                    sigaction(SIGTERM, &sa, &saved_term) != 0))
    return luaL_error(L, "sigaction failed");
  catching = 1;
  return 0;
}

/* core.interrupted() -> the number of the signal caught, or false. */
int core_interrupted(lua_State *L) {
  if (faceswap_signal)
    lua_pushinteger(L, faceswap_signal);
  else
    lua_pushboolean(L, 0);
  return 1;
}
