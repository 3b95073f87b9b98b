/* host.c: a C program that embeds Lua and lua-faceswap the way a game does. It links
 * libfaceswap.a (`make examples` builds build/<ver>/host), registers the library with
 * faceswap_preload, starts N headshots as tasks (each: submit, wait, download its first image),
 * and then drives them in one of two ways:
 *   frames (the default)  a 60 Hz frame loop whose only faceswap work is client:step(0), once
 *                         per frame; it reports the worst frame: the step(0) that took longest,
 *                         in wall and CPU time, and the voluntary context switches (blocking)
 *                         seen inside step(0)
 *   epoll                 an event loop: epoll_wait on client:fd() with the timeout that
 *                         client:next_wakeup() gives, then step(0); it reports the steps taken
 * It prints what each task got.
 *
 *   USEAPI_TOKEN=... build/5.4/host BASE_URL [N [frames|epoll]]
 *
 * Exit status: 0 when every headshot completed and its image was downloaded, 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "faceswap.h"

#define FRAME_HZ 60
#define MAX_SECONDS 120 /* the loop gives up after this long */

/* The game's side, in Lua: starts the tasks, returns the frame function and the report. */
static const char script[] =
  "local faceswap = require 'faceswap'\n"
  "local base_url, n = ...\n"
  "local client = faceswap.new { base_url = base_url }\n"
  "local report = { failed = 0 }\n"
  "local function fail(i, what, err)\n"
  "  report[i] = ('headshot %d: %s: %s'):format(i, what, tostring(err))\n"
  "  report.failed = report.failed + 1\n"
  "end\n"
  "for i = 1, n do\n"
  "  client:spawn(function()\n"
  "    local job, err = client:headshot('portrait ' .. i,\n"
  "      { wait = { interval = 0.25, max_interval = 0.25, timeout = 60 } })\n"
  "    if not job then return fail(i, 'failed', err) end\n"
  "    if job.status ~= 'completed' then return fail(i, 'ended', job.status) end\n"
  "    local image, derr = client:download(job:urls()[1])\n"
  "    if not image then return fail(i, 'download failed', derr) end\n"
  "    if image:sub(1, 8) ~= '\\137PNG\\r\\n\\26\\n' then return fail(i, 'download', 'not a PNG') end\n"
  "    report[i] = ('headshot %d: job %s completed, PNG of %d bytes'):format(i, job.jobid, #image)\n"
  "  end)\n"
  "end\n"
  "return function() return client:step(0) end, report, client:fd(),\n"
  "  function() return client:next_wakeup() end\n";

static double seconds(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long voluntary_switches(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_nvcsw;
}

/* Calls the function at the registry's ref with no arguments; returns its result as a number,
 * or -1 for nil. Exits on a Lua error. */
static double call_number(lua_State *L, int ref) {
  double v;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  if (lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    exit(1);
  }
  v = lua_isnil(L, -1) ? -1 : lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* The frame loop: step(0) once a frame until no task runs. Returns the tasks still running. */
static int run_frames(lua_State *L, int step_ref) {
  double start = seconds(CLOCK_MONOTONIC), worst_wall = 0, worst_cpu = 0, total_cpu = 0;
  int frames = 0, remaining = 1;
  long switches = 0;
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  while (remaining > 0) {
    long nvcsw0 = voluntary_switches();
    double wall0 = seconds(CLOCK_MONOTONIC), cpu0 = seconds(CLOCK_THREAD_CPUTIME_ID), wall, cpu;
    remaining = (int)call_number(L, step_ref); /* the frame's faceswap work: one step(0) */
    cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    wall = seconds(CLOCK_MONOTONIC) - wall0;
    switches += voluntary_switches() - nvcsw0;
    frames++;
    total_cpu += cpu;
    if (wall > worst_wall)
      worst_wall = wall;
    if (cpu > worst_cpu)
      worst_cpu = cpu;
    if (seconds(CLOCK_MONOTONIC) - start > MAX_SECONDS) {
      fprintf(stderr, "host: %d task(s) still running after %d s\n", remaining, MAX_SECONDS);
      break;
    }
    /* the rest of the frame: the game would render here; this host sleeps */
    next.tv_nsec += 1000000000L / FRAME_HZ;
    if (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      next.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
  printf("%d frames in %.2f s at %d Hz; worst step(0) %.3f ms wall, %.3f ms CPU; "
         "mean %.4f ms CPU; voluntary context switches in step(0): %ld\n",
         frames, seconds(CLOCK_MONOTONIC) - start, FRAME_HZ, worst_wall * 1e3, worst_cpu * 1e3,
         total_cpu * 1e3 / frames, switches);
  return remaining;
}

/* The event loop: sleep in epoll_wait until client:fd() is readable or next_wakeup() seconds
 * have passed, then step(0). Returns the tasks still running. */
static int run_epoll(lua_State *L, int step_ref, int fd, int wakeup_ref) {
  struct epoll_event ev;
  int ep = epoll_create1(EPOLL_CLOEXEC), steps = 0, fd_wakeups = 0, remaining;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    perror("host: epoll");
    return -1;
  }
  remaining = (int)call_number(L, step_ref); /* the tasks start */
  steps++;
  while (remaining > 0) {
    double due = call_number(L, wakeup_ref);
    /* whole milliseconds, rounded up and one more, so the timer never ends early */
    int timeout = due < 0 ? MAX_SECONDS * 1000 : (int)ceil(due * 1000) + 1, n;
    n = epoll_wait(ep, &ev, 1, timeout);
    if (n == 0 && due < 0) {
      fprintf(stderr, "host: nothing due and nothing readable for %d s\n", MAX_SECONDS);
      break;
    }
    fd_wakeups += n > 0;
    remaining = (int)call_number(L, step_ref);
    steps++;
  }
  close(ep);
  printf("%d steps (%d on the descriptor, the rest on next_wakeup's timer)\n", steps, fd_wakeups);
  return remaining;
}

int main(int argc, char **argv) {
  lua_State *L;
  int n = argc > 2 ? atoi(argv[2]) : 5, remaining, failed, i, step_ref, wakeup_ref, fd;
  int epoll_mode = argc > 3 && strcmp(argv[3], "epoll") == 0;
  if (argc < 2 || n < 1 || (argc > 3 && !epoll_mode && strcmp(argv[3], "frames") != 0)) {
    fprintf(stderr, "usage: USEAPI_TOKEN=... %s BASE_URL [N [frames|epoll]]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (!L)
    return 1;
  luaL_openlibs(L);
  faceswap_preload(L);
  lua_pushnil(L); /* a placeholder under the results, so their indices are 2 to 5 */
  if (luaL_loadbuffer(L, script, sizeof script - 1, "=host") != 0 ||
      (lua_pushstring(L, argv[1]), lua_pushinteger(L, n), lua_pcall(L, 2, 4, 0)) != 0) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  fd = (int)lua_tointeger(L, 4);
  lua_pushvalue(L, 5);
  wakeup_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 2);
  step_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  remaining = epoll_mode ? run_epoll(L, step_ref, fd, wakeup_ref) : run_frames(L, step_ref);

  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 3, i);
    printf("%s\n", lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no result)");
    lua_pop(L, 1);
  }
  lua_getfield(L, 3, "failed");
  failed = (int)lua_tointeger(L, -1) + (remaining != 0);
  lua_close(L);
  return failed ? 1 : 0;
}
