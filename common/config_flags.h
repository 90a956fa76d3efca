// A daemon's configuration from a textproto file and its command-line flags,
// for kvf-coordinator and kvf-agent: the file first, then every flag given on
// the command line, whatever its value.
//
// Fields and flags are matched by name: field `listen` of the config message
// takes flag --listen. Every such field must be proto3 `optional`, so a file
// that sets a field to its zero value ("", 0, false) is told apart from one
// that leaves it out.
#ifndef KVF_COMMON_CONFIG_FLAGS_H_
#define KVF_COMMON_CONFIG_FLAGS_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace kvf {

// Which flags a command line gives. The installed Abseil (20220623) has no
// public "was this flag on the command line" (IsSpecifiedOnCommandLine is
// private to it), and comparing a flag with its default cannot tell
// `--replication=2` from no --replication at all: a flag could not set a value
// back to its default over the file.
//
// Immutable after Scan(); thread-safe.
class GivenFlags {
 public:
  // Reads argv as absl::ParseCommandLine does (argv is not changed by it, so
  // before or after): `--name`, `-name`, `--name=value`, `--name value` (the
  // next argument is the value of a non-boolean flag), `--noname` (booleans);
  // nothing after `--`. Names of no defined flag are ignored.
  static GivenFlags Scan(int argc, const char* const* argv);

  // True if the command line names flag `name`, or if the flag's value
  // differs from its default (set through --flagfile or --fromenv, which
  // Scan does not read). Call after absl::ParseCommandLine.
  bool Given(absl::string_view name) const;

 private:
  absl::flat_hash_set<std::string> named_;
};

// Fills `config`: the textproto file at `path` (none if empty), then, for each
// field that has a flag of the same name, the flag's value if the flag was
// given or the file left the field unset (so unset fields take the flags'
// defaults). Fields with no flag keep what the file says.
//
// NOT_FOUND if the file cannot be read; INVALID_ARGUMENT if it is not a
// textproto of `config`'s type; INTERNAL if a field lacks presence or its
// flag's type differs from the field's (a programming error).
absl::Status LoadConfig(const std::string& path, const GivenFlags& given,
                        google::protobuf::Message* config);

}  // namespace kvf

#endif  // KVF_COMMON_CONFIG_FLAGS_H_
