// SPDX-License-Identifier: MIT
// Test fixture: a throwaway etcd cluster (1 or more members) started by scripts/etcd-server.sh,
// and etcdctl.
#ifndef LOCKKIT_TESTS_SUPPORT_ETCD_SERVER_HPP_
#define LOCKKIT_TESTS_SUPPORT_ETCD_SERVER_HPP_

#include <string>
#include <string_view>
#include <vector>

namespace lockkit::testing {

// Whether the members' client ports speak TLS (with `TestPki::shared()`'s server certificate)
// and whether they require a client certificate signed by its CA.
enum class EtcdTls { kOff, kOn, kClientCertRequired };

// An etcd cluster of `members` members on free loopback ports in its own temporary directory.
// Every member is stopped (by pid) when this is destroyed, or by a watchdog if the test binary
// dies first. Thread safety: one thread at a time.
class EtcdServer {
 public:
  // Starts the members with `extra_args` for every etcd, and TLS on the client ports unless
  // `tls` is kOff. Throws `std::runtime_error` with the script's reason if they cannot start.
  explicit EtcdServer(int members = 1, std::vector<std::string> extra_args = {},
                      EtcdTls tls = EtcdTls::kOff);
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // Returns the client endpoints, "127.0.0.1:P0,127.0.0.1:P1,...".
  const std::string& endpoints() const noexcept { return endpoints_; }
  // Returns the endpoint of member `i`.
  std::string endpoint(int i) const;
  // Returns "etcd://<endpoints>" followed by `tail` (e.g. "?prefix=x/").
  std::string url(std::string_view tail = "") const;
  // Stops (SIGTERM) or kills (SIGKILL) member `i`, or every member for -1; `restart(i)` brings
  // member `i` back on its ports with its data.
  void stop(int i = -1);
  void kill(int i = -1);
  void restart(int i);
  // Stops member `i` with SIGSTOP (a hung process: its connections stay open, nothing answers)
  // and lets it go on with SIGCONT.
  void pause(int i);
  void resume(int i);
  // Returns the index of the member that is the leader, asking each member; -1 if none says so.
  int leader() const;
  // Runs etcdctl (API v3) against every endpoint and returns its output without the trailing
  // newline. Throws `std::runtime_error` if it fails.
  std::string etcdctl(const std::vector<std::string>& args) const;

  // Returns the one-member server shared by the whole test binary, started on first use.
  static EtcdServer& shared();

 private:
  std::string script(const std::vector<std::string>& args) const;

  std::vector<std::string> etcdctl_tls() const;

  std::string dir_;
  std::string endpoints_;
  EtcdTls tls_ = EtcdTls::kOff;
};

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_ETCD_SERVER_HPP_
