// SPDX-License-Identifier: MIT
// rediss:// against a real redis-server with a TLS port and certificates made by `openssl`:
// verification on by default, names, client certificates, the insecure opt-out, timeouts.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>

#include "lockkit/errors.hpp"
#include "lockkit/open.hpp"
#include "lockkit/redis.hpp"
#include "support/fault_proxy.hpp"
#include "support/redis_server.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;
using testing::FaultProxy;
using testing::RedisServer;
using testing::RedisTls;
using testing::TestPki;
using Clock = std::chrono::steady_clock;

constexpr auto kSchedulingSlack = 500ms;

std::string Unique(std::string_view stem) {
  return std::string(stem) + "/" + make_token().substr(0, 8);
}

// Runs `call`, which must throw `BackendError`, and returns it.
BackendError ExpectBackendError(const std::function<void()>& call) {
  try {
    call();
  } catch (const BackendError& e) {
    return e;
  }
  ADD_FAILURE() << "no BackendError";
  return BackendError("redis", ErrorKind::kProtocol, "none");
}

std::string Rediss(std::uint16_t port, std::string_view query) {
  return "rediss://127.0.0.1:" + std::to_string(port) + "?connect_timeout=2s" + std::string(query);
}

TEST(RedisTls, VerifiedConnectionLocksOnTheSameServer) {
  auto& server = RedisServer::shared_tls();
  auto api = lockkit::open(server.tls_url());
  const auto key = Unique("tls");
  auto lock = api->try_acquire(key, 30s);
  ASSERT_TRUE(lock);
  // The same data set through the plain port: TLS changes the transport only.
  EXPECT_EQ(server.cli({"GET", key}), lock->token());
  auto plain = lockkit::open(server.url());
  EXPECT_FALSE(plain->try_acquire(key, 30s));
  EXPECT_TRUE(lock->extend(30s));
  EXPECT_TRUE(lock->release());
  EXPECT_TRUE(plain->try_acquire(key, 30s));
}

TEST(RedisTls, VerificationIsOnByDefault) {
  // No CA given: the system store, which does not know the test CA.
  auto& server = RedisServer::shared_tls();
  auto api = lockkit::open(Rediss(server.tls_port(), ""));
  auto error = ExpectBackendError([&] { (void)api->try_acquire("tls-default", 1s); });
  EXPECT_EQ(error.kind(), ErrorKind::kAuth) << error.what();
  EXPECT_FALSE(error.retryable());
  EXPECT_NE(std::string(error.what()).find("server certificate rejected"), std::string::npos)
      << error.what();
}

TEST(RedisTls, WrongCaIsRejectedWithOpenSslsReason) {
  auto& server = RedisServer::shared_tls();
  auto api = lockkit::open(Rediss(server.tls_port(), "&tls_ca_file=" + TestPki::shared().other_ca));
  auto error = ExpectBackendError([&] { (void)api->try_acquire("tls-wrong-ca", 1s); });
  EXPECT_EQ(error.kind(), ErrorKind::kAuth) << error.what();
  const std::string what = error.what();
  // OpenSSL's reason, whichever it finds first for a chain it cannot trust.
  EXPECT_TRUE(what.find("server certificate rejected: unable to get local issuer") !=
                  std::string::npos ||
              what.find("server certificate rejected: self-signed certificate in certificate "
                        "chain") != std::string::npos)
      << what;
  EXPECT_EQ(what.find("in doubt"), std::string::npos) << what;
}

TEST(RedisTls, InsecureOptOutAcceptsAnUnknownCa) {
  auto& server = RedisServer::shared_tls();
  auto api = lockkit::open(Rediss(server.tls_port(), "&tls_insecure_skip_verify=true"));
  EXPECT_TRUE(api->try_acquire(Unique("tls-insecure"), 5s));
  // Spelled out or not at all: it cannot be combined with a CA to verify against.
  EXPECT_THROW(lockkit::open(server.tls_url("&tls_insecure_skip_verify=1")), std::invalid_argument);
}

TEST(RedisTls, ServerNameIsVerifiedAndSentAsSni) {
  auto& server = RedisServer::shared_tls();
  // The certificate names 127.0.0.1 and localhost.
  auto by_name = lockkit::open(server.tls_url("&tls_server_name=localhost"));
  EXPECT_TRUE(by_name->try_acquire(Unique("tls-sni"), 5s));
  auto wrong = lockkit::open(server.tls_url("&tls_server_name=redis.example.com"));
  auto error = ExpectBackendError([&] { (void)wrong->try_acquire("tls-sni-wrong", 1s); });
  EXPECT_EQ(error.kind(), ErrorKind::kAuth) << error.what();
  EXPECT_NE(std::string(error.what()).find("hostname mismatch"), std::string::npos) << error.what();
}

TEST(RedisTls, ClientCertificateRequiredByTheServer) {
  RedisServer server({}, RedisTls::kClientCertRequired);
  const TestPki& pki = TestPki::shared();
  auto with_cert =
      lockkit::open(server.tls_url("&tls_cert=" + pki.client_cert + "&tls_key=" + pki.client_key));
  EXPECT_TRUE(with_cert->try_acquire("tls-client-cert", 5s));

  for (std::string tail :
       {std::string(), "&tls_cert=" + pki.stranger_cert + "&tls_key=" + pki.stranger_key}) {
    auto api = lockkit::open(server.tls_url(tail + "&connect_timeout=2s"));
    auto error = ExpectBackendError([&] { (void)api->try_acquire("tls-no-cert", 1s); });
    EXPECT_EQ(error.kind(), ErrorKind::kAuth) << tail << ": " << error.what();
    EXPECT_NE(std::string(error.what()).find("client certificate"), std::string::npos)
        << error.what();
  }
  // Half a key pair is a caller mistake.
  EXPECT_THROW(lockkit::open(server.tls_url("&tls_cert=" + pki.client_cert)),
               std::invalid_argument);
  EXPECT_THROW(
      lockkit::open(server.tls_url("&tls_cert=" + pki.client_cert + "&tls_key=" + pki.server_key)),
      std::invalid_argument);
}

TEST(RedisTls, UnreachableIsNotARejectedCertificate) {
  auto& server = RedisServer::shared_tls();
  // Nothing listens on port 1.
  auto closed = lockkit::open(Rediss(1, "&tls_ca_file=" + TestPki::shared().ca));
  auto down = ExpectBackendError([&] { (void)closed->try_acquire("tls-closed", 1s); });
  EXPECT_EQ(down.kind(), ErrorKind::kUnavailable) << down.what();
  EXPECT_TRUE(down.retryable());
  // The plain port does not answer a ClientHello (Redis waits for the end of an inline
  // command): a timeout, still not a certificate problem.
  auto plain = lockkit::open("rediss://127.0.0.1:" + std::to_string(server.port()) +
                             "?connect_timeout=300ms&tls_ca_file=" + TestPki::shared().ca);
  auto garbled = ExpectBackendError([&] { (void)plain->try_acquire("tls-plain-port", 1s); });
  EXPECT_TRUE(garbled.kind() == ErrorKind::kProtocol || garbled.kind() == ErrorKind::kUnavailable ||
              garbled.kind() == ErrorKind::kTimeout)
      << garbled.what();
  EXPECT_NE(garbled.kind(), ErrorKind::kAuth) << garbled.what();
}

TEST(RedisTls, HandshakeIsBoundedByTheConnectTimeout) {
  // A port that accepts connections (the kernel completes them) but never says a word.
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  auto api = lockkit::open("rediss://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) +
                           "?tls_insecure_skip_verify=1&connect_timeout=300ms");
  auto start = Clock::now();
  auto error = ExpectBackendError([&] { (void)api->try_acquire("tls-silent", 1s); });
  auto took = Clock::now() - start;
  ::close(listener);
  EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << error.what();
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 300ms + kSchedulingSlack);
}

TEST(RedisTls, SilenceAfterTheHandshakeIsBoundedByTheCommandTimeout) {
  auto& server = RedisServer::shared_tls();
  FaultProxy proxy(server.tls_port());
  auto api = lockkit::open(Rediss(proxy.port(), "&tls_ca_file=" + TestPki::shared().ca +
                                                    "&command_timeout=300ms&connections=1"));
  auto lock = api->try_acquire(Unique("tls-quiet"), 30s);
  ASSERT_TRUE(lock);
  proxy.set_silent(true);
  auto start = Clock::now();
  auto error = ExpectBackendError([&] { (void)lock->extend(30s); });
  auto took = Clock::now() - start;
  EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << error.what();
  EXPECT_LT(took, 300ms + kSchedulingSlack);
  proxy.set_silent(false);
  EXPECT_TRUE(lock->release()) << "a fresh TLS connection did not take over";
}

TEST(RedisTls, UrlOptions) {
  auto o = parse_redis_url(
      "rediss://h:6380?tls_ca_file=/ca.pem&tls_ca_dir=/cas&tls_cert=/c.pem&tls_key=/k.pem"
      "&tls_server_name=redis.internal");
  EXPECT_TRUE(o.tls.enabled);
  EXPECT_EQ(o.port, 6380);
  EXPECT_EQ(o.tls.ca_file, "/ca.pem");
  EXPECT_EQ(o.tls.ca_dir, "/cas");
  EXPECT_EQ(o.tls.cert_file, "/c.pem");
  EXPECT_EQ(o.tls.key_file, "/k.pem");
  EXPECT_EQ(o.tls.server_name, "redis.internal");
  EXPECT_FALSE(o.tls.insecure_skip_verify);
  EXPECT_FALSE(parse_redis_url("redis://h").tls.enabled);
  EXPECT_TRUE(parse_redis_url("rediss://h?tls_insecure_skip_verify=1").tls.insecure_skip_verify);
  EXPECT_THROW(parse_redis_url("redis://h?tls_ca_file=/ca.pem"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("rediss://h?tls_insecure_skip_verify=maybe"), std::invalid_argument);
  EXPECT_THROW(lockkit::open("rediss://h?tls_ca_file=/nonexistent/ca.pem"), std::invalid_argument);
}

}  // namespace
}  // namespace lockkit
