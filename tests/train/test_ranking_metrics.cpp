// AUROC, AUPRC and Dice over thresholds against values worked out by hand, ties included.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/error.h"
#include "train/ranking_metrics.h"

namespace rg::train {
namespace {

TEST(RankingMetrics, PerfectAndInvertedRankings) {
  const std::vector<double> s{0.1, 0.2, 0.8, 0.9};
  const std::vector<uint8_t> y{0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(auroc(s, y), 1.0);
  EXPECT_DOUBLE_EQ(auprc(s, y), 1.0);
  const std::vector<uint8_t> inverted{1, 1, 0, 0};
  EXPECT_DOUBLE_EQ(auroc(s, inverted), 0.0);
  // Positives are ranked 3rd and 4th: AP = 0.5 * 1/3 + 0.5 * 2/4.
  EXPECT_DOUBLE_EQ(auprc(s, inverted), 0.5 / 3 + 0.5 * 0.5);
}

// scores 0.9(+) 0.8(-) 0.7(+) 0.6(-) 0.5(-): positive pairs ranked correctly 5 of 6 -> 5/6.
// AP: thresholds 0.9 (R 1/2, P 1), 0.7 (R 1, P 2/3) -> 0.5 * 1 + 0.5 * 2/3.
TEST(RankingMetrics, HandComputedMixedRanking) {
  const std::vector<double> s{0.9, 0.8, 0.7, 0.6, 0.5};
  const std::vector<uint8_t> y{1, 0, 1, 0, 0};
  EXPECT_NEAR(auroc(s, y), 5.0 / 6.0, 1e-12);
  EXPECT_NEAR(auprc(s, y), 0.5 + 0.5 * 2.0 / 3.0, 1e-12);
  // Dice at t = 0.7: predicted {0.9, 0.8, 0.7}, TP 2 -> 2*2/(3+2) = 0.8; at 0.9: 2*1/(1+2).
  EXPECT_NEAR(dice_at_threshold(s, y, 0.7), 0.8, 1e-12);
  EXPECT_NEAR(dice_at_threshold(s, y, 0.9), 2.0 / 3.0, 1e-12);
  const ThresholdDice b = best_dice(s, y);
  EXPECT_NEAR(b.dice, 0.8, 1e-12);
  EXPECT_EQ(b.threshold, 0.7);
}

// Ties: a positive and a negative at the same score count one half in AUROC and enter the
// precision-recall curve together.
TEST(RankingMetrics, TiesCountHalfAndEnterTogether) {
  const std::vector<double> s{0.5, 0.5, 0.2};
  const std::vector<uint8_t> y{1, 0, 0};
  // Pairs (pos, neg): vs the tied negative 0.5, vs 0.2 correct 1 -> (0.5 + 1) / 2.
  EXPECT_DOUBLE_EQ(auroc(s, y), 0.75);
  // One threshold 0.5: R 1, P 1/2.
  EXPECT_DOUBLE_EQ(auprc(s, y), 0.5);
  const std::vector<double> all_equal{0.3, 0.3, 0.3, 0.3};
  EXPECT_DOUBLE_EQ(auroc(all_equal, {1, 0, 1, 0}), 0.5);
  EXPECT_DOUBLE_EQ(auprc(all_equal, {1, 0, 1, 0}), 0.5);
}

TEST(RankingMetrics, UndefinedCasesAndBadInputAreRefused) {
  EXPECT_THROW(auroc({0.1, 0.2}, {1, 1}), Error);  // no negative
  EXPECT_THROW(auroc({0.1, 0.2}, {0, 0}), Error);  // no positive
  EXPECT_THROW(auprc({0.1, 0.2}, {0, 0}), Error);
  EXPECT_THROW(auroc({0.1}, {0, 1}), Error);       // sizes differ
  EXPECT_THROW(auroc({0.1, std::nan("")}, {0, 1}), Error);
  EXPECT_THROW(auroc({0.1, 0.2}, {0, 2}), Error);  // not 0/1
  EXPECT_DOUBLE_EQ(dice_at_threshold({0.1, 0.2}, {0, 0}, 0.5), 1.0);  // both empty
}

}  // namespace
}  // namespace rg::train
