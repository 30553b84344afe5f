// Metrics of a score that ranks positives above negatives: anomaly scores per image, or per
// pixel against a lesion mask (f-AnoGAN's evaluation, Baur et al.'s comparison of unsupervised
// anomaly detectors). Scores are doubles, labels 0/1; higher score = more anomalous.
//
// Ties are handled as the usual libraries do:
//   AUROC   = the Mann-Whitney statistic with average ranks for tied scores (a tie between a
//             positive and a negative counts one half), so it equals sklearn's roc_auc_score.
//   AUPRC   = average precision, sum over distinct thresholds t (descending) of
//             (R(t) - R(t_prev)) * P(t), where all samples with score >= t are called positive
//             (sklearn's average_precision_score; no interpolation).
//   Dice(t) = Dice of {score >= t} against the labels; best_dice scans every distinct score.
// A metric that needs both classes throws rg::Error naming what is missing.
#pragma once

#include <cstdint>
#include <vector>

namespace rg::train {

double auroc(const std::vector<double>& scores, const std::vector<uint8_t>& labels);
double auprc(const std::vector<double>& scores, const std::vector<uint8_t>& labels);
double dice_at_threshold(const std::vector<double>& scores, const std::vector<uint8_t>& labels,
                         double threshold);

struct ThresholdDice {
  double dice = 0;
  double threshold = 0;  // the smallest score of the predicted set {score >= threshold}
};
// The best Dice over all thresholds (what Baur et al. report as an upper bound; a fair result
// uses a threshold chosen on validation data instead: dice_at_threshold on the test scores).
ThresholdDice best_dice(const std::vector<double>& scores, const std::vector<uint8_t>& labels);

}  // namespace rg::train
