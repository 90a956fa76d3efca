#include "common/config_flags.h"

#include <cstdint>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"

namespace kvf {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Sets `field` through `set` from the flag's value, if the flag holds a T.
template <typename T, typename Setter>
absl::Status Take(const absl::CommandLineFlag& flag, const FieldDescriptor& field, Setter set) {
  absl::optional<T> value = flag.TryGet<T>();
  if (!value.has_value()) {
    return absl::InternalError(absl::StrCat("flag --", flag.Name(), " is not of the type of ",
                                            field.full_name(), " (", field.cpp_type_name(), ")"));
  }
  set(*std::move(value));
  return absl::OkStatus();
}

absl::Status SetFromFlag(const absl::CommandLineFlag& flag, const FieldDescriptor& f,
                         Message* m) {
  const Reflection& r = *m->GetReflection();
  switch (f.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return Take<std::string>(flag, f, [&](std::string v) { r.SetString(m, &f, std::move(v)); });
    case FieldDescriptor::CPPTYPE_BOOL:
      return Take<bool>(flag, f, [&](bool v) { r.SetBool(m, &f, v); });
    case FieldDescriptor::CPPTYPE_INT32:
      return Take<int32_t>(flag, f, [&](int32_t v) { r.SetInt32(m, &f, v); });
    case FieldDescriptor::CPPTYPE_INT64:
      return Take<int64_t>(flag, f, [&](int64_t v) { r.SetInt64(m, &f, v); });
    case FieldDescriptor::CPPTYPE_UINT32:
      return Take<uint32_t>(flag, f, [&](uint32_t v) { r.SetUInt32(m, &f, v); });
    case FieldDescriptor::CPPTYPE_UINT64:
      return Take<uint64_t>(flag, f, [&](uint64_t v) { r.SetUInt64(m, &f, v); });
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return Take<double>(flag, f, [&](double v) { r.SetDouble(m, &f, v); });
    case FieldDescriptor::CPPTYPE_FLOAT:
      return Take<float>(flag, f, [&](float v) { r.SetFloat(m, &f, v); });
    default:
      return absl::InternalError(
          absl::StrCat(f.full_name(), ": a ", f.cpp_type_name(), " field cannot take a flag"));
  }
}

}  // namespace

GivenFlags GivenFlags::Scan(int argc, const char* const* argv) {
  GivenFlags given;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;  // positional
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      if (flag != nullptr && !flag->IsOfType<bool>()) flag = nullptr;
    }
    if (flag == nullptr) continue;
    given.named_.insert(std::string(flag->Name()));
    if (eq == absl::string_view::npos && !flag->IsOfType<bool>()) ++i;  // `--name value`
  }
  return given;
}

bool GivenFlags::Given(absl::string_view name) const {
  if (named_.contains(name)) return true;
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  return flag != nullptr && flag->CurrentValue() != flag->DefaultValue();
}

absl::Status LoadConfig(const std::string& path, const GivenFlags& given, Message* config) {
  config->Clear();
  if (!path.empty()) {
    KVF_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
    if (!google::protobuf::TextFormat::ParseFromString(text, config)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not a ", config->GetDescriptor()->full_name(), " textproto"));
    }
  }
  const google::protobuf::Descriptor& d = *config->GetDescriptor();
  const Reflection& r = *config->GetReflection();
  for (int i = 0; i < d.field_count(); ++i) {
    const FieldDescriptor& f = *d.field(i);
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(f.name());
    if (flag == nullptr) continue;
    if (!f.has_presence()) {
      return absl::InternalError(
          absl::StrCat(f.full_name(), " must be `optional` to be told apart from an unset field"));
    }
    if (r.HasField(*config, &f) && !given.Given(f.name())) continue;
    KVF_RETURN_IF_ERROR(SetFromFlag(*flag, f, config));
  }
  return absl::OkStatus();
}

}  // namespace kvf
