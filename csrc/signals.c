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

/* core.catch_signals(): installs the handlers (without SA_RESTART, so a wait is cut short). */
int core_catch_signals(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
    return luaL_error(L, "sigaction failed");
  faceswap_signal = 0;
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
