// SPDX-License-Identifier: MIT
// The `lockkit --help` pages, the single source of the manual: each page is laid out for
// help2man (a "Usage:" line, then headed sections: Options, Examples, Exit status, ...).
#include "help.hpp"

#include "modules_config.hpp"

namespace lockkit::cli {
namespace {

// Options every subcommand takes, appended to each page's own.
constexpr std::string_view kCommonOptions =
    R"HELP(  -b, --backend URL          where the lock lives (see Backends). A password in URL is
                             visible to every user in ps(1): prefer --backend-file or
                             LOCKKIT_BACKEND for those
      --backend-file FILE    read the backend URL from the first line of FILE ("-": stdin)
  -h, --help                 show this help and exit
)HELP";

// The sections every page ends with.
constexpr std::string_view kTail = R"HELP(
Backends:
  -b/--backend URL, else --backend-file FILE, else $LOCKKIT_BACKEND (an empty variable counts
  as unset), else the embedded default sqlite://$XDG_STATE_HOME/lockkit/locks.db
  (~/.local/state/lockkit/locks.db when XDG_STATE_HOME is unset), which every process of this
  user on this host shares. An explicitly empty --backend "" is a usage error.
    sqlite:///path/locks.db        processes on one host (the default)
    redis://[user:pass@]host:port  many machines
    rediss://host:port?...         the same over TLS (see tls_* options in the Redis docs)
    redlock://h1:p1,h2:p2,h3:p3    a quorum of independent Redis servers (Redlock)
    postgres://user@host:port/db   a lease table in PostgreSQL
    memory:, noop:, noop:locked    one process only; tests and dry runs
  (only the schemes of the backends this binary was built with; an unknown scheme lists them)

Keys and durations:
  A key is 1..1024 arbitrary bytes: -k/--key TEXT, or --key-hex HEX (e.g. 00ff) for any bytes,
  NUL included; list takes --prefix or --prefix-hex. JSON output shows the key as a string
  (exact when the key is valid UTF-8); otherwise "key_hex" carries its exact bytes as well.
  Text output escapes other bytes as \xNN.
  Durations have a unit: 250ms, 30s, 5m, 1h, 2d (also 1.5s); a ttl is 1ms..7d.

Environment:
  LOCKKIT_BACKEND  the backend URL when neither --backend nor --backend-file is given
  LOCKKIT_TOKEN    release and extend: the owner token when neither --token nor --token-file
                   is given (lockkit run sets it for its command)
  XDG_STATE_HOME, HOME  where the embedded default database lives

Exit status:
  0    success (run: the command exited 0)
  1    release/extend: the token no longer holds the lock
  64   usage error: unknown option, bad key, ttl, URL or file (EX_USAGE)
  69   the backend is unavailable or failed (EX_UNAVAILABLE)
  70   run: the lease was lost while the command ran; it got SIGTERM, then SIGKILL
  71   internal error of lockkit: a system call failed (EX_OSERR)
  74   the result could not be written to stdout; acquire released the lock (EX_IOERR)
  75   the lock is busy (after --wait, if given) (EX_TEMPFAIL); see --conflict-exit-code
  77   the backend refused the credentials (EX_NOPERM)
  128+N  interrupted by signal N while waiting for the lock (run, acquire)
  run: otherwise the command's own status; 128+N if it died by signal N,
       126 if it could not be executed, 127 if it was not found.
  Diagnostics go to stderr as single lines starting with "lockkit: "; data goes to stdout.
)HELP";

constexpr std::string_view kMain =
    R"HELP(Usage: lockkit [-b URL | --backend-file FILE] SUBCOMMAND [OPTIONS]
  or:  lockkit SUBCOMMAND --help | lockkit help [SUBCOMMAND] | lockkit --version
Run commands under leased locks shared by processes and machines.

lockkit takes a lock on a key for a limited time (a lease, ttl), like flock(1) but across
processes and machines. Each lock has an owner token, which only its holder sees and which
release and extend require, and a fence: a number that grows with every acquisition of the
key, which a protected resource can use to reject writes from a holder that has fallen behind.

Subcommands:
  run      run a command under the lock: renew the lease while it runs, stop it before the
           lease could expire if it cannot (lockkit run -k K -t D [-w D] -- CMD [ARGS...])
  acquire  take the lock, print it as JSON (with its token) and leave it held
  release  release a lock held by a token
  extend   move the lock's expiry to now + ttl, if the token still holds it
  status   show who holds a key: fence and time left, never the token
  list     show the held keys (optionally under a prefix)

Options:
  -V, --version              print the version and exit
)HELP";

constexpr std::string_view kMainExamples = R"HELP(
Examples:
  Run a nightly job at most once at a time, on any number of hosts sharing a Redis whose URL
  (with its password) is kept in a file only the job's user can read:
    lockkit run --backend-file /etc/app/lockkit.url -k nightly -t 1m -- ./nightly.sh

  Queue behind other deploys for up to 5 minutes, or for as long as it takes:
    lockkit run -k deploy -t 30s -w 5m -- make deploy
    lockkit run -k deploy -t 30s -w forever -- make deploy

  Hold a lock from a shell script, keeping the token off every command line:
    lockkit acquire -k db-migration -t 5m > lock.json
    sed 's/.*"token":"\([0-9a-f]*\)".*/\1/' lock.json > token
    ... work, calling: lockkit extend -k db-migration -t 5m --token-file token
    lockkit release -k db-migration --token-file token

  See what is held:
    lockkit list --prefix deploy
    lockkit status -k deploy --json
)HELP";

constexpr std::string_view kRun =
    R"HELP(Usage: lockkit run -k KEY -t TTL [-w WAIT] [OPTIONS] -- CMD [ARGS...]
Run a command while holding a leased lock.

Takes the lock on KEY for TTL, runs CMD (directly, no shell) and releases the lock once CMD and
everything it left running in its process group have exited, then exits with CMD's status.

Options:
  -k, --key K                the key (1..1024 bytes)
      --key-hex HEX          the key as hex bytes, for keys that are not text
  -t, --ttl D                lease length, e.g. 30s. The lease is renewed every D/3 while CMD
                             runs, so D only bounds how long the key stays locked if lockkit dies
  -w, --wait D               if the key is busy, retry (with jittered backoff) for up to D, then
                             give up with 75. Without it, a busy key gives 75 at once. On a
                             terminal, one line shows "waiting for K (held, expires in Ns)".
                             A store failing at the first attempt gives 69 at once; transient
                             store errors after that are retried until D has passed
  -w, --wait forever         retry until the key is free, however long (a signal ends the wait)
      --conflict-exit-code N exit with N (0..255) instead of 75 when the key is busy
      --no-renew             never renew: CMD must finish within D or it is stopped (exit 70)
      --max-hold D           renew for at most D after taking the lock (e.g. 2h): then the
                             lease runs out and CMD is stopped before it ends (exit 70)
  --                         ends lockkit's options; everything after it is CMD and its ARGS
)HELP";

constexpr std::string_view kRunMore = R"HELP(
The command's environment:
  CMD runs in its own process group, with these variables added to its environment:
    LOCKKIT_KEY      the key, exactly, when it contains no NUL byte; unset otherwise
    LOCKKIT_KEY_HEX  the key's bytes in lower-case hex, always
    LOCKKIT_TOKEN    the owner token (lockkit extend and release read it from there)
    LOCKKIT_FENCE    the fence: pass it to the protected resource with every write

Signals and job control:
  SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to lockkit are forwarded to CMD's
  process group; lockkit then still waits for the group and exits with CMD's status. When stdin
  is the controlling terminal, CMD's group becomes the foreground group, so Ctrl-C reaches it
  directly. Ctrl-Z is not supported: CMD is continued at once. A CMD stopped any other way
  (SIGSTOP, SIGTTIN, SIGTTOU) makes no progress, so its lease is not renewed while it is
  stopped: continued in time, it goes on (renewals resume at once); still stopped when the lease
  is about to end, it is stopped as under "Lease loss" below (exit 70).
  If lockkit itself is killed, CMD gets SIGKILL (and the lease expires after at most D).

Background jobs:
  Processes CMD leaves running in its process group (cmd &) still hold the lock, as an inherited
  descriptor holds a flock(1) lock: lockkit keeps renewing until the group is empty, and only
  then releases and exits with CMD's status. If they never exit, neither does lockkit; signals
  sent to lockkit reach them. Processes that leave the group (setsid, daemons) are not waited for.

Lease loss:
  If the lease cannot be renewed (the store is unreachable or hangs, or says the lease is no
  longer ours), CMD is stopped, --max-hold has passed, or --no-renew was given and CMD's group
  is still running, the group gets SIGTERM (and SIGCONT) before the lease's local deadline, then
  SIGKILL shortly before the deadline itself (the grace period is D/10, at most 5s), and lockkit
  exits with 70. CMD
  never runs past a lease that may belong to someone else. Once the group is gone, lockkit
  releases the lease but waits for a hanging store no longer than the lease would have lasted.

Examples:
  lockkit run -k backup -t 1m -- tar czf /backup/home.tgz /home
  lockkit run -k jobs/42 -t 30s -w 2m -- ./process-job 42
  lockkit run -k jobs/42 -t 30s -w forever --conflict-exit-code 0 -- ./process-job 42
  lockkit run -k cron/report -t 10m --no-renew -- ./report.sh   # hard 10 minute limit
  lockkit run -k etl/nightly -t 1m --max-hold 2h -- ./etl.sh     # renewed, but at most 2h
  LOCKKIT_BACKEND=redis://:pw@db:6379 lockkit run -k gc -t 5s -- sh -c 'gc; sync'
)HELP";

constexpr std::string_view kAcquire =
    R"HELP(Usage: lockkit acquire -k KEY -t TTL [-w WAIT] [OPTIONS]
Take a lock and leave it held.

Takes the lock on KEY for TTL and prints it as one line of JSON on stdout:
  {"key":"K","token":"<32 hex>","fence":7,"expires_at_ms":1795670000000}
expires_at_ms is this host's conservative estimate of the lease's end (request start + ttl -
the backend's drift margin), in Unix epoch milliseconds. The lock stays held after lockkit
exits, until it is released (lockkit release), expires, or is extended (lockkit extend). Keep
the token secret: it is the only proof of ownership. Not useful with memory: (the lock dies with
the process). If the JSON cannot be written (stdout full or closed) or a signal arrives before
it is, the lock is released again and lockkit exits 74 (or 128+N for signal N): nobody could
release a lock whose token went nowhere.

Options:
  -k, --key K                the key (1..1024 bytes)
      --key-hex HEX          the key as hex bytes
  -t, --ttl D                lease length
  -w, --wait D               retry a busy key for up to D before giving up with 75
  -w, --wait forever         retry until the key is free (a signal ends the wait)
      --conflict-exit-code N exit with N (0..255) instead of 75 when the key is busy
      --json                 accepted for symmetry; the output is always JSON
)HELP";

constexpr std::string_view kAcquireExamples = R"HELP(
Examples:
  lockkit acquire -k maintenance -t 1h -w 10s > lock.json
  lockkit acquire -k maintenance -t 1h --backend-file ~/.config/lockkit.url > lock.json
)HELP";

constexpr std::string_view kRelease =
    R"HELP(Usage: lockkit release -k KEY [--token T | --token-file FILE] [OPTIONS]
Release a lock held by a token.

Releases the lock on KEY if the token (from lockkit acquire, or LOCKKIT_TOKEN under lockkit run)
still holds it; the key is free for the next caller at once. Exits 1 if it no longer holds it
(expired, released or taken over): someone else's lock is never released. The token comes from
--token, else --token-file, else $LOCKKIT_TOKEN; the last two keep it out of ps(1).

Options:
  -k, --key K                the key (1..1024 bytes)
      --key-hex HEX          the key as hex bytes
      --token T              the owner token (visible to every user in ps(1))
      --token-file FILE      read the token from the first line of FILE ("-": stdin)
)HELP";

constexpr std::string_view kReleaseExamples = R"HELP(
Examples:
  lockkit release -k maintenance --token-file token
  printf '%s\n' "$token" | lockkit release -k maintenance --token-file -
  LOCKKIT_TOKEN=$token lockkit release -k maintenance
)HELP";

constexpr std::string_view kExtend =
    R"HELP(Usage: lockkit extend -k KEY -t TTL [--token T | --token-file FILE] [--json] [OPTIONS]
Move a lock's expiry to now + ttl.

Extends the lease on KEY to now + TTL if the token still holds it; exits 1 if it does not (the
lease expired or was taken over: stop acting on it). The token comes from --token, else
--token-file, else $LOCKKIT_TOKEN (set for the command of lockkit run). With --json, prints
  {"key":"K","expires_at_ms":...}
with the same conservative estimate as acquire (request start + ttl - drift margin).

Options:
  -k, --key K                the key (1..1024 bytes)
      --key-hex HEX          the key as hex bytes
  -t, --ttl D                the new lease length, from now
      --token T              the owner token (visible to every user in ps(1))
      --token-file FILE      read the token from the first line of FILE ("-": stdin)
      --json                 print the new expiry as JSON
)HELP";

constexpr std::string_view kExtendExamples = R"HELP(
Examples:
  lockkit extend -k maintenance -t 1h --token-file token
  lockkit extend -k "$LOCKKIT_KEY" -t 1h        # inside lockkit run: the token is in the environment
)HELP";

constexpr std::string_view kStatus = R"HELP(Usage: lockkit status -k KEY [--json] [OPTIONS]
Show who holds a key.

Prints the current holder's fence and the time left on its lease (by the store's clock), or
that the key is free; never the token. Exits 0 either way.
  deploy: held, fence 12, expires in 24.3s
  {"key":"deploy","held":true,"fence":12,"remaining_ms":24310}
  {"key":"deploy","held":false}

Options:
  -k, --key K                the key (1..1024 bytes)
      --key-hex HEX          the key as hex bytes
      --json                 print one JSON object
)HELP";

constexpr std::string_view kStatusExamples = R"HELP(
Examples:
  lockkit status -k deploy
  lockkit status --key-hex 00ff --json
)HELP";

constexpr std::string_view kList =
    R"HELP(Usage: lockkit list [--prefix P | --prefix-hex HEX] [--json] [OPTIONS]
Show the held keys.

Prints every held key starting with P (all keys without --prefix), sorted by key, with its
fence and time left; never tokens. --json prints one array:
  [{"key":"jobs/1","fence":3,"remaining_ms":9120},...]

Options:
      --prefix P             only keys starting with P
      --prefix-hex HEX       the prefix as hex bytes
      --json                 print one JSON array
)HELP";

constexpr std::string_view kListExamples = R"HELP(
Examples:
  lockkit list
  lockkit list --prefix jobs/ --json
)HELP";

// The "Files:" section: the backend modules this tool was built with, if any.
std::string files() {
  std::string list;
  for (const ModuleScheme& m : kModuleSchemes) {
    if (m.module.empty()) continue;
    std::string name = "lockkit-" + std::string(m.module) + ".so";
    if (list.find(name) == std::string::npos) {
      list += "\n    " + name + std::string(name.size() < 24 ? 24 - name.size() : 1, ' ');
    } else {
      list += ", ";
    }
    list += std::string(m.scheme) + ":";
  }
  if (list.empty()) return "";
  return "\nFiles:\n"
         "  The backends whose client libraries are large are modules, loaded only when a URL\n"
         "  needs one, from " +
         std::string(kModuleDirFromTool) + " relative to the lockkit binary (installed:\n  " +
         std::string(kModuleDirInstalled) + "); a missing module exits 69 naming the file:" + list +
         "\n";
}

}  // namespace

std::string help_text(std::string_view subcommand) {
  std::string_view head = kMain, more = kMainExamples;
  if (subcommand == "run") {
    head = kRun;
    more = kRunMore;
  } else if (subcommand == "acquire") {
    head = kAcquire;
    more = kAcquireExamples;
  } else if (subcommand == "release") {
    head = kRelease;
    more = kReleaseExamples;
  } else if (subcommand == "extend") {
    head = kExtend;
    more = kExtendExamples;
  } else if (subcommand == "status") {
    head = kStatus;
    more = kStatusExamples;
  } else if (subcommand == "list") {
    head = kList;
    more = kListExamples;
  }
  return std::string(head) + std::string(kCommonOptions) + std::string(more) + std::string(kTail) +
         files();
}

}  // namespace lockkit::cli
