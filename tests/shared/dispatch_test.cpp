// DispatchPolicy: the guided chunk rule, the nodes' static split, and its checks.
#include "tilepool/shared/dispatch.hpp"

#include <gtest/gtest.h>

#include "shared/error_expectations.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

TEST(DispatchPolicyTest, DefaultChunksAreAQuarterOfEachWorkersShareOfWhatIsLeftClampedToOneAndSixtyFour) {
  const DispatchPolicy guided;
  EXPECT_EQ(guided.chunk_size(100'000, 2), 64);  // 12,500 clamped
  EXPECT_EQ(guided.chunk_size(400, 2), 50);
  EXPECT_EQ(guided.chunk_size(40, 2), 5);
  EXPECT_EQ(guided.chunk_size(7, 2), 1);  // the end: one tile at a time
  EXPECT_EQ(guided.chunk_size(1, 1), 1);
  EXPECT_EQ(guided.chunk_size(400, 0), 64);  // no workers counted yet: as one
}

TEST(DispatchPolicyTest, MaxChunkAndDivisorChangeTheRule) {
  EXPECT_EQ((DispatchPolicy{.max_chunk = 1}).chunk_size(100'000, 2), 1);
  EXPECT_EQ((DispatchPolicy{.chunk_divisor = 1}).chunk_size(40, 2), 20);
  EXPECT_EQ((DispatchPolicy{.chunk_divisor = 1, .max_chunk = 10}).chunk_size(40, 2), 10);
}

TEST(DispatchPolicyTest, NodeBlocksCoverEveryTileOnceAndDifferByAtMostOne) {
  const DispatchPolicy policy;
  for (const std::int64_t tiles : {0, 1, 5, 16, 17, 1000, 1001}) {
    for (const int nodes : {1, 2, 3, 7}) {
      std::int64_t next = 0, smallest = tiles, largest = 0;
      for (int node = 0; node < nodes; ++node) {
        const TileRange r = policy.node_block(tiles, nodes, node);
        EXPECT_EQ(r.first, next) << tiles << " tiles, node " << node << " of " << nodes;
        next += r.count;
        smallest = std::min(smallest, r.count);
        largest = std::max(largest, r.count);
      }
      EXPECT_EQ(next, tiles);
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

TEST(DispatchPolicyTest, OutOfRangeFieldsAreRefusedByName) {
  EXPECT_NO_THROW(DispatchPolicy{}.check());
  EXPECT_TRUE(testing::throws_error([] { DispatchPolicy{.max_chunk = 0}.check(); }, Errc::usage, {"dispatch max_chunk 0: expected 1 to 64"}));
  EXPECT_TRUE(testing::throws_error([] { DispatchPolicy{.max_chunk = 65}.check(); }, Errc::usage, {"dispatch max_chunk 65: expected 1 to 64"}));
  EXPECT_TRUE(testing::throws_error([] { DispatchPolicy{.chunk_divisor = 0}.check(); }, Errc::usage, {"dispatch chunk_divisor 0"}));
  EXPECT_TRUE(testing::throws_error([] { DispatchPolicy{.copy_tiles_in_flight = 0}.check(); }, Errc::usage, {"dispatch copy_tiles_in_flight 0"}));
  EXPECT_TRUE(testing::throws_error([] { DispatchPolicy{.copy_bytes_in_flight = 0}.check(); }, Errc::usage, {"dispatch copy_bytes_in_flight 0"}));
}

}  // namespace
}  // namespace tilepool
