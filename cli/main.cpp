// SPDX-License-Identifier: MIT
// `lockkit`: parses the command line and dispatches to one subcommand; see `lockkit --help`.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common.hpp"
#include "help.hpp"
#include "lockkit/version.hpp"

namespace lockkit::cli {
namespace {

// A `--key`/`--key-hex` pair on `app`, copied into `out` after parsing.
struct KeyOptions {
  std::string text, hex;
  CLI::Option* text_option = nullptr;
  CLI::Option* hex_option = nullptr;

  void add(CLI::App& app, const std::string& name) {
    text_option = app.add_option((name == "key" ? "-k,--" : "--") + name, text);
    hex_option = app.add_option("--" + name + "-hex", hex);
  }
  KeyArg get() const {
    KeyArg arg;
    if (text_option->count() > 0) arg.text = text;
    if (hex_option->count() > 0) arg.hex = hex;
    return arg;
  }
};

// Parses `raw` (argv without argv[0]) and runs the subcommand; sets `context` to its name once
// known, for diagnostics.
Result dispatch(const std::vector<std::string>& raw, std::string& context) {
  // Everything after the first "--" is run's command, never lockkit's options.
  std::vector<std::string> options = raw, command;
  bool saw_separator = false;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == "--") {
      options.assign(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(i));
      command.assign(raw.begin() + static_cast<std::ptrdiff_t>(i) + 1, raw.end());
      saw_separator = true;
      break;
    }
  }

  CLI::App app("lockkit", "lockkit");
  app.set_help_flag();  // our own help pages, and no parser exit codes
  app.fallthrough();
  bool help = false, version = false;
  std::string backend, backend_file;
  app.add_flag("-h,--help", help);
  app.add_flag("-V,--version", version);
  CLI::Option* backend_option = app.add_option("-b,--backend", backend);
  CLI::Option* backend_file_option = app.add_option("--backend-file", backend_file);

  struct Sub {
    CLI::App* app;
    bool help = false;
    bool json = false;
    KeyOptions key;
    std::string ttl, wait, token, token_file, conflict;
    CLI::Option* wait_option = nullptr;
    CLI::Option* token_option = nullptr;
    CLI::Option* token_file_option = nullptr;
    CLI::Option* conflict_option = nullptr;

    static std::optional<std::string> value(const CLI::Option* o, const std::string& v) {
      if (o == nullptr || o->count() == 0) return std::nullopt;
      return v;
    }
    TokenSource token_source() const {
      return {value(token_option, token), value(token_file_option, token_file)};
    }
  };
  std::vector<std::string> names = {"run", "acquire", "release", "extend", "status", "list"};
  std::vector<Sub> subs(names.size());
  bool no_renew = false;
  std::string max_hold;
  CLI::Option* max_hold_option = nullptr;
  std::vector<std::string> stray;  // run's words before a missing "--"
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    Sub& s = subs[i];
    s.app = app.add_subcommand(name);
    s.app->set_help_flag();
    s.app->add_flag("-h,--help", s.help);
    s.key.add(*s.app, name == "list" ? "prefix" : "key");
    if (name == "run" || name == "acquire" || name == "extend") {
      s.app->add_option("-t,--ttl", s.ttl);
    }
    if (name == "run" || name == "acquire") {
      s.wait_option = s.app->add_option("-w,--wait", s.wait);
      s.conflict_option = s.app->add_option("--conflict-exit-code", s.conflict);
    }
    if (name == "release" || name == "extend") {
      s.token_option = s.app->add_option("--token", s.token);
      s.token_file_option = s.app->add_option("--token-file", s.token_file);
    }
    // acquire prints JSON either way; --json is accepted for symmetry.
    if (name != "run" && name != "release") s.app->add_flag("--json", s.json);
    if (name == "run") {
      s.app->add_flag("--no-renew", no_renew);
      max_hold_option = s.app->add_option("--max-hold", max_hold);
      s.app->add_option("command", stray);
    }
  }
  app.require_subcommand(0, 1);

  if (!options.empty() && options.front() == "help" && !saw_separator && options.size() <= 2) {
    std::string topic = options.size() == 2 ? options[1] : "";
    if (!topic.empty() && std::find(names.begin(), names.end(), topic) == names.end()) {
      throw UsageError("help: unknown subcommand \"" + topic + "\"");
    }
    std::fputs(help_text(topic).c_str(), stdout);
    return {Outcome::kOk};
  }
  if (!options.empty() && !options.front().empty() && options.front()[0] != '-' &&
      std::find(names.begin(), names.end(), options.front()) == names.end()) {
    throw UsageError("unknown subcommand \"" + options.front() +
                     "\": use run, acquire, release, extend, status or list (see lockkit --help)");
  }
  // CLI11 takes its arguments in reverse order.
  std::vector<std::string> reversed(options.rbegin(), options.rend());
  std::string parsed_name;
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    auto parsed = app.get_subcommands();
    std::string where = parsed.empty() ? "" : parsed.front()->get_name() + ": ";
    std::string see =
        parsed.empty() ? "lockkit --help" : "lockkit " + parsed.front()->get_name() + " --help";
    throw UsageError(where + e.what() + " (see " + see + ")");
  }
  auto parsed = app.get_subcommands();
  const Sub* sub = nullptr;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!parsed.empty() && parsed.front() == subs[i].app) {
      sub = &subs[i];
      parsed_name = names[i];
    }
  }
  if (version) {
    std::printf("lockkit %s\n", kVersion);
    return {Outcome::kOk};
  }
  if (help || (sub != nullptr && sub->help)) {
    std::fputs(help_text(parsed_name).c_str(), stdout);
    return {Outcome::kOk};
  }
  if (sub == nullptr) {
    throw UsageError(
        "missing subcommand: run, acquire, release, extend, status or list (see lockkit --help)");
  }
  context = parsed_name;
  if (saw_separator && parsed_name != "run") {
    throw UsageError("unexpected \"--\": only lockkit run takes a command");
  }

  if (!stray.empty()) {
    throw UsageError("missing \"--\" before the command (lockkit run --key K --ttl D -- " +
                     stray.front() + " ...)");
  }
  Common common{Sub::value(backend_option, backend), Sub::value(backend_file_option, backend_file),
                sub->json};
  auto wait = Sub::value(sub->wait_option, sub->wait);
  auto conflict = Sub::value(sub->conflict_option, sub->conflict);
  if (parsed_name == "run") {
    RunArgs args{common,  sub->key.get(), sub->ttl,
                 wait,    conflict,       no_renew,
                 command, saw_separator,  Sub::value(max_hold_option, max_hold)};
    return run(args);
  }
  if (parsed_name == "acquire") return acquire({common, sub->key.get(), sub->ttl, wait, conflict});
  if (parsed_name == "release") return release({common, sub->key.get(), sub->token_source(), {}});
  if (parsed_name == "extend") {
    return extend({common, sub->key.get(), sub->token_source(), sub->ttl});
  }
  if (parsed_name == "status") return status({common, sub->key.get()});
  return list({common, sub->key.get()});
}

}  // namespace
}  // namespace lockkit::cli

int main(int argc, char** argv) {
  using namespace lockkit::cli;
  Result result;
  std::string context;
  try {
    result = dispatch(std::vector<std::string>(argv + 1, argv + argc), context);
  } catch (...) {
    result = fail(std::current_exception(), context);
  }
  if (std::fflush(stdout) != 0) {
    diagnose(std::string("cannot write to stdout: ") + std::strerror(errno));
    if (result.outcome == Outcome::kOk) result = {Outcome::kIoError};
  }
  // A thread still blocked in a call to a hanging store must not meet static destructors.
  if (has_detached_thread()) std::_Exit(exit_status(result));
  return exit_status(result);
}
