// SPDX-License-Identifier: MIT
// Test support: what counts as a leaked secret in an error message.
#ifndef LOCKKIT_TESTS_SUPPORT_SECRETS_HPP_
#define LOCKKIT_TESTS_SUPPORT_SECRETS_HPP_

#include <cctype>
#include <string>
#include <vector>

namespace lockkit::testing {

// Returns every alphanumeric run of 4+ characters of `secret`: a message containing any of them
// leaked a fragment of the secret.
inline std::vector<std::string> secret_pieces(const std::string& secret) {
  std::vector<std::string> out;
  std::string run;
  for (char c : secret + " ") {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      run.push_back(c);
    } else {
      if (run.size() >= 4) out.push_back(run);
      run.clear();
    }
  }
  return out;
}

}  // namespace lockkit::testing

#endif  // LOCKKIT_TESTS_SUPPORT_SECRETS_HPP_
