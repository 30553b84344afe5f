#include "apps/anomaly/anomaly_eval.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "engine/error.h"
#include "train/ranking_metrics.h"
#include "train/train_loop.h"

namespace rg::app {

using nlohmann::json;

namespace {

bool both_classes(const std::vector<uint8_t>& labels) {
  const auto pos = std::count(labels.begin(), labels.end(), uint8_t{1});
  return pos > 0 && pos < static_cast<std::ptrdiff_t>(labels.size());
}

// Slice scores and inside-organ pixel scores of a subset of the slices.
struct Subset {
  std::vector<double> slice_scores, pixel_scores;
  std::vector<uint8_t> slice_labels, pixel_labels;
};

Subset collect(const LesionSlices& s, const AnomalyMaps& m, const std::function<bool(int64_t)>& keep) {
  Subset out;
  const int64_t hw = s.height * s.width;
  for (int64_t i = 0; i < s.count; ++i) {
    if (!keep(i)) continue;
    out.slice_scores.push_back(m.slice_scores[static_cast<size_t>(i)]);
    out.slice_labels.push_back(s.has_lesion[static_cast<size_t>(i)]);
    for (int64_t p = i * hw; p < (i + 1) * hw; ++p) {
      if (!s.organ[static_cast<size_t>(p)]) continue;
      out.pixel_scores.push_back(m.maps[static_cast<size_t>(p)]);
      out.pixel_labels.push_back(s.lesion[static_cast<size_t>(p)]);
    }
  }
  return out;
}

// The metrics of one subset under keys prefix + suffix; null where undefined.
void subset_metrics(const Subset& sub, const std::string& suffix, std::optional<double> val_threshold,
                    json& m) {
  m["image_auroc" + suffix] =
      both_classes(sub.slice_labels) ? json(train::auroc(sub.slice_scores, sub.slice_labels)) : json(nullptr);
  const bool pixels = both_classes(sub.pixel_labels);
  m["pixel_auroc" + suffix] = pixels ? json(train::auroc(sub.pixel_scores, sub.pixel_labels)) : json(nullptr);
  m["pixel_auprc" + suffix] = pixels ? json(train::auprc(sub.pixel_scores, sub.pixel_labels)) : json(nullptr);
  m["best_dice" + suffix] = pixels ? json(train::best_dice(sub.pixel_scores, sub.pixel_labels).dice) : json(nullptr);
  if (val_threshold) {
    m["dice_at_val_threshold" + suffix] =
        pixels ? json(train::dice_at_threshold(sub.pixel_scores, sub.pixel_labels, *val_threshold)) : json(nullptr);
  }
}

}  // namespace

void set_lesion_sizes(LesionSlices& s) {
  const int64_t hw = s.height * s.width;
  s.has_lesion.assign(static_cast<size_t>(s.count), 0);
  s.lesion_diameter_px.assign(static_cast<size_t>(s.count), 0.0);
  for (int64_t k = 0; k < s.count; ++k) {
    int64_t inside = 0;
    for (int64_t p = k * hw; p < (k + 1) * hw; ++p) {
      inside += s.lesion[static_cast<size_t>(p)] && s.organ[static_cast<size_t>(p)];
    }
    s.has_lesion[static_cast<size_t>(k)] = inside > 0;
    s.lesion_diameter_px[static_cast<size_t>(k)] = 2.0 * std::sqrt(static_cast<double>(inside) / M_PI);
  }
}

std::optional<double> best_dice_threshold(const LesionSlices& s, const AnomalyMaps& m) {
  const Subset all = collect(s, m, [](int64_t) { return true; });
  if (!both_classes(all.pixel_labels)) return std::nullopt;
  return train::best_dice(all.pixel_scores, all.pixel_labels).threshold;
}

AnomalyEvaluation evaluate_anomaly_maps(const LesionSlices& s, const AnomalyMaps& maps,
                                        std::optional<double> val_threshold) {
  const int64_t hw = s.height * s.width;
  RG_CHECK(static_cast<int64_t>(maps.slice_scores.size()) == s.count &&
               static_cast<int64_t>(maps.maps.size()) == s.count * hw,
           "anomaly evaluation: ", maps.slice_scores.size(), " slice scores and ", maps.maps.size(),
           " map pixels for ", s.count, " slices of ", s.height, "x", s.width);
  AnomalyEvaluation e;
  json& m = e.metrics;
  m["slices"] = s.count;
  m["lesion_slices"] = std::count(s.has_lesion.begin(), s.has_lesion.end(), uint8_t{1});
  double mean_score = 0;
  for (double v : maps.slice_scores) mean_score += v;
  mean_score /= static_cast<double>(std::max<int64_t>(1, s.count));
  m["mean_score"] = mean_score;

  const Subset all = collect(s, maps, [](int64_t) { return true; });
  subset_metrics(all, "", val_threshold, m);
  if (both_classes(all.pixel_labels)) {
    m["best_dice_threshold"] = train::best_dice(all.pixel_scores, all.pixel_labels).threshold;
  }
  if (val_threshold) m["val_threshold"] = *val_threshold;
  const double split = static_cast<double>(s.height) / 10;
  m["size_bucket_split_px"] = split;
  for (const bool small : {true, false}) {
    const Subset sub = collect(s, maps, [&](int64_t i) {
      if (!s.has_lesion[static_cast<size_t>(i)]) return true;
      return (s.lesion_diameter_px[static_cast<size_t>(i)] < split) == small;
    });
    const std::string suffix = small ? "_small" : "_large";
    m["lesion_slices" + suffix] = std::count(sub.slice_labels.begin(), sub.slice_labels.end(), uint8_t{1});
    subset_metrics(sub, suffix, val_threshold, m);
  }

  std::string summary;
  if (!m["image_auroc"].is_null()) {
    e.score = m["image_auroc"].get<double>();
    summary = "image AUROC " + train::fixed(e.score);
  } else {
    // No lesion slices: the mean anomaly score (reconstruction error) is all there is.
    e.score = -mean_score;
    summary = "mean score " + train::fixed(mean_score) + " (no lesion slices)";
  }
  if (!m["pixel_auprc"].is_null()) {
    summary += " pixel AUROC " + train::fixed(m["pixel_auroc"].get<double>()) + " AUPRC " +
               train::fixed(m["pixel_auprc"].get<double>()) + " best Dice " +
               train::fixed(m["best_dice"].get<double>());
    if (val_threshold) {
      summary += " Dice at the validation threshold " + train::fixed(m["dice_at_val_threshold"].get<double>());
    }
  }
  e.summary = summary;
  return e;
}

}  // namespace rg::app
