// SPDX-License-Identifier: MIT
// etcd:// over TLS against a real etcd whose client ports use certificates made by `openssl` at
// test time: verification, server names, client certificates, clear errors without secrets.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "support/etcd_server.hpp"
#include "support/redis_server.hpp"  // TestPki
#include "support/secrets.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::EtcdServer;
using testing::EtcdTls;
using testing::TestPki;
using Steady = std::chrono::steady_clock;

BackendError ExpectBackendError(const std::function<void()>& call) {
  try {
    call();
  } catch (const BackendError& e) {
    return e;
  }
  ADD_FAILURE() << "no BackendError";
  return BackendError("etcd", ErrorKind::kProtocol, "none");
}

std::string Key(std::string_view what) {
  return "etcd-tls/" + std::string(what) + "/" + make_token().substr(0, 8);
}

EtcdServer& TlsServer() {
  static EtcdServer server(1, {}, EtcdTls::kOn);
  return server;
}

TEST(EtcdTls, VerifiedConnectionLocks) {
  auto& server = TlsServer();
  const auto& pki = TestPki::shared();
  for (const std::string& tail : {"?tls_ca_file=" + pki.ca,
                                  // The certificate names localhost too.
                                  "?tls_ca_file=" + pki.ca + "&tls_server_name=localhost"}) {
    auto api = lockkit::open(server.url(tail));
    const auto key = Key("ok");
    auto lock = api->try_acquire(key, 30s);
    ASSERT_TRUE(lock) << tail;
    EXPECT_EQ(server.etcdctl({"get", "--print-value-only", "lockkit/" + key}), lock->token());
    EXPECT_FALSE(api->try_acquire(key, 30s));
    EXPECT_TRUE(lock->release());
  }
}

TEST(EtcdTls, WrongCaOrNameIsAuthWithAClearMessageAndNoSecret) {
  auto& server = TlsServer();
  const auto& pki = TestPki::shared();
  const std::string password = "Tls9Secret";
  for (const std::string& tail : {"?tls_ca_file=" + pki.other_ca,
                                  "?tls_ca_file=" + pki.ca + "&tls_server_name=wrong.example"}) {
    auto api = lockkit::open("etcd://root:" + password + "@" + server.endpoints() + tail +
                             "&connect_timeout=500ms");
    const auto start = Steady::now();
    auto error = ExpectBackendError([&] { (void)api->try_acquire(Key("wrong"), 30s); });
    EXPECT_LT(Steady::now() - start, 1s + 1s + 1s) << "took longer than its timeouts";
    EXPECT_EQ(error.kind(), ErrorKind::kAuth) << error.what();
    EXPECT_NE(std::string(error.what()).find("TLS"), std::string::npos) << error.what();
    for (const auto& piece : testing::secret_pieces(password)) {
      EXPECT_EQ(std::string(error.what()).find(piece), std::string::npos) << error.what();
    }
  }
}

TEST(EtcdTls, PlaintextClientGetsNoLock) {
  auto api = lockkit::open(TlsServer().url("?connect_timeout=500ms&command_timeout=1s"));
  auto error = ExpectBackendError([&] { (void)api->try_acquire(Key("plain"), 30s); });
  EXPECT_TRUE(error.kind() == ErrorKind::kUnavailable || error.kind() == ErrorKind::kProtocol)
      << error.what();
}

TEST(EtcdTls, ClientCertificateIsRequiredAndAccepted) {
  EtcdServer server(1, {}, EtcdTls::kClientCertRequired);
  const auto& pki = TestPki::shared();
  auto api = lockkit::open(server.url("?tls_ca_file=" + pki.ca + "&tls_cert=" + pki.client_cert +
                                      "&tls_key=" + pki.client_key));
  auto lock = api->try_acquire(Key("client-cert"), 30s);
  ASSERT_TRUE(lock);
  EXPECT_TRUE(lock->release());
  for (const std::string& tail : {"?tls_ca_file=" + pki.ca,  // no client certificate
                                  "?tls_ca_file=" + pki.ca + "&tls_cert=" + pki.stranger_cert +
                                      "&tls_key=" + pki.stranger_key}) {
    auto refused = lockkit::open(server.url(tail + "&connect_timeout=500ms&command_timeout=1s"));
    auto error = ExpectBackendError([&] { (void)refused->try_acquire(Key("refused"), 30s); });
    EXPECT_TRUE(error.kind() == ErrorKind::kAuth || error.kind() == ErrorKind::kUnavailable)
        << error.what();
  }
}

}  // namespace
}  // namespace lockkit
