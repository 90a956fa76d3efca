#include "client/codec_advisor.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace kvf {
namespace {

std::string Percent(double fraction) { return absl::StrFormat("%.3g%%", 100 * fraction); }

// Smaller stored block first; on equal sizes the more accurate.
bool Better(const CodecQuality& a, const CodecQuality& b) {
  if (a.encoded_bytes != b.encoded_bytes) return a.encoded_bytes < b.encoded_bytes;
  return a.rel_l2 < b.rel_l2;
}

bool WithinBudget(const CodecQuality& q, double budget) {
  // `none` is exact by construction; it is the fallback whatever it measured.
  return q.codec == CodecId::kNone || q.rel_l2 <= budget;
}

std::string Reason(const std::vector<CodecQuality>& codecs, const CodecQuality& pick,
                   double budget) {
  // The codecs that would have been smaller than the pick: the budget is
  // why they lost, so name their errors, smallest first.
  std::vector<CodecQuality> over;
  for (const CodecQuality& q : codecs) {
    if (Better(q, pick)) over.push_back(q);
  }
  std::sort(over.begin(), over.end(), Better);
  std::vector<std::string> parts;
  for (const CodecQuality& q : over) {
    parts.push_back(absl::StrCat(std::string(CodecName(q.codec)), " ", Percent(q.rel_l2)));
  }
  const std::string name(CodecName(pick.codec));
  if (pick.codec == CodecId::kNone) {
    return absl::StrCat("none: every codec exceeds the ", Percent(budget),
                        " attention error budget (", absl::StrJoin(parts, ", "),
                        "); blocks stay uncompressed");
  }
  std::string reason =
      absl::StrCat(name, ": ", Percent(pick.rel_l2), " attention error (budget ", Percent(budget),
                   "), ", absl::StrFormat("%.2fx", pick.size_ratio), " smaller");
  if (over.empty()) return absl::StrCat(reason, "; the smallest codec");
  if (over.size() == 1) {
    return absl::StrCat(reason, "; ", std::string(CodecName(over[0].codec)),
                        " exceeds the budget at ", Percent(over[0].rel_l2));
  }
  return absl::StrCat(reason, "; smaller but over the budget: ", absl::StrJoin(parts, ", "));
}

}  // namespace

absl::StatusOr<CodecAdvice> AdviseCodec(const KvLayout& layout,
                                        absl::Span<const std::byte> sample_blocks,
                                        double max_rel_error, const QualityOptions& options) {
  if (!(max_rel_error >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("error budget ", max_rel_error, ": want a fraction >= 0, e.g. 0.01 for 1%"));
  }
  CodecAdvice advice;
  for (int i = 0; i < kNumCodecs; ++i) {
    KVF_ASSIGN_OR_RETURN(CodecQuality q,
                         MeasureCodec(static_cast<CodecId>(i), layout, sample_blocks, options));
    advice.codecs.push_back(q);
  }
  const CodecQuality* pick = nullptr;
  for (const CodecQuality& q : advice.codecs) {
    if (WithinBudget(q, max_rel_error) && (pick == nullptr || Better(q, *pick))) pick = &q;
  }
  // `none` always qualifies, so there is a pick.
  advice.recommended = pick->codec;
  advice.reason = Reason(advice.codecs, *pick, max_rel_error);
  return advice;
}

}  // namespace kvf
