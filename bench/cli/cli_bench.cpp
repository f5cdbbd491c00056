// SPDX-License-Identifier: MIT
// cli_bench: end-to-end latency of `lockkit run -- true` (spawn lockkit, open the store, acquire,
// fork+exec `true`, release, exit), next to two references: spawning `true` alone, and
// `flock(1) FILE true` (a host-local lock by a kernel file lock).
//
//   cli_bench [--runs N] [--lockkit PATH] [--compare PATH]
//
// --compare adds the same `sqlite://` case for a second lockkit binary (another build), on its
// own file, in the same rounds: on a shared, noisy machine only figures from one run compare.
//
// Runs the cases N times round-robin (one process at a time: no contention) after 10 warm-up
// rounds, and prints a Markdown table of p50, p99 and mean in milliseconds.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

// Spawns `argv` (stdout/stderr to /dev/null), waits, and returns the wall time in ms.
double time_one(const std::vector<std::string>& argv) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  auto start = Clock::now();
  pid_t pid;
  int err = posix_spawnp(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) throw std::runtime_error("cannot spawn " + argv[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  auto end = Clock::now();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(argv[0] + " " + (argv.size() > 1 ? argv[1] : "") + " failed");
  }
  return std::chrono::duration<double, std::milli>(end - start).count();
}

struct Row {
  std::string name;
  double p50, p99, mean;
};

struct Case {
  std::string name;
  std::vector<std::string> argv;
  std::vector<double> ms;
};

// Runs the cases round-robin, so that every case sees the same background load.
std::vector<Row> measure(std::vector<Case> cases, int runs) {
  for (int i = 0; i < 10; ++i) {
    for (auto& c : cases) time_one(c.argv);
  }
  for (int i = 0; i < runs; ++i) {
    for (auto& c : cases) c.ms.push_back(time_one(c.argv));
  }
  std::vector<Row> rows;
  for (auto& c : cases) {
    auto& ms = c.ms;
    std::sort(ms.begin(), ms.end());
    double sum = 0;
    for (double v : ms) sum += v;
    auto at = [&](double q) {
      return ms[std::min(ms.size() - 1,
                         static_cast<std::size_t>(q * static_cast<double>(ms.size())))];
    };
    rows.push_back({c.name, at(0.50), at(0.99), sum / static_cast<double>(ms.size())});
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 200;
  std::string lockkit = LOCKKIT_CLI_PATH;
  std::string compare;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (a == "--lockkit" && i + 1 < argc) {
      lockkit = argv[++i];
    } else if (a == "--compare" && i + 1 < argc) {
      compare = argv[++i];
    } else {
      std::fprintf(stderr, "usage: cli_bench [--runs N] [--lockkit PATH] [--compare PATH]\n");
      return 64;
    }
  }
  if (runs < 1) runs = 1;
  char tmpl[] = "/tmp/lockkit-cli-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 70;
  const std::string dir = tmpl;
  const std::string db = "sqlite://" + dir + "/locks.db";
  const std::string flock_file = dir + "/flock";

  std::vector<Case> cases = {
      {"spawn `true` (reference)", {"true"}, {}},
      {"`flock FILE true` (reference)", {"flock", flock_file, "true"}, {}},
      {"`lockkit run` on `noop:`",
       {lockkit, "run", "--backend", "noop:", "--key", "k", "--ttl", "10s", "--", "true"},
       {}},
      {"`lockkit run` on `sqlite://` (default)",
       {lockkit, "run", "--backend", db, "--key", "k", "--ttl", "10s", "--", "true"},
       {}},
  };
  if (!compare.empty()) {
    const std::string other_db = "sqlite://" + dir + "/other.db";
    cases.push_back(
        {"`lockkit run` on `sqlite://`, " + compare,
         {compare, "run", "--backend", other_db, "--key", "k", "--ttl", "10s", "--", "true"},
         {}});
  }
  std::vector<Row> rows;
  try {
    rows = measure(std::move(cases), runs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cli_bench: %s\n", e.what());
    std::filesystem::remove_all(dir);
    return 1;
  }
  std::filesystem::remove_all(dir);
  std::printf("%d runs of each command, round-robin, one at a time (after 10 warm-up rounds):\n\n",
              runs);
  std::printf(
      "| command | p50 ms | p99 ms | mean ms | p50 / flock's |\n|---|---:|---:|---:|---:|\n");
  const double flock_p50 = rows[1].p50;  // the cases' order above
  for (const Row& r : rows) {
    std::printf("| %s | %.2f | %.2f | %.2f | %.2fx |\n", r.name.c_str(), r.p50, r.p99, r.mean,
                r.p50 / flock_p50);
  }
  return 0;
}
