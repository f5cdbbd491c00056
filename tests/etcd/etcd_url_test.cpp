// SPDX-License-Identifier: MIT
// etcd:// URLs: endpoints, options, passwords from a file or the environment, bad URLs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "etcd/etcd_store.hpp"
#include "lockkit/etcd.hpp"
#include "lockkit/open.hpp"
#include "support/secrets.hpp"

namespace lockkit {
namespace {

using namespace std::chrono_literals;

TEST(EtcdUrl, ParsesEndpointsUserAndOptions) {
  auto o = parse_etcd_url(
      "etcd://app:pw@10.0.0.1:2379,node-b,[::1]:12379?connect_timeout=500ms&command_timeout=3s"
      "&prefix=jobs%2F");
  EXPECT_EQ(o.endpoints, (std::vector<std::string>{"10.0.0.1:2379", "node-b:2379", "[::1]:12379"}));
  EXPECT_EQ(o.user, "app");
  EXPECT_EQ(o.password, "pw");
  EXPECT_EQ(o.connect_timeout, 500ms);
  EXPECT_EQ(o.command_timeout, 3s);
  EXPECT_EQ(o.prefix, "jobs/");
}

TEST(EtcdUrl, ParsesTlsOptions) {
  EXPECT_FALSE(parse_etcd_url("etcd://h").tls.enabled);
  EXPECT_TRUE(parse_etcd_url("etcd://h?tls=1").tls.enabled);
  EXPECT_FALSE(parse_etcd_url("etcd://h?tls=false").tls.enabled);
  auto o = parse_etcd_url(
      "etcd://h?tls_ca_file=%2Fca.pem&tls_cert=%2Fc.pem&tls_key=%2Fk.pem&tls_server_name=etcd.lan");
  EXPECT_TRUE(o.tls.enabled) << "a tls_* option turns TLS on";
  EXPECT_EQ(o.tls.ca_file, "/ca.pem");
  EXPECT_EQ(o.tls.cert_file, "/c.pem");
  EXPECT_EQ(o.tls.key_file, "/k.pem");
  EXPECT_EQ(o.tls.server_name, "etcd.lan");
  EXPECT_THROW((void)parse_etcd_url("etcd://h?tls=maybe"), std::invalid_argument);
  EXPECT_THROW((void)parse_etcd_url("etcd://h?tls_cert=%2Fc.pem"), std::invalid_argument)
      << "a certificate without its key";
  EXPECT_THROW((void)parse_etcd_url("etcd://h?tls=0&tls_ca_file=%2Fca.pem"), std::invalid_argument);
  EXPECT_THROW((void)lockkit::open("etcd://h?tls_ca_file=%2Fno%2Fsuch%2Ffile.pem"),
               std::invalid_argument);
}

TEST(EtcdUrl, DefaultsAreFiniteAndPrefixed) {
  auto o = parse_etcd_url("etcd://127.0.0.1");
  EXPECT_EQ(o.endpoints, std::vector<std::string>{"127.0.0.1:2379"});
  EXPECT_EQ(o.prefix, "lockkit/");
  EXPECT_LE(o.connect_timeout, 5s);
  EXPECT_LE(o.command_timeout, 5s);
  EXPECT_TRUE(o.user.empty());
  EXPECT_TRUE(o.password.empty());
}

TEST(EtcdUrl, PasswordFromEnvironment) {
  ::setenv("LOCKKIT_ETCD_TEST_PW", "from-env-pw", 1);
  auto o = parse_etcd_url("etcd://root@127.0.0.1:2379?password_env=LOCKKIT_ETCD_TEST_PW");
  EXPECT_EQ(o.user, "root");
  EXPECT_EQ(o.password, "from-env-pw");
  ::unsetenv("LOCKKIT_ETCD_TEST_PW");
}

TEST(EtcdUrl, RejectsMalformedUrlsByName) {
  struct Case {
    const char* url;
    const char* says;
  };
  for (const Case& c : {
           Case{"etcd:", "no endpoint"},
           Case{"etcd://", "no endpoint"},
           Case{"etcd://127.0.0.1:2379/locks", "no path"},
           Case{"etcd://127.0.0.1:2379?bogus=1", "bogus"},
           Case{"etcd://127.0.0.1:2379?command_timeout=0ms", "command_timeout"},
           Case{"etcd://127.0.0.1:2379?connect_timeout=5", "connect_timeout"},
           Case{"etcd://127.0.0.1:99999", ""},
           Case{"etcd://:pw@127.0.0.1:2379", "without a user"},
           Case{"redis://127.0.0.1:2379", "etcd://"},
       }) {
    try {
      (void)parse_etcd_url(c.url);
      ADD_FAILURE() << c.url << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << c.url << ": " << e.what();
    }
  }
}

TEST(EtcdUrl, PasswordNeverInMessages) {
  const std::string secret = "Sup3rSecretEtcdPw";
  for (const std::string& url : {
           "etcd://root:" + secret + "@127.0.0.1:2379?bogus=1",
           "etcd://root:" + secret + "@127.0.0.1:2379/path",
           "etcd://root:" + secret + "@127.0.0.1:2379?password_env=X",
       }) {
    try {
      (void)lockkit::open(url);
      ADD_FAILURE() << "accepted";
    } catch (const std::exception& e) {
      for (const auto& piece : testing::secret_pieces(secret)) {
        EXPECT_EQ(std::string(e.what()).find(piece), std::string::npos) << e.what();
      }
    }
  }
}

TEST(EtcdOptions, FactoryValidates) {
  EtcdOptions o;
  o.endpoints.clear();
  EXPECT_THROW((void)make_etcd_lock_api(o), std::invalid_argument);
  o = EtcdOptions{};
  o.command_timeout = 0ms;
  EXPECT_THROW((void)make_etcd_lock_api(o), std::invalid_argument);
  EXPECT_NO_THROW((void)make_etcd_lock_api(EtcdOptions{}));  // does not connect
}

TEST(EtcdStore, LeaseSecondsRoundUp) {
  using detail::etcd::EtcdStore;
  EXPECT_EQ(EtcdStore::lease_seconds(1ms), 1);
  EXPECT_EQ(EtcdStore::lease_seconds(999ms), 1);
  EXPECT_EQ(EtcdStore::lease_seconds(1000ms), 1);
  EXPECT_EQ(EtcdStore::lease_seconds(1001ms), 2);
  EXPECT_EQ(EtcdStore::lease_seconds(30s), 30);
  EXPECT_EQ(EtcdStore::lease_seconds(std::chrono::hours(24 * 7)), 7 * 24 * 3600);
}

}  // namespace
}  // namespace lockkit
