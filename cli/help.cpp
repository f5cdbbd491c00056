// SPDX-License-Identifier: MIT
// The `lockkit --help` pages: written like man pages, with examples and the exit statuses.
#include "help.hpp"

namespace lockkit::cli {
namespace {

constexpr std::string_view kBackendAndExit = R"HELP(BACKEND
  --backend URL, else $LOCKKIT_BACKEND, else the embedded default
  sqlite://$XDG_STATE_HOME/lockkit/locks.db (~/.local/state/lockkit/locks.db when
  XDG_STATE_HOME is unset), which every process of this user on this host shares.
  Every URL lockkit::open knows works:
    sqlite:///path/locks.db        processes on one host (the default)
    redis://[user:pass@]host:port  many machines
    redlock://h1:p1,h2:p2,h3:p3    a quorum of independent Redis servers
    postgres://user@host:port/db   a lease table in PostgreSQL
    memory:, noop:, noop:locked    one process only; tests and dry runs
  (only the schemes of the backends this binary was built with; an unknown scheme lists them)

KEYS AND DURATIONS
  A key is 1..1024 arbitrary bytes: --key TEXT, or --key-hex HEX (e.g. 00ff) for any bytes,
  NUL included; list takes --prefix or --prefix-hex. JSON output shows the key as a string
  (exact when the key is valid UTF-8); otherwise "key_hex" carries its exact bytes as well.
  Text output escapes other bytes as \xNN.
  Durations have a unit: 250ms, 30s, 5m, 1h, 2d (also 1.5s); a ttl is 1ms..7d.

EXIT STATUS
  0    success (run: the command exited 0)
  1    release/extend: the token no longer holds the lock
  64   usage error: unknown option, bad key, ttl or URL (EX_USAGE)
  69   the backend is unavailable or failed (EX_UNAVAILABLE)
  70   run: the lease was lost while the command ran; it got SIGTERM, then SIGKILL
       (EX_SOFTWARE; also an internal error of lockkit itself)
  75   the lock is busy (after --wait, if given) (EX_TEMPFAIL)
  run: otherwise the command's own status; 128+N if it died by signal N,
       126 if it could not be executed, 127 if it was not found.
  Diagnostics go to stderr as single lines starting with "lockkit: "; data goes to stdout.
)HELP";

constexpr std::string_view kMain = R"HELP(NAME
  lockkit - run commands under leased locks shared by processes and machines

SYNOPSIS
  lockkit run     --key K --ttl D [--wait D] [--no-renew] [--backend URL] -- CMD [ARGS...]
  lockkit acquire --key K --ttl D [--wait D] [--json] [--backend URL]
  lockkit release --key K --token T [--backend URL]
  lockkit extend  --key K --token T --ttl D [--json] [--backend URL]
  lockkit status  --key K [--json] [--backend URL]
  lockkit list    [--prefix P] [--json] [--backend URL]
  lockkit [SUBCOMMAND] --help | lockkit help [SUBCOMMAND] | lockkit --version

DESCRIPTION
  lockkit takes a lock on a key for a limited time (a lease, ttl), like flock(1) but across
  processes and machines. Each lock has an owner token, which only its holder sees and which
  release and extend require, and a fence: a number that grows with every acquisition of the
  key, which a protected resource can use to reject writes from a holder that has fallen behind.

  run      runs CMD under the lock: renews the lease while CMD runs and stops CMD before the
           lease could expire if it cannot (see lockkit run --help)
  acquire  takes the lock, prints it as JSON (with its token) and leaves it held
  release  releases a lock held by a token
  extend   moves the lock's expiry to now + ttl, if the token still holds it
  status   shows who holds a key: fence and time left, never the token
  list     shows the held keys (optionally under a prefix)

EXAMPLES
  Run a nightly job at most once at a time, on any number of hosts sharing a Redis:
    lockkit run --backend redis://127.0.0.1:6379 --key nightly --ttl 1m -- ./nightly.sh

  Queue behind other deploys for up to 5 minutes (embedded default on this host):
    lockkit run --key deploy --ttl 30s --wait 5m -- make deploy

  Hold a lock from a shell script:
    lock=$(lockkit acquire --key db-migration --ttl 5m)
    token=$(printf '%s' "$lock" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/')
    ... work, calling: lockkit extend --key db-migration --token "$token" --ttl 5m
    lockkit release --key db-migration --token "$token"

  See what is held:
    lockkit list --prefix deploy
    lockkit status --key deploy --json

)HELP";

constexpr std::string_view kRun = R"HELP(NAME
  lockkit run - run a command while holding a leased lock

SYNOPSIS
  lockkit run --key K --ttl D [--wait D] [--no-renew] [--backend URL] -- CMD [ARGS...]

DESCRIPTION
  Takes the lock on K for D, runs CMD (directly, no shell) and releases the lock when CMD exits,
  then exits with CMD's status.

  --key K, --key-hex HEX  the key (1..1024 bytes)
  --ttl D                 lease length, e.g. 30s. The lease is renewed every D/3 while CMD runs,
                          so D only bounds how long the key stays locked if lockkit dies.
  --wait D                if the key is busy, retry (with jittered backoff) for up to D, then
                          give up with 75. Without it, a busy key gives 75 at once. On a
                          terminal, one line shows "waiting for K (held, expires in Ns)".
                          A store failing at the first attempt gives 69 at once; transient
                          store errors after that are retried until D has passed.
  --no-renew              never renew: CMD must finish within D or it is stopped (exit 70)
  --backend URL           where the lock lives (see BACKEND)
  --                      ends lockkit's options; everything after it is CMD and its ARGS

  CMD runs in its own process group, with these variables added to its environment:
    LOCKKIT_KEY    the key (escaped as \xNN if it contains a NUL byte)
    LOCKKIT_TOKEN  the owner token (lockkit extend/release accept it)
    LOCKKIT_FENCE  the fence: pass it to the protected resource with every write

  SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to lockkit are forwarded to CMD's
  process group; lockkit then still waits for CMD and exits with its status. When stdin is the
  controlling terminal, CMD's group becomes the foreground group, so Ctrl-C reaches it directly;
  Ctrl-Z is not supported (CMD is continued at once: a paused holder would keep the lock).
  If lockkit itself is killed, CMD gets SIGKILL (and the lease expires after at most D).

LEASE LOSS
  If the lease cannot be renewed (the store is unreachable, or says the lease is no longer
  ours) or --no-renew was given and CMD is still running, CMD's process group gets SIGTERM
  before the lease's local deadline, then SIGKILL shortly before the deadline itself (the grace
  period is D/10, at most 5s), and lockkit exits with 70. CMD never runs past a lease that may
  belong to someone else.

EXAMPLES
  lockkit run --key backup --ttl 1m -- tar czf /backup/home.tgz /home
  lockkit run --key jobs/42 --ttl 30s --wait 2m -- ./process-job 42
  lockkit run --key cron/report --ttl 10m --no-renew -- ./report.sh   # hard 10 minute limit
  lockkit run --backend sqlite:///var/lib/app/locks.db --key gc --ttl 5s -- sh -c 'gc; sync'

)HELP";

constexpr std::string_view kAcquire = R"HELP(NAME
  lockkit acquire - take a lock and leave it held

SYNOPSIS
  lockkit acquire --key K --ttl D [--wait D] [--json] [--backend URL]

DESCRIPTION
  Takes the lock on K for D and prints it as one line of JSON on stdout:
    {"key":"K","token":"<32 hex>","fence":7,"expires_at_ms":1795670000000}
  expires_at_ms is this host's estimate of the lease's end, in Unix epoch milliseconds.
  The lock stays held after lockkit exits, until it is released (lockkit release), expires, or
  is extended (lockkit extend). Keep the token secret: it is the only proof of ownership.
  Not useful with memory: (the lock dies with the process).

  --key K, --key-hex HEX  the key (1..1024 bytes)
  --ttl D                 lease length
  --wait D                retry a busy key for up to D before giving up with 75
  --backend URL           where the lock lives (see BACKEND)

EXAMPLES
  lockkit acquire --key maintenance --ttl 1h --wait 10s > lock.json

)HELP";

constexpr std::string_view kRelease = R"HELP(NAME
  lockkit release - release a lock held by a token

SYNOPSIS
  lockkit release --key K --token T [--backend URL]

DESCRIPTION
  Releases the lock on K if T (from lockkit acquire, or LOCKKIT_TOKEN) still holds it; the key
  is free for the next caller at once. Exits 1 if T no longer holds it (expired, released or
  taken over): someone else's lock is never released.

EXAMPLES
  lockkit release --key maintenance --token 3f2a...e9

)HELP";

constexpr std::string_view kExtend = R"HELP(NAME
  lockkit extend - move a lock's expiry to now + ttl

SYNOPSIS
  lockkit extend --key K --token T --ttl D [--json] [--backend URL]

DESCRIPTION
  Extends the lease on K to now + D if T still holds it; exits 1 if it does not (the lease
  expired or was taken over: stop acting on it). With --json, prints
    {"key":"K","expires_at_ms":...}

EXAMPLES
  lockkit extend --key maintenance --token "$LOCKKIT_TOKEN" --ttl 1h

)HELP";

constexpr std::string_view kStatus = R"HELP(NAME
  lockkit status - show who holds a key

SYNOPSIS
  lockkit status --key K [--json] [--backend URL]

DESCRIPTION
  Prints the current holder's fence and the time left on its lease (by the store's clock), or
  that the key is free; never the token. Exits 0 either way.
    deploy: held, fence 12, expires in 24.3s
    {"key":"deploy","held":true,"fence":12,"remaining_ms":24310}
    {"key":"deploy","held":false}

EXAMPLES
  lockkit status --key deploy
  lockkit status --key-hex 00ff --json

)HELP";

constexpr std::string_view kList = R"HELP(NAME
  lockkit list - show the held keys

SYNOPSIS
  lockkit list [--prefix P | --prefix-hex HEX] [--json] [--backend URL]

DESCRIPTION
  Prints every held key starting with P (all keys without --prefix), sorted by key, with its
  fence and time left; never tokens. --json prints one array:
    [{"key":"jobs/1","fence":3,"remaining_ms":9120},...]

EXAMPLES
  lockkit list
  lockkit list --prefix jobs/ --json

)HELP";

}  // namespace

std::string help_text(std::string_view subcommand) {
  std::string_view page = kMain;
  if (subcommand == "run")
    page = kRun;
  else if (subcommand == "acquire")
    page = kAcquire;
  else if (subcommand == "release")
    page = kRelease;
  else if (subcommand == "extend")
    page = kExtend;
  else if (subcommand == "status")
    page = kStatus;
  else if (subcommand == "list")
    page = kList;
  return std::string(page) + std::string(kBackendAndExit);
}

}  // namespace lockkit::cli
