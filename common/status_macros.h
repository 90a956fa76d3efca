// Status propagation macros. The installed Abseil (20220623) predates its own
// ABSL_RETURN_IF_ERROR / ASSIGN_OR_RETURN, so kvfabric carries thin local ones.
#ifndef KVF_COMMON_STATUS_MACROS_H_
#define KVF_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns `expr` from the enclosing function if it is not OK.
#define KVF_RETURN_IF_ERROR(expr)                      \
  do {                                                 \
    ::absl::Status kvf_status_ = (expr);               \
    if (!kvf_status_.ok()) return kvf_status_;         \
  } while (0)

#define KVF_INTERNAL_CONCAT_(a, b) a##b
#define KVF_INTERNAL_CONCAT(a, b) KVF_INTERNAL_CONCAT_(a, b)

// `KVF_ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns `x` from an
// absl::StatusOr, or returns its status from the enclosing function.
#define KVF_ASSIGN_OR_RETURN(lhs, expr) \
  KVF_INTERNAL_ASSIGN_OR_RETURN(KVF_INTERNAL_CONCAT(kvf_statusor_, __LINE__), lhs, expr)

#define KVF_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return std::move(tmp).status();      \
  lhs = std::move(tmp).value()

#endif  // KVF_COMMON_STATUS_MACROS_H_
