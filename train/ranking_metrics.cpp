#include "train/ranking_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/error.h"

namespace rg::train {

namespace {

struct Counts {
  int64_t positives = 0, negatives = 0;
};

Counts check_inputs(const std::vector<double>& scores, const std::vector<uint8_t>& labels,
                    const char* metric, bool need_negatives) {
  RG_CHECK(scores.size() == labels.size(), metric, ": ", scores.size(), " scores but ",
           labels.size(), " labels");
  Counts c;
  for (size_t i = 0; i < scores.size(); ++i) {
    RG_CHECK(std::isfinite(scores[i]), metric, ": score ", i, " is not finite (", scores[i], ")");
    RG_CHECK(labels[i] <= 1, metric, ": label ", i, " is ", int{labels[i]}, ", expected 0 or 1");
    (labels[i] ? c.positives : c.negatives) += 1;
  }
  RG_CHECK(c.positives > 0, metric, ": no positive sample (the metric is undefined)");
  RG_CHECK(!need_negatives || c.negatives > 0, metric, ": no negative sample (the metric is undefined)");
  return c;
}

// Indices sorted by descending score.
std::vector<size_t> by_descending_score(const std::vector<double>& scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}

}  // namespace

double auroc(const std::vector<double>& scores, const std::vector<uint8_t>& labels) {
  const Counts c = check_inputs(scores, labels, "AUROC", true);
  // Average ranks (1-based, ascending score) over groups of equal scores.
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double positive_rank_sum = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
    const double average_rank = 0.5 * static_cast<double>(i + 1 + j);  // mean of i+1 .. j
    for (size_t k = i; k < j; ++k) {
      if (labels[order[k]]) positive_rank_sum += average_rank;
    }
    i = j;
  }
  const double p = static_cast<double>(c.positives), n = static_cast<double>(c.negatives);
  return (positive_rank_sum - p * (p + 1) / 2) / (p * n);
}

double auprc(const std::vector<double>& scores, const std::vector<uint8_t>& labels) {
  const Counts c = check_inputs(scores, labels, "AUPRC", false);
  const std::vector<size_t> order = by_descending_score(scores);
  double ap = 0, previous_recall = 0;
  int64_t true_positives = 0, predicted = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;  // all samples tied at this score enter together
    while (j < order.size() && scores[order[j]] == scores[order[i]]) {
      true_positives += labels[order[j]];
      ++predicted;
      ++j;
    }
    const double recall = static_cast<double>(true_positives) / static_cast<double>(c.positives);
    const double precision = static_cast<double>(true_positives) / static_cast<double>(predicted);
    ap += (recall - previous_recall) * precision;
    previous_recall = recall;
    i = j;
  }
  return ap;
}

double dice_at_threshold(const std::vector<double>& scores, const std::vector<uint8_t>& labels,
                         double threshold) {
  RG_CHECK(scores.size() == labels.size(), "Dice: ", scores.size(), " scores but ", labels.size(),
           " labels");
  int64_t tp = 0, predicted = 0, positives = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool p = scores[i] >= threshold;
    predicted += p;
    positives += labels[i] != 0;
    tp += p && labels[i];
  }
  if (predicted + positives == 0) return 1.0;  // both empty: the segmentation convention
  return 2.0 * static_cast<double>(tp) / static_cast<double>(predicted + positives);
}

ThresholdDice best_dice(const std::vector<double>& scores, const std::vector<uint8_t>& labels) {
  const Counts c = check_inputs(scores, labels, "best Dice", false);
  const std::vector<size_t> order = by_descending_score(scores);
  ThresholdDice best;
  int64_t tp = 0, predicted = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) {
      tp += labels[order[j]];
      ++predicted;
      ++j;
    }
    const double d = 2.0 * static_cast<double>(tp) / static_cast<double>(predicted + c.positives);
    if (d > best.dice) best = {d, scores[order[i]]};
    i = j;
  }
  return best;
}

}  // namespace rg::train
